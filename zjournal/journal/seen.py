"""Which confirm-carrying messages a journal has journaled: the receiving side's deduplication record.

A sender with ``confirm=True`` numbers its messages: an *origin* (16 bytes)
and a *sequence* (its entry id). An origin is a *stream* (its first
:data:`STREAM_SIZE` bytes: one journal's socket name, the same across
restarts) and a *run* (the rest: drawn afresh each time the socket is
wrapped). A message keeps the origin of the run that first sent it, resends
after a restart included, so a resend is known; a new message never takes
a key an earlier run used, even when the sender's journal went back in time
(restored from a copy, or a power cut in ``process`` or ``interval`` mode
took back its last id reservations): such a journal hands out its ids
again, and they must not look like messages seen.

The sender resends what no receiver confirmed. A receiver drops a resend
it journaled before (its confirmation was lost, or the sender restarted
before it arrived) and confirms it again. The rule this module keeps: **a
message is reported as seen only if its key was committed to the store**
(in the same batch as the entry it became, by the caller), so dropping it
never loses a message this journal did not hold.

Bounded: every message also carries the sender's *floor*, the lowest
sequence it still waits a confirmation for. Nothing below it is ever resent,
so the keys below it are deleted (:meth:`SeenIndex.forget_below`), those of
the stream's earlier runs too (the floor is the stream's: sequences are its
journal's entry ids), and an earlier run with none left is forgotten whole:
a receiver keeps nothing per restart of its senders. A message
below the floor that arrives anyway (it was in a pipe when the floor moved)
is unknown, and taken as new: a possible duplicate, never a loss. And at
most :data:`WINDOW` keys are kept per origin: past that the oldest go, with
the same consequence. A run whose keys were last written
:data:`IDLE_FORGET` ago is forgotten whole (:meth:`SeenIndex.forget_idle`):
a sender that went for good never announces the floor that would free its
last keys.

Keys live in the store's ``meta`` table, one record per origin per write:
``seen:`` + origin + the first sequence of the write (8 bytes, big-endian),
its value every sequence of that write (u64 each, big-endian; empty means
just the one in the key, as one record per message was once written), so a
batch of a thousand messages adds one record, not a thousand. The floor of
an origin is under ``seen-floor:``. A record goes when its last sequence
is below the floor.
"""

from __future__ import annotations

import bisect
import heapq
import operator
import struct
import time
from collections.abc import Collection
from typing import Any

from zjournal.store.base import Store

ORIGIN_SIZE = 16
STREAM_SIZE = 8  # an origin's first bytes: its stream (the rest: the run)
WINDOW = 1_000_000  # keys kept per origin at most (a sender's unconfirmed window is far smaller)
# A run not heard from for this long is forgotten whole (SeenIndex.forget_idle): a sender that went for good
# leaves nothing behind, and one that comes back later has its resends taken as new (possible duplicates).
IDLE_FORGET = 24 * 3600.0
IDLE_CHECK_EVERY = 60.0  # seconds between looks for idle runs (each look goes over every run kept)

_KEY = b"seen:"
_FLOOR = b"seen-floor:"
_DROPPED = b"seen-dropped"  # how many resends were dropped as duplicates, ever
_SEQ = struct.Struct(">Q")
_origin_of = operator.itemgetter(0)
_seq_of = operator.itemgetter(1)


def key(origin: bytes, seq: int) -> bytes:
    return _KEY + origin + _SEQ.pack(seq)


def stream_of(origin: bytes) -> bytes:
    """The stream an origin is a run of (see the module docstring)."""
    return origin[:STREAM_SIZE]


class _Origin:
    __slots__ = ("active", "floor", "heard", "records", "seqs")

    def __init__(self) -> None:
        self.active = time.time()  # when its keys were last written (or this journal opened): forget_idle
        self.floor = 0  # every sequence below it is settled at the sender (never resent)
        self.heard = 0  # the highest floor its sender announced (in memory: the next forget applies it)
        self.seqs: list[int] = []  # committed sequences at or above the floor, sorted
        self.records: list[tuple[int, int]] = []  # a heap of (last, first) sequence of each record in the store

    def insert(self, seq: int) -> None:
        seqs = self.seqs
        if not seqs or seq > seqs[-1]:
            seqs.append(seq)  # the common case: a sender's sequences come in order
            return
        i = bisect.bisect_left(seqs, seq)
        if i == len(seqs) or seqs[i] != seq:
            seqs.insert(i, seq)


class SeenIndex:
    """The committed keys, in memory (loaded once at open); changes go through the caller's batch.

    Like the journal's counters, memory changes only after the batch was
    written: :meth:`add_many` and :meth:`forget_below` put their changes in a
    batch and return a function the caller runs once the write returned.
    """

    def __init__(self) -> None:
        # origin -> what is kept of it (read, not changed, by the receiving hot path: SocketPort.log_keyed)
        self.by_origin: dict[bytes, _Origin] = {}
        self.by_stream: dict[bytes, set[bytes]] = {}  # stream -> its runs' origins in by_origin
        self.dropped = 0
        self._idle_checked = time.time()

    def _known(self, origin: bytes) -> _Origin:
        """What is kept of ``origin``, made (and its stream told) if nothing was."""
        known = self.by_origin.get(origin)
        if known is None:
            known = self.by_origin[origin] = _Origin()
            self.by_stream.setdefault(stream_of(origin), set()).add(origin)
        return known

    def load(self, store: Store) -> None:
        """Read every record and floor of the store (a scan of the ``seen`` part of ``meta``)."""
        origins: dict[bytes, _Origin] = {}
        for raw, value in store.scan("meta", _FLOOR):
            if not raw.startswith(_FLOOR):
                break
            if len(raw) == len(_FLOOR) + ORIGIN_SIZE and len(value) == _SEQ.size:
                origins.setdefault(raw[len(_FLOOR) :], _Origin()).floor = _SEQ.unpack(value)[0]
        for raw, value in store.scan("meta", _KEY):
            if not raw.startswith(_KEY):
                break
            if len(raw) != len(_KEY) + ORIGIN_SIZE + _SEQ.size or len(value) % _SEQ.size:
                continue  # not a record this module wrote: never taken as a message seen
            origin = raw[len(_KEY) : len(_KEY) + ORIGIN_SIZE]
            first = _SEQ.unpack(raw[len(_KEY) + ORIGIN_SIZE :])[0]
            seqs = struct.unpack(f">{len(value) // _SEQ.size}Q", value) if value else (first,)
            if not seqs or seqs[0] != first:
                continue  # not a record this module wrote
            known = origins.setdefault(origin, _Origin())
            known.records.append((max(seqs), first))
            for seq in seqs:
                if seq >= known.floor:
                    known.insert(seq)
        for known in origins.values():
            heapq.heapify(known.records)
        self.by_origin = origins
        self.by_stream = {}
        for origin in origins:
            self.by_stream.setdefault(stream_of(origin), set()).add(origin)
        raw = store.get("meta", _DROPPED)
        self.dropped = _SEQ.unpack(raw)[0] if raw is not None and len(raw) == _SEQ.size else 0

    def drop(self, batch: Any, count: int = 1) -> Any:
        """Count ``count`` resends dropped as duplicates, in ``batch``; returns what to run after the write."""
        total = self.dropped + count
        batch.put("meta", _DROPPED, _SEQ.pack(total))

        def committed() -> None:
            self.dropped = max(self.dropped, total)

        return committed

    def seen(self, origin: bytes, seq: int) -> bool:
        """Whether ``(origin, seq)`` was committed as journaled here (and not forgotten)."""
        known = self.by_origin.get(origin)
        if known is None:
            return False
        seqs = known.seqs
        i = bisect.bisect_left(seqs, seq)
        return i < len(seqs) and seqs[i] == seq

    def in_order_keys(self, origin: bytes, seq: int) -> list[int] | None:
        """``origin``'s kept sequences when ``seq`` is above all of them and its floor (so new: no search needed).

        None when it is not (then :meth:`seen` decides). The receiving hot path
        checks, journals, then appends ``seq`` to the list itself (under the
        journal's lock): one lookup where ``remember`` would take another.
        """
        known = self.by_origin.get(origin)
        if known is None:
            return None
        seqs = known.seqs
        if seqs:
            return seqs if seq > seqs[-1] else None
        return seqs if seq >= known.floor else None

    def floor(self, origin: bytes) -> int:
        known = self.by_origin.get(origin)
        return 0 if known is None else known.floor

    def add(self, batch: Any, origin: bytes, seq: int) -> Any:
        """Put the key of ``(origin, seq)`` in ``batch``; returns what to run after the write."""
        return self.add_many(batch, origin, [seq])

    def add_many(self, batch: Any, origin: bytes, seqs: list[int]) -> Any:
        """Put the keys of ``origin``'s ``seqs`` in ``batch``, as one record; returns what to run after the write.

        Sequences known already, or below the floor (nothing resends those),
        are left out: a record's first sequence is then never another's.
        """
        known = self.by_origin.get(origin)
        floor = 0 if known is None else known.floor
        new = [seq for seq in seqs if seq >= floor and not self.seen(origin, seq)]
        if not new:
            return _nothing
        first = new[0]
        batch.put("meta", key(origin, first), b"" if len(new) == 1 else struct.pack(f">{len(new)}Q", *new))
        record = (max(new), first)

        def committed() -> None:
            known = self._known(origin)
            known.active = time.time()
            heapq.heappush(known.records, record)
            for seq in new:
                if seq >= known.floor:  # (the floor may have passed it meanwhile: nothing will resend it)
                    known.insert(seq)
            if len(known.seqs) > WINDOW:
                del known.seqs[: len(known.seqs) - WINDOW]  # their records go with a later forget_below

        return committed

    def remember(self, origin: bytes, seq: int, floor: int) -> None:
        """Know ``(origin, seq)`` as journaled now: its key is durable elsewhere (a slot file's key ring).

        ``floor``: the one its message announced (:meth:`heard_floors`).
        """
        known = self._known(origin)
        if seq >= known.floor:
            known.insert(seq)
        if floor > known.heard:
            known.heard = floor

    def hear(self, origin: bytes, floor: int) -> None:
        """The sender of ``origin`` announced ``floor`` (a message whose key is in a key ring)."""
        known = self.by_origin.get(origin)
        if known is not None and floor > known.heard:
            known.heard = floor

    def heard_floors(self, keys: list[tuple[bytes, int]]) -> dict[bytes, int]:
        """The highest floor each origin of ``keys`` announced: what to forget below when a key ring is stored.

        Each sender's own: a ring holds the keys of every sender of the
        socket, interleaved, and each one's floor applies to its stream only.
        """
        origins = set(map(_origin_of, keys))
        by_origin = self.by_origin
        return {origin: by_origin[origin].heard for origin in origins if origin in by_origin}

    def store_records(self, batch: Any, keys: list[tuple[bytes, int]]) -> Any:
        """Put records for keys already remembered (a key ring's, moved to the store) in ``batch``."""
        by_origin: dict[bytes, list[int]]
        if len(set(map(_origin_of, keys))) == 1:  # one sender's: the common case
            by_origin = {keys[0][0]: list(map(_seq_of, keys))}
        else:  # several senders' keys, interleaved as they took turns
            by_origin = {}
            for origin, seq in keys:
                seqs = by_origin.get(origin)
                if seqs is None:
                    by_origin[origin] = [seq]
                else:
                    seqs.append(seq)
        records = []
        for origin, seqs in by_origin.items():
            batch.put("meta", key(origin, seqs[0]), b"" if len(seqs) == 1 else struct.pack(f">{len(seqs)}Q", *seqs))
            records.append((origin, (max(seqs), seqs[0])))

        def committed() -> None:
            now = time.time()
            for origin, record in records:
                known = self._known(origin)
                known.active = now
                heapq.heappush(known.records, record)

        return committed

    def idle_check_due(self, now: float) -> bool:
        """Whether :meth:`forget_idle` should look now (at most every :data:`IDLE_CHECK_EVERY` seconds)."""
        if now - self._idle_checked < IDLE_CHECK_EVERY:
            return False
        self._idle_checked = now
        return True

    def forget_idle(self, batch: Any, now: float, busy: Collection[bytes]) -> Any:
        """Forget whole, in ``batch``, the runs whose keys were last written :data:`IDLE_FORGET` seconds ago.

        Their sender sent nothing since, not even a resend (a sender resends
        what is unconfirmed at least every 5 minutes, or ``confirm_timeout``
        if longer: zjournal.sockets.confirm_resending): it is gone, or down
        for that long. ``busy``: origins with keys in a key ring not stored
        yet (heard from since). Returns what to run after the write; None if
        nothing goes.
        """
        before = now - IDLE_FORGET
        idle = [(o, k) for o, k in self.by_origin.items() if k.active < before and o not in busy]
        if not idle:
            return None
        for origin, known in idle:
            for _last, first in known.records:
                batch.delete("meta", key(origin, first))
            batch.delete("meta", _FLOOR + origin)

        def committed() -> None:
            for origin, known in idle:
                self._drop(origin, known)

        return committed

    def _drop(self, origin: bytes, known: _Origin) -> None:
        """Forget ``origin`` in memory (its records went in a write), unless it was made anew meanwhile."""
        if self.by_origin.get(origin) is not known:
            return
        del self.by_origin[origin]
        runs = self.by_stream.get(stream_of(origin))
        if runs is not None:
            runs.discard(origin)
            if not runs:
                del self.by_stream[stream_of(origin)]

    def forget_below(self, batch: Any, origin: bytes, floor: int) -> Any:
        """Delete the records of ``origin``'s stream wholly below ``floor`` (the sender's), in ``batch``.

        ``origin``'s own and those of the stream's earlier runs (the floor is
        the stream's); an earlier run left with nothing at or above it is
        forgotten whole. Returns what to run after the write; None if nothing changes.
        """
        changes = []
        for run in sorted(self.by_stream.get(stream_of(origin), ())):
            if run != origin:
                changes.append(self._forget_run_below(batch, run, floor, whole=True))
        changes.append(self._forget_run_below(batch, origin, floor, whole=False))
        done = [change for change in changes if change is not None]
        if not done:
            return None

        def committed() -> None:
            for change in done:
                change()

        return committed

    def _forget_run_below(self, batch: Any, origin: bytes, floor: int, whole: bool) -> Any:
        """:meth:`forget_below` of one origin; ``whole``: forget it entirely if nothing is left at or above."""
        known = self.by_origin.get(origin)
        if known is None or floor <= known.floor:
            return None
        records = known.records
        # Taken off before the write: should it fail, they stay in the store until the next open reads them.
        gone = []
        while records and records[0][0] < floor:
            gone.append(heapq.heappop(records))
        for _last, first in gone:
            batch.delete("meta", key(origin, first))
        # (seqs not in records yet are in a slot file's key ring: they keep the run, and its floor)
        whole = whole and not records and (not known.seqs or known.seqs[-1] < floor)
        if whole:
            batch.delete("meta", _FLOOR + origin)
        else:
            batch.put("meta", _FLOOR + origin, _SEQ.pack(floor))

        def committed() -> None:
            if whole and not known.records:
                self._drop(origin, known)
            elif floor > known.floor:
                known.floor = floor
                del known.seqs[: bisect.bisect_left(known.seqs, floor)]

        return committed

    def senders(self) -> int:
        """How many senders' streams have keys or a floor kept here."""
        return len(self.by_stream)

    def origins(self) -> dict[bytes, tuple[int, int]]:
        """``origin -> (floor, keys kept)``, for inspection."""
        return {origin: (known.floor, len(known.seqs)) for origin, known in self.by_origin.items()}


def at_or_above(keys: list[tuple[bytes, int]], origin: bytes, floor: int) -> list[tuple[bytes, int]]:
    """``keys`` but those of ``origin``'s stream below ``floor`` (what :meth:`SeenIndex.forget_below` forgets)."""
    stream = stream_of(origin)
    return [k for k in keys if k[1] >= floor or not k[0].startswith(stream)]


def _nothing() -> None:
    pass
