"""Shared fixtures: journals in temp dirs, closed after every test."""

from __future__ import annotations

import itertools
import os
import subprocess
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
def records_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids of the entries every journal's scans read from now on (the scans still read them all)."""
    from zjournal.journal.ledger import Ledger

    read: list[int] = []
    real_scan = Ledger.scan_with_slots

    def counted_scan(self: Ledger, after: int = 0) -> Iterator[tuple[int, bytes]]:
        for entry_id, value in real_scan(self, after):
            read.append(entry_id)
            yield entry_id, value

    monkeypatch.setattr(Ledger, "scan_with_slots", counted_scan)
    return read


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    """A context whose sockets are all closed (linger 0) at teardown."""
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def confirm_intake() -> Iterator[Callable[[bytes], tuple[zmq.Socket, bytes]]]:
    """Make a confirm sender's intake for an origin: ``(socket, its address for headers)``, closed after the test.

    zjournal's real one (zjournal.sockets.confirm_channel): receivers send
    confirmations only to the intake of the origin a header names.
    """
    from zjournal.sockets import confirm_channel

    made: list[zmq.Socket] = []

    def make(origin: bytes) -> tuple[zmq.Socket, bytes]:
        intake = confirm_channel.open_intake(origin, "tcp://127.0.0.1:*")
        made.append(intake)
        return intake, intake.get(zmq.LAST_ENDPOINT)

    yield make
    for intake in made:
        intake.close(0)


@pytest.fixture
def exited() -> Callable[[subprocess.Popen, str], tuple[str, str]]:
    """Waits up to 30 s for a process to exit: its stdout and stderr. One still running is killed and fails the test."""

    def wait(proc: subprocess.Popen, hang: str) -> tuple[str, str]:
        try:
            return proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError(hang) from None

    return wait


_endpoints = itertools.count()


@pytest.fixture
def endpoint() -> Callable[[], str]:
    """Fresh inproc endpoint names."""
    return lambda: f"inproc://test-{next(_endpoints)}"


@pytest.fixture
def ipc(tmp_path: Path) -> Callable[[], str]:
    """Fresh ipc endpoints: where inproc will not do (ZMTP metadata such as a REQ's origin; a peer that
    reconnects to whatever binds its address next)."""
    names = itertools.count()
    return lambda: f"ipc://{tmp_path}/ep-{next(names)}"


@pytest.fixture
def cli():
    """Invoke the zjournal CLI in-process; returns the click Result."""
    from typer.testing import CliRunner

    from zjournal.cli import app

    runner = CliRunner()

    def _invoke(*args: str, stdin: str | None = None):
        return runner.invoke(app, list(args), input=stdin)

    return _invoke


@pytest.fixture
def sample_journal(journal_path: str) -> str:
    """A stopped journal: 5 pending ROUTER requests (JSON bodies), 1 outbound msgpack task, 1 dead letter."""
    with zjournal.open(journal_path) as j:
        for i in range(5):
            j.append("orders", [b"client", b"", b'{"order": %d}' % i], direction="in", attempts=1, envelope_size=2)
        j.append("tasks", [b"\x93\x01\x02\x03"], direction="out", attempts=2)
        poison = j.append("orders", [b"poison"], direction="in", attempts=3)
        j.dead(poison, "too many attempts")
    return journal_path


@pytest.fixture(scope="session")
def nats_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One JetStream server on 127.0.0.1 for the whole session (each test uses journal names of its own)."""
    from natsserver import Servers

    servers = Servers(tmp_path_factory.mktemp("nats"), nodes=1).start()
    yield servers.url
    servers.stop()


@pytest.fixture
def nats_cluster(tmp_path: Path):
    """A 3-node JetStream cluster of this test's own (it may kill nodes)."""
    from natsserver import Servers

    servers = Servers(tmp_path / "nats", nodes=3).start()
    yield servers
    servers.stop()


_aliases = itertools.count()


@pytest.fixture
def alias() -> str:
    """A journal name in the engine that no other test uses."""
    return f"t{next(_aliases)}-{os.getpid()}"
