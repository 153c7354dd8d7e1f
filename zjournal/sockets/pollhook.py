"""zmq.Poller and zmq.select see the messages a journaled socket holds in Python.

Some messages are served from Python rather than libzmq: redelivered ones of a
REP, a PAIR or a DEALER connected before it was wrapped, prefetched ones, live
ROUTER requests held behind redelivered ones; and a REP answering a request
served from Python can reply though libzmq's REP never saw that request.
``sock.poll()`` and ``EVENTS`` see this through the socket's own overrides;
``zmq.Poller`` and ``zmq.select`` ask libzmq directly, so :func:`install`
wraps the one function both of them call. A poll without journaled sockets
pays an isinstance check per registered socket.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import zmq
import zmq.sugar.poll

from zjournal.sockets.libzmq import POLLIN, POLLOUT, RESEND_TICK_MS

_libzmq_poll = zmq.backend.zmq_poll
_journaled: tuple[type, ...] = ()  # the journaled socket classes, once installed


def _poll_seeing_held_messages(sockets: list[tuple[Any, int]], timeout: int = -1) -> list[tuple[Any, int]]:
    """pyzmq's ``zmq_poll``, which also reports the events of journaled sockets that libzmq cannot see.

    ``zmq.Poller.poll`` and ``zmq.select`` call ``zmq_poll`` through their
    module's global name, so replacing that one name (see
    :func:`install`) makes both see what libzmq cannot (see
    ``Holding._python_events``, zjournal.sockets.held): such a socket is reported at once,
    with whatever libzmq says is ready now. And not what libzmq holds but
    the application will never get: a resend its journal holds already
    (:func:`_without_dropped_resends`); the poll then waits on.
    """
    started = time.monotonic() if timeout > 0 else 0.0
    while True:
        ready = _poll_once(sockets, timeout)
        kept = _without_dropped_resends(ready) if _journaled else ready
        if kept is ready or kept:
            return kept
        if timeout >= 0:  # (everything reported was resends, dropped: the rest of the timeout)
            timeout = int((started + timeout / 1000 - time.monotonic()) * 1000) if timeout else 0
            if timeout <= 0:
                return []
            started = time.monotonic()


def _without_dropped_resends(ready: list[tuple[Any, int]]) -> list[tuple[Any, int]]:
    """``ready`` without the POLLIN of journaled sockets whose queued messages were all resends held already.

    Nor messages it drops for a frame over its MAXMSGSIZE (zjournal.sockets.frame_limit).
    Only sockets that heard a confirm=True sender (a resend comes from no
    other) or hold such a limit are looked at; ``ready`` itself when nothing changes.
    """
    kept = ready
    for i, (sock, events) in enumerate(ready):
        if (
            events & POLLIN
            and isinstance(sock, _journaled)
            and sock._s is not None
            and (sock._s.confirm_return is not None or sock._s.frame_limit is not None)
            and not sock._readable_after_resends()
        ):
            if kept is ready:
                kept = ready[:i]
            if events & ~POLLIN:
                kept.append((sock, events & ~POLLIN))
        elif kept is not ready:
            kept.append((sock, events))
    return kept


def _poll_once(sockets: list[tuple[Any, int]], timeout: int) -> list[tuple[Any, int]]:
    """One poll: libzmq's, with the events of journaled sockets libzmq cannot see."""
    extra: dict[Any, int] = {}  # events libzmq cannot see
    asked = []
    replaced = False
    resending = []  # confirm senders and REQs whose resends come from this thread's calls
    owing = []  # REQs awaiting a reply: libzmq's REQ_RELAXED would take a send, a REQ would not
    hurry = []  # receivers holding confirmations, if this poll waits
    holds = {}  # of confirm PUSHes, whose resend thread sends on them: libzmq's poll must not meet it
    for sock, flags in sockets:
        if _journaled and isinstance(sock, _journaled) and sock._s is not None:
            flags = int(flags)  # (a zmq.PollEvent: each & of an enum costs a Python call)
            events = sock._python_events(flags)
            if events:
                extra[sock] = events
            if sock._s.answering_python:
                replaced = True  # libzmq's view of this REP does not apply: it never saw the request
                flags = 0
            elif sock._s.rep_held:
                flags &= ~POLLOUT  # libzmq's REP owes a request held in Python its reply
            back = sock._s.confirm_return
            if back is not None and back.holding and timeout and flags & POLLIN and not events:
                hurry.append(back)
            confirm = sock._s.confirm
            if confirm is not None:
                if confirm.resends_in_thread:
                    holds[id(confirm.hold)] = confirm.hold
                else:
                    resending.append(confirm)
            requests = sock._s.requests
            if requests is not None and requests.outstanding:
                resending.append(requests)
                owing.append(sock)
                flags &= ~POLLOUT
        asked.append((sock, flags))
    if hurry and not extra:
        # If the poll waits for these sockets' next messages (nothing is ready now), what they hold
        # goes sooner. One poll that does not wait tells (not a getsockopt(EVENTS) per socket: a
        # syscall each): while messages flow, it is the only one.
        ready = _poll_holding(holds, asked, 0)
        if ready:
            return ready
        for back in hurry:
            back.soon()
    if resending and not extra and not replaced and timeout:
        return _poll_resending(asked, timeout, resending, holds)
    if not extra and not replaced:
        return _poll_holding(holds, asked if owing else sockets, timeout)
    ready = dict(_poll_holding(holds, asked, 0 if extra else timeout))
    for sock, events in extra.items():
        ready[sock] = ready.get(sock, 0) | events
    return [(sock, events) for sock, events in ready.items() if events]


def _poll_resending(
    sockets: list[tuple[Any, int]], timeout: int, resending: list[Any], holds: dict[int, Any]
) -> list[tuple[Any, int]]:
    """A poll cut into ticks: between them, the confirm senders polled resend what is due.

    A DEALER, ROUTER or PAIR with ``confirm=True`` resends from the
    application's thread (it receives there too), so a loop that only polls
    still resends what nobody confirmed.
    """
    deadline = None if timeout < 0 else time.monotonic() + timeout / 1000
    while True:
        wait = RESEND_TICK_MS
        if deadline is not None:
            wait = max(0, min(wait, int((deadline - time.monotonic()) * 1000)))
        ready = _poll_holding(holds, sockets, wait)
        if ready:
            return ready
        for confirm in resending:
            confirm.resend_due_here()
        if deadline is not None and time.monotonic() >= deadline:
            return []


def _poll_holding(holds: dict[int, Any], sockets: list[tuple[Any, int]], timeout: int) -> list[tuple[Any, int]]:
    """libzmq's poll, within ``holds`` (ConfirmSender.hold, in one order: by id): while it waits, those
    PUSHes' threads resend nothing (they never wait for the lock), and what they would resend waits in
    their queues anyway."""
    if not holds:
        return _libzmq_poll(sockets, timeout)
    with contextlib.ExitStack() as held:
        for key in sorted(holds):
            held.enter_context(holds[key])
        return _libzmq_poll(sockets, timeout)


def install(journaled: type) -> None:
    """Make pyzmq's pollers report the Python-held events of sockets of class ``journaled``."""
    global _journaled
    _journaled = (*_journaled, journaled)
    zmq.sugar.poll.zmq_poll = _poll_seeing_held_messages
