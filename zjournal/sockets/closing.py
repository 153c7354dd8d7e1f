"""How a journaled socket ends: what it settles when it closes, what stays pending, and a forked child's copy.

A mixin of :class:`zjournal.JournaledSocket` (its state lives in ``self._s``).
A clean close acks the message in hand under ``next`` (as Kafka's consumer
commits what it polled); what the socket cannot settle (a request awaiting
its reply, unconfirmed sends, messages read ahead, the message in hand while
an exception propagates) stays pending for whoever wraps the name next.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

import zmq

from zjournal.errors import StoreError
from zjournal.journal.entry import DIRECTION_CODES, Direction
from zjournal.sockets import deferred_close
from zjournal.sockets.confirm_inbound import ConfirmInbound
from zjournal.sockets.policy import AckPolicy

log = logging.getLogger("zjournal")

_IN = DIRECTION_CODES[Direction.IN]


class Closing:
    """The closing methods of a journaled socket (its state lives in ``self._s``)."""

    _s: Any
    _port: Any
    _journal: Any
    _jname: str
    _in_policy: Any
    _confirm_pause: Any
    _resend_hold: Any
    _origin: Any
    _closed: bool
    _is_pull: bool
    type: Any
    context: Any
    closed: bool
    _forget: Any
    _update_fast_paths: Any

    def _settle_deferred(self) -> None:
        """Settle what this socket was keeping to fold into a later write (it closes, or its journal does).

        Only what is done for certain: what ZeroMQ took, and prefetched
        messages the application asked past. Not the message in hand (see
        :meth:`_settle_handled` and :meth:`_return_in_hand`).
        """
        if self._s.settle_sent:
            self._port.settle(self._s.settle_sent, self._s.slots)
            self._s.settle_sent = 0
        if self._s.deferred:  # prefetched messages the application was done with
            self._port.log_many(self._jname, _IN, [], settle=self._s.deferred)
            self._s.deferred = []
        if self._s.handed:  # hand-overs the slot file counted: the store counts them before it goes
            self._port.deliver_many(self._s.handed)
            self._s.handed = []

    def _settle_handled(self) -> None:
        """A clean close: the last message handed over under ``next`` was handled, and is acked.

        As Kafka's consumer commits what it polled when it closes: a close
        with no exception propagating ends the work on the message in hand
        (and a service's clean restart repeats nothing). Except a message
        that came back after a hand-over that never reached the application
        (an asyncio recv cancelled with its result set): having failed to
        arrive once, it is acked only on positive evidence, the next recv or
        an ack, and otherwise stays pending (see :meth:`_return_in_hand`).
        """
        state = self._s
        if state.settle_next and state.settle_next != state.came_back:
            self._port.settle(state.settle_next, state.slots)
            state.settle_next = 0

    def _return_in_hand(self, clean: bool) -> None:
        """What the application holds unsettled stays pending, for whoever wraps this name next.

        That is: a REP's request it has not answered; the last message handed
        over under ``next`` when the socket closes while an exception
        propagates, when it came back once already (see :meth:`_settle_handled`),
        or when the journal closes under the open socket (the application
        may still be handling it). ``clean`` (no exception propagates): the
        return does not count toward ``max_attempts`` (Entry.close_returns).
        """
        state = self._s
        in_hand = [state.settle_next]
        if self._in_policy is AckPolicy.REPLY and self.type != zmq.REQ:
            in_hand.append(state.awaiting_reply)  # (a REQ's own request is sent again by the next REQ)
        for entry_id in in_hand:
            if not entry_id:
                continue
            self._forget(entry_id)
            try:
                if clean:
                    self._port.return_in_hand(entry_id)
                else:
                    self._port.forget(entry_id)
            except StoreError as e:  # it stays pending all the same; only its close goes uncounted
                log.warning("journal %s: socket %r closed: %s", self._journal.path, self._jname, e)

    def close(self, linger: int | None = None) -> None:
        """Close as pyzmq does, after settling what this socket settles itself.

        A clean close (no exception propagating) acks the last message handed
        over under ``next``, as asking for the next one would. What it cannot
        settle (a request awaiting its reply, a message kept pending, messages
        read ahead, the message in hand while an exception propagates) stays
        pending and belongs to whoever wraps this name next, in this process or
        after a restart.
        """
        self._close(linger, clean=sys.exc_info()[1] is None, linger_for_confirms=True)

    def _close(self, linger: int | None, clean: bool, linger_for_confirms: bool = False) -> None:
        """close(); ``clean``: no exception is propagating (see :meth:`_return_in_hand`).

        ``linger_for_confirms``: a confirm=True socket waits for the confirmations of
        what it sent, as long as its linger allows and ``confirm_timeout`` at most
        (never from the garbage collector, nor on an event loop).
        """
        if self._closed:
            return
        journal = self._journal
        port = self._port
        state = self._s
        own = linger  # the application's linger (ms; -1: for ever)
        if own is None and (state.confirm is not None or state.confirm_return is not None) and not self.closed:
            with self._resend_hold() or contextlib.nullcontext():
                own = zmq.Socket.get(self, zmq.LINGER)
        if state.loop_resends:
            state.loop_resends.cancel()  # (the wait below resends by itself)
        if state.confirm is not None:
            if linger_for_confirms and own and journal is not None and not journal.closed:
                bound = state.confirm.timeout
                state.confirm.wait_confirmed(bound if own < 0 else min(own / 1000, bound), self._confirm_pause)
            state.confirm.close()  # what is unconfirmed stays pending: the next wrap resends it
            if own is not None:
                linger = state.confirm.linger_at_close(own)  # resends must not hold up ctx.term()
        if state.requests is not None:
            state.requests.close()  # a request awaiting its reply stays pending: the next REQ sends it
        if state.earlier is not None:
            state.earlier.close()
        if state.confirm_return is not None:
            state.confirm_return.close(-1 if own is None else own)  # what was confirmed goes out first
        if journal is not None:
            if not journal.closed:
                self._settle_deferred()
                if clean:
                    self._settle_handled()
                self._return_in_hand(clean)
                self._journal_what_is_kept()
                if state.slots is not None:
                    port.close_slots(state.slots)  # what is still held stays pending, in the store
                port.release(self._jname)
            state.slots = None
            self._update_fast_paths()
            port.detach(self._jname, self)
        if state.redelivery is not None:
            state.redelivery.close()
        state.ahead.clear()
        state.returned.clear()
        if self.context is not None:
            self.context._rm_socket(self)
        if self._is_pull:
            # A PULL never sends: a linger keeps nothing of its own. But libzmq 4.3.5, closing one with a
            # linger (the default: for ever) while more than its RCVHWM of messages wait from a peer that
            # has gone, never finishes the close, and ctx.term() waits for ever (plain pyzmq too). A confirm
            # sender's resends of what this journal holds already are such a backlog, left unread by an
            # application that stops once it has what it expected.
            linger = 0
        origin = self._origin
        if origin is None:
            super().close(linger)
            return
        if not origin.closed:
            origin.close(linger)  # the owner of the handle closes it
        self._closed = True  # the handle is gone: never zmq_close it twice

    def _journal_what_is_kept(self) -> None:
        """A message whose journaling failed is journaled now, pending, never handed over."""
        kept = self._s.unjournaled
        if kept is None:
            return
        self._s.unjournaled = None
        if kept[2] is ConfirmInbound._journal_peeked:
            return  # read by a poll, never received: gone, as libzmq drops what nobody read (confirm senders resend)
        try:
            if kept[0] is None:  # a batch read ahead: journaled pending, handed over to nobody
                kept[2](self, None, 0, confirm=False)
            else:
                self._port.log(self._jname, _IN, kept[0], track=False, attempts=0)
        except StoreError as e:  # the store still fails: there is nowhere left to keep it
            log.error(
                "journal %s: socket %r closed holding messages it could not journal: %s",
                self._journal.path,
                self._jname,
                e,
            )

    def _abandon(self) -> None:
        """In a child forked from the journal's process: refuse all use, touch nothing (not even libzmq)."""
        self.__class__ = _forked_class(type(self))

    def __del__(self) -> None:
        # pyzmq closes a socket that is garbage collected; so does this, settling first.
        if not self._closed and self._journal is not None and self._s is not None:
            if deferred_close.must_defer(self._port.lock_is_free_within):
                deferred_close.later(self)  # (this thread may hold a lock the close takes: closed from there)
                return
            with contextlib.suppress(Exception):
                self._close(None, clean=True)  # (a collection runs at any moment: what it interrupts is not ours)


class _Forked:
    """A journaled socket inherited by a forked child: libzmq must not be used there, nor the journal."""

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise self._port.forked_error()  # type: ignore[attr-defined]

    send = send_multipart = recv = recv_multipart = recv_into = poll = _refuse
    get = set = getsockopt = setsockopt = bind = connect = unbind = disconnect = _refuse

    def close(self, linger: int | None = None) -> None:
        self._closed = True  # type: ignore[attr-defined]  # the parent closes the handle, not this child

    def _close(self, linger: int | None, clean: bool) -> None:  # (what garbage collection calls)
        self.close(linger)


_forked_classes: dict[type, type] = {}


def _forked_class(cls: type) -> type:
    forked = _forked_classes.get(cls)
    if forked is None:
        forked = _forked_classes[cls] = type(f"Forked{cls.__name__}", (_Forked, cls), {})
    return forked
