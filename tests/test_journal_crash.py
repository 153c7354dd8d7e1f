"""SIGKILL a process that appends, acks, nacks and kills entries; reopen; check.

The child writes a line to a log file after each journal call returns (an
unbuffered write: it survives SIGKILL). Everything the log says returned must
be in the journal exactly, except the very last call, which may have taken
effect without being logged.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import zjournal
from zjournal.crashlog import whole_lines

CHILD = r"""
import os, sys, zjournal
from zjournal.crashlog import append_whole_lines
journal = zjournal.open(sys.argv[1], durability=sys.argv[3])
log = append_whole_lines(sys.argv[2])
os.write(log, b"ready\n")
i = 0
while True:
    i += 1
    frames = [b"head-%d" % i, os.urandom(i % 50)]
    entry_id = journal.append("crash", frames, direction="in" if i % 2 else "out")
    os.write(log, b"append %d %s\n" % (entry_id, frames[1].hex().encode()))
    if i % 3 == 0:
        journal.ack(entry_id)
        os.write(log, b"ack %d\n" % entry_id)
    elif i % 7 == 0:
        journal.dead(entry_id, "poison")
        os.write(log, b"dead %d\n" % entry_id)
    elif i % 11 == 0:
        journal.dead(entry_id)
        journal.nack(entry_id)
        os.write(log, b"nack %d\n" % entry_id)
"""


def run_and_kill(path: str, log: Path, delay: float, durability: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD, path, str(log), durability])
    deadline = time.monotonic() + 20
    while b"ready" not in (log.read_bytes() if log.exists() else b""):
        assert child.poll() is None, "child died before it was ready"
        assert time.monotonic() < deadline, "child never became ready"
        time.sleep(0.01)
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL


def expected_states(log: Path) -> tuple[dict[int, tuple[str, bytes]], int | None]:
    """id -> (last logged state, random frame); and the last id logged."""
    states: dict[int, tuple[str, bytes]] = {}
    last = None
    for line in whole_lines(log):
        parts = line.split()
        if parts[0] == "append":
            entry_id = int(parts[1])
            states[entry_id] = ("pending", bytes.fromhex(parts[2]) if len(parts) > 2 else b"")
        elif parts[0] in ("ack", "dead", "nack"):
            entry_id = int(parts[1])
            new = {"ack": "gone", "dead": "dead", "nack": "pending"}[parts[0]]
            states[entry_id] = (new, states[entry_id][1])
        else:
            continue
        last = entry_id
    return states, last


def check_round(path: str, log: Path, previous_max: int) -> int:
    states, last = expected_states(log)
    assert states, "the child logged nothing before it was killed"
    assert min(states) > previous_max, "ids must keep increasing across restarts"
    with zjournal.open(path) as j:
        for entry_id, (state, payload) in states.items():
            entry = j.get(entry_id)
            if entry_id == last:
                continue  # the last call may have landed without being logged
            if state == "gone":
                assert entry is None, f"acked entry {entry_id} came back"
            else:
                assert entry is not None, f"entry {entry_id} ({state}) was lost"
                assert entry.state == state, f"entry {entry_id}: {entry.state} != {state}"
                assert entry.frames[1] == payload
        all_ids = [e.id for e in j.entries(name="crash")]
        assert all_ids == sorted(all_ids)
        ids = [i for i in all_ids if i > previous_max]  # this round's
        logged_live = {i for i, (s, _) in states.items() if s != "gone" and i != last}
        assert logged_live <= set(ids)
        # Nothing appears that the child never appended (except the one in flight).
        assert set(ids) - set(states) <= {max(states) + 1}
        return max(ids + list(states))


def test_sigkill_loses_nothing_that_returned(tmp_path: Path) -> None:
    path = str(tmp_path / "crash.journal")
    rng = random.Random(os.getpid())
    high = 0
    for round_ in range(4):
        log = tmp_path / f"round{round_}.log"
        run_and_kill(path, log, rng.uniform(0.05, 0.4), "process")
        high = check_round(path, log, high)


def test_sigkill_in_always_mode(tmp_path: Path) -> None:
    path = str(tmp_path / "always.journal")
    log = tmp_path / "always.log"
    run_and_kill(path, log, 0.2, "always")
    check_round(path, log, 0)
