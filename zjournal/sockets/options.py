"""The application's calls on a journaled socket other than sends and receives: options, endpoints, polls.

A mixin of :class:`zjournal.JournaledSocket` (its state lives in ``self._s``).
What they add to pyzmq's: ``RCVMORE``, ``EVENTS`` and ``poll`` tell of
messages held in Python (zjournal.sockets.held); ``MAXMSGSIZE`` is held to
the application's frames (zjournal.sockets.frame_limit); asking for ``FD``
arms an event loop's resends (zjournal.sockets.loop_resends); a REQ waiting
for a reply answers from its requests (zjournal.sockets.requests); and on a
confirm PUSH every call that reaches libzmq (monitors included) holds the lock
its resend thread sends under (zjournal.sockets.confirm).
"""

from __future__ import annotations

import contextlib
from typing import Any

import zmq

from zjournal.sockets import loop_resends
from zjournal.sockets.application_hold import ApplicationHold
from zjournal.sockets.libzmq import EVENTS, POLLIN, POLLOUT, RCVMORE
from zjournal.sockets.redelivery import SubRedelivery, as_bytes

_MAXMSGSIZE = zmq.MAXMSGSIZE  # held to the application's frames (zjournal.sockets.frame_limit)
_FD = zmq.FD  # asked for by whatever waits on the socket in an event loop (zjournal.sockets.loop_resends)


class Options:
    """Options, endpoints and polls of a journaled socket (see the module docstring)."""

    _s: Any
    _loosens_frames: Any
    _frame_limit_option: Any
    _limit_frames: Any
    _python_events: Any

    def connect(self, addr: str) -> Any:
        with self._resend_hold() or contextlib.nullcontext():
            result = super().connect(addr)
        earlier = None if self._s is None else self._s.earlier
        if earlier is not None:
            earlier.connect(addr)  # the requests an earlier REQ of this name left go there too
        return result

    def bind(self, addr: str) -> Any:
        with self._resend_hold() or contextlib.nullcontext():
            return super().bind(addr)

    def disconnect(self, addr: str) -> None:
        with self._resend_hold() or contextlib.nullcontext():
            super().disconnect(addr)

    def unbind(self, addr: str) -> None:
        with self._resend_hold() or contextlib.nullcontext():
            super().unbind(addr)

    def monitor(self, addr: str | bytes | None, events: int = zmq.EVENT_ALL) -> None:
        # (pyzmq's get_monitor_socket and disable_monitor come here too)
        with self._resend_hold() or contextlib.nullcontext():
            super().monitor(addr, events)

    def get(self, option: int) -> Any:
        hold = self._resend_hold()
        if hold is None:
            return self._get(option)
        with hold:
            return self._get(option)

    getsockopt = get

    def _get(self, option: int) -> Any:
        state = self._s
        local = None if state is None else state.local
        if option == RCVMORE:
            if local is not None and local.current is not None:
                return 1
            if state is not None and state.serving:
                return 1
        if option == _MAXMSGSIZE and self._loosens_frames():
            return self._frame_limit_option()
        if option == _FD and state is not None and state.loop_resends is not False:
            # An event loop will wait on the socket (ZMQStream, add_reader): its resends come from the loop
            state.loop_resends = loop_resends.resends_for(self, state.confirm or state.requests, state.loop_resends)
        if option == EVENTS and state is not None:
            if state.requests is not None and state.requests.outstanding:
                return super().get(option) & ~POLLOUT  # REQ_RELAXED would take one: a REQ would not
            held = self._python_events(POLLIN | POLLOUT)
            if state.answering_python:
                return held
            if state.rep_held:
                return held  # libzmq's REP owes the held request a reply: not writable for the application
            if held:
                return super().get(option) | held
        return super().get(option)

    def set(self, option: int, optval: Any) -> None:
        hold = self._resend_hold()
        if hold is None:
            self._set(option, optval)
            return
        with hold:
            self._set(option, optval)

    setsockopt = set  # noqa: A003 - pyzmq's name

    def _set(self, option: int, optval: Any) -> None:
        state = self._s
        if option == _MAXMSGSIZE and self._loosens_frames():
            self._limit_frames(int(optval))
            return
        super().set(option, optval)
        if state is not None and isinstance(state.redelivery, SubRedelivery):
            if option == zmq.SUBSCRIBE:
                state.redelivery.subscribed(as_bytes(optval))
                state.redelivery.pump_subscriptions(wait_ms=200)  # the subscription travels asynchronously
                state.redelivery.refill()
            elif option == zmq.UNSUBSCRIBE:
                # The SUB now drops what it no longer subscribes to, re-injected entries too: they stay pending.
                state.redelivery.unsubscribed(as_bytes(optval))

    def _resend_hold(self) -> ApplicationHold | None:
        """The hold of the lock a confirm PUSH's resend thread sends under, or None (every other socket).

        libzmq lets one thread at a time use a socket: the application's calls
        on such a PUSH that reach libzmq (options, ``EVENTS``, polls, endpoints)
        hold it too (a send holds it already; zjournal.sockets.confirm).
        """
        confirm = None if self._s is None else self._s.confirm
        return confirm.hold if confirm is not None and confirm.resends_in_thread else None

    def poll(self, timeout: int | None = None, flags: int = zmq.POLLIN) -> int:
        requests = None if self._s is None else self._s.requests
        if requests is not None and requests.outstanding:
            return requests.poll(timeout, flags)
        if self._s is not None and self._s.answering_python:
            return flags & POLLOUT
        events = self._python_events(flags)
        if self._s is not None and self._s.rep_held:
            flags &= ~POLLOUT  # libzmq's REP owes the request held in Python its reply: not writable
        if events:
            rest = flags & ~events
            return events | (super().poll(0, rest) if rest else 0)
        return super().poll(timeout, flags)
