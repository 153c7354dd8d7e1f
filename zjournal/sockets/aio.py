"""Journaled ``zmq.asyncio`` sockets.

pyzmq's asyncio socket does its I/O through a synchronous *shadow* socket
(``_shadow_sock``) with NOBLOCK, when libzmq says it is ready. Here that
shadow is a :class:`~zjournal.sockets.socket.JournaledSocket`, so every message an
asyncio coroutine sends or receives goes through the same journaling code as
the synchronous API, and the futures, pollers and event-loop integration stay
pyzmq's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Generator
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio
from zmq._future import _AsyncSocket

from zjournal.errors import ZJournalError
from zjournal.journal.core import DEFAULT_RESEND_AFTER, port_of
from zjournal.sockets import pollhook
from zjournal.sockets.confirm import sender_of, wait_seconds
from zjournal.sockets.copies import copy_attributes
from zjournal.sockets.libzmq import POLLIN, RCVMORE, RESEND_TICK_MS
from zjournal.sockets.socket import JournaledSocket, journaled_repr

if TYPE_CHECKING:
    from zjournal.journal import Journal


class _Handover:
    """A whole message a recv future carries: given back to its socket if the application never gets it."""

    __slots__ = ("claimed", "entry_id", "frames", "sock")

    def __init__(self, sock: JournaledSocket, entry_id: int, frames: list[bytes]) -> None:
        self.sock = sock
        self.entry_id = entry_id
        self.frames = frames
        self.claimed = False

    def give_back(self) -> None:
        if not self.claimed:
            self.claimed = True
            self.sock._give_back(self.entry_id, self.frames)


class _Handing:
    """pyzmq's recv Future (mixed into its class), which knows whether its message reached the application.

    pyzmq reads a message as soon as the socket is readable and sets it as
    the result of the waiting future; a task cancelled in that same turn (a
    timeout, a shutdown) never sees it. The message was journaled and would be
    acked by the next recv: instead, a result nobody took (the awaiting task
    was cancelled, the future was dropped, the socket closed) is given back to
    the socket, whose next recv hands it over.
    """

    _zj_handover: _Handover | None = None
    _zj_source: Any = None  # recv_string/json/pyobj: the recv future this one decodes
    _zj_owner: Any = None  # set on recv futures
    _zj_kind = ""
    _zj_call: tuple[Any, dict[str, Any]] | None = None  # a blocking recv's (args, kwargs), to wait again

    def set_exception(self, exception: Any) -> None:
        owner = self._zj_owner
        if owner is not None and isinstance(exception, zmq.Again) and owner._zj_wait_again(self):
            return
        super().set_exception(exception)

    def set_result(self, result: Any) -> None:
        owner = self._zj_owner
        if owner is not None:
            self._zj_handover = owner._handover_of(self._zj_kind, result)
        elif getattr(self._zj_source, "_zj_handover", None) is not None:
            handover = self._zj_handover = self._zj_source._zj_handover
            handover.claimed = False  # decoded: it is this future's result that must reach the application
        super().set_result(result)

    def result(self) -> Any:
        value = super().result()
        if self._zj_handover is not None:
            self._zj_handover.claimed = True
        return value

    def _zj_lost(self) -> None:
        handover = self._zj_handover
        if handover is not None and not handover.claimed and self.done() and not self.cancelled():
            handover.give_back()

    def __await__(self) -> Generator[Any, None, Any]:
        if not self.done():
            self._asyncio_future_blocking = True
            try:
                yield self
            except BaseException:  # the awaiting task was cancelled (or had an exception thrown in)
                if self._zj_handover is not None:
                    # The task's wakeup read the result just before the cancellation was thrown in:
                    # that was not the application taking it.
                    self._zj_handover.claimed = False
                self._zj_lost()
                raise
        if not self.done():
            raise RuntimeError("await wasn't used with future")
        return self.result()

    __iter__ = __await__

    def __del__(self) -> None:
        self._zj_lost()
        finalize = getattr(super(), "__del__", None)
        if finalize is not None:
            finalize()


class _HandoverFuture(_Handing, asyncio.Future):
    """The recv Future of journaled ``zmq.asyncio`` sockets."""


_future_classes: dict[type, type] = {asyncio.Future: _HandoverFuture}


def _handover_future(base: type) -> type:
    """The hand-over Future class for a pyzmq family's own Future class (tornado's, say)."""
    cls = _future_classes.get(base)
    if cls is None:
        cls = _future_classes[base] = type(f"_Handover{base.__name__}", (_Handing, base), {})
    return cls


class _JournaledAsync:
    """What makes a Future-returning pyzmq socket (asyncio, tornado) journaled; mixed in before its class."""

    _shadow_sock: JournaledSocket
    _Future: type = _HandoverFuture
    _zj_midmessage = False  # reading a multipart message frame by frame with recv()
    _zj_last: _Handover | None = None

    _zj_resend_timer: Any = None  # confirm DEALER/ROUTER/PAIR: the event loop's next look at resends
    _zj_reading = False  # inside pyzmq's _handle_recv: an Again there is a read, not RCVTIMEO's timer

    def _add_recv_event(self, kind: str, *, args: Any = None, kwargs: Any = None, future: Any = None) -> Any:
        if future is None and kind in ("recv", "recv_multipart"):
            future = self._Future()
            future._zj_owner = self
            future._zj_kind = kind
            if not (kwargs or {}).get("flags", 0) & zmq.DONTWAIT:
                future._zj_call = (args, dict(kwargs or {}))
        self._zj_arm_resends()
        return super()._add_recv_event(kind, args=args, kwargs=kwargs, future=future)

    def _add_io_state(self, state: int) -> None:
        # (pyzmq adds POLLIN when a recv must wait: nothing queued, so confirmations held go sooner)
        if state & POLLIN:
            shadow = self._shadow_sock._s
            back = None if shadow is None else shadow.confirm_return
            if back is not None:
                back.soon()
        super()._add_io_state(state)

    def _handle_recv(self) -> None:
        self._zj_reading = True
        try:
            super()._handle_recv()
        finally:
            self._zj_reading = False

    def _zj_wait_again(self, future: Any) -> bool:
        """A blocking recv's read found nothing to hand over although libzmq said readable: wait on.

        libzmq's REQ drops a reply to an older correlated send (zjournal's
        resends turn REQ_CORRELATE on), a journaled receiver drops a resend it
        holds or recognises: a blocking recv goes on waiting then, and so does
        the future (RCVTIMEO starts again).
        """
        call = future._zj_call
        if not self._zj_reading or call is None or future.done() or self._closed:
            return False
        args, kwargs = call
        super()._add_recv_event(future._zj_kind, args=args, kwargs=dict(kwargs), future=future)
        return True

    def _add_send_event(self, kind: str, msg: Any = None, kwargs: Any = None, future: Any = None) -> Any:
        try:
            return super()._add_send_event(kind, msg=msg, kwargs=kwargs, future=future)
        finally:
            self._zj_arm_resends()

    def _zj_arm_resends(self) -> None:
        """A confirm DEALER, ROUTER or PAIR resends from the event loop: the one thread that uses the socket.

        (A PUSH resends from its own thread; see ConfirmSender.resends_in_thread.)
        """
        if self._zj_resend_timer is not None or self._closed:
            return
        state = self._shadow_sock._s
        confirm = None if state is None else state.confirm or state.requests
        if confirm is None or confirm.resends_in_thread:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # used outside a running loop: the next call inside one arms it
        self._zj_resend_timer = loop.call_later(RESEND_TICK_MS / 1000, self._zj_resend_tick)

    def _zj_resend_tick(self) -> None:
        self._zj_resend_timer = None
        state = None if self._closed else self._shadow_sock._s
        confirm = None if state is None else state.confirm or state.requests
        if confirm is None:
            return
        confirm.resend_due_here()
        if confirm.unconfirmed():
            self._zj_arm_resends()

    def _deserialize(self, recvd: Any, load: Any) -> Any:
        """recv_string/json/pyobj: a future of the decoded message; a message nobody gets is given back."""
        decoded = self._Future()
        decoded._zj_source = recvd

        def chain(_: Any) -> None:
            if decoded.done():  # cancelled: nobody gets this message
                handover = getattr(recvd, "_zj_handover", None)
                if handover is not None and not recvd.cancelled() and recvd.exception() is None:
                    handover.give_back()
                return
            if recvd.cancelled():
                decoded.cancel()
            elif recvd.exception() is not None:
                decoded.set_exception(recvd.exception())
            else:
                try:
                    loaded = load(recvd.result())
                except Exception as e:
                    decoded.set_exception(e)
                else:
                    decoded.set_result(loaded)

        def chain_cancel(_: Any) -> None:
            if decoded.cancelled() and not recvd.done():
                recvd.cancel()

        recvd.add_done_callback(chain)
        decoded.add_done_callback(chain_cancel)
        return decoded

    def _handover_of(self, kind: str, result: Any) -> _Handover | None:
        """The whole message a recv future's result is (None: part of one, or nothing to give back)."""
        shadow = self._shadow_sock
        if kind == "recv_multipart":
            frames = [f if isinstance(f, bytes) else f.bytes for f in result]
        else:
            if shadow.get(RCVMORE):
                self._zj_midmessage = True
                return None
            if self._zj_midmessage:  # the last frame of a message read frame by frame
                self._zj_midmessage = False
                return None
            frames = [result if isinstance(result, bytes) else result.bytes]
        state = shadow._s
        entry_id = state.settle_next or (state.last_id if shadow._in_policy == "explicit" else 0)
        handover = self._zj_last = _Handover(shadow, entry_id, frames)
        return handover

    def set(self, option: int, optval: Any) -> None:
        self._shadow_sock.set(option, optval)  # the journaled socket sees subscriptions (SUB redelivery)

    setsockopt = set  # noqa: A003 - pyzmq's name

    def get(self, option: int) -> Any:
        result = self._shadow_sock.get(option)  # RCVMORE and EVENTS of messages held in Python
        if option == zmq.EVENTS:
            self._schedule_remaining_events(result)
        return result

    getsockopt = get

    @classmethod
    def wrap(
        cls,
        journal: Journal,
        sock: Any,
        name: str,
        ack: str | None,
        classify: Any,
        max_attempts: int | None,
        prefetch: int = 0,
        confirm: bool = False,
        confirm_timeout: float | None = None,
        resend_after: float | None = DEFAULT_RESEND_AFTER,
    ) -> Any:
        inner = JournaledSocket.shadow(sock)
        try:
            inner._setup(
                journal, sock, name, ack, classify, max_attempts, prefetch, confirm, confirm_timeout, resend_after
            )
        except BaseException:
            inner._closed = True
            raise
        inner._s.loop_resends = False  # (this wrapper resends from its loop itself: _zj_arm_resends)
        outer = _journaled_async_class(type(sock))
        # Not outer(...): an application's subclass may want arguments of its own in __init__.
        wrapped = outer.__new__(outer)
        _AsyncSocket.__init__(wrapped, _from_socket=inner)
        copy_attributes(sock, wrapped)
        wrapped.context = sock.context
        return wrapped

    @property
    def journal(self) -> Journal:
        return self._shadow_sock.journal

    @property
    def journal_name(self) -> str:
        return self._shadow_sock.journal_name

    @property
    def last_id(self) -> int:
        return self._shadow_sock.last_id

    @property
    def last_attempts(self) -> int:
        return self._shadow_sock.last_attempts

    @property
    def resent(self) -> int:
        return self._shadow_sock.resent

    async def wait_confirmed(self, timeout: float | None = None) -> bool:
        """JournaledSocket.wait_confirmed for the event loop: it looks every tick, and sleeps between looks.

        A sleep ends early when the sender's thread settled confirmations, so a
        wait returns as soon as the last one came, not at the next tick.
        """
        sender = sender_of(self, self._s)
        seconds = wait_seconds(timeout)
        loop = asyncio.get_running_loop()
        deadline = None if seconds is None else loop.time() + seconds
        tick = RESEND_TICK_MS / 1000
        settled = asyncio.Event()

        def wake() -> None:  # (from the sender's thread, or this loop's own look)
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
                loop.call_soon_threadsafe(settled.set)

        sender.settled_hook = wake
        try:
            while sender.look() and not self._closed:  # (closed by another task: the wait ends)
                left = tick if deadline is None else deadline - loop.time()
                if left <= 0:
                    break
                settled.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(settled.wait(), min(tick, left))
        except (zmq.ZMQError, ZJournalError):
            pass  # as the blocking wait: the context or the journal closed; what is unconfirmed stays pending
        finally:
            if sender.settled_hook is wake:
                sender.settled_hook = None
        return sender.all_confirmed()

    @property
    def resends_recognised(self) -> int:
        return self._shadow_sock.resends_recognised

    def ack(self, id: int | None = None) -> bool:  # noqa: A002
        return self._shadow_sock.ack(id)

    def nack(self, id: int | None = None) -> None:  # noqa: A002
        self._shadow_sock.nack(id)

    @contextlib.asynccontextmanager
    async def receiving(self, flags: int = 0) -> AsyncIterator[list[bytes]]:
        """``async with sock.receiving() as frames``: acked on a clean exit, pending if it raises."""
        frames = await self.recv_multipart(flags)
        entry_id = self.last_id
        try:
            yield frames
        except BaseException:
            self._shadow_sock._forget(entry_id)
            self._shadow_sock._port.forget(entry_id)
            raise
        self.ack(entry_id)

    def _settle_deferred(self) -> None:
        self._shadow_sock._settle_deferred()

    def _return_in_hand(self, clean: bool) -> None:
        self._shadow_sock._return_in_hand(clean)

    def close(self, linger: int | None = None) -> None:
        if self._closed:
            return
        if self._zj_resend_timer is not None:
            self._zj_resend_timer.cancel()
            self._zj_resend_timer = None
        if self._zj_last is not None:
            self._zj_last.give_back()  # a result nobody took stays pending (not acked by the close)
        if self._fd is not None:
            for event in [*(self._recv_futures or ()), *(self._send_futures or ())]:
                if not event.future.done():
                    with contextlib.suppress(RuntimeError):
                        event.future.cancel()
            self._clear_io_state()
        journal = self.journal
        # Settles, then closes the handle through its owner; never waits for confirmations (the loop would stall).
        self._shadow_sock._close(linger, clean=sys.exc_info()[1] is None)
        if journal is not None:
            port_of(journal).detach(self.journal_name, self)
        self._closed = True

    def _abandon(self) -> None:  # in a forked child (see JournaledSocket._abandon)
        self._shadow_sock._abandon()

    def _python_events(self, flags: int) -> int:  # for zjournal.sockets.pollhook, as JournaledSocket's
        return self._shadow_sock._python_events(flags)

    def _readable_after_resends(self) -> bool:  # for zjournal.sockets.pollhook, as JournaledSocket's
        # Reported as libzmq sees it: this socket's recv waits, then reads without blocking, so a resend
        # dropped there never blocks the event loop (and reading here would race its pending recvs).
        return True

    @property
    def _s(self) -> Any:
        return self._shadow_sock._s

    def __repr__(self) -> str:
        return journaled_repr(self, self.journal_name)


class AsyncJournaledSocket(_JournaledAsync, zmq.asyncio.Socket):
    """An asyncio ``zmq.Socket`` whose messages are journaled; awaitable like pyzmq's."""


_async_classes: dict[type, type] = {zmq.asyncio.Socket: AsyncJournaledSocket}


def _journaled_async_class(cls: type) -> type:
    """The journaled class of a Future-returning socket class: zmq.asyncio's, tornado's, a subclass of either."""
    journaled = _async_classes.get(cls)
    if journaled is None:
        future = _handover_future(cls._Future)
        journaled = type(f"Journaled{cls.__name__}", (_JournaledAsync, cls), {"_Future": future})
        journaled.__module__ = __name__
        _async_classes[cls] = journaled
    return journaled


pollhook.install(_JournaledAsync)  # zmq.asyncio.Poller polls through pyzmq's zmq_poll too
