"""The journal's message path for end-to-end confirms: a sender's outbox, a receiver's dedup keys.

A mixin of :class:`zjournal.journal.port.SocketPort` (the sockets reach it as
the port), kept apart so that ``port.py`` reads as the path every journaled
socket takes. A ``confirm=True`` sender journals into its outbox
(zjournal.journal.outbox) and settles what its receivers confirmed; a
receiver journals a confirm sender's message with its dedup key
(zjournal.journal.seen), drops a resend it holds, and makes what it confirms
as durable as the journal promises before the confirmation goes.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from zjournal.journal import entry as rec
from zjournal.journal import inflight, outbox, seen
from zjournal.journal.durability import Durability

if TYPE_CHECKING:
    from zjournal.journal.counters import CounterKey
    from zjournal.journal.inflight import SlotFile
    from zjournal.journal.ledger import Ledger
    from zjournal.journal.outbox import Outbox

#: a confirm sender's message as the receiving journal keys it: ``(origin, seq, floor)`` (zjournal.journal.seen)
ConfirmKey = tuple[bytes, int, int]

_now = time.time
_FORGET_EVERY = 1024  # a receiver forgets a sender's dedup keys below its floor in steps of this many ids
_RING_MASK = inflight.RING_MASK  # a module global: one load on the hot path
_KEYS = inflight.KEYS
_NO_BLOBS: list[str] = []  # (never changed: the blob files of a message with none)
_RUNS = b"confirm-runs:"  # + a socket name: the runs of its confirm sender whose entries may be resent


class ConfirmPort:
    """The confirm paths of a socket port (see the module docstring)."""

    __slots__ = ()
    ledger: Ledger
    log: Any
    log_held: Any
    _open_slot_file: Any
    _settle_into: Any
    _settle_stored: Any

    def log_keyed(self, slots: SlotFile, data: bytes, settle: int, origin: bytes, seq: int, floor: int) -> int:
        """:meth:`log_held` of a confirm sender's one-frame message into ``slots``' inbound slot, key and all.

        The receiving hot path of ``confirm=True``: the commonest message (one
        small frame, its sequence above every one kept for its origin, the slot
        free or holding ``settle``) in one call, the message and its dedup key
        in one write to the slot file. Anything else takes :meth:`log_held`.
        0 when this journal holds the message already (a resend).
        """
        ledger = self.ledger
        slot = slots.inbound
        held = slot.entry_id
        if len(data) > ledger.unchecked_size or (held and held != settle) or ledger.observers:
            return self.log_held(slot, [data], settle, 0, slots, (origin, seq, floor))
        created = _now()
        lock = ledger.lock
        lock.acquire()
        try:
            if ledger.closed or ledger.background_error is not None:
                ledger.check_open()
            # SeenIndex.in_order_keys, inlined: the sequence is above every one kept for its origin
            known = ledger.seen.by_origin.get(origin)
            keys = None if known is None else known.seqs
            if keys is None or not (seq > keys[-1] if keys else seq >= known.floor):
                keys = None
                if ledger.seen.seen(origin, seq):
                    return self._drop_resend(slots, settle)
            if len(slots.keys_unstored) >= _KEYS:
                self._store_keys(slots)  # before its ring is written over (StoreError: nothing journaled)
                if keys is not None and ledger.seen.by_origin.get(origin) is not known:
                    keys = None  # its run was just forgotten whole (another run's floor): remember() makes it anew
            entry_id = ledger.next_id
            if entry_id >= ledger.reserved:
                ledger.reserve_ids()
            if not held:  # (else the overwrite below is the ack of what the slot held: the count stays put)
                if settle and not ledger.settle_held(settle):
                    self._settle_stored(settle)
                ledger.counts.add(slot.counter_key, 1)
            ledger.next_id = entry_id + 1
            slots.hold_keyed(entry_id, data, created, origin, seq)  # the key after the entry, in the ring
            ledger.slot_ring[entry_id & _RING_MASK] = slot
            if keys is not None:
                keys.append(seq)  # in order: what remember does, without a second lookup
                if floor > known.heard:  # (known: keys is its seqs)
                    known.heard = floor
            else:
                ledger.seen.remember(origin, seq, floor)
        finally:
            lock.release()
        if ledger.barrier is not None:
            ledger.barrier(entry_id)
        return entry_id

    def holds(self, origin: bytes, seq: int) -> bool:
        """Whether this journal holds the confirm message ``(origin, seq)``: a resend of it is dropped."""
        ledger = self.ledger
        known = ledger.seen.by_origin.get(origin)
        if known is not None and known.seqs and seq > known.seqs[-1]:
            return False  # above every key kept, the common case: new (a look without the lock misses keys at worst)
        with ledger.lock:
            return ledger.seen.seen(origin, seq)

    def drop_resend(self) -> None:
        """Count a resend this journal holds already as dropped (a poll found it: nothing to settle)."""
        with self.ledger.lock:
            self._drop_resend(None, 0)

    def _drop_resend(self, slots: SlotFile | None, settle: int) -> int:
        """A resend this journal holds already: counted as dropped, ``settle`` settled, in one write (lock held)."""
        ledger = self.ledger
        ledger.check_open()
        batch = ledger.batch()
        changes: list[tuple[CounterKey, int]] = []
        settled = bool(settle) and not ledger.settle_held(settle, slots)
        if settled:
            settled = self._settle_into(batch, settle, changes)  # (the message before: asking for this acks it)
        done = ledger.seen.drop(batch)
        ledger.commit(batch, changes)
        done()
        if settled:
            ledger.inflight.pop(settle, None)
        return 0

    def _store_keys(self, slots: SlotFile) -> None:
        """Move a key ring's keys to the store (lock held), forgetting each sender's keys below its floor."""
        ledger = self.ledger
        index = ledger.seen
        keys = slots.keys_unstored
        batch = ledger.batch()
        after = []
        for origin, floor in index.heard_floors(keys).items():
            if floor >= index.floor(origin) + _FORGET_EVERY:  # keys kept a little longer: safe
                forget = index.forget_below(batch, origin, floor)
                if forget is not None:
                    after.append(forget)
                    keys = seen.at_or_above(keys, origin, floor)  # (the others are forgotten: no record for them)
        after.insert(0, index.store_records(batch, keys))
        self._forget_idle_senders(batch, after)
        ledger.commit(batch, [])
        for committed in after:
            committed()
        slots.keys_unstored = []

    def begin_run(self, name: str, origin: bytes, pending: Sequence[int]) -> list[tuple[int, bytes]]:
        """``name``'s confirm sender sends its new messages as ``origin`` from now on (zjournal.journal.seen).

        Records ``(first id, origin)`` of this run, fsynced before any of its
        messages goes; keeps the earlier runs that ``pending`` (ids ascending)
        has entries of. Returns those runs, first ids ascending, this one
        last: an entry's run is the last one whose first id is not above it;
        an entry below the first is older than runs (its origin: the stream's
        own). A record that cannot be read counts as none: those entries are
        resent under the stream's origin, a possible duplicate, never a loss.
        """
        ledger = self.ledger
        key = _RUNS + name.encode()
        with ledger.lock:
            ledger.check_open()
            first = ledger.next_id  # every id this run hands out is at least this
            runs = [run for run in _decode_runs(ledger.store.get("meta", key)) if run[0] < first]
            kept = [run for i, run in enumerate(runs) if _has_between(pending, run[0], _next_first(runs, i, first))]
            kept.append((first, origin))
            batch = ledger.batch()
            batch.put("meta", key, msgpack.packb([[at, run] for at, run in kept]))
            ledger.store.write(batch, sync=True)
        return kept

    def log_out(self, box: Outbox, frames: list[bytes], envelope_size: int = 0) -> int:
        """Append a confirm sender's message into its outbox (see zjournal.journal.outbox): pending, sent once.

        No store write unless the ring is full of unconfirmed messages (then
        a chunk of them goes to the store in one write). A message too large
        for the ring takes :meth:`log`.
        """
        ledger = self.ledger
        if len(frames) > 1 or len(frames[0]) > ledger.unchecked_size:
            ledger.check_size(frames)
            if not outbox.fits(frames):
                return self.log(box.name, box.dcode, frames, track=True, attempts=1, envelope_size=envelope_size)
        data, kind = (frames[0], outbox.SINGLE) if len(frames) == 1 else box.encode(frames)
        return self._hold_out(box, data, kind, envelope_size)

    def log_out_one(self, box: Outbox, data: bytes) -> int:
        """:meth:`log_out` of one bytes frame without an envelope: the hot path of ``confirm=True``."""
        if len(data) > self.ledger.unchecked_size:
            return self.log_out(box, [data])
        return self._hold_out(box, data, outbox.SINGLE, 0)

    def _hold_out(self, box: Outbox, data: bytes, kind: int, envelope_size: int) -> int:
        """Write an encoded message into ``box`` as a new entry (its size already checked)."""
        ledger = self.ledger
        created = _now()
        lock = ledger.lock
        lock.acquire()
        try:
            if ledger.closed or ledger.background_error is not None:
                ledger.check_open()
            entry_id = ledger.next_id
            if entry_id >= ledger.reserved:
                ledger.reserve_ids()
            if box.pos >= box.clear_below:
                in_the_way = box.in_the_way(len(data))
                if in_the_way:
                    ledger.spill_held(in_the_way)  # unconfirmed for a whole ring: they wait in the store
            ledger.next_id = entry_id + 1
            box.write(entry_id, data, kind, created, envelope_size)
            box.uncounted += 1  # (the journal's counters read it: Counters.lazy)
            ledger.slot_ring[entry_id & _RING_MASK] = box  # (Ledger.holding asks the box for the entry's cell)
            if ledger.observers:
                ledger.emit("on_append", box.name, box.dcode, 1)
        finally:
            lock.release()
        if ledger.barrier is not None:  # durability="replicated": it moves once the engine has it
            ledger.barrier(entry_id)
        return entry_id

    def open_outbox(self, name: str) -> Outbox | None:
        """An outbox for a new confirm sender; None when this journal does not use slots (it logs to the store)."""
        return self._open_slot_file(name, outbox.Outbox)

    def _keys_into(self, batch: Any, keys: Sequence[ConfirmKey | None], after: list[Any]) -> list[bool]:
        """Put the dedup keys of new confirm messages into ``batch``; which messages are new (lock held).

        A key already committed, or twice in this batch, is a resend: the
        message it names is journaled here (or is, by this very batch). What
        to run once the write returned goes to ``after``
        (zjournal.journal.seen: memory changes only after the write).
        """
        seen = self.ledger.seen
        fresh: list[bool] = []
        new: dict[bytes, list[int]] = {}  # origin -> its sequences journaled by this batch
        in_batch: set[tuple[bytes, int]] = set()
        floors: dict[bytes, int] = {}
        dropped = 0
        for k in keys:
            if k is None:
                fresh.append(True)
                continue
            origin, seq, floor = k
            if (origin, seq) in in_batch or seen.seen(origin, seq):
                fresh.append(False)
                dropped += 1
                continue
            in_batch.add((origin, seq))
            fresh.append(True)
            seqs = new.get(origin)
            if seqs is None:
                new[origin] = [seq]
                floors[origin] = floor
            else:
                seqs.append(seq)
                if floor > floors[origin]:
                    floors[origin] = floor
        for origin, seqs in new.items():
            after.append(seen.add_many(batch, origin, seqs))
        if dropped:
            after.append(seen.drop(batch, dropped))
        for origin, floor in floors.items():
            if floor >= seen.floor(origin) + _FORGET_EVERY:  # keys kept a little longer: safe
                forget = seen.forget_below(batch, origin, floor)
                if forget is not None:
                    after.append(forget)
        self._forget_idle_senders(batch, after, new)
        return fresh

    def _forget_idle_senders(self, batch: Any, after: list[Any], heard: Collection[bytes] = ()) -> None:
        """Forget, in ``batch``, the runs no sender was heard from for ``seen.IDLE_FORGET`` (lock held).

        ``heard``: origins whose keys this batch writes. A look costs a pass
        over every run kept: it is made once a minute at most, when a write
        of dedup keys goes anyway.
        """
        index = self.ledger.seen
        now = time.time()
        if not index.idle_check_due(now):
            return
        busy = {origin for slots in self.ledger.slot_files for origin, _seq in slots.keys_unstored}
        busy.update(heard)
        forget = index.forget_idle(batch, now, busy)
        if forget is not None:
            after.append(forget)

    def log_confirmed(
        self,
        name: str,
        dcode: int,
        frames: list[bytes],
        origin: bytes,
        seq: int,
        floor: int,
        *,
        settle: int = 0,
        track: bool = True,
        attempts: int = 1,
        envelope_size: int = 0,
    ) -> int:
        """Append a message a confirming sender numbered ``(origin, seq)``, with its dedup key, in one write.

        0 when this journal holds that message already (a resend): nothing is
        written then but the ack of ``settle``. The key and the entry commit
        together, so a message is never taken for a duplicate unless it was
        journaled (zjournal.journal.seen). ``floor``: the sender's, below which
        its keys are forgotten.
        """
        ledger = self.ledger
        blob_names = _NO_BLOBS
        if len(frames) > 1 or len(frames[0]) > ledger.unchecked_size:
            frames, blob_names = ledger.checked(frames)
        value = rec.encode_record(rec.PENDING, attempts, time.time(), name, dcode, frames, 0.0, "", envelope_size)
        try:
            with ledger.lock:
                if ledger.closed or ledger.background_error is not None:
                    ledger.check_open()
                if settle and ledger.settle_held(settle):
                    settle = 0
                batch = ledger.batch()
                changes: list[tuple[CounterKey, int]] = []
                settled = self._settle_into(batch, settle, changes) if settle else False
                duplicate = ledger.seen.seen(origin, seq)
                after: list[Any] = []
                if duplicate:
                    after.append(ledger.seen.drop(batch))
                else:
                    changes.append(((name, dcode, rec.PENDING), 1))
                    entry_id = ledger.put_new_entry(batch, value, blob_names)
                    after.append(ledger.seen.add(batch, origin, seq))
                if floor >= ledger.seen.floor(origin) + _FORGET_EVERY:  # keys kept a little longer: safe
                    forget = ledger.seen.forget_below(batch, origin, floor)
                    if forget is not None:
                        after.append(forget)
                self._forget_idle_senders(batch, after, (origin,))
                if len(batch):
                    ledger.commit(batch, changes)
                if blob_names:
                    if duplicate:
                        ledger.discard_blobs(blob_names)  # a resend: the entry journaled before has its own
                    else:
                        ledger.blobs_committed(entry_id, blob_names)
                for committed in after:
                    committed()
                if settled:
                    known = ledger.inflight.pop(settle)
                if not duplicate and track:
                    ledger.inflight[entry_id] = (name, dcode)
                if ledger.observers:
                    if not duplicate:
                        ledger.emit("on_append", name, dcode, 1)
                    if settled:
                        ledger.emit("on_ack", known[0], known[1], 1)
        except BaseException:
            if blob_names:
                ledger.discard_blobs_unless_owned(blob_names)
            raise
        if duplicate:
            return 0
        if ledger.barrier is not None:
            ledger.barrier(entry_id)
        return entry_id

    def confirm_endpoint(self) -> str | None:
        """Where confirm senders bind for confirmations (``open(..., confirm_endpoint=)``); None: a loopback port."""
        return self.ledger.confirm_endpoint

    def confirmed(self, count: int, seconds: float, worst: float) -> None:
        """``count`` entries of a confirm sender were confirmed, ``seconds`` after their sends in all."""
        latency = self.ledger.rare.confirm_latency
        latency[0] += count
        latency[1] += seconds
        if worst > latency[2]:
            latency[2] = worst

    def durable_once_written(self) -> bool:
        """Whether a write that returned is as durable as this journal promises (no fsync to wait for)."""
        return self.ledger.durability is not Durability.INTERVAL

    def make_durable(self) -> None:
        """Before a confirm goes out: what the store holds survives what this durability mode promises.

        ``process`` and ``always``: a write that returned is durable enough;
        ``interval``: fsynced now (once per batch of confirms), the store and the
        slot files both: a confirm sender's message may be journaled in a slot,
        its dedup key in the slot file's key ring.
        """
        ledger = self.ledger
        if ledger.durability is Durability.INTERVAL:
            ledger.store.sync()
            for slots in list(ledger.slot_files):
                slots.sync_if_changed()


def _decode_runs(raw: bytes | None) -> list[tuple[int, bytes]]:
    """A runs record (:meth:`ConfirmPort.begin_run`), checked as input from disk: [] when it is not one."""
    if raw is None:
        return []
    try:
        runs = [(at, run) for at, run in msgpack.unpackb(raw)]
    except (ValueError, TypeError, msgpack.UnpackException):
        return []
    for at, run in runs:
        if type(at) is not int or at < 0 or type(run) is not bytes or len(run) != 16:
            return []
    return runs if runs == sorted(runs) else []


def _next_first(runs: list[tuple[int, bytes]], i: int, last: int) -> int:
    return runs[i + 1][0] if i + 1 < len(runs) else last


def _has_between(ids: Sequence[int], low: int, high: int) -> bool:
    """Whether sorted ``ids`` has one in ``[low, high)``."""
    i = bisect.bisect_left(ids, low)
    return i < len(ids) and ids[i] < high
