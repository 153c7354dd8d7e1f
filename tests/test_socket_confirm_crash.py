"""confirm=True across SIGKILL: every message whose send() returned is handed over, duplicates bounded by kills."""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from zjournal.crashlog import whole_lines

PEERS = str(Path(__file__).with_name("confirm_peers.py"))


class Peer:
    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, PEERS, *self.args], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        assert self.line(timeout=30) == "ready"

    @staticmethod
    def _read(stream, lines: queue.Queue[str]) -> None:
        for line in stream:  # a reader of its own: a line already buffered is never missed
            lines.put(line.strip())

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def line(self, timeout: float) -> str:
        """The next line the peer prints (its stdout), within ``timeout`` seconds."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from {self.args[0]} in {timeout} s") from None


@pytest.fixture
def peers(tmp_path: Path):
    started: list[Peer] = []

    def make(*args: str) -> Peer:
        peer = Peer(*args)
        started.append(peer)
        return peer

    yield make
    for peer in started:
        if peer.proc is not None and peer.proc.poll() is None:
            peer.kill()


@pytest.mark.parametrize(
    "kinds", ["push,pull", "push,pull+poll", "dealer,router", "dealer,router+poll", "router,dealer"]
)
def test_kills_of_the_receiver_and_the_sender_lose_nothing_sent(tmp_path: Path, peers, kinds, monkeypatch) -> None:
    monkeypatch.setenv("ZJ_CONFIRM_KINDS", kinds)  # the peers' socket types (tests/confirm_peers.py)
    endpoint = f"ipc://{tmp_path}/data"
    out, sent = tmp_path / "received", tmp_path / "sent"
    receiver = peers("receive", str(tmp_path / "rj"), endpoint, str(out))
    sender = peers("send", str(tmp_path / "sj"), endpoint, "3000", str(sent))
    receiver.start()
    sender.start()
    rng = random.Random(7)
    kills = 0
    for _ in range(3):
        time.sleep(rng.uniform(0.05, 0.25))
        receiver.kill()
        kills += 1
        receiver.start()
    time.sleep(rng.uniform(0.05, 0.2))
    sender.kill()
    kills += 1
    sender.start()
    assert sender.line(timeout=30) == "confirmed"
    receiver.kill()
    returned = whole_lines(sent)
    lines = [line.split() for line in whole_lines(out)]
    handed = [number for number, _attempts in lines]
    assert len(returned) == 3000 and returned == [str(n) for n in range(3000)]
    missing = set(returned) - set(handed)
    assert not missing, f"{len(missing)} sent messages never handed over, e.g. {sorted(missing, key=int)[:5]}"
    duplicates = len(handed) - len(set(handed))
    assert duplicates <= kills, f"{duplicates} duplicates for {kills} kills"
    # last_attempts == 1: never handed to the application before (one sender kill may make the
    # sending application itself send a number twice, as two messages: it logs after send returns)
    first_time = [number for number, attempts in lines if attempts == "1"]
    assert len(first_time) - len(set(first_time)) <= 1


def _handed(out: Path) -> list[str]:
    return [line.split()[0] for line in whole_lines(out)]


def test_one_sender_two_receivers_each_killed_lose_nothing_sent(tmp_path: Path, peers) -> None:
    # Round robin: a resend may reach the other receiver (at-least-once; it is counted, not lost).
    endpoints = [f"ipc://{tmp_path}/data-{n}" for n in range(2)]
    outs = [tmp_path / f"received-{n}" for n in range(2)]
    receivers = [peers("receive", str(tmp_path / f"rj{n}"), endpoints[n], str(outs[n])) for n in range(2)]
    sender = peers("send", str(tmp_path / "sj"), ",".join(endpoints), "3000", str(tmp_path / "sent"))
    for receiver in receivers:
        receiver.start()
    sender.start()
    rng = random.Random(11)
    for receiver in (receivers[0], receivers[1], receivers[0]):
        time.sleep(rng.uniform(0.05, 0.2))
        receiver.kill()
        receiver.start()
    assert sender.line(timeout=30) == "confirmed"
    returned = whole_lines(tmp_path / "sent")
    handed = _handed(outs[0]) + _handed(outs[1])
    assert len(returned) == 3000
    missing = set(returned) - set(handed)
    assert not missing, f"{len(missing)} sent messages never handed over"
    assert _handed(outs[0]) and _handed(outs[1])  # both took part


def test_two_senders_into_one_receiver_are_deduplicated_apart(tmp_path: Path, peers) -> None:
    endpoint = f"ipc://{tmp_path}/data"
    out = tmp_path / "received"
    receiver = peers("receive", str(tmp_path / "rj"), endpoint, str(out))
    senders = [
        peers("send", str(tmp_path / f"sj{n}"), endpoint, "1500", str(tmp_path / f"sent-{n}"), f"s{n}-")
        for n in range(2)
    ]
    receiver.start()
    for sender in senders:
        sender.start()
    rng = random.Random(5)
    kills = 0
    for _ in range(2):
        time.sleep(rng.uniform(0.05, 0.2))
        receiver.kill()
        kills += 1
        receiver.start()
    for sender in senders:
        assert sender.line(timeout=30) == "confirmed"
    returned = whole_lines(tmp_path / "sent-0") + whole_lines(tmp_path / "sent-1")
    handed = _handed(out)
    assert len(returned) == 3000
    assert not set(returned) - set(handed)
    assert len(handed) - len(set(handed)) <= kills  # the same sequence numbers from two origins are not duplicates


_ROUTER_THEN_KILLED = """
import sys, time, zmq, zjournal
journal = zjournal.open(sys.argv[1])
ctx = zmq.Context()
router = journal.wrap(ctx.socket(zmq.ROUTER), name="server", confirm=True)
router.bind(sys.argv[2])
client = ctx.socket(zmq.DEALER)  # plain: it never confirms, and its routing id is libzmq's
client.connect(sys.argv[2])
client.send(b"hello")
peer, _ = router.recv_multipart()
router.send_multipart([peer, b"reply-1"])
router.send_multipart([peer, b"reply-2"])
print("sent", flush=True)
time.sleep(60)
"""


def test_a_killed_routers_unconfirmed_replies_to_made_up_ids_are_dead_letters_after_it(
    tmp_path: Path, open_journal
) -> None:
    import zmq

    path = str(tmp_path / "j")
    endpoint = f"ipc://{tmp_path}/server"
    proc = subprocess.Popen(
        [sys.executable, "-c", _ROUTER_THEN_KILLED, path, endpoint], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "sent"
    finally:
        proc.kill()  # SIGKILL: the replies sit unconfirmed in the outbox
        proc.wait()
    ctx = zmq.Context()
    try:
        journal = open_journal(path)
        assert journal.count(name="server", state="pending", direction="out") == 2
        router = journal.wrap(ctx.socket(zmq.ROUTER), name="server", confirm=True)
        router.close(0)
        journal.close()
        again = open_journal(path)  # and so they stay, in the store, whatever the outbox file held
        dead = list(again.entries(name="server", state="dead"))
        assert [e.frames[1:] for e in dead] == [[b"reply-1"], [b"reply-2"]]
        assert all("earlier process" in e.reason for e in dead)
        assert again.count(name="server", state="pending", direction="out") == 0
    finally:
        ctx.destroy(linger=0)


_SEND_ONE_AND_HANG = """
import sys, time, zmq, zjournal
journal = zjournal.open(sys.argv[1], plugins=False)
push = journal.wrap(zmq.Context.instance().socket(zmq.PUSH), name="out", confirm=True)
push.connect(sys.argv[2])
push.send(b"payload")
print(push._s.confirm.endpoint, flush=True)
time.sleep(60)
"""


def test_a_killed_senders_confirmations_never_reach_whatever_binds_its_address_next(tmp_path: Path) -> None:
    """The receiver still owes the dead sender a confirmation; a stranger that takes the port gets nothing."""
    import zmq

    import zjournal

    ctx = zmq.Context()
    receiver = zjournal.open(str(tmp_path / "r"), plugins=False)
    pull = receiver.wrap(ctx.socket(zmq.PULL), name="in")
    where = f"ipc://{tmp_path}/data"
    pull.bind(where)
    child = subprocess.Popen(
        [sys.executable, "-c", _SEND_ONE_AND_HANG, str(tmp_path / "s"), where], stdout=subprocess.PIPE, text=True
    )
    stranger = ctx.socket(zmq.PULL)  # a program that knows nothing of zjournal
    try:
        intake = child.stdout.readline().strip()
        assert intake.startswith("tcp://127.0.0.1:")
        assert pull.poll(10_000)  # the message is in the receiver's queue, not yet journaled
        child.kill()
        child.wait()
        assert pull.recv() == b"payload"  # journaled now: its confirmation is owed to the dead sender
        stranger.bind(intake)  # the dead sender's port, free again
        assert not stranger.poll(1500)  # libzmq reconnected to it, and refused to deliver at the handshake
    finally:
        child.kill()
        child.wait()
        stranger.close(0)
        pull.close(0)
        receiver.close()
        ctx.term()
