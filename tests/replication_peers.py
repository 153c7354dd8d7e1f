"""A service for the replication tests (tests/test_replication.py): prints "ready", then works until killed.

service JOURNAL URL NAME ENDPOINT LOG HOLD [DURABILITY]
    a journaled PULL (ack="explicit") on a journal replicated to URL as NAME, bound at ENDPOINT
    (DURABILITY "replicated": each message moves only once the engine has it);
    handles each message for HOLD seconds (a worker pool's backlog); appends "got BODY TIME" to LOG
    when it receives one and "done BODY" just before it acks it
"""

from __future__ import annotations

import collections
import os
import sys
import time

import zmq

import zjournal


def _append(path: str, line: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line + b"\n")  # one write: a kill leaves whole lines
    finally:
        os.close(fd)


def service(journal_path: str, url: str, name: str, endpoint: str, log: str, hold: float, durability: str) -> None:
    journal = zjournal.open(journal_path, replicate=url, replicate_as=name, ship_interval=0.05, durability=durability)
    ctx = zmq.Context()
    pull = journal.wrap(ctx.socket(zmq.PULL), "jobs", ack="explicit")
    pull.bind(endpoint)
    print("ready", flush=True)
    held: collections.deque[tuple[float, int, bytes]] = collections.deque()
    while True:
        if pull.poll(5):
            body = pull.recv()
            _append(log, b"got %s %.6f" % (body, time.time()))
            held.append((time.monotonic(), pull.last_id, body))
        while held and time.monotonic() - held[0][0] > hold:
            _, entry_id, body = held.popleft()
            _append(log, b"done " + body)
            pull.ack(entry_id)


def main() -> None:
    role, *args = sys.argv[1:]
    if role == "service":
        service(args[0], args[1], args[2], args[3], args[4], float(args[5]), args[6] if len(args) > 6 else "process")
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
