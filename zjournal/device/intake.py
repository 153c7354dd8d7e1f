"""The queue device's intake: requests read from the frontend, journaled in one write, queued for the workers.

A mixin of :class:`zjournal.device.queue.Queue`, kept apart so that the
queue's module reads as its loop, the workers and the replies. Here: a
batch of requests read from the frontend, the ones no worker could use
dropped and counted, a journaled REQ client's resend recognised (pending:
its reply goes to the copy; answered: answered again), the durable ones
journaled in one write (with a ``confirm=True`` client's dedup key, and its
confirmation sent), and the requests a crash left pending queued first, a
window at a time.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import zmq

from zjournal import killpoints
from zjournal.device import report
from zjournal.device.correlation import envelope_size
from zjournal.errors import MessageTooLargeError, StoreError
from zjournal.journal.blobs import BLOB_SIZE
from zjournal.journal.entry import DIRECTION_CODES, Direction
from zjournal.sockets import confirm_wire
from zjournal.sockets.confirm_return import ConfirmReturn
from zjournal.sockets.requests import carries_request_id, digest_of, origin_of, split_origin, with_origin

if TYPE_CHECKING:
    import collections

    from zjournal.device.report import DropLog, QueueStats
    from zjournal.device.resends import ClientResends
    from zjournal.journal import Journal

IN = DIRECTION_CODES[Direction.IN]
EPHEMERAL = 1 << 63  # ids of ephemeral requests: never journal ids

# A request waiting for the backend: (id, frames with the client's envelope first, envelope size, resend)
Queued = tuple[int, list[bytes], int, bool]


class Intake:
    """The request methods of the queue device (they run on its own state)."""

    frontend: zmq.Socket
    journal: Journal
    name: str
    stats: QueueStats
    _port: Any
    _drops: DropLog
    _resends: ClientResends
    _classifier: Any
    _batch: int
    _max_attempts: int | None
    _ephemeral_ids: itertools.count
    _to_backend: collections.deque[Queued]
    _after_replays: collections.deque[Queued]
    _unjournaled: list[tuple[list[bytes], bytes | None]]
    _unforwarded: set[int]
    _replay_done: bool
    _replay_cursor: int
    _replay_until: int
    _confirms: ConfirmReturn | None
    _refused: Any
    _pass_on: Any

    def _take_requests(self) -> None:
        """Read what the frontend has (up to a batch) and journal the durable ones in one write."""
        frontend = self.frontend
        arrived: list[tuple[list[bytes], bytes | None]] = []
        for _ in range(self._batch):
            try:
                first = frontend.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            frames = [_kept(first)]
            more = first.more
            while more:  # the rest is there already (atomic)
                frame = frontend.recv(copy=False)
                frames.append(_kept(frame))
                more = frame.more
            if self._acceptable(frames):
                arrived.append((frames, origin_of(first)))  # a journaled REQ's origin: its resends are known
        self._journal_requests(arrived)

    def _acceptable(self, frames: list[bytes]) -> bool:
        if len(frames) <= envelope_size(frames):
            self._drops.dropped(report.REQUEST_WITHOUT_BODY)
            return False
        try:
            self._port.check_size(frames)
        except MessageTooLargeError as e:
            return self._fits_without_header(frames, e)
        return True

    def _fits_without_header(self, frames: list[bytes], error: MessageTooLargeError) -> bool:
        """A request too large as it came: a confirm=True client's may fit once its header is off.

        If it does not, its client is told (refused: it makes the request a
        dead letter rather than send it again for ever).
        """
        header, body = _without_header(frames)
        if header is not None:
            try:
                self._port.check_size(body)
                return True
            except MessageTooLargeError as e:
                error = e
            self._confirm_return().refuse(header.endpoint, header.origin, header.seq, str(error))
        self._drops.dropped(report.REQUEST_TOO_LARGE, str(error))
        return False

    def _journal_requests(self, arrived: list[tuple[list[bytes], bytes | None]]) -> None:
        """Journal the durable requests in one write and queue everything for the backend.

        When the store refuses the write, the durable requests wait in memory
        (intake pauses meanwhile) and are journaled first once it takes
        writes again; the ephemeral ones go on at once.
        """
        classifier = self._classifier
        durable: list[tuple[list[bytes], int]] = []  # as journaled (a REQ's origin first)
        forwarded: list[tuple[list[bytes], int]] = []  # as they go to the workers
        originals: list[tuple[list[bytes], bytes | None]] = []  # as they came: kept if the write fails
        headers: list[confirm_wire.Header | None] = []
        origins: list[bytes | None] = []
        queued: list[Queued | None] = []  # None: the next durable one
        copies: list[tuple[bytes, list[bytes], list[bytes]]] = []  # copies of requests earlier in this batch
        in_batch: set[tuple[bytes, bytes]] = set()
        for came, origin in arrived:
            header, frames = _without_header(came)
            size = envelope_size(frames)
            if origin is not None and header is None:
                body = frames[size:]
                if self._copy_of_known_request(origin, frames, size):
                    continue
                key = (origin, digest_of(body))
                if key in in_batch:
                    copies.append((origin, body, frames[:size]))
                    continue
                in_batch.add(key)
            # A confirm=True client's request is always durable (its sender classified it).
            if header is not None or classifier is None or classifier(_as_bytes(frames[size:])):
                forwarded.append((frames, size))
                durable.append(with_origin(origin, frames, size) if origin is not None else (frames, size))
                originals.append((came, origin))
                headers.append(header)
                origins.append(origin)
                queued.append(None)
            else:
                queued.append((next(self._ephemeral_ids) | EPHEMERAL, frames, size, False))
        keyed = any(h is not None for h in headers)
        ids: Iterable[int] = ()
        if durable:
            keys = [None if h is None else (h.origin, h.seq, h.floor) for h in headers] if keyed else ()
            try:
                ids = self._port.log_many(self.name, IN, durable, keys=keys)
            except StoreError as e:
                self._refused(e, f"{len(durable)} requests")
                self._unjournaled.extend(originals)  # their clients' headers too: keyed and confirmed later
                self.stats.unjournaled = len(self._unjournaled)
                queued = [item for item in queued if item is not None]
                durable, headers, keyed, copies = [], [], False, []
            if durable and killpoints.ARMED:
                killpoints.reached("device:after-journal")
        self.stats.unjournaled = len(self._unjournaled)
        behind = self._to_backend if self._replay_done else self._after_replays
        new_ids = iter(ids)
        durable_frames = iter(forwarded)
        request_origins = iter(origins)
        journaled = 0
        for item in queued:
            if item is None:
                entry_id = next(new_ids)
                frames, size = next(durable_frames)
                origin = next(request_origins)
                if not entry_id:  # a resend of a request journaled before: it is queued or answered already
                    self.stats.resends_dropped += 1
                    continue
                if origin is not None:
                    self._resends.journaled(entry_id, origin, frames[size:])
                journaled += 1
                self._unforwarded.add(entry_id)  # journaled with attempts 0 until a worker gets it
                behind.append((entry_id, frames, size, False))
            else:
                behind.append(item)
        self.stats.requests += journaled
        self.stats.ephemeral += len(queued) - len(durable)
        for origin, body, envelope in copies:  # their originals are journaled now: the reply goes to the copy
            self._resends.copy_of_pending(origin, body, envelope)
        self.stats.resends_recognised = self._resends.recognised
        if keyed:
            self._confirm([h for h in headers if h is not None])

    def _copy_of_known_request(self, origin: bytes, frames: list[bytes], size: int) -> bool:
        """A REQ client's request again: pending here (no entry, no forward), or answered to nobody (answered now)."""
        resends = self._resends
        body = frames[size:]
        if resends.copy_of_pending(origin, body, frames[:size]):
            self.stats.resends_recognised = resends.recognised
            return True
        reply = resends.reply_for_copy(origin, body) if carries_request_id(frames[:size]) else None
        if reply is None:
            return False
        self._pass_on([*frames[:size], *reply])
        self.stats.resends_answered = resends.answered_again
        return True

    def _confirm(self, headers: list[confirm_wire.Header]) -> None:
        """Tell confirm=True clients their requests are journaled here (resends included: confirmed again)."""
        back = self._confirm_return()
        by_sender: dict[tuple[str, bytes], list[int]] = {}
        for header in headers:
            by_sender.setdefault((header.endpoint, header.origin), []).append(header.seq)
        for (endpoint, origin), seqs in by_sender.items():
            back.confirm_many(endpoint, origin, seqs)
        self.stats.confirmed += len(headers)

    def _confirm_return(self) -> ConfirmReturn:
        if self._confirms is None:
            self._confirms = ConfirmReturn(self._port, self.frontend.context)
        return self._confirms

    def _fetch_replays(self) -> None:
        """Queue pending requests from before this run for the backend, a window at a time."""
        room = self._batch - len(self._to_backend)
        dead_before = self.journal.count(name=self.name, state="dead")
        try:
            fetched, more = self._port.redeliverable(self.name, IN, self._replay_cursor, room, self._max_attempts)
            entries = [e for e in fetched if e.id < self._replay_until]
            if not more or len(entries) < len(fetched):
                self._replay_done = True
            for entry in entries:
                delivered = self._port.deliver(entry.id, track=True, frames=entry.frames)
                self._replay_cursor = entry.id
                if delivered is not None:
                    origin, frames, size = split_origin(entry.frames, entry.envelope_size)
                    if origin is not None:
                        self._resends.journaled(entry.id, origin, frames[size:])  # its client's resend is known
                    self._to_backend.append((entry.id, _zero_copy(frames), size, False))
                    self.stats.redelivered += 1
        except StoreError as e:
            self._replay_done = False
            self._refused(e, "a redelivery")
        self.stats.dead += self.journal.count(name=self.name, state="dead") - dead_before
        if self._replay_done and self._after_replays:  # every old request is queued: the new ones follow
            self._to_backend.extend(self._after_replays)
            self._after_replays.clear()


def _kept(frame: zmq.Frame) -> bytes | zmq.Frame:
    """A received frame as the device keeps it: bytes, or a large one left in libzmq's buffer.

    A large request is then held once, not copied: it is written to its blob
    file (zjournal.journal.blobs) and forwarded straight from that buffer.
    """
    return frame if len(frame) >= BLOB_SIZE else frame.bytes


def _zero_copy(frames: list[bytes]) -> list[Any]:
    """Frames read back from the journal, the large ones wrapped to be sent (and resent) without a copy.

    pyzmq copies a bytes frame it sends (``copy=True``); a ``zmq.Frame`` it
    sends by reference.
    """
    return [zmq.Frame(f, copy=False) if len(f) >= BLOB_SIZE else f for f in frames]


def _as_bytes(frames: list[Any]) -> list[bytes]:
    """The frames a classifier is given: bytes, as plain pyzmq would have received them."""
    return [f if type(f) is bytes else bytes(f) for f in frames]


def _without_header(frames: list[bytes]) -> tuple[confirm_wire.Header | None, list[bytes]]:
    """A confirm=True client's header (after its routing id) and the request without it."""
    if len(frames) > 1 and type(frames[1]) is bytes and frames[1].startswith(confirm_wire.PREFIX):
        rest = list(frames)
        header = confirm_wire.take_header(rest, 1)
        if header is not None:
            return header, rest
    return None, frames
