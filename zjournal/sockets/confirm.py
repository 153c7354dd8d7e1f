"""End-to-end confirms: an outbound entry stays pending until the receiving journal has it.

``journal.wrap(push, confirm=True)`` gives the socket a :class:`ConfirmSender`:
every message goes out behind a header frame (zjournal.sockets.confirm_wire)
that names it; its entry stays pending, and is acked only when the receiving
journal confirms it journaled the message. What is not confirmed within
``confirm_timeout`` seconds is sent again, oldest first, by a background
thread (so an idle producer does not strand its last messages) and, after a
restart, as soon as the socket is wrapped again: ``attempts`` counts the
sends, ``max_attempts`` makes an entry a dead letter.

Every journaled receiving socket understands the header without an option: it
takes the header off, lets the journal drop a resend it already holds
(zjournal.journal.seen), and its :class:`~zjournal.sockets.confirm_return.ConfirmReturn` sends
confirmations back to the endpoint the header names, in batches.

Thread safety: the background thread resends through the application's
socket, which libzmq allows when no two threads use it at once; every use of
the socket by zjournal's send path and the resend takes :attr:`ConfirmSender.lock`,
and so do the application's other calls on it that reach libzmq (through
:class:`~zjournal.sockets.application_hold.ApplicationHold`: options, polls,
endpoints). The thread waits for it a tick at most, and resends later if the
application holds it longer.

This module holds the sender's state and the application's sends; its
mixins the rest: taking confirmations in and settling them
(zjournal.sockets.confirm_settling), resends (zjournal.sockets.confirm_resending)
and the background thread (zjournal.sockets.confirm_thread).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import zmq

from zjournal import exiting
from zjournal.errors import InvalidArgumentError, ZJournalError
from zjournal.journal.entry import DIRECTION_CODES, Direction
from zjournal.journal.port import SocketPort
from zjournal.sockets import confirm_channel
from zjournal.sockets import confirm_wire as wire
from zjournal.sockets.application_hold import ApplicationHold
from zjournal.sockets.confirm_resending import BACKOFF_LEVELS, Resending
from zjournal.sockets.confirm_settling import Settling
from zjournal.sockets.confirm_thread import TICK, ConfirmThread, Wakeup
from zjournal.sockets.libzmq import NOBLOCK, SNDMORE, base_send

log = logging.getLogger("zjournal")

DEFAULT_CONFIRM_TIMEOUT = 5.0  # seconds before an unconfirmed message is sent again
_OUT = DIRECTION_CODES[Direction.OUT]
_monotonic = time.monotonic
_HEADER_MAGIC = wire.HEADER_MAGIC
_pack_header = wire.pack_fixed  # the header frame but its endpoint (wire.encode_header, inlined)
_MERGE_LIMIT = wire.MERGE_LIMIT
# While the application sends, every 256th send takes them in: a look that finds none costs ~3.5 µs (pyzmq's
# zmq.Again), and they come every few ms (_HOLD_AT_MOST), so looking every 64th cost 0.05 µs per send.
_TAKE_EVERY_MASK = 255
_FLOOR_EVERY_MASK = 255  # every 256th send works out the floor afresh (it may lag: receivers keep keys longer)


# Socket types that may send with confirm=True, and why the others may not.
_SENDERS = (zmq.PUSH, zmq.DEALER, zmq.ROUTER, zmq.PAIR)
# Why a ROUTER's unconfirmed message from an earlier process is not resent (zjournal.sockets.routing)
STALE_ROUTE_REASON = "not resent: libzmq made up its routing id in an earlier process (it may name another peer now)"
_REFUSED = {
    zmq.PUB: "a PUB does not know its subscribers, so nobody could confirm (use PUSH, or DEALER/ROUTER)",
    zmq.XPUB: "an XPUB does not know which subscribers took a message, so nobody could confirm",
}


def confirm_sender(
    sock: zmq.Socket, port: SocketPort, name: str, timeout: float | None, max_attempts: int | None
) -> ConfirmSender:
    """The confirm side of ``sock`` (a JournaledSocket), or InvalidArgumentError saying why its type cannot have one."""
    socket_type = sock.type
    if socket_type not in _SENDERS:
        why = _REFUSED.get(socket_type, "confirm=True is for sockets that send (PUSH, DEALER, ROUTER, PAIR)")
        raise InvalidArgumentError(f"confirm=True on a {zmq.SocketType(socket_type).name}: {why}")
    if timeout is None:
        timeout = DEFAULT_CONFIRM_TIMEOUT
    if not isinstance(timeout, (int, float)) or not 0 < timeout < 1e9:
        raise InvalidArgumentError(f"confirm_timeout must be > 0 seconds, not {timeout!r}")
    confirm_channel.require_curve()
    return ConfirmSender(sock, port, name, float(timeout), max_attempts, port.confirm_endpoint())


def wait_seconds(timeout: Any) -> float | None:
    """``sock.wait_confirmed(timeout)``'s timeout checked: None (no limit) or seconds >= 0."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout < 1e9:
        raise InvalidArgumentError(f"wait_confirmed's timeout is None or seconds >= 0, not {timeout!r}")
    return float(timeout)


def sender_of(sock: Any, state: Any) -> ConfirmSender:
    """The confirm side of a journaled socket for ``wait_confirmed``; InvalidArgumentError, ENOTSOCK when closed."""
    if sock.closed or state is None:
        raise zmq.ZMQError(zmq.ENOTSOCK)
    if state.confirm is None:
        raise InvalidArgumentError("wait_confirmed is for sockets wrapped with confirm=True")
    return state.confirm


class ConfirmSender(Settling, Resending, ConfirmThread):
    """The confirm side of one sending socket (see the module docstring)."""

    def __init__(
        self,
        sock: zmq.Socket,
        port: SocketPort,
        name: str,
        timeout: float,
        max_attempts: int | None,
        bind_to: str | None,
    ) -> None:
        self.lock = threading.Lock()  # whoever uses the data socket holds it
        self.hold = ApplicationHold(self.lock)  # (how the application's calls other than sends hold it)
        self.last_sent = 0  # the entry id of the last message the application sent
        # A PUSH is only ever sent on: its resends come from this object's thread. A DEALER, ROUTER
        # or PAIR also receives, in the application's thread, and a libzmq socket must not be used
        # by two threads at once: their resends come from the application's own calls instead (its
        # sends, and every wait for a message or in a poller, which is cut into ticks for that).
        self.resends_in_thread = sock.type == zmq.PUSH
        self._router = sock.type == zmq.ROUTER  # the header goes after the routing id
        self._envelope = 1 if self._router else 0  # the routing id: the envelope of its entries
        self._resend_checked = 0.0
        self._resend_paused_until = 0.0  # (monotonic) after a resend that found the queue full
        # Weakly: the thread must not keep alive a socket the application dropped (pyzmq closes
        # those when they are collected, and so does zjournal, stopping this thread).
        self._sock = weakref.ref(sock)
        # Resends go through a shadow of its handle, never through the socket itself: a resend that
        # held the socket when the application dropped it would let go of its last reference in the
        # thread, which would then close the socket while the application, in ctx.destroy(), still
        # found it alive through the context's weak references (two threads closing one socket).
        # close() marks the shadow closed before the handle goes: a resend then fails, never touches it.
        self._shadow = zmq.Socket.shadow(sock.underlying)
        self._port = port
        self._name = name
        self._timeout = timeout
        self._max_attempts = max_attempts
        # The stream's own origin (messages older than runs went out with it), and this run's: new messages
        # never take a key an earlier run used, even if this journal went back in time (zjournal.journal.seen).
        self._stream_origin = port.secret(f"confirm-origin:{name}")
        self.stream = wire.stream_of(self._stream_origin)
        self.origin = self.stream + os.urandom(wire.ORIGIN_SIZE - wire.STREAM_SIZE)
        # The unconfirmed entries, in two parts. Sent once by the application: entry id -> when (monotonic),
        # in the order sent, which is the ids' order; the application's thread adds to it without a lock
        # (one dict store: atomic), the others take from it under the mutex. And their ids in that order
        # (_order; ids no longer there leave lazily from its front): the oldest is always first, so
        # the floor and the next resend due are found without a scan.
        self._sent_at: dict[int, float] = {}
        self._order: collections.deque[int] = collections.deque()
        # Sent again, or pending from an earlier run: entry id -> when last sent, in the order of that
        # time (a resend moves an id to the end), and their ids ascending.
        self._unconfirmed: dict[int, float] = {}
        # The same entries by number of resends (Resending._resend_due): (entry id, when sent) in the order sent;
        # an item whose time is not the entry's in _unconfirmed any more (confirmed, sent again) leaves lazily.
        self._levels = [collections.deque[tuple[int, float]]() for _ in range(BACKOFF_LEVELS)]
        self._ids: collections.deque[int] = collections.deque()
        self._mutex = threading.Lock()  # guards them between the application and the thread (see above)
        self._backlog: collections.deque[int] = collections.deque()  # pending from an earlier run, not resent yet
        # Confirmed ids the thread took in, for the application's next send to settle: settling there
        # spares the two threads a tug of war over the GIL. The thread settles them itself when the
        # application sends nothing for a while.
        # (A receiver's refusal is an item too: (ids, reason), made dead letters there.)
        self._confirmed: collections.deque[list[int] | tuple[list[int], str]] = collections.deque()
        # Confirmed ids taken from the maps above but not acked in the journal yet (guarded by the mutex):
        # still unconfirmed to a wait, so that once it returns the journal counts none of them pending.
        self._settling = 0
        self._intake_lock = threading.Lock()  # whichever thread reads the intake socket holds it
        self._last_send = 0.0  # monotonic time of the application's last send
        self._sends = 0
        self._floor = 0  # the floor the last headers carried (see send)
        # A resend went out: copies only the journal needs may sit in libzmq's queues (see linger_at_close).
        self.resent = False
        # Until a receiver confirms something, or the warning went: a resend after 2 x timeout says so (see _resend).
        self._warn_if_unconfirmed = True
        self._started = time.monotonic()
        # What the receivers confirmed last: when (monotonic; 0: nothing yet), and the latest time any message
        # confirmed so far was sent. An entry sent before that one, still unconfirmed, was overtaken (see _resend_due).
        self._heard_at = 0.0
        self._overtaken_before = 0.0
        # An event loop's wait_confirmed, told (from whichever thread) each time confirmations were settled;
        # while it is set the thread takes confirmations in as they come (see _run).
        self.settled_hook: Callable[[], None] | None = None
        # Entries this sender made dead letters since the application last asked (wait_confirmed): a wait
        # then answers False, as RabbitMQ's waitForConfirms does after a nack (guarded by the mutex).
        self._dead_letters = 0
        # Entries this run made dead letters at max_attempts (insertion-ordered, the newest kept): a
        # confirmation that still comes for one (it waited in a slow receiver's queue all along) acks it.
        # entry id -> (when last sent (monotonic), the wait it counts for: _waits when it went dead)
        self._expired: dict[int, tuple[float, int]] = {}
        self._waits = 0  # how many times all_confirmed told of (and reset) _dead_letters
        # An event loop's resend timer (zjournal.sockets.loop_resends) that a send arms again once it stopped.
        self.loop_ticker: Callable[[], None] | None = None
        stale_routes = 0
        for entry_id in port.pending_ids(name, _OUT):
            if self._router and not self._still_routable(port, entry_id):
                # Never deliverable by this socket: a dead letter (alerts, metrics, `replay --state dead`),
                # not an entry that looks as if it waits for a resend.
                port.dead(entry_id, STALE_ROUTE_REASON)
                stale_routes += 1
                continue
            port.adopt(entry_id, name, _OUT)
            self._unconfirmed[entry_id] = 0.0
            self._levels[0].append((entry_id, 0.0))
            self._ids.append(entry_id)
            self._backlog.append(entry_id)
        # Recorded before anything is sent: a resend goes out under the run that first sent it (_origin_of).
        runs = port.begin_run(name, self.origin, list(self._ids))
        self._run_first = runs[-1][0]
        self._earlier_firsts = [first for first, _origin in runs[:-1]]
        self._earlier_origins = [origin for _first, origin in runs[:-1]]
        if stale_routes:
            self._dead_letters = stale_routes
            log.warning(
                "zjournal: %d unconfirmed messages of ROUTER %r from before this journal was opened are not "
                "resent (their routing ids may name other peers now); they are dead letters",
                stale_routes,
                name,
            )
        # The ring the unconfirmed messages wait in (no store write per message); None: the store.
        self._box = port.open_outbox(name)
        # (in zjournal's own context, reachable only by receivers of this origin: confirm_channel)
        self._intake = confirm_channel.open_intake(self.origin, bind_to or "tcp://127.0.0.1:*")
        self.endpoint: str = self._intake.get(zmq.LAST_ENDPOINT).decode()
        self._endpoint = self.endpoint.encode()
        # close() wakes the thread from an idle sleep through this (not a ZeroMQ pair: nothing more in the
        # application's context; the thread closes it when it ends).
        self._wake = Wakeup()
        # A merged frame's header: all but the sequence and floor are the same in every message.
        self._pack_merged, self._merged_front, self._merged_back = wire.merged_packer(self.origin, self._endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"zjournal-confirm-{name}", daemon=True)
        self._thread.start()
        exiting.stop_at_exit(self)

    # -- the application's sends -------------------------------------------

    def floor(self, entry_id: int) -> int:
        """The lowest entry still waiting for its confirmation, ``entry_id`` included."""
        with self._mutex:
            first = self._first_sent()
            ids, unconfirmed = self._ids, self._unconfirmed
            while ids and ids[0] not in unconfirmed:
                ids.popleft()
            if ids and (first is None or ids[0] < first):
                first = ids[0]
        return entry_id if first is None else min(first, entry_id)

    def _first_sent(self) -> int | None:
        """The oldest entry sent once and unconfirmed, or None (mutex held): the front of ``_order``."""
        order, sent_at = self._order, self._sent_at
        while order:
            entry_id = order[0]
            if entry_id in sent_at:
                return entry_id
            order.popleft()  # confirmed, or sent again since (then in _unconfirmed)
        return None

    def _sending(self, entry_id: int, now: float) -> None:
        """The application sends ``entry_id`` (before it goes: a confirmation may come back at once)."""
        self._sent_at[entry_id] = now
        self._order.append(entry_id)  # (after: an id in _order is in _sent_at until taken from it)

    def send(self, frames: list[bytes], flags: int, move: Callable[[], Any], classifier: Any) -> Any:
        """Journal ``frames`` (pending until confirmed), then send their header and let ``move`` send them."""
        if flags & NOBLOCK:
            with self.hold:  # (a PUSH's thread may be resending on the socket)
                writable = zmq.Socket.get(self._sock(), zmq.EVENTS) & zmq.POLLOUT
            if not writable:
                raise zmq.Again()  # would not be taken: journal nothing
        if classifier is not None and not classifier(frames):
            self._port.count_ephemeral(self._name)  # ephemeral: no entry, no header, nothing to confirm
            with self.lock:
                return move()
        return self._journal_and_send(frames, flags & NOBLOCK, move)

    def send_bytes(self, sock: zmq.Socket, data: bytes) -> None:
        """``sock.send(data)`` of one bytes frame, blocking: the common case (JournaledSocket.send).

        What :meth:`_journal_and_send` does, its branches decided: the
        message in the outbox, then one frame, its header in front (merged:
        confirm_wire). This is the sending hot path of ``confirm=True``.
        """
        box = self._box
        if box is None or len(data) > _MERGE_LIMIT:
            self._journal_and_send([data], 0, None)
            return
        now = self._last_send = _monotonic()
        sends = self._sends = self._sends + 1
        if not sends & _TAKE_EVERY_MASK or self._confirmed or not self.resends_in_thread:
            self._between_sends(now, sends)
        port = self._port
        entry_id = port.log_out_one(box, data)
        floor = self._floor
        if not floor or not sends & _FLOOR_EVERY_MASK:
            floor = self._floor = self.floor(entry_id)
        frame = self._pack_merged(self._merged_front, entry_id, floor, self._merged_back) + data
        self._sent_at[entry_id] = now  # (_sending, inlined)
        self._order.append(entry_id)
        lock = self.lock
        lock.acquire()  # (not `with`: cheaper, and this runs once per message)
        try:
            if self._backlog:
                self._send_backlog(0)
            base_send(sock, frame, 0)
        except BaseException:
            self._sent_at.pop(entry_id, None)
            port.unlog(entry_id)
            raise
        finally:
            lock.release()
        self.last_sent = entry_id

    def _between_sends(self, now: float, sends: int) -> None:
        """Every few sends: take in and settle confirmations; resend what is due (when the thread does not)."""
        if not sends & _TAKE_EVERY_MASK or self._confirmed:
            self._take_confirms_now()
        if not self.resends_in_thread:
            if now - self._resend_checked >= TICK:
                self.resend_due_here(now)
            if self.loop_ticker is not None:
                self.loop_ticker()

    def _journal_and_send(self, frames: list[bytes], noblock: int, move: Callable[[], Any] | None) -> Any:
        """Journal ``frames`` in the outbox, send them behind their header (``move``: the caller's send of them)."""
        now = self._last_send = _monotonic()
        sends = self._sends = self._sends + 1
        self._between_sends(now, sends)
        port = self._port
        box = self._box
        if box is not None:
            entry_id = port.log_out(box, frames, self._envelope)
        else:
            entry_id = port.log(self._name, _OUT, frames, attempts=1, envelope_size=self._envelope)
        # The floor sent may lag (it only grows): receivers then keep a few keys longer, which is safe.
        floor = self._floor
        if not floor or not sends & _FLOOR_EVERY_MASK:
            floor = self._floor = self.floor(entry_id)
        header = _pack_header(_HEADER_MAGIC, self.origin, entry_id, floor) + self._endpoint
        sock = self._sock()
        result = None
        self._sending(entry_id, now)
        try:
            with self.lock:
                if self._backlog:
                    self._send_backlog(noblock)
                if self._router:
                    self._send_frames(sock, frames, header, noblock)
                elif move is None:
                    base_send(sock, header, SNDMORE)
                    base_send(sock, frames[0], 0)
                else:
                    base_send(sock, header, SNDMORE | noblock)
                    result = move()
        except BaseException:
            self._sent_at.pop(entry_id, None)
            port.unlog(entry_id)
            raise
        self.last_sent = entry_id
        return result

    def unconfirmed(self) -> int:
        with self._mutex:
            return len(self._sent_at) + len(self._unconfirmed) + self._settling

    def all_confirmed(self) -> bool:
        """Nothing unconfirmed, and no dead letter made since the last time this was asked (it starts over)."""
        with self._mutex:
            dead, self._dead_letters = self._dead_letters, 0
            self._waits += 1
            return not dead and not self._sent_at and not self._unconfirmed and not self._settling

    def look(self) -> int:
        """Without waiting: take in and settle confirmations, resend what is due here; the number unconfirmed.

        An event loop's wait (``await sock.wait_confirmed()``) asks this between its sleeps.
        """
        self._take_confirms_now()
        if not self.resends_in_thread:
            self.resend_due_here()
        return self.unconfirmed()

    @property
    def timeout(self) -> float:
        """``confirm_timeout``: seconds before an unconfirmed message is sent again."""
        return self._timeout

    def wait_confirmed(self, seconds: float | None, pause: Callable[[float], Any] | None = None) -> bool:
        """Take in confirmations until nothing is unconfirmed or ``seconds`` passed (None: no limit).

        The application's ``sock.wait_confirmed()``, and a closing socket's
        linger: a producer that sends and closes would otherwise leave its
        last messages pending although its consumer journaled them (the
        confirmations arrive after the intake closed, and the next run
        resends what needed no resend). Resends go on meanwhile. Errors end
        the wait: what is unconfirmed stays pending, as it would anyway.
        Returns :meth:`all_confirmed`. ``pause(seconds)``: how to wait between
        looks instead of in libzmq (a zmq.green socket's: gevent.sleep, so
        other greenlets, its receiver maybe, run meanwhile).
        """
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            while self.unconfirmed() and self._thread.is_alive():
                left = TICK if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    break
                if pause is not None:
                    pause(min(left, TICK))
                    self.look()
                    continue
                if self._intake_lock.acquire(timeout=min(left, TICK)):
                    try:
                        if self._intake.poll(min(left, TICK) * 1000):
                            self._take_confirms()
                    finally:
                        self._intake_lock.release()
                if self._confirmed:
                    self._settle_confirmed()
                if not self.resends_in_thread:
                    self.resend_due_here()
        except (zmq.ZMQError, ZJournalError):
            pass
        return self.all_confirmed()

    def linger_at_close(self, linger: int) -> int:
        """The linger (ms) to close the data socket with, given the application's (-1: for ever).

        The application's, as long as nothing was resent. A resend to a peer
        that is gone waits in libzmq's queue for that peer, and with the
        default linger ``ctx.term()`` would wait for it for ever, where plain
        pyzmq, whose messages all arrived, returns. Those copies are only the
        journal's business: every unconfirmed message stays pending and the
        next socket of this name sends it again. So once a resend went out,
        libzmq gets ``confirm_timeout`` at most to deliver what is queued.
        """
        if not self.resent:
            return linger
        bound = min(int(self._timeout * 1000), 2**31 - 1)
        return bound if linger < 0 or linger > bound else linger

    def close(self) -> None:
        """Stop the thread; what is unconfirmed stays pending (the next wrap of this name resends it)."""
        self._shadow._closed = True  # (pyzmq checks it before each call: a resend now raises ENOTSOCK)
        self.stop_thread(None)
        if self._confirmed:
            with contextlib.suppress(ZJournalError):  # (the journal closed first: they stay pending)
                self._settle_confirmed()
        box, self._box = self._box, None
        if box is not None:
            self._port.close_slots(box)  # what it holds goes to the store, pending
