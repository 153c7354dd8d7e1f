"""The journaled queue device: ROUTER frontend, DEALER backend, every request journaled.

``zmq.proxy`` moves messages in C where no Python code sees them, so this
device moves them in Python. Each request is journaled (one write for all
that were waiting) when it arrives, tagged on the way to the backend (see
:mod:`zjournal.device.correlation`), and acked when *its* reply comes back
with the tag: REP workers echo the envelope, DEALER workers must echo it
too. Correlation is exact, never a FIFO guess, so workers may answer in any
order. Nothing a peer sends stops the device: a message it cannot use is
dropped and counted (``stats.causes``), and a write the journal refuses is
retried until the store takes writes again.
"""

from __future__ import annotations

import collections
import itertools
import math
import signal
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import zmq

from zjournal import killpoints
from zjournal.device import report
from zjournal.device.correlation import Tags, envelope_size, looks_like_a_tag
from zjournal.device.intake import EPHEMERAL, IN, Intake, Queued
from zjournal.device.report import DropLog, QueueStats, StopReport, StoreErrorLog
from zjournal.device.resends import ClientResends
from zjournal.errors import InvalidArgumentError, StoreError, ZJournalError
from zjournal.journal.core import port_of
from zjournal.sockets import confirm_wire
from zjournal.sockets.confirm_return import ConfirmReturn
from zjournal.sockets.policy import compile_classifier
from zjournal.sockets.requests import split_origin
from zjournal.sockets.routing import still_names_its_peer

if TYPE_CHECKING:
    from zjournal.journal import Journal

_IDLE_POLL_MS = 50  # how soon a stop request is noticed when nothing moves
_RETRY_S = 0.2  # how soon a write the store refused is tried again
_MAX_LATE = 10_000  # dead requests still at a worker whose reply would be passed on (oldest forgotten first)
_MAX_WORKERS = 100_000  # workers remembered (ready or busy); a flood of identities forgets the oldest


class _Sent:
    """A request at the workers: where its reply goes, and when it was (last) sent."""

    __slots__ = ("envelope", "sent_at")

    def __init__(self, envelope: list[bytes], sent_at: float) -> None:
        self.envelope = envelope
        self.sent_at = sent_at


class Queue(Intake):
    """A crash-safe queue device between clients (ROUTER frontend) and workers (DEALER backend).

    Clients and workers are plain pyzmq REQ/REP/DEALER code. ``run()`` moves
    messages in the caller's thread until stopped; ``start()`` runs it in a
    background thread. Requests are inbound entries under ``name``.

    Args:
        frontend: a ROUTER socket facing the clients.
        backend: a DEALER socket facing the workers.
        journal: where requests are journaled.
        name: the stream name of the requests.
        classify: which requests are durable (see :func:`zjournal.sockets.policy.compile_classifier`).
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
        check_settings(batch=batch, backlog=backlog, redeliver_after=redeliver_after, max_attempts=max_attempts)
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"the queue's stream name is a non-empty string, not {name!r}")
        self.frontend = frontend
        self.backend = backend
        self.journal = journal
        self._port = port = port_of(journal)
        self.name = name
        self.stats = QueueStats()
        self._drops = DropLog(self.stats)
        self._store = StoreErrorLog(self.stats)
        self._retry_at = 0.0  # when writes the store refused are tried again
        self._tags = Tags(port.secret(f"device:{name}"))
        self._classifier = compile_classifier(classify)
        self._max_attempts = journal.max_attempts if max_attempts is None else max_attempts
        self._batch = batch
        self._backlog = backlog
        self._redeliver_after = redeliver_after
        # libzmq refuses (and disconnects) a peer whose frame is over the journal's limit before
        # reading it into memory; a message over it in total is dropped here.
        frontend.setsockopt(zmq.MAXMSGSIZE, frontend_frame_limit(journal.max_message_size))
        # A reply to a client that is gone raises (and is dropped) rather than vanishing: the device
        # then keeps it for that client's resend (zjournal.device.resends).
        frontend.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._resends = ClientResends()
        self._to_backend: collections.deque[Queued] = collections.deque()
        self._after_replays: collections.deque[Queued] = collections.deque()  # new, behind the old ones
        # Durable requests the store refused, journaled first: (frames, the requester's origin).
        self._unjournaled: list[tuple[list[bytes], bytes | None]] = []
        self._unsettled: list[int] = []  # answered, but the store refused the ack
        self._unforwarded: set[int] = set()  # journaled on arrival, never sent to a worker (attempts 0)
        self._first_forwards: list[int] = []  # sent to a worker for the first time: attempts to record
        # Durable requests at the workers -> where the reply goes (oldest sent first).
        self._outstanding: dict[int, _Sent] = {}
        self._ephemeral_out: dict[int, _Sent] = {}
        self._late: dict[int, _Sent] = {}  # gone dead at a worker: a reply still answers the client
        # A ROUTER backend load-balances: REQ workers announce themselves with a first message
        # (e.g. b"READY") and get one request at a time; a reply is correlated by the worker it
        # came from, so plain Guide-style workers need no tag.
        self._balancing = backend.type == zmq.ROUTER
        if self._balancing:
            backend.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a vanished worker is an error, not a black hole
        self._ready: dict[bytes, None] = {}  # free workers, oldest first, each once
        self._at_worker: dict[bytes, int] = {}  # busy workers -> the request they have
        self._ephemeral_ids = itertools.count(1)
        self._replay_cursor = 0
        self._replay_until = 0
        self._first_id_this_open = port.first_id_this_open()  # (see zjournal.sockets.routing)
        self._replay_done = False
        self._stop_requested = threading.Event()
        self._drain_timeout = 5.0
        self._thread: threading.Thread | None = None
        self._report: StopReport | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()
        self._confirms: ConfirmReturn | None = None  # confirmations to confirm=True clients, once one is met

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
        try:
            return self._move()
        finally:  # (on every way out: its confirm sockets are not the context's to close, so nothing else would)
            if self._confirms is not None:
                self._confirms.close()  # (what it could not send, the clients resend: recognised then)
                self._confirms = None

    def _move(self) -> StopReport:
        self._replay_until = self._port.first_unissued()  # pending entries older than this run
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
                poller.modify(frontend, 0)  # (unregisters it; a paused intake was unregistered already)
                drain_deadline = time.monotonic() + self._drain_timeout
                drained_from = self.stats.replies
                self._to_backend = collections.deque(item for item in self._to_backend if not item[0] & EPHEMERAL)
                self._after_replays.clear()  # journaled: pending for the next run
            in_flight = bool(self._outstanding or self._ephemeral_out)
            if not intake and (not in_flight or time.monotonic() >= drain_deadline):
                break
            wants_out = bool(self._to_backend) and (not self._balancing or bool(self._ready))
            poller.modify(backend, zmq.POLLIN | (zmq.POLLOUT if wants_out else 0))
            if intake:
                paused = self._store.failing or len(self._to_backend) + len(self._after_replays) >= self._backlog
                poller.modify(frontend, 0 if paused else zmq.POLLIN)
            events = dict(poller.poll(_IDLE_POLL_MS))
            if events.get(backend, 0) & zmq.POLLIN:
                self._take_replies()
            if intake and events.get(frontend, 0) & zmq.POLLIN:
                self._take_requests()
            if self._store.failing and time.monotonic() >= self._retry_at:
                self._retry_refused_writes()
            if intake and not self._replay_done and len(self._to_backend) < self._batch:
                self._fetch_replays()
            if self._redeliver_after is not None and self._outstanding:
                self._resend_overdue()
            if self._to_backend:
                self._forward()
        self._retry_refused_writes()  # a last try: acks the store refused, requests it never took
        # What is still pending belongs to no one in this process now: a later
        # Queue (or socket) on this journal may deliver it again.
        for entry_id in [*self._outstanding, *(item[0] for item in self._to_backend if not item[0] & EPHEMERAL)]:
            self._port.forget(entry_id)
        report = StopReport(
            drained=self.stats.replies - drained_from,
            pending=self._port.pending_ids(self.name, IN),
            dropped=len(self._ephemeral_out),
            timed_out=bool(self._outstanding or self._ephemeral_out),
            unjournaled=len(self._unjournaled),
        )
        self._report = report
        self._done.set()
        return report

    # -- writes the store may refuse ----------------------------------------

    def _refused(self, error: StoreError, what: str) -> None:
        self._store.failed(error, what)
        self._retry_at = time.monotonic() + _RETRY_S

    def _retry_refused_writes(self) -> None:
        """Try again what the store refused, oldest first: acks, first deliveries, then new requests."""
        self._store.failing = False
        if self._unsettled:
            self._settle(self._unsettled)
        if self._first_forwards and not self._store.failing:
            self._record_first_forwards()
        if self._unjournaled and not self._store.failing:
            waiting, self._unjournaled = self._unjournaled, []
            self._journal_requests(waiting)
        if not self._store.failing:
            self._store.recovered()

    # -- to the workers --------------------------------------------------------

    def _forward(self) -> None:
        try:
            self._forward_queued()
        finally:
            if self._first_forwards and not self._store.failing:
                self._record_first_forwards()

    def _record_first_forwards(self) -> None:
        """Requests journaled on arrival (attempts 0) reached a worker: their first delivery, in one write."""
        try:
            self._port.deliver_many(self._first_forwards)
        except StoreError as e:
            self._refused(e, "first deliveries")  # kept: the attempts are recorded once the store is back
            return
        self._first_forwards = []

    def _forward_queued(self) -> None:
        backend = self.backend
        queue = self._to_backend
        while queue:
            entry_id, frames, size, resend = queue[0]
            durable = not entry_id & EPHEMERAL
            if resend and entry_id not in self._outstanding:
                queue.popleft()  # answered while it waited to be sent again
                continue
            if self._balancing:
                worker = self._free_worker()
                if worker is None:
                    return
                try:
                    backend.send_multipart([worker, b"", *frames], zmq.NOBLOCK)
                except zmq.ZMQError:  # gone (ROUTER_MANDATORY) or not taking more: try the next worker
                    continue
                self._at_worker[worker] = entry_id
            else:
                try:
                    backend.send_multipart([self._tags.issue(entry_id), *frames], zmq.NOBLOCK)
                except zmq.Again:
                    return
            queue.popleft()
            sent = _Sent(frames[:size], time.monotonic())
            if not durable:
                self._ephemeral_out[entry_id] = sent
                continue
            self._outstanding.pop(entry_id, None)  # a resend moves to the end: oldest sent stays first
            self._outstanding[entry_id] = sent
            if entry_id in self._unforwarded:
                self._unforwarded.discard(entry_id)
                self._first_forwards.append(entry_id)

    def _free_worker(self) -> bytes | None:
        ready = self._ready
        if not ready:
            return None
        worker = next(iter(ready))
        del ready[worker]
        return worker

    def _resend_overdue(self) -> None:
        """Requests unanswered for ``redeliver_after`` seconds go to the backend again (attempts + 1).

        The first delivery stays answerable: whichever reply comes first
        answers the client, the others count as duplicates.
        """
        assert self._redeliver_after is not None
        now = time.monotonic()
        cutoff = now - self._redeliver_after
        overdue = []
        for entry_id, sent in self._outstanding.items():
            if sent.sent_at > cutoff:
                break  # oldest first: the rest are younger
            overdue.append(entry_id)
        for entry_id in overdue:
            sent = self._outstanding[entry_id]
            try:
                entry = self.journal.get(entry_id)
                if entry is None or entry.state != "pending":
                    del self._outstanding[entry_id]  # settled by someone else
                    continue
                entry = self.journal.attempt(entry_id, self._max_attempts)
            except StoreError as e:
                self._refused(e, "a redelivery")
                sent.sent_at = now  # tried again after another redeliver_after
                self._outstanding[entry_id] = self._outstanding.pop(entry_id)
                continue
            if entry.state == "dead":
                self.stats.dead += 1
                self._port.forget(entry_id)
                del self._outstanding[entry_id]
                self._remember_late(entry_id, sent)
                self._resends.done(entry_id)
                continue
            sent.sent_at = now
            self._outstanding[entry_id] = self._outstanding.pop(entry_id)  # not overdue again until resent
            _, frames, size = split_origin(entry.frames, entry.envelope_size)
            self._to_backend.append((entry_id, frames, size, True))
            self.stats.redelivered += 1

    def _remember_late(self, entry_id: int, sent: _Sent) -> None:
        late = self._late
        late[entry_id] = sent
        if len(late) > _MAX_LATE:
            del late[next(iter(late))]

    # -- replies ---------------------------------------------------------------

    def _correlate(self, frames: list[bytes]) -> tuple[int, list[bytes]] | None:
        """(request id, the reply with its envelope) of a backend message; None when it is no reply."""
        if self._balancing:
            worker = frames[0]
            body = frames[2:] if len(frames) > 1 and frames[1] == b"" else frames[1:]
            self._worker_is_free(worker)  # whatever it sent, the worker is free now
            entry_id = self._at_worker.pop(worker, None)
            return None if entry_id is None else (entry_id, body)  # None: a worker saying it is ready
        entry_id = self._tags.read(frames[0])
        if entry_id is None:
            why = report.REPLY_UNKNOWN_TAG if looks_like_a_tag(frames[0]) else report.REPLY_WITHOUT_TAG
            self._drops.dropped(why)
            return None
        return entry_id, frames[1:]

    def _worker_is_free(self, worker: bytes) -> None:
        ready = self._ready
        ready.pop(worker, None)
        ready[worker] = None
        if len(ready) + len(self._at_worker) > _MAX_WORKERS:  # a flood of identities: forget the oldest
            del ready[next(iter(ready))]

    def _take_replies(self) -> None:
        """Pass replies back to their clients, then ack their requests in one write."""
        backend = self.backend
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
            waiting = self._ephemeral_out if entry_id & EPHEMERAL else self._outstanding
            sent = waiting.get(entry_id)
            late = sent is None and entry_id in self._late
            if late:
                sent = self._late[entry_id]
            if sent is None:
                self.stats.duplicates += 1  # answered already: the client has its reply
                continue
            envelope = sent.envelope
            if len(reply) <= len(envelope) and reply == envelope[: len(reply)]:
                self._drops.dropped(report.REPLY_EMPTY)  # the tag alone, or the envelope alone
                continue
            if reply[: len(envelope)] != envelope:
                # Another request's tag: its own request is not answered by this (nothing is acked), but
                # the worker wrote the reply for the client its envelope names, as a plain device would
                # pass it on. That client's request stays pending too and is delivered again.
                self._drops.dropped(report.REPLY_WRONG_ENVELOPE)
                if envelope_size(reply) < len(reply):
                    self._pass_on(reply)
                continue
            if late:
                del self._late[entry_id]
                self._ack_late(entry_id)
            else:
                del waiting[entry_id]
                if waiting is self._outstanding:
                    acked.append(entry_id)
            resends = self._resends
            latest = resends.envelope_for(entry_id)
            if latest is not None:  # a copy came later (a reconnected client, a correlated resend)
                reply = [*latest, *reply[len(envelope) :]]
            # An id journaled before this journal was opened may name another client now (routing).
            routable = latest is not None or still_names_its_peer(self._first_id_this_open, entry_id, envelope)
            if not (routable and self._pass_on(reply)):
                resends.reached_nobody(entry_id, reply[len(latest if latest is not None else envelope) :])
            resends.done(entry_id)
            self.stats.replies += 1
        if acked:
            if killpoints.ARMED:
                killpoints.reached("device:before-ack")
            self._settle(acked)

    def _pass_on(self, reply: list[bytes]) -> bool:
        """Send a reply to its client; False when that client is gone (the reply is dropped)."""
        try:
            self.frontend.send_multipart(reply, zmq.NOBLOCK)
        except zmq.ZMQError as e:
            return e.errno != zmq.EHOSTUNREACH  # (a full client queue drops it too, as a plain device would)
        return True

    def _settle(self, acked: list[int]) -> None:
        try:
            self._port.log_many(self.name, IN, [], settle=acked)
        except StoreError as e:
            self._refused(e, f"{len(acked)} acks")
            if acked is not self._unsettled:
                self._unsettled.extend(acked)  # still pending on disk: a crash now redelivers them
            return
        if acked is self._unsettled:
            self._unsettled = []

    def _ack_late(self, entry_id: int) -> None:
        """A reply to a request given up as dead reached its client after all: the entry is done."""
        try:
            self.journal.ack(entry_id)
        except StoreError as e:
            self._refused(e, "an ack")  # stays dead: an operator sees it in the dead letters
        except ZJournalError:
            pass  # removed by an operator meanwhile
        self.stats.late += 1


def frontend_frame_limit(max_message_size: int) -> int:
    """The frontend's MAXMSGSIZE for a journal's ``max_message_size``.

    A confirm=True client's header may be merged into its request's frame:
    libzmq allows it that much more (the device measures the request
    without it, :meth:`Queue._acceptable`). libzmq applies the option to
    endpoints bound (or connected) after it is set.
    """
    return min(max_message_size + confirm_wire.MAX_HEADER_BYTES, 2**63 - 1)


def check_settings(
    *, batch: int = 256, backlog: int = 10_000, redeliver_after: float | None = 60.0, max_attempts: int | None = None
) -> None:
    """Refuse settings that would make the device misbehave (a resend storm, a loop that never reads)."""
    if batch < 1 or backlog < 1:
        raise InvalidArgumentError("batch and backlog must be >= 1")
    if redeliver_after is not None and (
        not isinstance(redeliver_after, (int, float)) or not math.isfinite(redeliver_after) or redeliver_after <= 0
    ):
        raise InvalidArgumentError(f"redeliver_after must be a finite number of seconds > 0, not {redeliver_after!r}")
    if max_attempts is not None and (isinstance(max_attempts, bool) or not isinstance(max_attempts, int)):
        raise InvalidArgumentError(f"max_attempts must be an integer >= 1, not {max_attempts!r}")
    if max_attempts is not None and max_attempts < 1:
        raise InvalidArgumentError(f"max_attempts must be >= 1, not {max_attempts}")


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
