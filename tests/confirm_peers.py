"""The two processes of the confirm crash tests (tests/test_socket_confirm_crash.py), run as scripts.

python tests/confirm_peers.py receive JOURNAL ENDPOINT OUT
    a journaled PULL (no option): every message handed over is appended to OUT
python tests/confirm_peers.py send JOURNAL ENDPOINT COUNT SENT
    a journaled PUSH with confirm=True: sends the numbers after the last one in SENT up to
    COUNT, appending each to SENT once send() returned, then waits until all are confirmed
    (sock.wait_confirmed)
    and prints "confirmed"

ZJ_CONFIRM_KINDS (environment): the sender's and the receiver's socket types, "push,pull" by
default; "dealer,router" and "router,dealer" (the DEALER with the routing id b"receiver") too;
"+poll" after the receiver's type: it waits in a zmq.Poller before each recv.
"""

from __future__ import annotations

import os
import sys
import time

import zmq

import zjournal
from zjournal.crashlog import append_whole_lines, whole_lines

SENDER, RECEIVER = os.environ.get("ZJ_CONFIRM_KINDS", "push,pull").split(",")
RECEIVER, _, HOW = RECEIVER.partition("+")
TYPES = {"push": zmq.PUSH, "pull": zmq.PULL, "dealer": zmq.DEALER, "router": zmq.ROUTER}


def receive(path: str, endpoint: str, out: str) -> None:
    journal = zjournal.open(path)
    raw = zmq.Context.instance().socket(TYPES[RECEIVER])
    if RECEIVER == "dealer":
        raw.routing_id = b"receiver"  # the ROUTER sender addresses it by name, across its restarts
    pull = journal.wrap(raw, name="in")
    pull.bind(endpoint)
    print("ready", flush=True)
    log = append_whole_lines(out)
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    while True:
        if HOW == "poll" and not poller.poll(10_000):
            continue
        number = pull.recv_multipart()[-1]  # (a ROUTER's message starts with a routing id)
        os.write(log, b"%s %d\n" % (number, pull.last_attempts))  # in the page cache: a SIGKILL keeps it


def send(path: str, endpoints: str, count: int, sent: str, tag: str = "") -> None:
    journal = zjournal.open(path)
    raw = zmq.Context.instance().socket(TYPES[SENDER])
    push = journal.wrap(raw, name="out", confirm=True, confirm_timeout=0.3)
    for endpoint in endpoints.split(","):
        push.connect(endpoint)
    envelope = [b"receiver"] if SENDER == "router" else []
    done = whole_lines(sent)
    first = int(done[-1][len(tag) :]) + 1 if done else 0
    print("ready", flush=True)
    log = append_whole_lines(sent)
    for n in range(first, count):
        push.send_multipart([*envelope, f"{tag}{n}".encode()])
        os.write(log, f"{tag}{n}\n".encode())
        if n % 50 == 0:
            time.sleep(0.005)  # a stream that lasts long enough for kills to land in it
    # (a DEALER or ROUTER resends from the application's calls: this wait resends too)
    everything = push.wait_confirmed() and not journal.count(name="out", state="pending", direction="out")
    print("confirmed" if everything else "not confirmed", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "receive":
        receive(*args)
    else:
        send(args[0], args[1], int(args[2]), *args[3:])
