"""Each crash window, exercised deterministically with ZJOURNAL_KILL_POINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

import zjournal

SENDER = r"""
import sys, zmq, zjournal
journal = zjournal.open(sys.argv[1])
ctx = zmq.Context()
push = journal.wrap(ctx.socket(zmq.PUSH), name="out")
push.connect(sys.argv[2])
import time
for i in range(5):
    push.send(b"m%d" % i)
    time.sleep(0.3)  # let ZeroMQ's I/O thread put it on the wire before the next one
print("finished", flush=True)
"""

RECEIVER = r"""
import os, sys, zmq, zjournal
journal = zjournal.open(sys.argv[1])
ctx = zmq.Context()
pull = journal.wrap(ctx.socket(zmq.PULL), name="in")
pull.bind(sys.argv[2])
log = os.open(sys.argv[3], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
os.write(log, b"ready\n")
while True:
    os.write(log, pull.recv() + b"\n")
"""


def run(code: str, *args: str, point: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "ZJOURNAL_KILL_POINT": point}
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, **kwargs)


def test_killed_after_the_journal_write_before_the_send(tmp_path: Path, ctx) -> None:
    path, addr = str(tmp_path / "s.journal"), f"ipc://{tmp_path}/k1"
    pull = ctx.socket(zmq.PULL)
    pull.bind(addr)
    proc = run(SENDER, path, addr, point="send:after-journal:3", stdout=subprocess.PIPE)
    assert proc.wait(20) == -signal.SIGKILL
    got = []
    while pull.poll(300):
        got.append(pull.recv())
    assert got == [b"m0", b"m1"]  # the third never reached ZeroMQ ...
    with zjournal.open(path) as j:  # ... but it is journaled: pending, ready to be sent again
        # (m1's ack rode in the same write as m2's entry)
        assert [e.frames for e in j.entries(state="pending")] == [[b"m2"]]
        resend = ctx.socket(zmq.PUSH)
        resend.connect(addr)
        assert j.replay("out", into=resend) == 1
    assert pull.recv() == b"m2"


def test_killed_after_receive_before_the_journal_write(tmp_path: Path, ctx) -> None:
    """The one window a receiver's journal cannot cover: the message left the sender's hands already.

    With a plain (or `sent`-policy) sender the message is gone; an end-to-end
    ack (`ack="explicit"` on the sender, acked by a result) is what covers it.
    """
    path, addr, log = str(tmp_path / "r.journal"), f"ipc://{tmp_path}/k2", tmp_path / "log"
    proc = run(RECEIVER, path, addr, str(log), point="recv:before-journal:2")
    push = ctx.socket(zmq.PUSH)
    push.connect(addr)
    for i in range(3):
        push.send(b"m%d" % i)
    assert proc.wait(20) == -signal.SIGKILL
    assert log.read_text().split() == ["ready", "m0"]
    with zjournal.open(path) as j:
        assert [e.frames for e in j.entries()] == [[b"m0"]]  # m0 pending (never acked); m1 not journaled


def test_killed_after_processing_before_the_ack(tmp_path: Path, ctx) -> None:
    path, addr, log = str(tmp_path / "a.journal"), f"ipc://{tmp_path}/k3", tmp_path / "log"
    proc = run(RECEIVER, path, addr, str(log), point="ack:before-write:1")
    push = ctx.socket(zmq.PUSH)
    push.connect(addr)
    push.send(b"m0")
    push.send(b"m1")
    assert proc.wait(20) == -signal.SIGKILL
    assert log.read_text().split() == ["ready", "m0"]
    with zjournal.open(path) as j:
        pending = list(j.entries(state="pending"))
        assert [e.frames for e in pending] == [[b"m0"]]  # processed, not acked: it comes back (a duplicate)


def test_killed_inside_a_replay_sends_again_but_loses_nothing(tmp_path: Path, ctx, sample_journal) -> None:
    pull = ctx.socket(zmq.PULL)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    cmd = [
        sys.executable,
        "-m",
        "zjournal.cli",
        "replay",
        sample_journal,
        "--endpoint",
        f"tcp://127.0.0.1:{port}",
        "--socket-type",
        "push",
        "--chunk",
        "2",
    ]
    killed = subprocess.run(cmd, env={**os.environ, "ZJOURNAL_KILL_POINT": "replay:after-send:2"}, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    first = []
    while pull.poll(300):
        first.append(pull.recv())
    assert len(first) == 4  # two chunks handed over; the second was never marked done
    with zjournal.open(sample_journal, read_only=True) as j:
        assert j.count(state="pending") == 4
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "sent 4" in again.stdout
    second = []
    while pull.poll(300):
        second.append(pull.recv())
    assert set(first) | set(second) == {b'{"order": %d}' % i for i in range(5)} | {b"\x93\x01\x02\x03"}


@pytest.mark.parametrize("value", ["nowhere", "send:after-journal:0", "\x1b]0;title\x07"])
def test_a_bad_kill_point_arms_nothing_and_says_so_in_one_line(value) -> None:
    env = {**os.environ, "ZJOURNAL_KILL_POINT": value}
    code = "import zjournal.killpoints as k; print(k.ARMED)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False"  # a typo never stops a program
    assert done.stderr.count("\n") == 1 and "ignoring ZJOURNAL_KILL_POINT" in done.stderr
    assert "\x1b" not in done.stderr  # shown escaped


@pytest.mark.parametrize("point", ["device:after-journal", "device:before-ack"])
def test_device_kill_points_lose_nothing(tmp_path: Path, ctx, point: str) -> None:
    path = str(tmp_path / "d.journal")
    front, back = f"ipc://{tmp_path}/f", f"ipc://{tmp_path}/b"
    env = {**os.environ, "ZJOURNAL_KILL_POINT": point}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zjournal.cli", "device", path, "--frontend", front, "--backend", back],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "ready"
    worker = ctx.socket(zmq.REP)
    worker.connect(back)
    client = ctx.socket(zmq.DEALER)
    client.connect(front)
    client.send_multipart([b"", b"job"])
    if point == "device:before-ack":
        assert worker.poll(5000)
        worker.recv_multipart()
        worker.send(b"done")
    assert proc.wait(20) == -signal.SIGKILL
    with zjournal.open(path) as j:
        assert [e.body for e in j.entries(state="pending")] == [[b"job"]]  # still there: it will be sent again
