"""Shared fixtures: journals in temp dirs, closed after every test."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

import zjournal


@pytest.fixture
def journal_path(tmp_path: Path) -> str:
    return str(tmp_path / "test.journal")


@pytest.fixture
def open_journal(journal_path: str) -> Iterator[Callable[..., zjournal.Journal]]:
    """Opens journals (default: at ``journal_path``) and closes them all at teardown."""
    opened: list[zjournal.Journal] = []

    def _open(path: str | None = None, **options) -> zjournal.Journal:
        j = zjournal.open(path or journal_path, **options)
        opened.append(j)
        return j

    yield _open
    for j in opened:
        j.close()


@pytest.fixture
def journal(open_journal: Callable[..., zjournal.Journal]) -> zjournal.Journal:
    return open_journal()


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    """A context whose sockets are all closed (linger 0) at teardown."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


_endpoints = itertools.count()


@pytest.fixture
def endpoint() -> Callable[[], str]:
    """Fresh inproc endpoint names."""
    return lambda: f"inproc://test-{next(_endpoints)}"
