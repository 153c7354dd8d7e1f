"""The two processes of the confirm crash tests (tests/test_socket_confirm_crash.py), run as scripts.

python tests/confirm_peers.py receive JOURNAL ENDPOINT OUT
    a journaled PULL (no option): every message handed over is appended to OUT
python tests/confirm_peers.py send JOURNAL ENDPOINT COUNT SENT
    a journaled PUSH with confirm=True: sends the numbers after the last one in SENT up to
    COUNT, appending each to SENT once send() returned, then waits until all are confirmed
    and prints "confirmed"
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import zmq

import zjournal


def receive(path: str, endpoint: str, out: str) -> None:
    journal = zjournal.open(path)
    pull = journal.wrap(zmq.Context.instance().socket(zmq.PULL), name="in")
    pull.bind(endpoint)
    print("ready", flush=True)
    with open(out, "a") as f:
        while True:
            number = pull.recv().decode()
            f.write(f"{number} {pull.last_attempts}\n")
            f.flush()  # in the page cache: a SIGKILL keeps it


def send(path: str, endpoints: str, count: int, sent: str, tag: str = "") -> None:
    journal = zjournal.open(path)
    push = journal.wrap(zmq.Context.instance().socket(zmq.PUSH), name="out", confirm=True, confirm_timeout=0.3)
    for endpoint in endpoints.split(","):
        push.connect(endpoint)
    done = Path(sent).read_text().split() if os.path.exists(sent) else []
    first = int(done[-1][len(tag) :]) + 1 if done else 0
    print("ready", flush=True)
    with open(sent, "a") as f:
        for n in range(first, count):
            push.send(f"{tag}{n}".encode())
            f.write(f"{tag}{n}\n")
            f.flush()
            if n % 50 == 0:
                time.sleep(0.005)  # a stream that lasts long enough for kills to land in it
    while journal.count(name="out", state="pending", direction="out"):
        time.sleep(0.01)
    print("confirmed", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "receive":
        receive(*args)
    else:
        send(args[0], args[1], int(args[2]), *args[3:])
