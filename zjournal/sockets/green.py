"""Journaled ``zmq.green`` sockets: every wait is gevent's, so other greenlets run meanwhile.

zmq.green makes ``send`` and ``recv`` cooperative: it tries without
blocking, and on ``zmq.Again`` waits for its descriptor's event in gevent's
hub. pyzmq's multipart calls go through those two; a journaled socket's
multipart calls read and write libzmq directly, so a blocking one would stop
the hub (a greenlet waiting for a message would keep the one that sends it
from ever running). :class:`GreenWaits` goes before zmq.green's class in a
journaled green socket's class (zjournal.sockets.copies): its multipart calls
try without blocking and wait as zmq.green waits, and a socket that resends
from the application's calls (a ``confirm=True`` DEALER, ROUTER or PAIR, a
journaled REQ) waits in ticks and resends what is due between them, as a
blocking wait of a plain journaled socket does. Imported only by an
application that uses zmq.green (so gevent is there).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

import gevent
import zmq

from zjournal.sockets.libzmq import NOBLOCK, RESEND_TICK_MS

TICK_SECONDS = RESEND_TICK_MS / 1000


class GreenWaits:
    """The waits of a journaled zmq.green socket (see the module docstring)."""

    _s: Any
    _confirm_pause = staticmethod(gevent.sleep)  # (wait_confirmed, and a confirm socket's close, yield too)

    def recv_multipart(self, flags: int = 0, copy: bool = True, track: bool = False) -> list[Any]:
        if flags & NOBLOCK:
            return super().recv_multipart(flags, copy, track)  # type: ignore[misc]
        while True:
            try:
                return super().recv_multipart(flags | NOBLOCK, copy, track)  # type: ignore[misc]
            except zmq.Again:
                self._wait_read()

    def send_multipart(
        self, msg_parts: Sequence[Any], flags: int = 0, copy: bool = True, track: bool = False, **kwargs: Any
    ) -> Any:
        if flags & NOBLOCK:
            return super().send_multipart(msg_parts, flags, copy, track, **kwargs)  # type: ignore[misc]
        while True:  # (libzmq takes a whole message or none of it: a retry sends it whole)
            try:
                return super().send_multipart(msg_parts, flags | NOBLOCK, copy, track, **kwargs)  # type: ignore[misc]
            except zmq.Again:
                self._wait_write()  # type: ignore[attr-defined]

    def _wait_read(self) -> None:
        """zmq.green's wait for a message; in ticks, resending between them, if this socket resends itself."""
        state = self._s
        resender = None if state is None else state.confirm or state.requests
        if resender is None or resender.resends_in_thread:
            super()._wait_read()  # type: ignore[misc]
            return
        with gevent.Timeout(TICK_SECONDS, False):  # (False: the tick ends the wait quietly)
            super()._wait_read()  # type: ignore[misc]
        resender.resend_due_here()


class HubTimers:
    """gevent's hub of a thread as the event loop of a resend timer (zjournal.sockets.loop_resends): a
    green ``Poller`` waits in the hub, so the socket resends from a hub timer meanwhile."""

    def __init__(self, hub: Any) -> None:
        self._hub = hub

    def call_later(self, delay: float, callback: Callable[[], None], /) -> _HubTimer:
        watcher = self._hub.loop.timer(delay)
        watcher.start(callback)
        return _HubTimer(watcher)


class _HubTimer:
    __slots__ = ("_watcher",)

    def __init__(self, watcher: Any) -> None:
        self._watcher = watcher

    def cancel(self) -> None:
        self._watcher.stop()
        self._watcher.close()


_hub_timers: weakref.WeakKeyDictionary[Any, HubTimers] = weakref.WeakKeyDictionary()


def hub_timers() -> HubTimers:
    """This thread's hub, as one object for as long as the hub lives (a socket's timer compares its loop)."""
    hub = gevent.get_hub()
    timers = _hub_timers.get(hub)
    if timers is None:
        timers = _hub_timers[hub] = HubTimers(hub)
    return timers
