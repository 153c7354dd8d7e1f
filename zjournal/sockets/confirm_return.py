"""The receiving side's half of end-to-end confirms: what a journaled socket received goes back confirmed.

A journaled receiving socket that journaled a ``confirm=True`` sender's
message (zjournal.sockets.confirm_inbound) tells that sender through its
:class:`ConfirmReturn`: one confirm message per sender (zjournal.sockets.confirm_wire)
for many messages, sent to the endpoint the message's header names, from a
socket of its own per endpoint. The sending side is zjournal.sockets.confirm.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import operator
import resource
import threading
import time

import zmq

from zjournal import exiting
from zjournal.errors import ZJournalError
from zjournal.journal.port import SocketPort
from zjournal.sockets import confirm_channel
from zjournal.sockets import confirm_wire as wire
from zjournal.sockets.libzmq import NOBLOCK

log = logging.getLogger("zjournal")


_RETURN_EVERY = 0.002  # a receiver's confirmations wait at most this long
_RETURN_BATCH = 4096
# Confirmations held by a receiving socket (ConfirmReturn.hold) wait at most this long, then go from a
# thread (sooner when a batch is full). Not at the socket's next wait: in a request/reply exchange that
# put a confirm message, and the wakes of both I/O threads it costs, on every message's way (pipe+confirm
# round trip p50 222 -> 163 µs). Longer than _RETURN_EVERY: each look is a GIL hand-over from a busy receiver.
_HOLD_AT_MOST = 0.01
# ... and this long once the socket waits for its next message (ConfirmReturn.soon) and none came meanwhile:
# a sender waiting for its confirmation (wait_confirmed after each send) hears in ~2 ms, not 10 (see _hold).
_HOLD_WHEN_IDLE = 0.002
# A receiver's confirm sockets (one per sender, two descriptors each) at most: an eighth of the process's
# descriptor limit, within these bounds (see max_endpoints). Past that the least recently used one closes,
# its last confirmations still going (it lingers as a closing receiver's do), and a sender that sends again
# is connected to anew: with more senders than that all sending, that is a CURVE handshake per batch.
_ENDPOINTS_AT_LEAST = 64
_ENDPOINTS_AT_MOST = 1024
# A confirm socket that sent nothing for this long (s) closes: its sender may be gone, and libzmq would
# reconnect to that address for as long as the socket lives. A sender still there is connected to again.
_IDLE_CLOSE = 10.0
# How long a closing receiver's last confirmations may wait to reach their senders (ms): long enough
# for a live sender on this host or network, short enough that a sender that is gone delays ctx.term() little.
_LAST_CONFIRMS_LINGER = 500
_MAX_QUEUED_CONFIRMS = 1_000_000  # past that a receiver drops confirmations (the senders resend)


def max_endpoints() -> int:
    """How many confirm sockets a receiver keeps open: an eighth of the descriptor limit (read now: it may be raised).

    Bounded, since a peer's message names the endpoint (a hostile one could
    name thousands), but not below a fan-in's needs: with 64, a receiver fed
    by 70 senders reconnected for nearly every batch, and its I/O threads
    spent over a core on CURVE handshakes (2026-12-07).
    """
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return _ENDPOINTS_AT_MOST
    return max(_ENDPOINTS_AT_LEAST, min(_ENDPOINTS_AT_MOST, soft // 8))


class ConfirmReturn:
    """A receiving socket's confirmations, sent back to each sender in batches.

    Where a write that returned is durable enough (``process`` and
    ``always``), confirmations are held (:meth:`hold`) and go in batches, one
    message per sender, from the receiving thread when a batch is full or
    from a flusher thread within :data:`_HOLD_AT_MOST`. ``interval`` mode must
    fsync before telling anyone; a thread does that, once for the
    confirmations gathered over a couple of milliseconds.
    """

    def __init__(self, port: SocketPort, ctx: zmq.Context) -> None:
        self._port = port
        self._ctx = ctx
        self._queue: collections.deque[tuple[str, bytes, list[int]]] = collections.deque()
        self._queued = 0
        # Confirmations for the next flush() (see hold): appended by the socket's thread, taken by
        # whichever thread flushes (a deque's append and popleft need no lock between them). An item
        # is a sequence of the same sender as the item before, or (endpoint, origin, seq) where the
        # sender changes: most messages come from the sender of the one before.
        self.held: collections.deque[int | tuple[str, bytes, int]] = collections.deque()
        self._held_sender: tuple[str, bytes] = ("", b"")  # the sender of the last item held (socket's thread)
        self._taken_sender: tuple[str, bytes] = ("", b"")  # ... of the last item taken (_sending held)
        # (endpoint, stream) -> its confirm socket and when it last sent (monotonic), least recently used first
        self._sockets: collections.OrderedDict[tuple[str, bytes], tuple[zmq.Socket, float]] = collections.OrderedDict()
        self._sending = threading.Lock()  # the confirm sockets, between the socket's thread and the flusher
        self._flusher: threading.Thread | None = None
        self._held_wake = threading.Event()
        self._hurry = threading.Event()  # the socket waits for its next message: what is held goes sooner
        self._armed = False  # the flusher will look (see _flush_idle)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # (interval mode) a full batch, or close: send now
        self._arrived = threading.Event()  # (interval mode) the first confirmation for an idle thread
        self._linger = 0  # what the confirm sockets close with (see close)
        if not port.durable_once_written():
            self._thread = threading.Thread(target=self._run, name="zjournal-confirm-return", daemon=True)
            self._thread.start()
        exiting.stop_at_exit(self)  # (the flusher thread starts at the first confirmation held)

    def hold(self, endpoint: str, origin: bytes, seq: int) -> None:
        """``(origin, seq)`` is journaled here: tell its sender soon, in one confirm message with others.

        Held, not sent: a send per message would cost both ends more than the
        journaling (libzmq wakes its I/O thread for each, and the sender reads
        each). They go when :data:`_RETURN_BATCH` are held, or within
        :data:`_HOLD_AT_MOST` from a thread, whichever comes first, and at
        :meth:`close`: not when the socket is about to wait, where a
        confirm message per message would sit on the way of the next one.
        """
        if self._thread is not None:  # interval mode: its thread fsyncs first
            self.confirm_many(endpoint, origin, [seq])
            return
        held = self.held
        sender = self._held_sender
        if origin == sender[1] and endpoint == sender[0]:
            held.append(seq)
        else:
            self._held_sender = (endpoint, origin)
            held.append((endpoint, origin, seq))
        if not self._armed:
            self._arm_flusher()
        elif len(held) >= _RETURN_BATCH:
            self.flush()

    @property
    def holding(self) -> bool:
        """Whether confirmations wait to be sent (the flusher will send them)."""
        return self._armed

    def soon(self) -> None:
        """The socket found nothing queued and waits: what it holds goes within :data:`_HOLD_WHEN_IDLE`."""
        if self._armed and not self._hurry.is_set():
            self._hurry.set()

    def _arm_flusher(self) -> None:
        """Held confirmations go within :data:`_HOLD_AT_MOST` at the latest."""
        self._armed = True
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_idle, name="zjournal-confirm-flush", daemon=True)
            self._flusher.start()
        self._held_wake.set()

    def confirm_many(self, endpoint: str, origin: bytes, seqs: list[int], later: bool = False) -> None:
        """These sequences of one sender are journaled here: tell it (now, or within a couple of ms).

        ``later``: held as :meth:`hold` holds them (batched, within
        :data:`_HOLD_AT_MOST`).
        """
        if self._thread is None:
            if later:
                for seq in seqs:
                    self.hold(endpoint, origin, seq)
                return
            with self._sending:
                self._send(endpoint, origin, seqs)
            return
        if self._queued < _MAX_QUEUED_CONFIRMS:
            was_empty = not self._queue
            self._queue.append((endpoint, origin, seqs))
            self._queued += len(seqs)
            if was_empty:
                self._arrived.set()  # wakes an idle thread (which then gathers more)
            if self._queued >= _RETURN_BATCH:
                self._wake.set()  # a full batch goes at once

    def _run(self) -> None:
        try:
            while True:
                stopping = self._stop.is_set()
                if not self._queue and not stopping:
                    # nothing to confirm: asleep until confirm_many queues some (or close)
                    if not self._arrived.wait(_IDLE_CLOSE if self._sockets else None):
                        with self._sending:
                            self._close_idle(time.monotonic())
                    self._arrived.clear()
                    continue  # then gather more, as below
                self._wake.wait(_RETURN_EVERY)
                self._wake.clear()
                if self._queue:
                    self._send_batch()
                if stopping and not self._queue:
                    return
        except (zmq.ContextTerminated, ZJournalError):
            pass  # the senders resend what was not confirmed
        except Exception as e:  # the senders resend what was not confirmed
            log.error("journal: confirmations to senders stopped: %s", e)
        finally:
            self._close_sockets()

    def _send_batch(self) -> None:
        queue = self._queue
        by_sender: dict[tuple[str, bytes], list[int]] = {}
        for _ in range(len(queue)):
            endpoint, origin, seqs = queue.popleft()
            self._queued -= len(seqs)
            by_sender.setdefault((endpoint, origin), []).extend(seqs)
        self._port.make_durable()  # interval mode: fsynced before anyone is told
        with self._sending:  # (a refusal goes from the socket's thread meanwhile)
            for (endpoint, origin), seqs in by_sender.items():
                self._send(endpoint, origin, seqs)

    def _send(self, endpoint: str, origin: bytes, seqs: list[int]) -> None:
        out = self._socket_for(endpoint, origin)
        for start in range(0, len(seqs), wire.MAX_CONFIRMS):
            try:
                out.send_multipart(wire.encode_confirms(origin, seqs[start : start + wire.MAX_CONFIRMS]), NOBLOCK)
            except zmq.Again:
                break  # that sender is not reachable now: it resends, and is confirmed then

    def _socket_for(self, endpoint: str, origin: bytes) -> zmq.Socket:
        """The confirm socket to a sender's endpoint, opened at its first use (``_sending`` held)."""
        sockets = self._sockets
        sender = (endpoint, wire.stream_of(origin))  # (one socket for every run of a sender)
        now = time.monotonic()
        known = sockets.get(sender)
        if known is None:
            self._close_idle(now)
            if len(sockets) >= max_endpoints():
                # (closed at once, libzmq would drop what was just queued on it: its sender resends it all)
                sockets.popitem(last=False)[1][0].close(_LAST_CONFIRMS_LINGER)
            out = confirm_channel.open_return(self._ctx, origin, endpoint)
        else:
            out = known[0]
            if len(sockets) > 1:
                sockets.move_to_end(sender)
        sockets[sender] = (out, now)
        return out

    def refuse(self, endpoint: str, origin: bytes, seq: int, reason: str) -> None:
        """``(origin, seq)`` will never be journaled here (``reason``): tell its sender now.

        Its sender makes the message a dead letter instead of sending it
        again every ``confirm_timeout`` for ever, each time refused again.
        Not held, nor fsynced first: nothing was written.
        """
        refusal = wire.encode_refusal(origin, [seq], reason)
        # (zmq.Again: that sender is not reachable now; its resend is refused again)
        with self._sending, contextlib.suppress(zmq.Again):
            self._socket_for(endpoint, origin).send_multipart(refusal, NOBLOCK)

    def flush(self) -> None:
        """Send the confirmations held (see :meth:`hold`)."""
        with self._sending:
            self._flush_held()

    def _flush_held(self) -> None:
        """One confirm message per sender for everything held (``_sending`` held)."""
        held = self.held
        # Taken in C (popleft called len(held) times: what is appended meanwhile waits for the next flush).
        items = list(map(operator.call, itertools.repeat(held.popleft, len(held))))
        by_sender: dict[tuple[str, bytes], list[int]] = {}
        sender = self._taken_sender
        if all(map(isinstance, items, itertools.repeat(int))):  # the common case: all the last sender's
            by_sender[sender] = items  # type: ignore[assignment]
            items = []
        seqs = by_sender.setdefault(sender, [])
        for item in items:
            if item.__class__ is int:
                seqs.append(item)
                continue
            endpoint, origin, seq = item
            sender = (endpoint, origin)
            seqs = by_sender.get(sender)
            if seqs is None:
                seqs = by_sender[sender] = []
            seqs.append(seq)
        self._taken_sender = sender
        for (endpoint, origin), seqs in by_sender.items():
            if not seqs:
                continue
            self._send(endpoint, origin, seqs)

    def _flush_idle(self) -> None:
        """Held confirmations go from here within :data:`_HOLD_AT_MOST` of the first one held."""
        try:
            while not self._stop.is_set():
                if not self._held_wake.wait(_IDLE_CLOSE if self._sockets else None):
                    with self._sending:
                        self._close_idle(time.monotonic())
                    continue
                self._held_wake.clear()
                while True:
                    self._hold()
                    if self._stop.is_set():
                        return
                    if self.held:
                        self.flush()
                    self._armed = False
                    if not self.held:  # (held after the flush and before the flag went: look again)
                        break
                    self._armed = True
        except (zmq.ContextTerminated, zmq.ZMQError):
            pass  # closing: the senders resend what was not confirmed

    def _hold(self) -> None:
        """Wait :data:`_HOLD_AT_MOST`, or less: :data:`_HOLD_WHEN_IDLE` once the socket waits and nothing came since.

        A sender that waits for its confirmation sends nothing more until it
        has it: the receiver waits, and nothing comes. In a request/reply
        exchange the receiver waits after each message too, but the next one
        comes within the round trip: those confirmations keep to the full
        hold, and go in batches.
        """
        deadline = time.monotonic() + _HOLD_AT_MOST
        while not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or not self._hurry.wait(left):
                return
            self._hurry.clear()
            quiet = len(self.held)
            if self._stop.wait(_HOLD_WHEN_IDLE) or len(self.held) == quiet:
                return  # (a reply to what was received went first; nothing came since: the sender waits)

    def _close_idle(self, now: float) -> None:
        """Close the confirm sockets that sent nothing for :data:`_IDLE_CLOSE` (the oldest are first)."""
        sockets = self._sockets
        while sockets:
            sender, (out, used) = next(iter(sockets.items()))
            if now - used < _IDLE_CLOSE:
                return
            del sockets[sender]
            out.close(0)  # (what it still holds never reached a sender that is gone: it resends)

    def _close_sockets(self) -> None:
        for s, _ in self._sockets.values():
            s.close(self._linger)
        self._sockets.clear()

    def stop_thread(self, wait: float) -> None:
        """Stop the threads (at interpreter exit: zjournal.exiting); :meth:`close` sends what is still held."""
        self._linger = _LAST_CONFIRMS_LINGER
        self._stop.set()
        for event in (self._held_wake, self._hurry, self._wake, self._arrived):
            event.set()
        for thread in (self._flusher, self._thread):
            if thread is not None and thread is not threading.current_thread():
                thread.join(wait)

    def close(self, linger: int = -1) -> None:
        """Send what is queued, then stop.

        The last confirmations get :data:`_LAST_CONFIRMS_LINGER` ms to reach
        their senders (less if ``linger``, the receiving socket's, is shorter):
        closed at once, libzmq would drop them, and every sender would resend
        what a cleanly closed receiver had journaled.
        """
        self._linger = _LAST_CONFIRMS_LINGER if linger < 0 else min(linger, _LAST_CONFIRMS_LINGER)
        if self._thread is None:
            self._stop.set()
            self._held_wake.set()
            self._hurry.set()
            if self._flusher is not None and self._flusher is not threading.current_thread():
                self._flusher.join()
            with contextlib.suppress(zmq.ZMQError):
                self.flush()
            self._close_sockets()
            return
        self._stop.set()
        self._wake.set()
        self._arrived.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
