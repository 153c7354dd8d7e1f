"""Kill -9 a real consumer process while it handles a message; restart it; check what comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zmq

import zjournal
from zjournal.crashlog import whole_lines

CONSUMER = r"""
import os, signal, sys, zmq, zjournal
from zjournal.crashlog import append_whole_lines
path, addr, log, max_attempts = sys.argv[1:5]
journal = zjournal.open(path, max_attempts=int(max_attempts))
ctx = zmq.Context()
pull = journal.wrap(ctx.socket(zmq.PULL), name="work")
pull.bind(addr)
out = append_whole_lines(log)
os.write(out, b"ready\n")
while True:
    frames = pull.recv_multipart()
    attempts = journal.get(pull.last_id).attempts
    os.write(out, b"%s %d\n" % (frames[0], attempts))
    if frames[0] == b"poison" or (frames[0].startswith(b"kill") and attempts == 1):
        os.kill(os.getpid(), signal.SIGKILL)  # dies while handling this message
"""


class Consumer:
    def __init__(self, tmp_path: Path, max_attempts: int = 5) -> None:
        self.path = str(tmp_path / "consumer.journal")
        self.addr = f"ipc://{tmp_path}/work.sock"
        self.log = tmp_path / "consumer.log"
        self.max_attempts = max_attempts
        self.proc: subprocess.Popen | None = None
        self.runs = 0

    def lines(self) -> list[str]:
        return whole_lines(self.log)

    def start(self) -> None:
        before = self.lines().count("ready")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, self.path, self.addr, str(self.log), str(self.max_attempts)]
        )
        self.runs += 1
        self.wait_for(lambda lines: lines.count("ready") > before, "the consumer to start")

    def wait_for(self, condition, what: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while not condition(self.lines()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.lines()}"
            time.sleep(0.01)

    def wait_dead(self) -> None:
        assert self.proc is not None
        assert self.proc.wait(20) == -signal.SIGKILL

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(20)


@pytest.fixture
def consumer(tmp_path: Path):
    c = Consumer(tmp_path, max_attempts=3)
    yield c
    c.kill()


@pytest.fixture
def push(consumer: Consumer):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUSH)
    sock.connect(consumer.addr)
    yield sock
    ctx.destroy(linger=0)


def since_last_start(lines: list[str]) -> list[str]:
    return lines[len(lines) - lines[::-1].index("ready") :]


def test_killed_while_handling_k_gets_k_back_with_attempts_2(consumer: Consumer, push: zmq.Socket) -> None:
    consumer.start()
    for payload in (b"m0", b"m1", b"kill-2"):
        push.send_multipart([payload])
    consumer.wait_dead()
    assert consumer.lines()[1:] == ["m0 1", "m1 1", "kill-2 1"]
    consumer.start()
    consumer.wait_for(lambda lines: "kill-2 2" in lines, "the redelivery")
    push.send_multipart([b"m3"])
    consumer.wait_for(lambda lines: "m3 1" in lines, "live traffic after the redelivery")
    # Nothing acked comes again: m0 and m1 were acked by asking for the next message.
    assert since_last_start(consumer.lines()) == ["kill-2 2", "m3 1"]


def test_poison_message_goes_dead_and_the_consumer_continues(consumer: Consumer, push: zmq.Socket) -> None:
    consumer.start()
    push.send_multipart([b"poison"])
    consumer.wait_dead()
    for attempt in (2, 3):
        consumer.start()
        consumer.wait_dead()
        assert consumer.lines()[-1] == f"poison {attempt}"
    consumer.start()  # attempts == max_attempts: it goes dead instead of being delivered
    push.send_multipart([b"after"])
    consumer.wait_for(lambda lines: "after 1" in lines, "the next message")
    assert since_last_start(consumer.lines()) == ["after 1"]
    consumer.kill()
    with zjournal.open(consumer.path) as j:
        dead = list(j.entries(state="dead"))
        assert [(e.frames, e.attempts) for e in dead] == [([b"poison"], 3)]
        assert "max_attempts=3" in dead[0].reason
        assert j.count(state="pending") == 0  # "after" was acked when the consumer asked for more


def test_every_message_is_processed_at_least_once_across_kills(consumer: Consumer, push: zmq.Socket) -> None:
    consumer.start()
    for i in range(20):
        push.send_multipart([b"kill-%02d" % i if i in (5, 13) else b"m-%02d" % i])
        if i in (5, 13):
            consumer.wait_dead()
            consumer.start()
        else:
            consumer.wait_for(lambda lines, i=i: f"m-{i:02d} 1" in lines, f"message {i}")
    seen = {line.split()[0] for line in consumer.lines() if line != "ready"}
    assert seen == {("kill-%02d" if i in (5, 13) else "m-%02d") % i for i in range(20)}
    assert os.path.isdir(consumer.path)
