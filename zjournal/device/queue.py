"""The journaled queue device: ROUTER frontend, DEALER backend, every request journaled.

``zmq.proxy`` moves messages in C where no Python code sees them, so this
device moves them in Python. Each request is journaled (one write for all
that were waiting) when it arrives, tagged with its entry id on the way to the
backend, and acked when *its* reply comes back with the tag: REP workers echo
the envelope, DEALER workers must echo it too. Correlation is exact, never a
FIFO guess, so workers may answer in any order.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import signal
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import zmq

from zjournal import killpoints
from zjournal.entry import DIRECTION_CODES, Direction
from zjournal.errors import InvalidArgumentError, ZJournalError
from zjournal.policy import compile_classifier

if TYPE_CHECKING:
    from zjournal.journal import Journal

_IN = DIRECTION_CODES[Direction.IN]
_TAG = b"zjq:"
_ID = struct.Struct(">Q")
_EPHEMERAL = 1 << 63  # tags of ephemeral requests: never journal ids
_IDLE_POLL_MS = 50  # how soon a stop request is noticed when nothing moves


@dataclass
class StopReport:
    """What :meth:`Queue.stop` found: the answer to "what was left, and where is it?"."""

    drained: int = 0  # replies passed back while draining
    pending: list[int] = field(default_factory=list)  # ids still pending in the journal
    dropped: int = 0  # ephemeral requests dropped (unanswered at shutdown)
    timed_out: bool = False  # the drain timeout ran out with requests in flight

    def __str__(self) -> str:
        return f"drained {self.drained}, pending {len(self.pending)}, dropped {self.dropped} ephemeral"


@dataclass
class QueueStats:
    requests: int = 0  # durable requests journaled
    ephemeral: int = 0  # ephemeral requests passed without touching disk
    replies: int = 0  # replies passed back to the frontend
    redelivered: int = 0  # pending requests sent to the backend again after a restart
    duplicates: int = 0  # replies for requests answered before (at-least-once at work)
    dead: int = 0  # requests given up after max_attempts
    malformed: int = 0  # backend messages without the device's tag, dropped


def envelope_size(frames: list[bytes]) -> int:
    """The routing envelope of a ROUTER message: ids up to and including the empty delimiter."""
    for index, frame in enumerate(frames[:16]):
        if index and not frame:
            return index + 1
    return 1


class Queue:
    """A crash-safe queue device between clients (ROUTER frontend) and workers (DEALER backend).

    Clients and workers are plain pyzmq REQ/REP/DEALER code. ``run()`` moves
    messages in the caller's thread until stopped; ``start()`` runs it in a
    background thread. Requests are inbound entries under ``name``.

    Args:
        frontend: a ROUTER socket facing the clients.
        backend: a DEALER socket facing the workers.
        journal: where requests are journaled.
        name: the stream name of the requests.
        classify: which requests are durable (see :func:`zjournal.policy.compile_classifier`).
        max_attempts: deliveries allowed before a request goes dead (default: the journal's).
        batch: the most messages moved per socket per turn (and journaled in one write).
        backlog: the most requests waiting for the backend before intake pauses.
        redeliver_after: seconds without a reply after which a request is sent to the
            backend again (its worker may be dead); None: only after a restart.
    """

    def __init__(
        self,
        frontend: zmq.Socket,
        backend: zmq.Socket,
        journal: Journal,
        name: str = "queue",
        *,
        classify: Any = None,
        max_attempts: int | None = None,
        batch: int = 256,
        backlog: int = 10_000,
        redeliver_after: float | None = 60.0,
    ) -> None:
        if not isinstance(frontend, zmq.Socket) or frontend.type != zmq.ROUTER:
            raise InvalidArgumentError("the frontend must be a zmq.ROUTER socket")
        if not isinstance(backend, zmq.Socket) or backend.type not in (zmq.DEALER, zmq.ROUTER):
            raise InvalidArgumentError("the backend must be a zmq.DEALER or zmq.ROUTER (load-balancing) socket")
        if batch < 1 or backlog < 1:
            raise InvalidArgumentError("batch and backlog must be >= 1")
        self.frontend = frontend
        self.backend = backend
        self.journal = journal
        self.name = name
        self.stats = QueueStats()
        self._classifier = compile_classifier(classify)
        self._max_attempts = journal.max_attempts if max_attempts is None else max_attempts
        self._batch = batch
        self._backlog = backlog
        self._to_backend: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        self._unforwarded: set[int] = set()  # journaled on arrival, never sent to a worker (attempts 0)
        self._first_forwards: list[int] = []  # sent to a worker for the first time: attempts to record
        # Durable ids at the workers, waiting for a reply -> when they were sent (oldest first).
        self._in_flight: dict[int, float] = {}
        self._redeliver_after = redeliver_after
        # A ROUTER backend load-balances: REQ workers announce themselves with a first message
        # (e.g. b"READY") and get one request at a time; a reply is correlated by the worker it
        # came from, so plain Guide-style workers need no tag.
        self._balancing = backend.type == zmq.ROUTER
        self._ready: collections.deque[bytes] = collections.deque()
        self._at_worker: dict[bytes, int] = {}
        self._ephemeral_in_flight: set[int] = set()
        self._ephemeral_ids = itertools.count(1)
        self._replay_cursor = 0
        self._replay_until = 0
        self._replay_done = False
        self._stop_requested = threading.Event()
        self._drain_timeout = 5.0
        self._thread: threading.Thread | None = None
        self._report: StopReport | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()

    # -- control -----------------------------------------------------------

    def start(self) -> None:
        """Run the device in a background thread (the sockets must not be used by others meanwhile)."""
        if self._thread is not None:
            raise ZJournalError("the queue is already started")
        self._thread = threading.Thread(target=self._run_in_thread, name=f"zjournal-queue-{self.name}", daemon=True)
        self._thread.start()

    def _run_in_thread(self) -> None:
        try:
            self.run()
        except BaseException as e:  # surfaced by stop()
            self._error = e
            self._done.set()

    def request_stop(self, drain_timeout: float = 5.0) -> None:
        """Ask the device to stop (safe from a signal handler); :meth:`run` then returns the report."""
        self._drain_timeout = drain_timeout
        self._stop_requested.set()

    def stop(self, drain_timeout: float = 5.0) -> StopReport:
        """Stop intake, wait up to ``drain_timeout`` s for in-flight requests, report what is left.

        Whatever is still pending is already durable: it is in the journal
        (``journal.entries(name=...)``, ``zjournal inspect``) and goes to the
        workers again when a ``Queue`` starts on this journal.
        """
        self.request_stop(drain_timeout)
        if self._thread is None:
            raise ZJournalError("stop() waits for a queue started with start(); use request_stop() with run()")
        self._done.wait()
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._report is not None
        return self._report

    @property
    def pending(self) -> int:
        """Requests journaled and not yet answered (from the journal's counters)."""
        return self.journal.count(name=self.name, state="pending", direction="in")

    # -- the loop ------------------------------------------------------------

    def run(self) -> StopReport:
        """Move messages until a stop is requested and the drain is over; return the report."""
        self._replay_until = self.journal._next_id  # pending entries older than this run
        frontend, backend = self.frontend, self.backend
        poller = zmq.Poller()
        poller.register(backend, zmq.POLLIN)
        intake = True
        poller.register(frontend, zmq.POLLIN)
        drain_deadline = 0.0
        drained_from = 0
        self._fetch_replays()  # what the last run left goes first
        while True:
            if intake and self._stop_requested.is_set():
                intake = False  # (a) stop intake: the frontend is no longer read
                poller.unregister(frontend)
                drain_deadline = time.monotonic() + self._drain_timeout
                drained_from = self.stats.replies
                self._to_backend = collections.deque(item for item in self._to_backend if not item[0] & _EPHEMERAL)
            if not intake:
                waiting = self._in_flight or self._ephemeral_in_flight
                if not waiting or time.monotonic() >= drain_deadline:
                    break
            wants_out = bool(self._to_backend) and (not self._balancing or bool(self._ready))
            poller.modify(backend, zmq.POLLIN | (zmq.POLLOUT if wants_out else 0))
            if intake:
                paused = len(self._to_backend) >= self._backlog
                poller.modify(frontend, 0 if paused else zmq.POLLIN)
            events = dict(poller.poll(_IDLE_POLL_MS))
            ready = events.get(backend, 0)
            if ready & zmq.POLLIN:
                self._take_replies()
            if intake and events.get(frontend, 0) & zmq.POLLIN:
                self._take_requests()
            if intake and not self._replay_done and len(self._to_backend) < self._batch:
                self._fetch_replays()
            if self._redeliver_after is not None and self._in_flight:
                self._resend_overdue()
            if self._to_backend:
                self._forward()
        # What is still pending belongs to no one in this process now: a later
        # Queue (or socket) on this journal may deliver it again.
        for entry_id in [*self._in_flight, *(i for i, _ in self._to_backend if not i & _EPHEMERAL)]:
            self.journal._inflight.pop(entry_id, None)
        report = StopReport(
            drained=self.stats.replies - drained_from,
            pending=[e.id for e in self.journal.entries(name=self.name, state="pending", direction="in")],
            dropped=len(self._ephemeral_in_flight),
            timed_out=bool(self._in_flight or self._ephemeral_in_flight),
        )
        self._report = report
        self._done.set()
        return report

    def _take_requests(self) -> None:
        """Read what the frontend has (up to a batch) and journal the durable ones in one write."""
        frontend = self.frontend
        arrived: list[list[bytes]] = []
        for _ in range(self._batch):
            try:
                arrived.append(frontend.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
        classifier = self._classifier
        durable: list[tuple[list[bytes], int]] = []
        kinds: list[bool] = []
        for frames in arrived:
            size = envelope_size(frames)
            is_durable = classifier is None or classifier(frames[size:])
            kinds.append(is_durable)
            if is_durable:
                durable.append((frames, size))
        ids = iter(self.journal._log_many(self.name, _IN, durable) if durable else ())
        if durable and killpoints.ARMED:
            killpoints.reached("device:after-journal")
        for frames, is_durable in zip(arrived, kinds, strict=True):
            if is_durable:
                entry_id = next(ids)
                self._unforwarded.add(entry_id)  # journaled with attempts 0 until a worker gets it
                self._to_backend.append((entry_id, frames))
            else:
                self._to_backend.append((next(self._ephemeral_ids) | _EPHEMERAL, frames))
        self.stats.requests += len(durable)
        self.stats.ephemeral += len(arrived) - len(durable)

    def _fetch_replays(self) -> None:
        """Queue pending requests from before this run for the backend, a window at a time."""
        room = self._batch - len(self._to_backend)
        dead_before = self.journal.count(name=self.name, state="dead")
        entries = self.journal._redeliverable(self.name, _IN, self._replay_cursor, room, self._max_attempts)
        entries = [e for e in entries if e.id < self._replay_until]
        if len(entries) < room:
            self._replay_done = True
        for entry in entries:
            self._replay_cursor = entry.id
            delivered = self.journal._deliver(entry.id, track=True)
            if delivered is not None:
                self._to_backend.append((entry.id, entry.frames))
                self.stats.redelivered += 1
        self.stats.dead += self.journal.count(name=self.name, state="dead") - dead_before

    def _forward(self) -> None:
        first = self._first_forwards
        try:
            self._forward_queued()
        finally:
            if first:  # requests journaled on arrival (attempts 0): their first delivery, in one write
                self._first_forwards = []
                self.journal._deliver_many(first)

    def _forward_queued(self) -> None:
        backend = self.backend
        queue = self._to_backend
        while queue:
            entry_id, frames = queue[0]
            if self._balancing:
                if not self._ready:
                    return
                worker = self._ready.popleft()
                with contextlib.suppress(zmq.ZMQError):  # a vanished worker: redeliver_after resends
                    backend.send_multipart([worker, b"", *frames], zmq.NOBLOCK)
                self._at_worker[worker] = entry_id
            else:
                try:
                    backend.send_multipart([_TAG + _ID.pack(entry_id), *frames], zmq.NOBLOCK)
                except zmq.Again:
                    return
            queue.popleft()
            if entry_id & _EPHEMERAL:
                self._ephemeral_in_flight.add(entry_id)
            else:
                self._in_flight[entry_id] = time.monotonic()
                if entry_id in self._unforwarded:
                    self._unforwarded.discard(entry_id)
                    self._first_forwards.append(entry_id)

    def _resend_overdue(self) -> None:
        """Requests unanswered for ``redeliver_after`` seconds go to the backend again (attempts + 1)."""
        assert self._redeliver_after is not None
        cutoff = time.monotonic() - self._redeliver_after
        overdue = []
        for entry_id, sent_at in self._in_flight.items():
            if sent_at > cutoff:
                break  # oldest first: the rest are younger
            overdue.append(entry_id)
        if overdue and self._balancing:
            stale = set(overdue)
            for worker in [w for w, e in self._at_worker.items() if e in stale]:
                del self._at_worker[worker]  # silent for too long: not counted as free either
        for entry_id in overdue:
            del self._in_flight[entry_id]
            entry = self.journal.get(entry_id)
            if entry is None or entry.state != "pending":
                continue
            entry = self.journal.attempt(entry_id, self._max_attempts)
            if entry.state == "dead":
                self.stats.dead += 1
                self.journal._inflight.pop(entry_id, None)
                continue
            self._to_backend.append((entry_id, entry.frames))
            self.stats.redelivered += 1

    def _correlate(self, frames: list[bytes]) -> tuple[int, list[bytes]] | None:
        """(entry id, reply for the frontend) of a backend message; None when it is no reply."""
        if self._balancing:
            worker = frames[0]
            body = frames[2:] if len(frames) > 1 and frames[1] == b"" else frames[1:]
            self._ready.append(worker)  # whatever it sent, the worker is free now
            entry_id = self._at_worker.pop(worker, None)
            return None if entry_id is None else (entry_id, body)  # None: a worker saying it is ready
        tag = frames[0]
        if len(tag) != len(_TAG) + 8 or not tag.startswith(_TAG):
            self.stats.malformed += 1
            return None
        return _ID.unpack_from(tag, len(_TAG))[0], frames[1:]

    def _take_replies(self) -> None:
        """Pass replies back to their clients, then ack their requests in one write."""
        backend, frontend = self.backend, self.frontend
        acked: list[int] = []
        for _ in range(self._batch):
            try:
                frames = backend.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            correlated = self._correlate(frames)
            if correlated is None:
                continue
            entry_id, reply = correlated
            if entry_id & _EPHEMERAL:
                if entry_id not in self._ephemeral_in_flight:
                    self.stats.duplicates += 1
                    continue
                self._ephemeral_in_flight.discard(entry_id)
            elif entry_id in self._in_flight:
                del self._in_flight[entry_id]
                acked.append(entry_id)
            else:
                self.stats.duplicates += 1  # answered already: the client has its reply
                continue
            # A gone client (or ROUTER_MANDATORY saying so): the reply is dropped.
            with contextlib.suppress(zmq.ZMQError):
                frontend.send_multipart(reply, zmq.NOBLOCK)
            self.stats.replies += 1
        if acked:
            if killpoints.ARMED:
                killpoints.reached("device:before-ack")
            self.journal._log_many(self.name, _IN, [], settle=acked)


def stop_on_signals(
    queue: Queue,
    drain_timeout: float = 5.0,
    signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Make SIGTERM/SIGINT stop ``queue`` gracefully (call from the main thread)."""

    def handler(signum: int, frame: object) -> None:
        queue.request_stop(drain_timeout)

    for sig in signals:
        signal.signal(sig, handler)
