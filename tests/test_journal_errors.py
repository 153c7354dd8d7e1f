"""Bad input gets one clear ZJournalError, and changes nothing already journaled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

import zjournal
from zjournal.store import RocksStore


def test_a_file_is_not_a_journal(tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_text("hello")
    with pytest.raises(zjournal.NotAJournalError, match="is a file") as info:
        zjournal.open(str(f))
    assert info.value.path == str(f)
    assert f.read_text() == "hello"


def test_a_directory_of_other_files_is_not_a_journal(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(zjournal.NotAJournalError, match="other files"):
        zjournal.open(str(tmp_path))
    assert os.listdir(tmp_path) == ["notes.txt"]


def test_a_foreign_rocksdb_is_not_a_journal(tmp_path: Path) -> None:
    import rocksdict

    path = str(tmp_path / "other")
    db = rocksdict.Rdict(path)
    db["k"] = "v"
    db.close()
    before = sorted(os.listdir(path))
    with pytest.raises(zjournal.NotAJournalError, match="not a zjournal journal"):
        zjournal.open(path)
    assert sorted(os.listdir(path)) == before


def test_an_empty_directory_becomes_a_journal(tmp_path: Path) -> None:
    with zjournal.open(str(tmp_path)) as j:
        assert j.count() == 0


def test_incompatible_schema_is_refused_and_left_alone(journal_path: str) -> None:
    with zjournal.open(journal_path) as j:
        i = j.append("s", [b"keep"], direction="in")
    store = RocksStore(journal_path)
    b = store.batch()
    b.put("meta", b"schema", msgpack.packb(99))
    store.write(b)
    store.close()
    with pytest.raises(zjournal.IncompatibleJournalError, match="schema version 99") as info:
        zjournal.open(journal_path)
    assert (info.value.found, info.value.supported) == (99, zjournal.SCHEMA_VERSION)
    store = RocksStore(journal_path)
    try:
        assert store.get("entries", i.to_bytes(8, "big")) is not None
    finally:
        store.close()


def test_open_twice_in_one_process_is_locked(journal) -> None:
    with pytest.raises(zjournal.JournalLockedError, match="locked by this process"):
        zjournal.open(journal.path)


def test_open_while_another_process_holds_it_is_locked(journal_path: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, zjournal; j = zjournal.open(sys.argv[1]); print('ready', flush=True); sys.stdin.read()",
            journal_path,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(zjournal.JournalLockedError, match="locked by another process"):
            zjournal.open(journal_path)
    finally:
        holder.stdin.close()
        holder.wait(10)
    with zjournal.open(journal_path) as j:  # released once the owner is gone
        assert j.count() == 0


@pytest.mark.parametrize(
    "frames, match",
    [
        (b"single", "not a single bytes"),
        ("text", "not a single str"),
        ([], "at least one frame"),
        (["text"], "frame 0 is a str"),
        ([b"ok", 5], "frame 1 is a int"),
        (None, "not NoneType"),
        ([b"ok", None], "frame 1 is a NoneType"),
    ],
)
def test_frames_that_are_not_bytes_like_are_refused(journal, frames, match: str) -> None:
    keep = journal.append("s", [b"keep"], direction="in")
    with pytest.raises(zjournal.InvalidFramesError, match=match) as info:
        journal.append("s", frames, direction="in")
    assert isinstance(info.value, TypeError)
    assert journal.count() == 1 and journal.get(keep).frames == [b"keep"]


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda j: j.append("", [b"x"], direction="in"), zjournal.InvalidArgumentError),
        (lambda j: j.append("s", [b"x"], direction="sideways"), zjournal.InvalidArgumentError),
        (lambda j: j.append("s", [b"x"], direction="in", envelope_size=2), zjournal.InvalidArgumentError),
        (lambda j: j.count(state="lost"), zjournal.InvalidArgumentError),
        (lambda j: list(j.entries(direction="up")), zjournal.InvalidArgumentError),
        (lambda j: j.nack(999), zjournal.UnknownEntryError),
        (lambda j: j.dead(999), zjournal.UnknownEntryError),
        (lambda j: j.ack(999), zjournal.UnknownEntryError),
        (lambda j: j.attempt(999), zjournal.UnknownEntryError),
        (lambda j: j.ack("1"), zjournal.InvalidArgumentError),
    ],
)
def test_bad_arguments_raise_one_clear_error(journal, call, error) -> None:
    keep = journal.append("s", [b"keep"], direction="in")
    with pytest.raises(error):
        call(journal)
    assert journal.get(keep).state == "pending" and journal.count() == 1


def test_unknown_entry_error_names_the_id(journal) -> None:
    i = journal.append("s", [b"x"], direction="in")
    journal.ack(i)
    with pytest.raises(zjournal.UnknownEntryError, match=f"no entry {i}.*removed") as info:
        journal.nack(i)
    assert info.value.entry_id == i


@pytest.mark.parametrize(
    "options",
    [{"durability": "fast"}, {"retention": -1}, {"max_attempts": 0}, {"fsync_interval": 0}],
)
def test_bad_options_are_refused_before_anything_is_created(journal_path: str, options) -> None:
    with pytest.raises(zjournal.InvalidArgumentError):
        zjournal.open(journal_path, **options)
    assert not os.path.exists(journal_path)


def test_every_public_method_of_a_closed_journal_raises(journal) -> None:
    i = journal.append("s", [b"x"], direction="in")
    journal.close()
    for call in (
        lambda: journal.append("s", [b"x"], direction="in"),
        lambda: journal.get(i),
        lambda: journal.entries(),
        lambda: journal.count(),
        lambda: journal.ack(i),
        lambda: journal.nack(i),
        lambda: journal.dead(i),
        lambda: journal.attempt(i),
        lambda: journal.sync(),
        lambda: journal.names(),
    ):
        with pytest.raises(zjournal.JournalClosedError):
            call()


def test_every_error_derives_from_the_root() -> None:
    for name in zjournal.__all__:
        obj = getattr(zjournal, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, zjournal.ZJournalError), name
