"""The Guide's Lazy Pirate client (lpclient.py) and server (lpserver.py), journaled and plain, side by side.

The client is the Guide's loop as written (poll with a timeout, close the REQ,
open a new one, send again, give up after three tries), with shorter timeouts.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import zmq

import zjournal

REQUEST_TIMEOUT = 300
REQUEST_RETRIES = 3


def lazy_pirate_client(context, endpoint: str, requests: int) -> list[tuple[str, int]]:
    """lpclient.py, its log kept as (event, sequence)."""
    events = []
    client = context.socket(zmq.REQ)
    client.connect(endpoint)
    for sequence in range(requests):
        request = str(sequence).encode()
        client.send(request)
        retries_left = REQUEST_RETRIES
        while True:
            if (client.poll(REQUEST_TIMEOUT) & zmq.POLLIN) != 0:
                reply = client.recv()
                if int(reply) == sequence:
                    events.append(("ok", sequence))
                    break
                events.append(("malformed", sequence))
                continue
            retries_left -= 1
            client.setsockopt(zmq.LINGER, 0)
            client.close()
            if retries_left == 0:
                events.append(("abandon", sequence))
                return events
            client = context.socket(zmq.REQ)
            client.connect(endpoint)
            client.send(request)
    client.close(0)
    return events


def lazy_pirate_server(make_rep, endpoint: str, crash_at: int, down_for: float | None, stop: threading.Event) -> None:
    """lpserver.py: echoes requests; at ``crash_at`` it dies with the request in hand (back after ``down_for``)."""
    server = make_rep()
    server.bind(endpoint)
    while not stop.is_set():
        if not server.poll(50):
            continue
        request = server.recv()
        if int(request) == crash_at:
            crash_at = -1
            server.close(linger=0)  # simulating a crash
            if down_for is None:
                return
            time.sleep(down_for)
            server = make_rep()
            server.bind(endpoint)
            continue
        server.send(request)
    server.close(0)


def _run(tmp_path: Path, journaled: bool, down_for: float | None) -> list[tuple[str, int]]:
    ctx = zmq.Context()
    endpoint = f"ipc://{tmp_path}/lp-{'journaled' if journaled else 'plain'}"
    journals = []
    if journaled:
        server_journal = zjournal.open(str(tmp_path / "server"))
        client_journal = zjournal.open(str(tmp_path / "client"))
        journals = [server_journal, client_journal]
        client_context = client_journal.context(ctx)

        def make_rep():
            return server_journal.wrap(ctx.socket(zmq.REP), "lpserver")
    else:
        client_context = ctx

        def make_rep():
            return ctx.socket(zmq.REP)

    stop = threading.Event()
    server = threading.Thread(target=lazy_pirate_server, args=(make_rep, endpoint, 4, down_for, stop))
    server.start()
    try:
        return lazy_pirate_client(client_context, endpoint, 8)
    finally:
        stop.set()
        server.join()
        for journal in journals:
            journal.close()
        ctx.destroy(linger=0)


@pytest.mark.parametrize("down_for", [0.4, None], ids=["server-back", "server-gone"])
def test_lazy_pirate_behaves_as_with_plain_sockets(tmp_path: Path, down_for: float | None) -> None:
    plain = _run(tmp_path, journaled=False, down_for=down_for)
    journaled = _run(tmp_path, journaled=True, down_for=down_for)
    if down_for is None:
        assert plain == journaled == [*(("ok", n) for n in range(4)), ("abandon", 4)]
    else:
        assert plain == [("ok", n) for n in range(8)]
        assert journaled == plain
