"""Faults: damaged files, a full disk, an unwritable directory, huge messages, garbage at every door."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

import zjournal

FILL = r"""
import os, signal, sys, zjournal
journal = zjournal.open(sys.argv[1])
for i in range(int(sys.argv[2])):
    journal.append("s", [b"payload-%05d" % i, os.urandom(40)], direction="in")
if sys.argv[3] == "flush":
    journal._store.flush()
os.kill(os.getpid(), signal.SIGKILL)  # no clean close: the entries stay in the WAL (or the flushed SST)
"""


def crashed_journal(tmp_path: Path, count: int = 2000, flush: bool = False) -> str:
    path = str(tmp_path / "damaged.journal")
    done = subprocess.run([sys.executable, "-c", FILL, path, str(count), "flush" if flush else "-"])
    assert done.returncode == -signal.SIGKILL
    return path


def flip_byte(filename: str, where: float = 0.5) -> None:
    size = os.path.getsize(filename)
    with open(filename, "r+b") as f:
        f.seek(int(size * where))
        byte = f.read(1)
        f.seek(int(size * where))
        f.write(bytes([byte[0] ^ 0xFF]))


def test_a_flipped_byte_in_the_wal_is_refused_naming_the_file(tmp_path, cli) -> None:
    path = crashed_journal(tmp_path)
    (wal,) = glob.glob(f"{path}/*.log")
    flip_byte(wal)
    with pytest.raises(zjournal.JournalCorruptError) as info:
        zjournal.open(path)
    assert info.value.file == wal and "recover=True" in str(info.value)
    result = cli("inspect", path)  # the CLI reports the damage in one line
    assert result.exit_code == 1 and wal in result.output and "damaged" in result.output


def test_recover_keeps_what_precedes_the_damage_and_says_what_it_dropped(tmp_path, cli) -> None:
    path = crashed_journal(tmp_path)
    (wal,) = glob.glob(f"{path}/*.log")
    flip_byte(wal)
    result = cli("recover", path)
    assert result.exit_code == 0, result.output
    assert f"dropped: {wal}: dropped" in result.output
    with zjournal.open(path) as j:  # opens normally from now on
        frames = [e.frames[0] for e in j.entries()]
    assert 0 < len(frames) < 2000
    assert frames == [b"payload-%05d" % i for i in range(len(frames))]  # an intact prefix, nothing wrong


def test_a_torn_last_record_is_dropped_and_the_rest_kept(tmp_path) -> None:
    path = crashed_journal(tmp_path)
    (wal,) = glob.glob(f"{path}/*.log")
    with open(wal, "r+b") as f:
        f.truncate(os.path.getsize(wal) - 20)  # what power loss mid-write leaves
    with open(os.path.join(path, "zjournal-logmark"), "r+b") as f:
        f.seek(24)
        f.write(os.urandom(16))  # and a power cut is a new boot: the mark of the page cache no longer counts
    with zjournal.open(path) as j:
        frames = [e.frames[0] for e in j.entries()]
    assert frames == [b"payload-%05d" % i for i in range(1999)]


def test_a_flipped_byte_in_an_sst_is_refused_naming_the_file(tmp_path, cli) -> None:
    path = crashed_journal(tmp_path, count=3000, flush=True)
    ssts = glob.glob(f"{path}/*.sst")
    assert ssts
    biggest = max(ssts, key=os.path.getsize)
    flip_byte(biggest, 0.3)
    with pytest.raises(zjournal.JournalCorruptError) as info, zjournal.open(path) as j:
        list(j.entries())
    assert biggest in str(info.value)
    result = cli("inspect", path)
    assert result.exit_code == 1 and "damaged" in result.output


DISK_FULL = r"""
import os, resource, signal, sys, zjournal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # get EFBIG instead of being killed
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
journal = zjournal.open(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
returned = []
error = None
for i in range(100000):
    try:
        returned.append(journal.append("s", [b"%06d" % i, b"x" * 1000], direction="in"))
    except zjournal.ZJournalError as e:
        error = e
        break
print(type(error).__name__, isinstance(error, zjournal.StoreError), len(returned), flush=True)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is back
try:
    journal.close()
except zjournal.ZJournalError:
    pass
journal = zjournal.open(sys.argv[1])
ids = {e.id for e in journal.entries()}
print("kept", set(returned) <= ids, flush=True)
journal.append("s", [b"after"], direction="in")
print("works", journal.count(), flush=True)
"""


def test_disk_full_raises_a_store_error_and_loses_nothing_returned(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", DISK_FULL, str(tmp_path / "full.journal")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    first, kept, works = done.stdout.splitlines()
    _name, is_store_error, count = first.split()
    assert is_store_error == "True" and int(count) > 0, first
    assert kept == "kept True"
    assert int(works.split()[1]) >= int(count) + 1


def test_an_unwritable_place_is_one_clear_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(zjournal.ZJournalError):
        zjournal.open(str(blocker / "inside"))  # a journal under a file: the directory cannot be made


def test_messages_above_the_limit_are_refused_and_not_sent(open_journal, ctx, endpoint) -> None:
    j = open_journal(max_message_size=1024 * 1024)
    with pytest.raises(zjournal.MessageTooLargeError, match="larger than the journal's max_message_size") as info:
        j.append("s", [b"x" * (1024 * 1024 + 1)], direction="in")
    assert isinstance(info.value, ValueError) and info.value.limit == 1024 * 1024
    assert j.count() == 0
    pull = ctx.socket(zmq.PULL)
    addr = endpoint()
    pull.bind(addr)
    push = j.wrap(ctx.socket(zmq.PUSH))
    push.connect(addr)
    with pytest.raises(zjournal.MessageTooLargeError):
        push.send_multipart([b"a" * 600_000, b"b" * 600_000])
    push.send(b"y" * 1000_000)  # under the limit: journaled and sent
    assert pull.recv() == b"y" * 1000_000 and pull.poll(100) == 0


def test_the_default_limit_is_documented() -> None:
    from zjournal.journal import DEFAULT_MAX_MESSAGE_SIZE

    assert DEFAULT_MAX_MESSAGE_SIZE == 256 * 1024 * 1024
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "256 MiB" in readme


def test_unicode_names_and_empty_frames_are_fine(journal) -> None:
    entry_id = journal.append("заказы/注文 ✓", [b"", b""], direction="in")
    assert journal.get(entry_id).frames == [b"", b""]
    assert journal.names() == ["заказы/注文 ✓"]


def test_a_message_with_no_frames_is_refused(journal, ctx) -> None:
    with pytest.raises(zjournal.InvalidFramesError):
        journal.append("s", [], direction="in")


def test_the_cli_given_garbage(cli, sample_journal) -> None:
    for args in (["inspect", sample_journal, "--limit", "zero"], ["nonsense-command"], ["inspect"]):
        result = cli(*args)
        assert result.exit_code != 0 and "Traceback" not in result.output
    result = cli("inspect", "\x00bad")
    assert result.exit_code == 1 and "Traceback" not in result.output


KEEPS_GOING = r"""
import resource, signal, sys, zmq, zjournal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
journal = zjournal.open(sys.argv[1])
ctx = zmq.Context()
pull = ctx.socket(zmq.PULL); pull.bind("inproc://x")
# explicit acks: every entry goes to the store (the default "sent" ones live in an in-flight slot)
push = journal.wrap(ctx.socket(zmq.PUSH), name="out", ack="explicit"); push.connect("inproc://x")
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, hard))
sent = 0
try:
    while True:
        push.send(b"m%06d" % sent + b"x" * 1000)
        sent += 1
except zjournal.StoreError:
    pass
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # space is back: the same journal, the same socket
push.send(b"after")
entry_id = journal.append("other", [b"also after"], direction="in")
received = []
while pull.poll(200):
    received.append(pull.recv())
print(sent, len(received), received[-1].decode(), journal.get(entry_id).frames[0].decode(), sep="|", flush=True)
"""


def test_work_continues_once_space_returns_without_reopening(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KEEPS_GOING, str(tmp_path / "k.journal")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    sent, received, last, other = done.stdout.strip().split("|")
    # every send that returned arrived, the one that could not be journaled did not, "after" did
    assert int(received) == int(sent) + 1 and last == "after" and other == "also after"
