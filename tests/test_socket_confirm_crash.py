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


def test_kills_of_the_receiver_and_the_sender_lose_nothing_sent(tmp_path: Path, peers) -> None:
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
    returned = sent.read_text().split()
    lines = [line.split() for line in out.read_text().splitlines()]
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
