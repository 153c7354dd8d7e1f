"""The counters a clean close records: taken at the next open instead of a scan, only while nothing changed."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap

import msgpack
import pytest

import zjournal
from zjournal.journal import closecounts
from zjournal.journal.entry import DIRECTION_CODES, STATE_CODES, Direction, State
from zjournal.store import RocksStore

_IN = DIRECTION_CODES[Direction.IN]
_PENDING = STATE_CODES[State.PENDING]


def _counts_by_key(journal: zjournal.Journal) -> dict[tuple[str, str, str], int]:
    """Every (name, direction, state) count the journal reports, for the names it has."""
    return {
        (name, direction, state): journal.count(name=name, direction=direction, state=state)
        for name in journal.names()
        for direction in ("in", "out")
        for state in ("pending", "acked", "dead")
    }


def _entries_by_key(journal: zjournal.Journal) -> dict[tuple[str, str, str], int]:
    """The same counts, worked out from the entries themselves."""
    found: dict[tuple[str, str, str], int] = {}
    for e in journal.entries():
        key = (e.name, e.direction, e.state)
        found[key] = found.get(key, 0) + 1
    return found


def _nonzero(counts: dict[tuple[str, str, str], int]) -> dict[tuple[str, str, str], int]:
    return {key: n for key, n in counts.items() if n}


def _fill(path: str) -> None:
    """A journal with entries of every state, in two streams and both directions, closed cleanly."""
    with zjournal.open(path, retention=3600, max_attempts=2) as journal:
        streams = (("a", "in"), ("b", "out"))
        ids = [journal.append(name, [b"m%d" % i], direction=d) for i in range(12) for name, d in streams]
        for entry_id in ids[:5]:
            journal.ack(entry_id)
        journal.dead(ids[6], "poison")
        journal.nack(ids[7])


def _forge(path: str, counters: list[list[object]], *, at: int | None = None, value: bytes | None = None) -> None:
    """Write a record of the counts a clean close would leave, as that close's last write (or ``at``)."""
    store = RocksStore(path)
    try:
        sequence = store.sequence()
        assert sequence is not None
        if value is None:
            with_sequence = sequence + 1 if at is None else at
            value = msgpack.packb([1, with_sequence, 1000, 1, counters])
        batch = store.batch()
        batch.put("meta", closecounts.META_COUNTS, value)
        store.write(batch, sync=True)
    finally:
        store.close()


def test_a_reopened_journal_counts_what_its_entries_say(tmp_path):
    path = str(tmp_path / "j")
    _fill(path)
    with zjournal.open(path, retention=3600) as journal:
        assert _nonzero(_counts_by_key(journal)) == _entries_by_key(journal)
        assert journal.count(state="pending") == 24 - 5 - 1
        assert journal.append("a", [b"after"], direction="in") > 24  # no id handed out twice
    with zjournal.open(path, read_only=True) as view:
        assert _nonzero(_counts_by_key(view)) == _entries_by_key(view)


def test_open_takes_the_recorded_counts_when_nothing_was_written_since(tmp_path):
    """Shown with a forged record: the counts it names are taken as they are, without a scan."""
    path = str(tmp_path / "j")
    _fill(path)
    _forge(path, [["a", _IN, _PENDING, 777]])
    with zjournal.open(path, read_only=True) as view:
        assert view.count(name="a", state="pending") == 777
        assert view.count(name="b") == 0
    with zjournal.open(path) as journal:
        assert journal.count(state="pending") == 777
    with zjournal.open(path) as journal:  # that owner's open wrote: its close recorded its counts
        assert journal.count(state="pending") == 777


@pytest.mark.parametrize("durability", ["none", "process", "always"])
def test_any_write_after_the_close_makes_the_record_stale(tmp_path, durability):
    """An older zjournal, or any writer that knows nothing of the record: its first write moves the sequence on."""
    path = str(tmp_path / "j")
    with zjournal.open(path, durability=durability) as journal:
        for i in range(5):
            journal.append("a", [b"%d" % i], direction="in")
    store = RocksStore(path)
    try:
        batch = store.batch()
        batch.put("meta", b"something-else", b"1")
        store.write(batch, sync=True)
    finally:
        store.close()
    _forge(path, [["a", _IN, _PENDING, 777]], at=0)  # a record of an earlier sequence
    with zjournal.open(path, durability=durability) as journal:
        assert journal.count(state="pending") == 5


@pytest.mark.parametrize(
    "value",
    [
        b"\xc1",  # not msgpack
        msgpack.packb("text"),
        msgpack.packb([1, "seq", 1000, 1, []]),
        msgpack.packb([1, None, 1000, 1, [["a", 9, 0, 1]]]),
    ],
)
def test_a_damaged_record_is_ignored_and_the_entries_counted(tmp_path, value):
    path = str(tmp_path / "j")
    _fill(path)
    _forge(path, [], value=value)
    with zjournal.open(path) as journal:
        assert _nonzero(_counts_by_key(journal)) == _entries_by_key(journal)
        assert journal.count(state="pending") == 18


def test_a_record_with_the_right_sequence_but_bad_counters_is_ignored(tmp_path, caplog):
    path = str(tmp_path / "j")
    _fill(path)
    for counters in ([["a", 9, 0, 1]], [["a", 0, 0, -3]], [[b"a", 0, 0, 1]], [["a", 0, 0]], "x"):
        _forge(path, counters)  # type: ignore[arg-type]
        with caplog.at_level(logging.WARNING, logger="zjournal"), zjournal.open(path, read_only=True) as view:
            assert view.count(state="pending") == 18
        assert "cannot be read" in caplog.text
        caplog.clear()


def test_a_kill_after_an_open_that_took_the_record_is_counted_afresh(tmp_path):
    """Clean close, open (the record taken), appends, SIGKILL: the next open counts every entry."""
    path = str(tmp_path / "j")
    with zjournal.open(path) as journal:
        for i in range(20):
            journal.append("a", [b"%d" % i], direction="in")
    child = textwrap.dedent(
        f"""
        import os, signal, sys, zjournal
        journal = zjournal.open({path!r}, durability="process")
        assert journal.count(state="pending") == 20
        for i in range(30):
            journal.append("b", [b"x"], direction="out")
        journal.ack(1)
        print("ready", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    run = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert run.returncode == -signal.SIGKILL, run.stderr
    assert "ready" in run.stdout
    with zjournal.open(path) as journal:
        assert journal.count(name="a", state="pending") == 19
        assert journal.count(name="b", state="pending") == 30
        assert _nonzero(_counts_by_key(journal)) == _entries_by_key(journal)
