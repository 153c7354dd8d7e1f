"""REQ/REP across SIGKILL: a plain blocking client loop on a journaled REQ never hangs when its server dies."""

from __future__ import annotations

import collections
import queue
import random
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_socket_confirm_crash import Peer

PEERS = str(Path(__file__).with_name("reqrep_peers.py"))
REQUESTS = 200
STREAMED = 400  # a confirm=True DEALER's messages, in the test of a ROUTER serving it and a REQ at once


class ReqRepPeer(Peer):
    """A process of tests/reqrep_peers.py (Peer's kill, lines and readiness)."""

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, PEERS, *self.args], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        assert self.line(timeout=30) == "ready"


@pytest.fixture
def peers():
    started: list[ReqRepPeer] = []

    def make(*args: str) -> ReqRepPeer:
        peer = ReqRepPeer(*args)
        started.append(peer)
        return peer

    yield make
    for peer in started:
        if peer.proc is not None and peer.proc.poll() is None:
            peer.kill()


def _handled(path: Path) -> collections.Counter[bytes]:
    return collections.Counter(path.read_bytes().split()) if path.exists() else collections.Counter()


def _kill_while_serving(killed: ReqRepPeer, client: ReqRepPeer, handled: Path, rng: random.Random) -> int:
    """Kill ``killed`` at random moments, restarting it each time, until the client is done; returns the kills."""
    kills = 0
    deadline = time.monotonic() + 60
    while client.proc.poll() is None and kills < 6:
        time.sleep(rng.uniform(0.05, 0.3))
        if client.proc.poll() is not None:
            break
        killed.kill()
        kills += 1
        killed.start()
        assert time.monotonic() < deadline, "the client hangs"
    return kills


def _check(client: ReqRepPeer, handled: Path, replies: Path, kills: int) -> None:
    line = client.line(timeout=60)
    assert line.startswith("done"), line
    assert client.proc.wait(timeout=10) == 0
    got = replies.read_bytes().split()
    assert got == [b"re:%d" % n for n in range(REQUESTS)]  # every request answered, in order, once
    counts = _handled(handled)
    assert set(counts) == {b"%d" % n for n in range(REQUESTS)}
    duplicates = sum(c - 1 for c in counts.values())
    print(f"{REQUESTS} requests, {kills} kills, {duplicates} handled twice")  # (pytest -s: the README's figures)
    # A kill can cost two hand-overs: the request in hand, and a copy of it that the client resent
    # while the server was down, read only after the restarted server answered the original (the
    # README: "a synchronous ROUTER server reads a copy only after it has answered"). Measured on
    # af0c820 and later: 4 to 7 for 6 kills of a ROUTER or a device (7 failed the old bound).
    assert duplicates <= 2 * kills, (duplicates, kills)


def test_a_killed_rep_never_hangs_a_blocking_req_client(tmp_path: Path, peers) -> None:
    endpoint = f"ipc://{tmp_path}/rr"
    handled, replies = tmp_path / "handled", tmp_path / "replies"
    server = peers("server", str(tmp_path / "sj"), endpoint, str(handled), "0.01")
    client = peers("client", str(tmp_path / "cj"), endpoint, str(REQUESTS), str(replies))
    server.start()
    client.start()
    kills = _kill_while_serving(server, client, handled, random.Random(17))
    assert kills >= 3
    _check(client, handled, replies, kills)


def test_a_killed_router_never_hangs_a_blocking_req_client(tmp_path: Path, peers) -> None:
    endpoint = f"ipc://{tmp_path}/rt"
    handled, replies = tmp_path / "handled", tmp_path / "replies"
    server = peers("router", str(tmp_path / "sj"), endpoint, str(handled), "0.01")
    client = peers("client", str(tmp_path / "cj"), endpoint, str(REQUESTS), str(replies))
    server.start()
    client.start()
    kills = _kill_while_serving(server, client, handled, random.Random(29))
    assert kills >= 3
    _check(client, handled, replies, kills)


def test_a_killed_device_never_hangs_a_blocking_req_client(tmp_path: Path, peers) -> None:
    frontend, backend = f"ipc://{tmp_path}/front", f"ipc://{tmp_path}/back"
    handled, replies = tmp_path / "handled", tmp_path / "replies"
    device = peers("device", str(tmp_path / "dj"), frontend, backend)
    worker = peers("worker", str(tmp_path / "wj"), backend, str(handled), "0.01")
    client = peers("client", str(tmp_path / "cj"), frontend, str(REQUESTS), str(replies))
    device.start()
    worker.start()
    client.start()
    kills = _kill_while_serving(device, client, handled, random.Random(23))
    assert kills >= 3
    _check(client, handled, replies, kills)


def test_a_killed_router_serving_req_clients_and_confirm_dealers_at_once_loses_nothing(
    tmp_path: Path, peers, monkeypatch
) -> None:
    """One journaled ROUTER, two kinds of peers: a journaled REQ (its requests resent until answered) and a
    confirm=True DEALER (its messages resent until the ROUTER's journal confirms them), the ROUTER killed
    several times and the DEALER once."""
    from test_socket_confirm_crash import PEERS as CONFIRM_PEERS
    from test_socket_confirm_crash import Peer as ConfirmPeer

    from zjournal.crashlog import whole_lines

    monkeypatch.setenv("ZJ_CONFIRM_KINDS", "dealer,router")  # (tests/confirm_peers.py: its DEALER sender)
    endpoint = f"ipc://{tmp_path}/rt"
    handled, replies, sent = tmp_path / "handled", tmp_path / "replies", tmp_path / "sent"
    server = peers("router", str(tmp_path / "sj"), endpoint, str(handled), "0.005")
    client = peers("client", str(tmp_path / "cj"), endpoint, str(REQUESTS), str(replies))
    dealer = ConfirmPeer("send", str(tmp_path / "dj"), endpoint, str(STREAMED), str(sent), "d")
    assert CONFIRM_PEERS.endswith("confirm_peers.py")
    try:
        server.start()
        dealer.start()
        rng = random.Random(31)
        time.sleep(rng.uniform(0.05, 0.2))
        dealer.kill()
        dealer.start()
        client.start()
        kills = _kill_while_serving(server, client, handled, rng)
        assert kills >= 3
        assert dealer.line(timeout=60) == "confirmed"
        # The kills may end before the client does (six at most): it finishes with the server up.
        assert client.proc.wait(timeout=60) == 0
        server.kill()  # (all handed over already: what it handled is all there is)
        counts = _handled(handled)
        requests = collections.Counter({k: v for k, v in counts.items() if not k.startswith(b"d")})
        streamed = collections.Counter({k: v for k, v in counts.items() if k.startswith(b"d")})
        handled.write_bytes(b"".join(b"%s\n" % k for k, v in requests.items() for _ in range(v)))
        _check(client, handled, replies, kills)
        returned = [line.encode() for line in whole_lines(sent)]
        assert returned == [b"d%d" % n for n in range(STREAMED)]  # (the DEALER's own log: after each send returned)
        missing = set(returned) - set(streamed)
        assert not missing, f"{len(missing)} confirmed messages never handed over, e.g. {sorted(missing)[:5]}"
        duplicates = sum(c - 1 for c in streamed.values())
        print(f"{STREAMED} streamed, {duplicates} handed over twice")
        assert duplicates <= 2 * (kills + 1), (duplicates, kills)
    finally:
        if dealer.proc is not None and dealer.proc.poll() is None:
            dealer.kill()
