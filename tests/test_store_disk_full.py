"""A real full disk (ENOSPC on a small tmpfs, in a mount namespace of its own): what a journaled receiver does.

The other fault tests limit the file size (RLIMIT_FSIZE: EFBIG); this one
fills a file system for real. A tmpfs is mounted in a new mount namespace
(``unshare --mount``, as root, or ``--map-root-user`` in a user namespace),
so nothing outlives the test. Checked: appends raise StoreError; a small
received message is journaled on the full disk all the same (its socket's
slot file was allocated when it was wrapped); a large one makes ``recv``
raise StoreError, stays readable for pollers, and is handed over once space
is back; after a kill, every append that returned and the message in hand
are in the journal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

# Runs in the mount namespace: mounts a 4 MiB tmpfs at argv[1], fills it, receives, prints what it saw.
_SCENARIO = r"""
import json, os, subprocess, sys
import zmq, zjournal
mnt = sys.argv[1]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt], check=True)
path = os.path.join(mnt, "j")
journal = zjournal.open(path)
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
large = os.urandom(20000)
push.send(large)
try:
    pull.recv()
    seen["large"] = "delivered on a full disk"
except zjournal.StoreError:
    seen["large"] = "StoreError"
seen["readable_meanwhile"] = bool(pull.poll(0))
os.unlink(os.path.join(mnt, "filler"))
subprocess.run(["mount", "-o", "remount,size=16m", mnt], check=True)
seen["large_later"] = pull.recv() == large
push.send(b"in hand")
seen["in_hand"] = pull.recv().decode()
print(json.dumps(seen), flush=True)
os._exit(0)  # a crash: nothing closed
"""

# The namespace's own process: runs the scenario, then opens the journal it left (the tmpfs dies with it).
_OWNER = r"""
import json, subprocess, sys
import zjournal
mnt = sys.argv[1]
run = subprocess.run([sys.executable, "-c", sys.argv[2], mnt], capture_output=True, text=True, timeout=120)
if run.returncode:
    print(json.dumps({"failed": run.stderr[-2000:]}))
    sys.exit(0)
seen = json.loads(run.stdout.splitlines()[-1])
with zjournal.open(mnt + "/j") as journal:
    present = {entry.id for entry in journal.entries(name="fill")}
    seen["appends_lost"] = len([i for i in seen["appended"] if i not in present])
    seen["pending_pull"] = [entry.body[0].decode() for entry in journal.entries(name="pull", state="pending")]
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


def test_a_full_disk_keeps_received_messages_and_every_append_that_returned(tmp_path):
    command = _namespace_command()
    if command is None:
        pytest.skip("no mount namespace here (unshare missing, or user namespaces disabled): no tmpfs to fill")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run = subprocess.run(
        [*command, sys.executable, "-c", _OWNER, str(mnt), _SCENARIO],
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
    # A store write (larger than a slot): refused, the message kept in the process (in no journal until
    # there is space: the README says so) ...
    assert seen["large"] == "StoreError"
    assert seen["readable_meanwhile"]  # ... where a poller sees it
    assert seen["large_later"]  # handed over once there is space again
    assert seen["in_hand"] == "in hand"
    assert seen["pending_pull"] == ["in hand"]  # the message in hand when it was killed is pending
