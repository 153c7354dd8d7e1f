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
:class:`ApplicationHold`: options, polls, endpoints). The thread waits for it
a tick at most, and resends later if the application holds it longer.
"""

from __future__ import annotations

import bisect
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
from zjournal.errors import InvalidArgumentError, InvalidTransitionError, StoreError, UnknownEntryError, ZJournalError
from zjournal.journal.entry import DIRECTION_CODES, Direction
from zjournal.journal.port import SocketPort
from zjournal.sockets import confirm_channel
from zjournal.sockets import confirm_wire as wire
from zjournal.sockets.libzmq import NOBLOCK, SNDMORE, base_send
from zjournal.sockets.routing import still_names_its_peer

log = logging.getLogger("zjournal")

DEFAULT_CONFIRM_TIMEOUT = 5.0  # seconds before an unconfirmed message is sent again
_OUT = DIRECTION_CODES[Direction.OUT]
_monotonic = time.monotonic
_HEADER_MAGIC = wire.HEADER_MAGIC
_pack_header = wire.pack_fixed  # the header frame but its endpoint (wire.encode_header, inlined)
_MERGE_LIMIT = wire.MERGE_LIMIT
_TICK = 0.005  # seconds between looks at confirmations and resends
_SETTLE_IDLE = 0.01  # seconds without a send after which the thread takes in confirmations, not the sends
# An idle sender's thread sleeps until a confirmation comes, a resend is due, or close() wakes it; at most
# this long (a safety net: never longer than confirm_timeout either, see ConfirmSender._idle_wait).
_IDLE_WAIT_MAX = 1.0
# ... but only once the application sent nothing for this long: a sender blocked a moment by a slow receiver,
# or between two sends of a burst, takes its confirmations in itself (see _take_confirms_now).
_ASLEEP_AFTER = 0.1
# A resend that found the socket's queue full (its peers gone or slow) is tried again this much later, not
# at every tick: a producer whose consumer is down cost ~1.5 % of a core per socket, looking every 5 ms.
_RESEND_RETRY = 0.1
# Entries max_attempts made dead letters, remembered (the newest) for a confirmation that comes after all.
_EXPIRED_KEPT = 65_536
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


class ApplicationHold:
    """A resending PUSH's lock, held for one of the application's calls on its socket (``with``), or for a resend.

    The same thread may enter again without waiting on itself: pyzmq's
    ``bind`` reads an option inside, and a garbage collection in the resend
    thread, in the middle of a resend, may close the socket the application
    dropped (its close reads ``LINGER``). The application's sends take the
    bare lock (cheaper, and nothing re-enters them).
    """

    __slots__ = ("_depth", "_lock", "_owner")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._owner = 0  # the thread holding it through this object
        self._depth = 0

    def __enter__(self) -> None:
        me = threading.get_ident()
        if self._owner != me:
            self._lock.acquire()
            self._owner = me
        self._depth += 1

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        if not self._depth:
            self._owner = 0
            self._lock.release()

    def try_enter(self, timeout: float) -> bool:
        """Enter if the lock comes within ``timeout`` seconds (0: only if free now); leave with ``__exit__``."""
        me = threading.get_ident()
        if self._owner != me:
            if not (self._lock.acquire(timeout=timeout) if timeout > 0 else self._lock.acquire(blocking=False)):
                return False
            self._owner = me
        self._depth += 1
        return True


class ConfirmSender:
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
        # time (a resend moves an id to the end, so what is due is at the front), and their ids ascending.
        self._unconfirmed: dict[int, float] = {}
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
        # close() wakes the thread from an idle sleep through this pipe (a pipe, not a ZeroMQ pair: nothing
        # more in the application's context; the thread closes both ends when it ends).
        self._wake_lock = threading.RLock()  # (re-entered if a garbage collection in the thread closes the socket)
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
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
            if now - self._resend_checked >= _TICK:
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

    def _origin_of(self, entry_id: int) -> bytes:
        """The origin ``entry_id`` first went out with: its run's, or the stream's for one older than runs."""
        if entry_id >= self._run_first:
            return self.origin
        run = bisect.bisect_right(self._earlier_firsts, entry_id) - 1
        return self._earlier_origins[run] if run >= 0 else self._stream_origin

    @staticmethod
    def _still_routable(port: SocketPort, entry_id: int) -> bool:
        """Whether an earlier run's entry of this ROUTER names its peer still (zjournal.sockets.routing)."""
        entry = port.load(entry_id)
        return entry is not None and still_names_its_peer(port.first_id_this_open(), entry_id, entry.envelope)

    def _send_backlog(self, noblock: int) -> None:
        """An earlier run's unconfirmed messages go first, in order (lock held)."""
        while self._backlog:
            self._resend(self._backlog[0], noblock)
            self._backlog.popleft()

    def _send_frames(self, sock: zmq.Socket, frames: list[bytes], header: bytes, flags: int) -> None:
        """``frames`` behind ``header`` (after the routing id, on a ROUTER), lock held."""
        send = zmq.Socket.send
        rest = frames
        if self._router:
            send(sock, frames[0], SNDMORE | flags)  # a ROUTER drops a message whose peer is gone
            rest = frames[1:]
        send(sock, header, SNDMORE | flags)
        for frame in rest[:-1]:
            send(sock, frame, SNDMORE | flags)
        send(sock, rest[-1], flags)

    def resend_due_here(self, now: float | None = None) -> None:
        """Resend what is due, from the application's thread (sockets whose resends are not the thread's)."""
        self._resend_checked = time.monotonic() if now is None else now
        try:
            self._resend_due()
        except zmq.Again:
            pass
        except StoreError as e:  # the entries stay pending, tried again at the next look
            log.warning("journal socket %r: resend failed, tried again later: %s", self._name, e)

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

    # -- the background thread -----------------------------------------------

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._intake, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if self.settled_hook is not None or time.monotonic() - self._last_send > _SETTLE_IDLE:
                    # The application is not sending, or an event loop waits for confirmations (its
                    # thread cannot wait on the intake): they are taken and settled here. The
                    # thread sleeps until one comes, a resend is due or close() wakes it: an idle socket
                    # costs no CPU (a look every tick cost 2-3 % of a core per socket).
                    wait = self._idle_wait()
                    with self._intake_lock:
                        ready = dict(poller.poll(wait * 1000))
                        if self._intake in ready:
                            self._take_confirms()
                    if self._wake_r in ready:
                        os.read(self._wake_r, 64)
                    if self._confirmed:
                        self._settle_confirmed()
                else:
                    self._stop.wait(_TICK)  # its sends take them in (see _take_confirms_now)
                try:
                    if self.resends_in_thread:
                        self._resend_due(in_thread=True)
                except StoreError as e:  # the disk is full, say: the entries stay pending, tried again
                    log.warning("journal socket %r: resend failed, tried again later: %s", self._name, e)
                    self._stop.wait(self._timeout)
        except (zmq.ContextTerminated, ZJournalError):
            pass  # the context or the journal closed under the socket: the entries stay pending
        except zmq.ZMQError as e:
            if e.errno != zmq.ENOTSOCK:  # ENOTSOCK: the context was destroyed, closing the intake under us
                log.error("journal socket %r: confirmations stopped: %s", self._name, e)
        except Exception as e:  # the entries stay pending: the next wrap resends them
            log.error("journal socket %r: confirmations stopped: %s", self._name, e)
        finally:
            self._intake.close(0)
            with self._wake_lock:
                write_end, self._wake_w = self._wake_w, -1  # (first: a closed number may be reused at once)
                os.close(self._wake_r)
                os.close(write_end)

    def _idle_wait(self) -> float:
        """How long the idle thread may sleep (seconds): until the oldest unconfirmed message is due.

        With nothing unconfirmed, ``confirm_timeout`` (at most
        :data:`_IDLE_WAIT_MAX`): a message sent during the sleep is due
        after it ends, so no resend is ever late by more than a tick.
        """
        now = time.monotonic()
        if now - self._last_send < _ASLEEP_AFTER:
            return _TICK
        longest = min(self._timeout, _IDLE_WAIT_MAX)
        if not self.resends_in_thread:
            return longest  # its resends come from the application's calls
        with self._mutex:
            oldest = next(iter(self._unconfirmed.values()), None)  # (in the order of their last send)
            first = self._first_sent()
            if first is not None:
                sent = self._sent_at.get(first)
                if sent is not None and (oldest is None or sent < oldest):
                    oldest = sent
        if oldest is None:
            return longest
        due = max(oldest + self._timeout, self._resend_paused_until)
        return max(_TICK, min(longest, due - now))

    def _wake_thread(self) -> None:
        """Wake the thread from an idle sleep (it stops if ``_stop`` is set)."""
        with self._wake_lock:
            if self._wake_w >= 0:
                with contextlib.suppress(OSError):  # (full: a wake is waiting already)
                    os.write(self._wake_w, b"w")

    def _take_confirms_now(self) -> None:
        """From the application's send, every few sends: take in and settle what came back.

        While the application sends, it does this rather than the thread: two
        threads passing the GIL back and forth at every confirmation cost the
        sender more than the work itself.
        """
        if self._intake_lock.acquire(blocking=False):
            try:
                self._take_confirms()
            except zmq.ZMQError:
                pass  # the context is closing: the thread ends, the entries stay pending
            finally:
                self._intake_lock.release()
        if self._confirmed:
            self._settle_confirmed()

    def _take_confirms(self) -> None:
        """Read the confirm messages waiting (intake lock held)."""
        confirmed: list[int] = []
        for _ in range(1000):
            try:
                frames = self._intake.recv_multipart(NOBLOCK)
            except zmq.Again:
                break
            got = wire.parse_confirms(frames)
            if got is None:
                refusal = wire.parse_refusal(frames)
                if refusal is not None and refusal[0].startswith(self.stream):
                    self._warn_if_unconfirmed = False
                    self._confirmed.append((refusal[1], refusal[2]))  # (settled as dead letters: _settle_confirmed)
                continue
            if not got[0].startswith(self.stream):
                continue  # not a confirm message of this socket's (any run of its stream): nothing is acked by it
            confirmed += got[1]
        if confirmed:
            self._warn_if_unconfirmed = False
            self._confirmed.append(confirmed)

    def _settle_confirmed(self) -> None:
        """Ack what the receivers confirmed (from either thread: each list is taken by one)."""
        mine: list[int] = []
        sent_at: list[float] = []  # when each was last sent: its confirmation's round trip is from then
        refused: list[tuple[list[int], str]] = []
        late: list[int] = []  # dead letters at max_attempts, confirmed after all
        confirmed = self._confirmed
        with self._mutex:
            take, take_resent = self._sent_at.pop, self._unconfirmed.pop
            while confirmed:
                try:
                    ids = confirmed.popleft()
                except IndexError:
                    break
                if ids.__class__ is tuple:  # a refusal: (ids, reason)
                    ids, reason = ids
                    ids = [i for i in ids if take(i, None) is not None or take_resent(i, None) is not None]
                    refused.append((ids, reason))
                    self._settling += len(ids)
                    continue
                times = [take(i, None) for i in ids]
                if None in times:  # sent again, or confirmed twice (a resend), or settled meanwhile
                    times = [take_resent(i, None) if t is None else t for i, t in zip(ids, times, strict=True)]
                    if self._expired:
                        late += [i for i, t in zip(ids, times, strict=True) if t is None and i in self._expired]
                    ids = [i for i, t in zip(ids, times, strict=True) if t is not None]
                    times = [t for t in times if t is not None]
                mine += ids
                sent_at += times
            self._first_sent()  # (the confirmed ids leave _order's front)
            self._settling += len(mine)
        if mine:
            now = time.monotonic()
            try:
                self._port.settle_many(self._name, _OUT, mine, self._box)
            finally:
                with self._mutex:
                    self._settling -= len(mine)
            self._port.confirmed(len(mine), now * len(mine) - sum(sent_at), now - min(sent_at))
        if refused:
            self._settle_refused(refused)
        if late:
            self._settle_late(late)
        if mine or refused or late:
            hook = self.settled_hook
            if hook is not None:
                hook()

    def _settle_late(self, late: list[int]) -> None:
        """Ack dead letters a receiver confirmed after all: the message reached its journal (it was queued
        longer than ``max_attempts`` sends took), so it is no dead letter, and a replay would send it twice."""
        late = list(dict.fromkeys(late))  # (confirmed twice in one go: its original and a resend)
        acked = self._port.ack_dead(late)
        with self._mutex:
            gone = [self._expired.pop(entry_id, (0.0, -1)) for entry_id in late]
            gone = [sent_wait for entry_id, sent_wait in zip(late, gone, strict=True) if entry_id in acked]
            sent_at = [sent for sent, _wait in gone]
            # Those no wait told of yet leave the count (a wait that was told of the others said so already).
            self._dead_letters -= sum(1 for _sent, wait in gone if wait == self._waits)
        if acked:
            now = time.monotonic()
            self._port.confirmed(len(acked), now * len(acked) - sum(sent_at), now - min(sent_at))
            log.info(
                "journal socket %r: %d dead letter(s) confirmed by a receiver after all (they waited in its queue "
                "longer than max_attempts sends took): acked",
                self._name,
                len(acked),
            )

    def _settle_refused(self, refused: list[tuple[list[int], str]]) -> None:
        """Make what receivers refused dead letters, with their reason (the ids are out of the maps already)."""
        for ids, reason in refused:
            dead = 0
            try:
                for entry_id in ids:
                    with contextlib.suppress(UnknownEntryError, InvalidTransitionError):  # settled meanwhile
                        self._port.dead(entry_id, f"refused by the receiving journal: {reason}")
                        dead += 1
            finally:
                with self._mutex:
                    self._settling -= len(ids)
                    self._dead_letters += dead
            if dead:
                log.warning(
                    "journal socket %r: %d message(s) refused by a receiver, now dead letters: %s",
                    self._name,
                    dead,
                    reason,
                )

    def _resend_due(self, in_thread: bool = False) -> None:
        now = time.monotonic()
        if now < self._resend_paused_until:
            return
        due = []
        with self._mutex:
            for i, sent in self._unconfirmed.items():  # oldest send first
                if now - sent < self._timeout or len(due) >= 1000:
                    break
                due.append(i)
            # Then those sent once, oldest first (their ids' order). Indexed, not iterated: the
            # application's thread may append meanwhile.
            order, sent_at = self._order, self._sent_at
            self._first_sent()
            at = 0
            while at < len(order) and len(due) < 1000:
                entry_id = order[at]
                at += 1
                sent = sent_at.get(entry_id)
                if sent is None:
                    continue  # confirmed, or sent again (in _unconfirmed)
                if now - sent < self._timeout:
                    break
                due.append(entry_id)
        for entry_id in due:
            # (a short wait, not a try: an application polling the socket in a loop holds the lock most of
            # the time, and a try alone would almost never get it; from the application's thread: a try)
            if self._stop.is_set():
                return
            if not self.hold.try_enter(_TICK if in_thread else 0):
                return  # the application is using the socket: later
            try:
                if self._backlog and self._backlog[0] == entry_id:
                    self._backlog.popleft()
                self._resend(entry_id, NOBLOCK)
            except zmq.Again:
                self._resend_paused_until = time.monotonic() + _RESEND_RETRY
                return  # the peers are full or gone: later
            finally:
                self.hold.__exit__()

    def _resend(self, entry_id: int, flags: int) -> None:
        """Send an unconfirmed entry again (lock held); past ``max_attempts`` it goes dead instead."""
        entry = self._port.load(entry_id)
        if entry is None or entry.state.value != "pending":
            self._forget(entry_id)
            return
        limit = self._max_attempts
        if limit is not None and entry.attempts >= limit:
            with contextlib.suppress(UnknownEntryError, InvalidTransitionError):  # unless confirmed meanwhile
                self._port.attempt(entry_id, limit)  # a dead letter now, its reason recorded
                with self._mutex:
                    self._dead_letters += 1
                    sent = self._unconfirmed.get(entry_id) or self._sent_at.get(entry_id) or time.monotonic()
                    self._expired[entry_id] = (sent, self._waits)
                    if len(self._expired) > _EXPIRED_KEPT:
                        del self._expired[next(iter(self._expired))]
            self._forget(entry_id)
            return
        sock = self._sock()
        if sock is None or sock.closed:
            raise zmq.ContextTerminated()  # the socket is gone: its entries stay pending, for the next wrap
        frames, floor, origin = entry.frames, self.floor(entry_id), self._origin_of(entry_id)
        if len(frames) == 1 and len(frames[0]) <= _MERGE_LIMIT and not self._router:
            zmq.Socket.send(sock, wire.encode_merged(origin, entry_id, floor, self._endpoint, frames[0]), flags)
        else:
            self._send_frames(sock, frames, wire.encode_header(origin, entry_id, floor, self._endpoint), flags)
        self.resent = True
        if self._warn_if_unconfirmed and time.monotonic() - self._started >= 2 * self._timeout:
            self._warn_if_unconfirmed = False  # (said once)
            log.warning(
                "journal socket %r: nothing it sent was confirmed in %.3g s, and it sends messages again: "
                "is its receiver running, and journaled? A plain pyzmq receiver never confirms (and sees a header, "
                "b'ZJC1...' or b'ZJC2...'), nor does a zjournal older than this one's confirm channel (2026-12-06)",
                self._name,
                time.monotonic() - self._started,
            )
        try:
            self._port.attempt(entry_id, None)
        except (UnknownEntryError, InvalidTransitionError):
            return  # confirmed meanwhile (acked, gone): nothing to count
        with self._mutex:
            if self._sent_at.pop(entry_id, None) is not None:  # sent again for the first time
                self._ids.append(entry_id)  # (ascending: resends go oldest first, each after those before)
                self._unconfirmed[entry_id] = time.monotonic()
            elif self._unconfirmed.pop(entry_id, None) is not None:
                self._unconfirmed[entry_id] = time.monotonic()  # to the end: sent last

    def _forget(self, entry_id: int) -> None:
        """``entry_id`` waits for no confirmation any more (settled or dead meanwhile)."""
        with self._mutex:
            self._sent_at.pop(entry_id, None)
            self._unconfirmed.pop(entry_id, None)

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
                left = _TICK if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    break
                if pause is not None:
                    pause(min(left, _TICK))
                    self.look()
                    continue
                if self._intake_lock.acquire(timeout=min(left, _TICK)):
                    try:
                        if self._intake.poll(min(left, _TICK) * 1000):
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

    def stop_thread(self, wait: float | None) -> None:
        """Stop the thread, waiting ``wait`` seconds at most (None: until it ends); :meth:`close` does the rest."""
        self._stop.set()
        self._wake_thread()
        if self._thread is not threading.current_thread():
            self._thread.join(wait)

    def close(self) -> None:
        """Stop the thread; what is unconfirmed stays pending (the next wrap of this name resends it)."""
        self.stop_thread(None)
        if self._confirmed:
            with contextlib.suppress(ZJournalError):  # (the journal closed first: they stay pending)
                self._settle_confirmed()
        box, self._box = self._box, None
        if box is not None:
            self._port.close_slots(box)  # what it holds goes to the store, pending
