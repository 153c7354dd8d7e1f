"""Processes for the REQ/REP crash tests (tests/test_reqrep_crash.py): each prints "ready", then works.

server JOURNAL ENDPOINT HANDLED DELAY   a journaled REP (binds): appends each request it handles to
                                         HANDLED, sleeps DELAY seconds (the window a kill hits), replies
worker JOURNAL ENDPOINT HANDLED DELAY   the same, connecting (a worker behind zjournal.Queue)
router JOURNAL ENDPOINT HANDLED DELAY   the same with a journaled ROUTER (binds), the Guide's envelope echo
client JOURNAL ENDPOINT COUNT REPLIES   a journaled REQ, the plain blocking loop of the Guide's
                                         hello-world client: send, recv, COUNT times; appends each reply
device JOURNAL FRONTEND BACKEND          zjournal.Queue between them
"""

from __future__ import annotations

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


def serve(journal_path: str, endpoint: str, handled: str, delay: float, bind: bool) -> None:
    journal = zjournal.open(journal_path)
    ctx = zmq.Context()
    rep = journal.wrap(ctx.socket(zmq.REP), "server")
    if bind:
        rep.bind(endpoint)
    else:
        rep.connect(endpoint)
    print("ready", flush=True)
    while True:
        request = rep.recv()
        _append(handled, request)
        time.sleep(delay)
        rep.send(b"re:" + request)


def serve_routing(journal_path: str, endpoint: str, handled: str, delay: float) -> None:
    journal = zjournal.open(journal_path)
    ctx = zmq.Context()
    router = journal.wrap(ctx.socket(zmq.ROUTER), "server")
    router.bind(endpoint)
    print("ready", flush=True)
    while True:
        *envelope, request = router.recv_multipart()
        _append(handled, request)
        time.sleep(delay)
        router.send_multipart([*envelope, b"re:" + request])


def client(journal_path: str, endpoint: str, count: int, replies: str) -> None:
    journal = zjournal.open(journal_path)
    ctx = zmq.Context()
    req = journal.wrap(ctx.socket(zmq.REQ), "client")
    req.connect(endpoint)
    print("ready", flush=True)
    for n in range(count):
        request = b"%d" % n
        req.send(request)
        reply = req.recv()
        if reply != b"re:" + request:
            print(f"wrong reply {reply!r} to {request!r}", flush=True)
            sys.exit(1)
        _append(replies, reply)
    print("done", journal.count(name="client", state="pending"), flush=True)
    req.close()
    journal.close()


def device(journal_path: str, frontend: str, backend: str) -> None:
    journal = zjournal.open(journal_path)
    ctx = zmq.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    front.bind(frontend)
    back.bind(backend)
    queue = zjournal.Queue(front, back, journal, "device")
    print("ready", flush=True)
    queue.run()


def main() -> None:
    role, *args = sys.argv[1:]
    if role in ("server", "worker"):
        serve(args[0], args[1], args[2], float(args[3]), bind=role == "server")
    elif role == "router":
        serve_routing(args[0], args[1], args[2], float(args[3]))
    elif role == "client":
        client(args[0], args[1], int(args[2]), args[3])
    elif role == "device":
        device(*args)
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
