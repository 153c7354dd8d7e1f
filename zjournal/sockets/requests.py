"""Request/reply that never hangs: a journaled REQ resends, a journaled REP recognises the resend.

A REQ's request is journaled before it moves and acked by its reply. When no
reply comes, :class:`RequestResends` sends it again through the same socket
(libzmq's ``REQ_RELAXED`` lets it), from the application's own waits: its
blocking ``recv``, ``poll``, pollers and asyncio's event loop.

* At once when the connection that carried it closed (a SIGKILLed server:
  libzmq's monitor says so).
* After ``resend_after`` seconds without a reply while the connection stays
  up (a server that lost the request behind a broker, or is only slow).

The original may still arrive and be answered (libzmq sends what it had not
written yet on the next connection; a slow server answers late), so every
resend carries libzmq's ``REQ_CORRELATE`` request-id frame before the
delimiter: a REP answers it as usual, and libzmq drops the reply to an older
send. A slow server may handle the request twice (at least once).

The application still sees exactly a REQ: ``EFSM`` on a second send before
the reply, one reply per request, no ``POLLOUT`` while a reply is owed.

Each journaled REQ announces a stable origin (16 random bytes kept in its
journal, per name) in the ZMTP handshake (``ZMQ_METADATA``: tcp and ipc carry
it, inproc does not). A journaled REP reads it off each request and journals
it with the request, as the entry's envelope. A request it served from Python
after a restart (its requester's pipe is gone) is answered to nobody; the
reply is kept (:class:`AnsweredToNobody`, bounded by count and age), and the
resend of that request from the same origin, with the same body, is answered
from it without the application: a REQ cannot move on before it has a reply,
so the only request with this origin and body it can send now is this one
again. Copies already queued when a live reply leaves get that reply too
(``JournaledSocket._answer_queued_copies``).

Requests a REQ left pending when its process died (or when the application
closed it, as a Lazy Pirate client does) are sent by the next REQ of the same
name from a DEALER of its own (:class:`EarlierRequests`), connected where the
REQ connects, so the application's own requests are not held up behind them.
Their replies ack them and go to nobody.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from zjournal import exiting
from zjournal.errors import InvalidArgumentError, InvalidTransitionError, UnknownEntryError, ZJournalError
from zjournal.journal.entry import Entry
from zjournal.sockets.libzmq import EVENTS, NOBLOCK, POLLIN, RCVTIMEO, SNDMORE, base_get

if TYPE_CHECKING:
    from zjournal.journal.port import SocketPort

log = logging.getLogger("zjournal")

ORIGIN_PROPERTY = "X-Zj-Origin"  # the ZMTP metadata property naming a journaled REQ
ORIGIN_MAGIC = b"\x00zjo1"  # a REP entry's envelope frame: this, then the requester's origin
_ORIGIN_FRAME_SIZE = len(ORIGIN_MAGIC) + 16
_CONNECTED = int(zmq.EVENT_CONNECTED | zmq.EVENT_ACCEPTED)
_DISCONNECTED = int(zmq.EVENT_DISCONNECTED)
_monitor_ids = iter(range(1, 1 << 62))
_libzmq_poll = zmq.backend.zmq_poll
TICK_MS = 20  # a REQ waiting for its reply looks at resends this often
CACHE_SIZE = 1024  # replies kept for resends of requests answered to nobody
CACHE_SECONDS = 600.0


def check_resend_after(value: Any) -> float | None:
    """``resend_after`` as given to ``wrap``: seconds > 0, or None (no resends)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1e9:
        raise InvalidArgumentError(f"resend_after must be > 0 seconds or None, not {value!r}")
    return float(value)


def announce_origin(sock: zmq.Socket, origin: bytes) -> None:
    """Put ``origin`` in the handshake of the connections ``sock`` makes from now on."""
    zmq.Socket.set(sock, zmq.METADATA, f"{ORIGIN_PROPERTY}:{origin.hex()}".encode())


def origin_of(frame: zmq.Frame) -> bytes | None:
    """The origin a journaled REQ announced on the connection ``frame`` came by (None: none, or inproc)."""
    try:
        value = frame.get(ORIGIN_PROPERTY)
    except zmq.ZMQError:
        return None
    try:
        origin = bytes.fromhex(value)
    except (TypeError, ValueError):
        return None  # a peer's garbage: no origin
    return origin if len(origin) == 16 else None


def origin_frame(origin: bytes) -> bytes:
    return ORIGIN_MAGIC + origin


def origin_in(entry: Entry) -> bytes | None:
    """The requester's origin journaled with ``entry`` (the first frame of its envelope), if any."""
    return split_origin(entry.frames, entry.envelope_size)[0]


def with_origin(origin: bytes, frames: list[bytes], size: int) -> tuple[list[bytes], int]:
    """A request as journaled by a ROUTER or the device: its requester's origin first, inside the envelope."""
    return [origin_frame(origin), *frames], size + 1


def split_origin(frames: list[bytes], size: int) -> tuple[bytes | None, list[bytes], int]:
    """(origin, the request as it came, its envelope size) of a journaled request."""
    first = frames[0] if size and frames else b""
    if len(first) == _ORIGIN_FRAME_SIZE and first.startswith(ORIGIN_MAGIC):
        return first[len(ORIGIN_MAGIC) :], frames[1:], size - 1
    return None, frames, size


def carries_request_id(envelope: list[bytes]) -> bool:
    """Whether a request's ROUTER envelope ends with a ``REQ_CORRELATE`` request id before the delimiter.

    A journaled REQ sends every resend with one, and a first send without one
    (unless correlation stayed on: replies came on several connections). Only
    a copy with one may be answered from a kept reply: a REQ that had its reply
    (a server killed between the reply and its ack) sends the same body again
    as a new request, which must be handled, not answered from the past.
    """
    return len(envelope) >= 3 and envelope[-1] == b"" and len(envelope[-2]) == 4


def digest_of(frames: list[bytes]) -> bytes:
    """A request's body, in 16 bytes (frame boundaries count)."""
    h = hashlib.blake2b(digest_size=16)
    for frame in frames:
        h.update(len(frame).to_bytes(8, "little"))
        h.update(frame)
    return h.digest()


def _send_whole(sock: zmq.Socket, frames: list[bytes], flags: int = 0) -> None:
    """libzmq's send of a whole message, below the journaling overrides."""
    send = zmq.backend.Socket.send
    for frame in frames[:-1]:
        send(sock, frame, SNDMORE | flags)
    send(sock, frames[-1], flags)


class _Monitor:
    """Connections of a socket opening and closing, as libzmq's monitor tells them (read without blocking)."""

    def __init__(self, sock: zmq.Socket) -> None:
        self._endpoint = f"inproc://zjournal-monitor-{next(_monitor_ids)}-{id(self):x}"
        zmq.Socket.monitor(sock, self._endpoint, _CONNECTED | _DISCONNECTED)
        self.pair = zmq.Socket(sock.context, zmq.PAIR)  # a plain one, whatever the context's class (asyncio)
        self.pair.linger = 0
        self.pair.connect(self._endpoint)
        self.connections = 0  # open now
        self.most = 0  # open at once, at most

    def closed_since(self) -> bool:
        """Whether a connection closed since the last look."""
        pair = self.pair
        if not base_get(pair, EVENTS) & POLLIN:
            return False  # the common case: nothing happened (no exception raised to learn it)
        closed = False
        while True:
            try:
                parts = self.pair.recv_multipart(NOBLOCK)
            except zmq.ZMQError:
                return closed
            try:
                event = parse_monitor_message(parts)["event"]
            except Exception:
                continue
            if event & _CONNECTED:
                self.connections += 1
                self.most = max(self.most, self.connections)
            elif event & _DISCONNECTED:
                self.connections = max(0, self.connections - 1)
                closed = True

    def close(self) -> None:
        self.pair.close(0)


class RequestResends:
    """A journaled REQ's request awaiting its reply, and its resends (see the module docstring)."""

    resends_in_thread = False  # from the application's calls (zjournal.sockets.pollhook asks)
    loop_ticker: Callable[[], None] | None = None  # an event loop's resend timer (zjournal.sockets.loop_resends)

    def __init__(self, sock: zmq.Socket, port: SocketPort, resend_after: float | None, max_attempts: int | None):
        self._sock = sock
        self._port = port
        self.resend_after = resend_after
        self._max_attempts = max_attempts
        self.frames: list[bytes] | None = None  # the request awaiting its reply
        self.entry_id = 0  # its entry (0: ephemeral)
        self._sent_at = 0.0
        self._correlating = False
        self.mid_reply = False  # the application is reading the reply frame by frame
        self.resent = 0
        self.gave_up = False  # past max_attempts: no more resends of this request
        self._monitor: _Monitor | None = None
        if resend_after is not None:
            zmq.Socket.set(sock, zmq.REQ_RELAXED, 1)
            try:
                self._monitor = _Monitor(sock)
            except zmq.ZMQError as e:  # no inproc monitor (a context shut down): time-based resends only
                log.warning("zjournal: no connection monitor for a REQ (%s): resends only after resend_after", e)

    @property
    def outstanding(self) -> bool:
        """A request was sent and its reply not read yet."""
        return self.frames is not None

    def unconfirmed(self) -> bool:  # the asyncio wrapper's question (as ConfirmSender's)
        return self.frames is not None

    def check_turn(self) -> None:
        """libzmq's REQ refuses a second request before the reply: so does this, though REQ_RELAXED is on."""
        if self.frames is not None:
            raise zmq.ZMQError(zmq.EFSM)

    def sent(self, frames: list[bytes], entry_id: int) -> None:
        if self._monitor is not None:
            self._monitor.closed_since()  # what closed before this send does not concern it
        self.frames = frames
        self.entry_id = entry_id
        self._sent_at = time.monotonic()
        self.gave_up = False
        if self.loop_ticker is not None:
            self.loop_ticker()

    def replied(self) -> None:
        """The whole reply was read."""
        self.frames = None
        self.entry_id = 0
        self.mid_reply = False
        if self._correlating and (self._monitor is None or self._monitor.most <= 1):
            # One connection answers in order: the replies to older sends came before this one, so
            # nothing stale is left. With more, a late one could pass for the next reply: it stays on.
            self._correlating = False
            zmq.Socket.set(self._sock, zmq.REQ_CORRELATE, 0)

    def resend_due_here(self) -> None:
        """Resend the request if its connection closed or ``resend_after`` passed (from the application's thread)."""
        frames = self.frames
        if frames is None or self.gave_up or self.mid_reply:
            return
        monitor = self._monitor
        if (monitor is not None and monitor.closed_since()) or (
            self.resend_after is not None and time.monotonic() - self._sent_at >= self.resend_after
        ):
            self._resend(frames)

    def _resend(self, frames: list[bytes]) -> None:
        if self.entry_id and not self._count_attempt():
            return
        if not self._correlating:
            # The original may still arrive (libzmq keeps what it had not written yet for the next
            # connection, and a slow server answers late): its reply must not pass for this one's.
            zmq.Socket.set(self._sock, zmq.REQ_CORRELATE, 1)
            self._correlating = True
        try:
            _send_whole(self._sock, frames, NOBLOCK)
        except zmq.Again:
            return  # no peer takes it now: the next tick tries again
        self._sent_at = time.monotonic()
        self.resent += 1

    def _count_attempt(self) -> bool:
        """One more send of the entry; False (and no more resends) once it is a dead letter."""
        try:
            entry = self._port.attempt(self.entry_id, self._max_attempts)
        except (UnknownEntryError, InvalidTransitionError):
            self.gave_up = True  # acked or removed meanwhile (an operator): nothing to resend
            return False
        except ZJournalError as e:
            log.warning("zjournal: resend of request %d not counted: %s", self.entry_id, e)
            return True
        if entry.state.value == "dead":
            self.gave_up = True  # the application still waits for the reply, as a plain REQ would
            return False
        return True

    def wait(self, flags: int) -> None:
        """Before a blocking receive of the reply: wait, resending what is due; keeps ``RCVTIMEO``."""
        if flags & NOBLOCK:
            if not base_get(self._sock, EVENTS) & POLLIN:  # (a resend with the reply there would make it stale)
                self.resend_due_here()
            return
        timeout = base_get(self._sock, RCVTIMEO)
        if self._ready_within(None if timeout < 0 else timeout):
            return
        raise zmq.Again()

    def _ready_within(self, timeout_ms: int | None) -> bool:
        """Wait up to ``timeout_ms`` (None: for ever) for the reply, resending what falls due meanwhile.

        One poll on the socket and the connection monitor at a time, until the
        next resend is due: a closed connection wakes it at once.
        """
        sock = self._sock
        monitor = self._monitor
        asked = [(sock, POLLIN)] if monitor is None else [(sock, POLLIN), (monitor.pair, POLLIN)]
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
        while True:
            now = time.monotonic()
            wait = -1
            if self.resend_after is not None and not self.gave_up and self.frames is not None:
                wait = max(0, int((self._sent_at + self.resend_after - now) * 1000) + 1)
            if deadline is not None:
                left = max(0, int((deadline - now) * 1000))
                wait = left if wait < 0 else min(wait, left)
            if wait < 0 or wait > TICK_MS * 50:
                wait = TICK_MS * 50  # (a resend that could not go, no peer to take it, is tried again)
            ready = _libzmq_poll(asked, wait)
            if ready and ready[0][0] is sock:  # (zmq_poll reports in the order asked)
                return True
            self.resend_due_here()
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def poll(self, timeout: int | None, flags: int) -> int:
        """``sock.poll`` while the reply is owed: never POLLOUT (as a REQ); resends what falls due meanwhile."""
        if not flags & POLLIN:  # a REQ owing a reply is never writable: it waits the time out (resending)
            deadline = None if timeout is None or timeout < 0 else time.monotonic() + timeout / 1000
            while True:
                self.resend_due_here()
                left = TICK_MS / 1000 if deadline is None else min(TICK_MS / 1000, deadline - time.monotonic())
                if left <= 0:
                    return 0
                time.sleep(left)
        if base_get(self._sock, EVENTS) & POLLIN:
            return POLLIN
        return POLLIN if self._ready_within(None if timeout is None or timeout < 0 else timeout) else 0

    def close(self) -> None:
        if self._monitor is not None:
            with contextlib.suppress(zmq.ZMQError):
                zmq.Socket.disable_monitor(self._sock)
            self._monitor.close()
            self._monitor = None


class AnsweredToNobody:
    """Replies given to requests whose requester was gone, for their resends: (origin, body) -> reply."""

    def __init__(self, size: int = CACHE_SIZE, seconds: float = CACHE_SECONDS) -> None:
        self._size = size
        self._seconds = seconds
        self._replies: collections.OrderedDict[tuple[bytes, bytes], tuple[float, list[bytes]]] = (
            collections.OrderedDict()
        )
        self.answered = 0  # resends answered from here, without the application

    def keep(self, origin: bytes, request: list[bytes], reply: list[bytes]) -> None:
        """``reply`` answered ``request`` (its body) from ``origin``, and reached nobody."""
        self.keep_keyed((origin, digest_of(request)), reply)

    def keep_keyed(self, key: tuple[bytes, bytes], reply: list[bytes]) -> None:
        """As :meth:`keep`, for the key ``(origin, digest_of(request))``."""
        replies = self._replies
        replies.pop(key, None)
        replies[key] = (time.monotonic(), reply)
        while len(replies) > self._size:
            replies.popitem(last=False)

    def take(self, origin: bytes, request: list[bytes]) -> list[bytes] | None:
        """The reply for this resend, once (a later identical request is a new one)."""
        return self.take_keyed((origin, digest_of(request))) if self._replies else None

    def take_keyed(self, key: tuple[bytes, bytes]) -> list[bytes] | None:
        """As :meth:`take`, for the key ``(origin, digest_of(request))``."""
        replies = self._replies
        if not replies:
            return None
        cutoff = time.monotonic() - self._seconds
        while replies and next(iter(replies.values()))[0] < cutoff:
            replies.popitem(last=False)
        kept = replies.pop(key, None)
        if kept is None:
            return None
        self.answered += 1
        return kept[1]


class EarlierRequests:
    """Pending requests of a REQ's name from before it was wrapped, sent from a DEALER of their own.

    A thread owns the DEALER: it connects wherever the REQ connects, sends the
    requests one at a time, oldest first, as a REQ would (an empty delimiter
    first; a resend after ``resend_after`` carries a request-id frame, as
    ``REQ_CORRELATE``), and acks each on its reply, which goes to nobody.
    """

    def __init__(
        self,
        ctx: zmq.Context,
        port: SocketPort,
        entry_ids: list[int],
        origin: bytes,
        resend_after: float | None,
        max_attempts: int | None,
    ) -> None:
        self._ctx = ctx
        self._port = port
        self._ids = collections.deque(entry_ids)
        self._origin = origin
        self._resend_after = resend_after
        self._max_attempts = max_attempts
        self._endpoints: list[str] = []
        self._lock = threading.Lock()  # the endpoints, the ids and the taken ones, between the two threads
        self._taken: set[int] = set()  # replayed through the REQ itself (journal.replay): not sent from here
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.answered = 0
        self._request_id = 0

    @property
    def waiting(self) -> int:
        return len(self._ids)

    def connect(self, endpoint: str) -> None:
        """The REQ connected to ``endpoint``: the DEALER connects there too (and starts, the first time)."""
        with self._lock:
            self._endpoints.append(endpoint)
        if self._thread is None and not self._stop.is_set():
            self._thread = threading.Thread(target=self._run, name="zjournal-earlier-requests", daemon=True)
            self._thread.start()
            exiting.stop_at_exit(self)

    def take(self, entry_id: int) -> bool:
        """``journal.replay`` sends ``entry_id`` through the REQ itself: this stops sending it (False: not here)."""
        with self._lock:
            if entry_id not in self._ids:
                return False
            self._taken.add(entry_id)
            return True

    def close(self) -> None:
        """Stop; what was not answered stays pending for the next REQ of this name."""
        self.stop_thread(2)

    def stop_thread(self, wait: float) -> None:
        """Stop the thread (also at interpreter exit: zjournal.exiting)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=wait)

    def _run(self) -> None:
        try:
            dealer = zmq.Socket(self._ctx, zmq.DEALER)  # a plain one, whatever the context's class
        except zmq.ZMQError:
            return  # the context is shutting down: the requests stay pending
        try:
            dealer.linger = 0
            announce_origin(dealer, self._origin)
            connected = 0
            while self._ids and not self._stop.is_set():
                with self._lock:
                    endpoints = self._endpoints[connected:]
                for endpoint in endpoints:
                    dealer.connect(endpoint)
                connected += len(endpoints)
                if not self._deliver(dealer, self._ids[0]):
                    return
                with self._lock:
                    self._ids.popleft()
        except (zmq.ZMQError, ZJournalError) as e:
            if not self._stop.is_set():
                log.warning("zjournal: earlier requests of a REQ not resent (they stay pending): %s", e)
        finally:
            dealer.close(0)

    def _deliver(self, dealer: zmq.Socket, entry_id: int) -> bool:
        """Send one earlier request until its reply comes; False when stopping (it stays pending)."""
        entry = self._port.load(entry_id)
        if entry is None or entry.state.value != "pending":
            return True
        # With a request id from the first send: each is a resend, which may be answered from a kept reply.
        self._request_id = (self._request_id + 1) & 0xFFFFFFFF
        envelope = [self._request_id.to_bytes(4, "little"), b""]
        sent_at = None
        while not self._stop.is_set():
            if entry_id in self._taken:
                return True  # the REQ sends it now (journal.replay)
            if sent_at is None or (self._resend_after is not None and time.monotonic() - sent_at >= self._resend_after):
                try:
                    attempt = self._port.attempt(entry_id, self._max_attempts)
                except (UnknownEntryError, InvalidTransitionError):
                    return True  # settled meanwhile
                if attempt.state.value == "dead":
                    return True
                if sent_at is not None:  # a new request id: a late reply to the send before is dropped
                    self._request_id = (self._request_id + 1) & 0xFFFFFFFF
                    envelope = [self._request_id.to_bytes(4, "little"), b""]
                try:
                    _send_whole(dealer, [*envelope, *entry.frames], NOBLOCK)
                except zmq.Again:
                    pass  # no peer yet: sent on the next turn
                else:
                    sent_at = time.monotonic()
                if sent_at is None:
                    if self._stop.wait(TICK_MS / 1000):
                        return False
                    continue
            if not dealer.poll(TICK_MS * 5):
                continue
            reply = dealer.recv_multipart()
            if reply[: len(envelope)] != envelope:
                continue  # the reply to an older send of it, or garbage
            with contextlib.suppress(ZJournalError):
                self._port.settle(entry_id)
            self.answered += 1
            return True
        return False


__all__ = [
    "AnsweredToNobody",
    "EarlierRequests",
    "RequestResends",
    "announce_origin",
    "carries_request_id",
    "check_resend_after",
    "digest_of",
    "origin_frame",
    "origin_in",
    "origin_of",
    "split_origin",
    "with_origin",
]
