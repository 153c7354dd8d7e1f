"""A real full disk (ENOSPC on a small tmpfs, in a mount namespace of its own): what a journaled receiver does.

The other fault tests limit the file size (RLIMIT_FSIZE: EFBIG); this one
fills a file system for real. A tmpfs is mounted in a new mount namespace
(``unshare --mount``, as root, or ``--map-root-user`` in a user namespace),
so nothing outlives the test. Checked: appends raise StoreError; a small
received message is journaled on the full disk all the same (its socket's
slot file was allocated when it was wrapped), and so is a large one, which
the store refuses (the journal's spare file takes it: zjournal.journal.overflow),
one after the other as each acks the one before; after a kill, the journal
opens once there is space again (not before: StoreError), with every append
that returned and the message in hand.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

import zjournal

# Runs in the mount namespace: mounts a 4 MiB tmpfs at argv[1], fills it, receives, prints what it saw, dies.
_SCENARIO = r"""
import json, os, subprocess, sys, time
import zmq, zjournal
mnt, durability = sys.argv[1], sys.argv[2]
journal = zjournal.open(os.path.join(mnt, "j"), durability=durability, fsync_interval=20)
ctx = zmq.Context()
pull = journal.wrap(ctx.socket(zmq.PULL), name="pull")
pull.bind("inproc://disk-full")
push = ctx.socket(zmq.PUSH)
push.connect("inproc://disk-full")
seen = {"appended": []}
try:
    while True:
        seen["appended"].append(journal.append("fill", [os.urandom(4000)], direction="in"))
except zjournal.StoreError:
    seen["append_refused"] = True
try:
    with open(os.path.join(mnt, "filler"), "wb") as f:
        while True:
            f.write(bytes(4096))
            f.flush()
except OSError:
    pass
small = 0
for i in range(200):
    push.send(b"small %d" % i)
    small += pull.recv() == b"small %d" % i
seen["small_received"] = small
seen["large_received"] = []
for i in range(3):  # each acks the one before (the next policy): the spare file takes the next one
    large = b"large %d:" % i + os.urandom(20000)
    push.send(large)
    try:
        seen["large_received"].append(pull.recv() == large)
    except zjournal.StoreError as e:
        seen["large_received"].append(str(e))
seen["count_pending"] = journal.count(name="pull", state="pending")
with zjournal.open(os.path.join(mnt, "j"), read_only=True) as view:  # what `zjournal inspect` reads
    seen["view_pending"] = [entry.body[0][:8].decode() for entry in view.entries(name="pull", state="pending")]
time.sleep(0.2)  # (interval mode: the background fsync of the journal's files, the spare's new name too)
print(json.dumps(seen), flush=True)
os._exit(0)  # a crash, "large 2" in hand: nothing closed
"""

# The namespace's own process: mounts the tmpfs, runs the scenario, opens the journal it left (the tmpfs
# dies with this process).
_OWNER = r"""
import json, os, subprocess, sys
import zjournal
mnt = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], check=True)
run = subprocess.run([sys.executable, "-c", sys.argv[2], mnt, sys.argv[3]], capture_output=True, text=True, timeout=120)
if run.returncode or not run.stdout.strip():
    print(json.dumps({"failed": run.stderr[-2000:]}))
    sys.exit(0)
seen = json.loads(run.stdout.splitlines()[-1])
try:
    zjournal.open(mnt + "/j").close()
    seen["open_on_full_disk"] = "opened"
except zjournal.StoreError:
    seen["open_on_full_disk"] = "StoreError"
os.unlink(os.path.join(mnt, "filler"))
subprocess.run(["mount", "-o", "remount,size=16m", mnt], check=True)  # space again (RocksDB's reopen needs it)
with zjournal.open(mnt + "/j") as journal:
    present = {entry.id for entry in journal.entries(name="fill")}
    seen["appends_lost"] = len([i for i in seen["appended"] if i not in present])
    seen["pending_pull"] = [entry.body[0][:8].decode() for entry in journal.entries(name="pull", state="pending")]
seen["appended"] = len(seen["appended"])
print(json.dumps(seen))
"""


def _namespace_command() -> list[str] | None:
    """How to run a process in a mount namespace where it may mount a tmpfs (None: this machine cannot)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    command = [unshare, "--mount"] if os.geteuid() == 0 else [unshare, "--mount", "--user", "--map-root-user"]
    probe = subprocess.run([*command, "true"], capture_output=True)
    return command if probe.returncode == 0 else None


@pytest.mark.parametrize("durability", ["process", "interval"])
def test_a_full_disk_keeps_received_messages_and_every_append_that_returned(tmp_path, durability):
    command = _namespace_command()
    if command is None:
        pytest.skip("no mount namespace here (unshare missing, or user namespaces disabled): no tmpfs to fill")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run = subprocess.run(
        [*command, sys.executable, "-c", _OWNER, str(mnt), _SCENARIO, durability],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.splitlines()[-1])
    assert "failed" not in seen, seen.get("failed")
    assert seen["append_refused"] and seen["appended"] > 100  # appends filled the disk, then raised StoreError
    assert seen["appends_lost"] == 0
    assert seen["small_received"] == 200  # through the socket's slot: no store write
    assert seen["large_received"] == [True, True, True]  # refused by the store, journaled in the spare file
    assert seen["count_pending"] == 1  # the one in hand (each recv acked the one before)
    assert seen["view_pending"] == ["large 2:"]  # a read-only view (inspect) sees it where it is
    # Opening takes in what the slot files hold, with a store write: not before there is space again.
    assert seen["open_on_full_disk"] == "StoreError"
    assert seen["pending_pull"] == ["large 2:"]  # the message in hand when it was killed


def test_a_spare_file_the_journal_did_not_make_is_made_again(tmp_path):
    """A sparse spare (a hole written on a full disk is SIGBUS, not an error) or an oversized one is replaced."""
    from zjournal.journal import overflow

    path = tmp_path / "j"
    with zjournal.open(str(path)):
        pass
    spare = path / "inflight" / overflow.SPARE_NAME
    assert spare.stat().st_size == overflow.SPARE_BYTES  # (plenty of space here)
    assert spare.stat().st_blocks * 512 >= overflow.SPARE_BYTES  # allocated, not sparse
    for size in (overflow.SPARE_BYTES, 1 << 30):  # sparse at the right size; larger than any this makes
        spare.unlink()
        with open(spare, "wb") as f:
            f.truncate(size)
        assert spare.stat().st_blocks * 512 < overflow.SPARE_BYTES
        with zjournal.open(str(path)):
            pass
        assert spare.stat().st_size == overflow.SPARE_BYTES
        assert spare.stat().st_blocks * 512 >= overflow.SPARE_BYTES
