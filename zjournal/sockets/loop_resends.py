"""Resends of a plain (sync) journaled socket that an event loop waits on.

A ``confirm=True`` DEALER, ROUTER or PAIR, and a journaled REQ, resend from
the application's own calls on the socket (a libzmq socket must not be used
by two threads at once): its sends, its blocking receives, its polls. An
application that waits on the socket's file descriptor in an event loop
instead — tornado's ``ZMQStream``, ``loop.add_reader(sock.FD, ...)``,
``zmq.asyncio.Poller`` over a sync socket — makes none of those calls while
it is idle, so what was sent and never confirmed would wait for its next
send. Asking for the descriptor (``sock.FD``, ``sock.fileno()``) is what
every one of them does first: a socket asked for it in a thread with an
event loop (asyncio's running one, or tornado's current ``IOLoop``) resends
from a timer of that loop, in that thread, every tick while anything waits
for its confirmation or reply, as the asyncio sockets do (zjournal.sockets.aio).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import zmq

from zjournal.sockets.libzmq import RESEND_TICK_MS

TICK_SECONDS = RESEND_TICK_MS / 1000


class Resender(Protocol):
    """What resends from the application's thread: a ConfirmSender, a REQ's RequestResends."""

    resends_in_thread: bool
    loop_ticker: Any

    def resend_due_here(self) -> None: ...

    def unconfirmed(self) -> Any: ...


class TimerLoop(Protocol):
    """An event loop as far as a resend timer needs one: asyncio's, or gevent's hub (zjournal.sockets.green)."""

    def call_later(self, delay: float, callback: Callable[[], None], /) -> Any: ...


def event_loop_here(sock: zmq.Socket) -> TimerLoop | None:
    """The event loop of this thread that may wait on ``sock``: asyncio's running loop, else tornado's
    current ``IOLoop`` (made by a ``ZMQStream`` before the loop starts), else gevent's hub for a zmq.green
    socket (a green ``Poller`` waits in it), or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    tornado = sys.modules.get("tornado.ioloop")  # (only when the application uses tornado: never imported here)
    io_loop = None if tornado is None else tornado.IOLoop.current(instance=False)
    if io_loop is not None:
        return getattr(io_loop, "asyncio_loop", None)
    green = sys.modules.get("zjournal.sockets.green")  # (only when the application uses zmq.green)
    return green.hub_timers() if green is not None and isinstance(sock, green.GreenWaits) else None


class LoopResends:
    """A timer in one event loop that resends what is due for one socket, while anything waits."""

    def __init__(self, loop: TimerLoop, resender: Resender, sock: zmq.Socket) -> None:
        self.loop = loop
        self._thread = threading.get_ident()  # the loop's: the timer is armed and runs only there
        self._resender = resender
        self._sock = weakref.ref(sock)  # (a socket the application dropped is not kept alive by its timer)
        self._timer: Any = None  # (what call_later returned: it has cancel())
        resender.loop_ticker = self.arm  # its sends arm the timer again once it stopped

    def arm(self) -> None:
        """Look at resends one tick from now, unless a look is due already (from the loop's thread only)."""
        if self._timer is not None or threading.get_ident() != self._thread:
            return
        with contextlib.suppress(RuntimeError):  # the loop was closed: nothing waits on the socket any more
            self._timer = self.loop.call_later(TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        self._timer = None
        sock = self._sock()
        if sock is None or sock.closed:
            return
        self._resender.resend_due_here()
        if self._resender.unconfirmed():
            self.arm()

    def cancel(self) -> None:
        """The socket closes: no more looks."""
        self._resender.loop_ticker = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def resends_for(sock: zmq.Socket, resender: Resender | None, current: LoopResends | None) -> LoopResends | bool | None:
    """A socket was asked for its descriptor: the timer of the loop that runs here, armed (``current`` if it
    is that loop's); False when the socket resends nothing from the application's calls; ``current`` when
    no loop runs here (None: asked again next time)."""
    if resender is None or resender.resends_in_thread:
        return False
    loop = event_loop_here(sock)
    if loop is None or (current is not None and current.loop is loop):
        return current
    if current is not None:
        current.cancel()  # (another loop now: asyncio.run again, say)
    ticker = LoopResends(loop, resender, sock)
    ticker.arm()  # (what an earlier run left unconfirmed goes out without waiting for a send)
    return ticker
