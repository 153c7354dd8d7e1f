"""The socket port: the journal's one interface for code that moves messages.

The journaled sockets, prefetch, redelivery, replay and the queue device
(``zjournal.sockets``, ``zjournal.device``) journal and settle messages
through a :class:`SocketPort`, got with ``zjournal.journal.core.port_of``, and nothing else of
the journal but its public API. These methods run once per message: they
work on the journal's :class:`~zjournal.journal.ledger.Ledger` directly, and
every call saved counts. Application code uses ``append``/``ack`` instead.

The journal never imports the socket layer. ``Journal.wrap``, ``socket``,
``context`` and ``replay`` hand over to the ``SocketLayer`` that
``zjournal.sockets`` registers with ``zjournal.journal.core.register_socket_layer``
when it is imported (``import zjournal`` does that).

The paths of end-to-end confirms (a sender's outbox, a receiver's dedup
keys) are in :class:`~zjournal.journal.confirm_port.ConfirmPort`, a mixin of the port.

Settling an entry: acking it because its socket's policy says it is done
(``next``, ``sent``, ``reply``). Only entries the port knows as in flight
(held in a socket's slot, or in ``Ledger.inflight``) are settled: an entry
somebody acked, nacked or killed meanwhile is left alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zjournal.errors import JournalForkedError, StoreError
from zjournal.journal import entry as rec
from zjournal.journal import inflight, outbox
from zjournal.journal.blobs import BLOB_SIZE
from zjournal.journal.confirm_port import ConfirmKey, ConfirmPort
from zjournal.journal.durability import Durability
from zjournal.journal.entry import Entry
from zjournal.journal.inflight import fits_slot
from zjournal.journal.ledger import AttachedSocket, Ledger, log
from zjournal.store import forking

if TYPE_CHECKING:
    from zjournal.journal.counters import CounterKey
    from zjournal.journal.inflight import Slot, SlotFile
    from zjournal.journal.outbox import Outbox

_now = time.time
_RING_MASK = inflight.RING_MASK  # a module global: one load on the hot path
_KEYS = inflight.KEYS
_IN = rec.DIRECTION_CODES[rec.Direction.IN]
_NO_BLOBS: list[str] = []  # (never changed: the blob files of a message with none)
#: what one fetch of entries to redeliver reads back at most (past its first entry)
REDELIVERY_BYTES = 64 << 20


class SocketPort(ConfirmPort):
    """A journal's message path (see the module docstring). Lock: taken here; callers hold none."""

    __slots__ = ("ledger",)

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # -- journaling --------------------------------------------------------

    def log_held(
        self,
        slot: Slot,
        frames: list[bytes],
        settle: int = 0,
        envelope_size: int = 0,
        keyed: SlotFile | None = None,
        key: Any = None,
    ) -> int:
        """Append one message into a socket's in-flight slot, settling ``settle`` (see zjournal.journal.inflight).

        The hot path of the sockets in ``process`` and ``interval`` mode: no
        store write at all when the slot held ``settle`` (the overwrite is its
        ack). What the slot held and is still pending goes to the store first.
        A record too large for a slot takes :meth:`log` instead.

        ``keyed``: a confirm sender's message (``key``: its ``(origin, seq,
        floor)``, or a confirm_wire.Header) into the inbound slot of that slot
        file, its dedup key into the file's key ring, all under one taking of
        the lock. Still no store write: every :data:`inflight.KEYS` keys the
        ring goes to the store in one write. 0 when this journal holds the
        message already (a resend; that drop is counted with a write, and
        ``settle`` is settled).
        """
        ledger = self.ledger
        if len(frames) > 1 or len(frames[0]) > ledger.unchecked_size:  # a small single frame skips the checks
            ledger.check_size(frames)
            if not fits_slot(frames):
                if keyed is not None:  # (rare) the store: key and entry in one write
                    origin_seq_floor = key[:3]
                    return self.log_confirmed(
                        slot.name, slot.dcode, frames, *origin_seq_floor, settle=settle, envelope_size=envelope_size
                    )
                return self.log(slot.name, slot.dcode, frames, settle=settle, envelope_size=envelope_size)
        created = _now()
        lock = ledger.lock
        lock.acquire()  # not `with`: half the cost, and this runs once per message
        try:
            if ledger.closed or ledger.background_error is not None:
                ledger.check_open()
            if keyed is not None:
                seen = ledger.seen
                origin = key[0]
                seq = key[1]
                keys = seen.in_order_keys(origin, seq)
                if keys is None and seen.seen(origin, seq):
                    return self._drop_resend(keyed, settle)
                if len(keyed.keys_unstored) >= _KEYS:
                    self._store_keys(keyed)  # before its ring is written over (StoreError: nothing journaled)
                    keys = seen.in_order_keys(origin, seq)  # (its run may have been forgotten whole just now)
            entry_id = ledger.next_id
            if entry_id >= ledger.reserved:
                ledger.reserve_ids()  # a meta write once per block of ids, before anything else changes
            held = slot.entry_id
            observers = ledger.observers
            if held and held == settle:
                # The overwrite below is the ack of what the slot held. Same
                # stream, one out and one in: the pending counter stays put.
                if observers:
                    ledger.emit("on_ack", slot.name, slot.dcode, 1)
            else:
                if held:
                    ledger.spill(slot)  # still pending (kept, or awaiting a reply): it must outlive the slot
                if settle and not ledger.settle_held(settle):
                    self._settle_stored(settle)
                ledger.counts.add(slot.counter_key, 1)
            ledger.next_id = entry_id + 1
            slot.write(entry_id, frames, created, envelope_size)  # interval mode: the maintainer sees the new id
            ledger.slot_ring[entry_id & _RING_MASK] = slot  # journal.ack(id) and get(id) find it (see holding)
            if keyed is not None:
                keyed.note_key(origin, seq)  # after the entry: a key never names a message not journaled
                if keys is not None:
                    keys.append(seq)  # in order: what remember does, without a second lookup
                    seen.hear(origin, key[2])
                else:
                    seen.remember(origin, seq, key[2])  # (kept sorted)
            if observers:
                ledger.emit("on_append", slot.name, slot.dcode, 1)
        finally:
            lock.release()
        if ledger.barrier is not None:  # durability="replicated": it moves once the engine has it
            ledger.barrier(entry_id)
        return entry_id

    def log(
        self,
        name: str,
        dcode: int,
        frames: list[bytes],
        *,
        settle: int = 0,
        track: bool = True,
        attempts: int = 1,
        envelope_size: int = 0,
    ) -> int:
        """Append one message and settle an earlier one in the same batch.

        The hot path of the sockets without a slot: one write instead of two,
        and no read of the settled entry (its name and direction are known
        from ``inflight``). ``frames`` must already be a list of bytes.
        ``track``: the socket settles the new entry itself later.
        """
        ledger = self.ledger
        blob_names = _NO_BLOBS
        if len(frames) > 1 or len(frames[0]) > ledger.unchecked_size:  # a small single frame skips the sum
            frames, blob_names = ledger.checked(frames)
        value = rec.encode_record(rec.PENDING, attempts, time.time(), name, dcode, frames, 0.0, "", envelope_size)
        try:
            with ledger.lock:
                if ledger.closed or ledger.background_error is not None:
                    ledger.check_open()
                if settle and ledger.settle_held(settle):
                    settle = 0
                try:
                    batch = ledger.batch()
                    changes: list[tuple[CounterKey, int]] = [((name, dcode, rec.PENDING), 1)]
                    settled = self._settle_into(batch, settle, changes) if settle else False
                    entry_id = ledger.put_new_entry(batch, value, blob_names)
                    ledger.commit(batch, changes)
                except StoreError as e:
                    if dcode != _IN or settle or blob_names:
                        raise
                    # A received message on a full disk: the journal's spare file takes it (or this raises e)
                    return ledger.overflow_received(e, name, frames, envelope_size)
                if blob_names:
                    ledger.blobs_committed(entry_id, blob_names)
                if settled:
                    known = ledger.inflight.pop(settle)
                if track:
                    ledger.inflight[entry_id] = (name, dcode)
                if ledger.observers:
                    ledger.emit("on_append", name, dcode, 1)
                    if settled:
                        ledger.emit("on_ack", known[0], known[1], 1)
        except BaseException:
            if blob_names:
                ledger.discard_blobs_unless_owned(blob_names)
            raise
        if ledger.barrier is not None:
            ledger.barrier(entry_id)
        return entry_id

    def log_many(
        self,
        name: str,
        dcode: int,
        messages: list[tuple[list[bytes], int]],
        settle: Sequence[int] = (),
        track: bool = True,
        attempts: int = 0,
        delivered: Sequence[int] = (),
        keys: Sequence[ConfirmKey | None] = (),
    ) -> list[int]:
        """Append many messages ``(frames, envelope_size)`` and settle many entries in one batch.

        For code that owns its loop (the queue device, prefetch): one write
        for everything that was waiting. ``attempts``: 0 for messages not yet
        handed to anyone (recorded by :meth:`deliver_many` when they are, or
        listed in ``delivered`` by a later call: pending entries handed over
        since, whose hand-over this write counts). ``keys``, one per message:
        the ``(origin, seq, floor)`` of a confirm sender's message (None for
        the others), committed with its entry; a message this journal holds
        already (a resend) is not journaled again, and its id is 0.
        """
        ledger = self.ledger
        large = []
        for index, (frames, _size) in enumerate(messages):
            # (small single frames cannot be too large, nor large enough for a blob file)
            if (len(frames) > 1 or len(frames[0]) > ledger.unchecked_size) and ledger.check_size(frames) >= BLOB_SIZE:
                large.append(index)
        blob_names: dict[int, list[str]] = {}  # message index -> the blob files written for it
        if large:
            messages = self._externalize(messages, large, blob_names)
        try:
            return self._log_many(name, dcode, messages, settle, track, attempts, delivered, keys, blob_names)
        except BaseException:
            for names in blob_names.values():
                ledger.discard_blobs_unless_owned(names)
            raise

    def _externalize(
        self, messages: list[tuple[list[bytes], int]], large: list[int], blob_names: dict[int, list[str]]
    ) -> list[tuple[list[Any], int]]:
        """``messages`` with the large frames of those at ``large`` in blob files (a copy: the caller's stay)."""
        out: list[tuple[list[Any], int]] = list(messages)
        try:
            for index in large:
                frames, size = out[index]
                frames, names = self.ledger.checked(frames)
                if names:
                    out[index] = (frames, size)
                    blob_names[index] = names
        except BaseException:
            for names in blob_names.values():
                self.ledger.discard_blobs(names)
            raise
        return out

    def _log_many(
        self,
        name: str,
        dcode: int,
        messages: list[tuple[list[Any], int]],
        settle: Sequence[int],
        track: bool,
        attempts: int,
        delivered: Sequence[int],
        keys: Sequence[ConfirmKey | None],
        blob_names: dict[int, list[str]],
    ) -> list[int]:
        ledger = self.ledger
        now = time.time()
        encode, pending = rec.encode_record, rec.PENDING
        values = [encode(pending, attempts, now, name, dcode, frames, 0.0, "", size) for frames, size in messages]
        with ledger.lock:
            ledger.check_open()
            if ledger.slot_files:
                settle = [entry_id for entry_id in settle if not ledger.settle_held(entry_id)]
            batch = ledger.batch()
            changes: list[tuple[CounterKey, int]] = []
            if delivered:
                self._count_deliveries(batch, delivered, now)
            if ledger.retention > 0:
                settled = [i for i in dict.fromkeys(settle) if self._settle_into(batch, i, changes)]
            else:
                settled = self._settle_many_into(batch, settle, changes)
            after: list[Any] = []
            fresh = self._keys_into(batch, keys, after) if keys else None
            ids = []
            for index, value in enumerate(values):
                if fresh is not None and not fresh[index]:
                    ids.append(0)  # a resend journaled here before
                    continue
                ids.append(ledger.put_new_entry(batch, value, blob_names.get(index) if blob_names else None))
            # The batch holds copies: a large message is not held a third time during the write.
            values.clear()
            value = b""
            ids_new = [i for i in ids if i] if fresh is not None else ids  # (resends held already: 0)
            if ids_new:
                changes.append(((name, dcode, rec.PENDING), len(ids_new)))
            if len(batch):
                ledger.commit(batch, changes)
            for index, names in blob_names.items():
                if ids[index]:
                    ledger.blobs_committed(ids[index], names)
                else:
                    ledger.discard_blobs(names)  # a resend: the entry journaled before has its own
            for committed in after:
                committed()
            in_flight = ledger.inflight
            acked_streams = [in_flight.pop(entry_id) for entry_id in settled]
            if track:
                for entry_id in ids_new:
                    in_flight[entry_id] = (name, dcode)
            if ledger.observers:
                if ids_new:
                    ledger.emit("on_append", name, dcode, len(ids_new))
                for stream_name, stream_dcode in acked_streams:
                    ledger.emit("on_ack", stream_name, stream_dcode, 1)
        if ledger.barrier is not None and any(ids):
            ledger.barrier(max(ids))  # the whole batch in one wait: group commit
        return ids

    def settle_many(self, name: str, dcode: int, entry_ids: Sequence[int], box: Outbox | None = None) -> None:
        """Ack in-flight entries of one stream in one write (confirmations that came back).

        Those ``box`` holds are acked by clearing their record, without a write.
        """
        if box is not None:
            ledger = self.ledger
            stored = []
            with ledger.lock:
                if ledger.closed:
                    return  # closed meanwhile: they stay pending, resent by the next run
                stored = box.clear_many(entry_ids)  # those not in the ring were spilled (or too large): the store
                cleared = len(entry_ids) - len(stored)
                if cleared:
                    box.uncounted -= cleared
                    if ledger.observers:
                        ledger.emit("on_ack", name, dcode, cleared)
            if not stored:
                return
            entry_ids = stored
        self.log_many(name, dcode, [], settle=entry_ids)

    def pending_ids(self, name: str, dcode: int) -> list[int]:
        """The ids of a stream's pending entries, oldest first (a scan: for startup, not per message).

        The counters say first whether there are any: with none, as for most
        sockets wrapped, no scan of every entry (200,000 of other streams made
        each confirm sender's or REQ's wrap take 200 ms; 2026-12-07).
        """
        ledger = self.ledger
        if not ledger.counts.count(name, dcode, rec.PENDING):
            return []
        return [entry_id for entry_id, _r in ledger.select_records(name, rec.PENDING, dcode)]

    def adopt(self, entry_id: int, name: str, dcode: int) -> None:
        """A socket settles this pending entry from an earlier run itself (it resends it, awaits its confirm)."""
        with self.ledger.lock:
            self.ledger.inflight[entry_id] = (name, dcode)

    def attempt(self, entry_id: int, limit: int | None) -> Entry:
        """One more delivery of a pending entry, or ``dead`` past ``limit`` (see Journal.attempt)."""
        ledger = self.ledger
        with ledger.lock:
            ledger.check_open()
            return ledger.attempt(entry_id, limit)

    def ack_dead(self, entry_ids: Sequence[int]) -> set[int]:
        """Ack those of these entries that are dead letters (a receiver confirmed them after all); which."""
        ledger = self.ledger
        acked: set[int] = set()
        with ledger.lock:
            if ledger.closed:
                return acked
            for entry_id in entry_ids:
                r = ledger.load_for_update(entry_id)
                if r is not None and r[0] == rec.DEAD:
                    ledger.acknowledge(entry_id, r)
                    acked.add(entry_id)
        return acked

    def dead(self, entry_id: int, reason: str) -> None:
        """Make a pending entry a dead letter with ``reason`` (see Journal.dead)."""
        ledger = self.ledger
        with ledger.lock:
            ledger.check_open()
            ledger.dead(entry_id, reason)

    def load(self, entry_id: int) -> Entry | None:
        """An entry, wherever it is (a resend reads its frames)."""
        r = self.ledger.load_record(entry_id)
        return None if r is None else rec.entry_from_record(entry_id, r, self.ledger.rare.blobs)

    def unlog(self, entry_id: int) -> None:
        """Take back an entry whose message never moved (the send failed)."""
        ledger = self.ledger
        with ledger.lock:
            if ledger.closed:
                return
            slot = ledger.find(entry_id)[0] if ledger.slot_files else None
            if slot is not None:
                slot.clear()
                ledger.counts.add(slot.counter_key, -1)
                return
            known = ledger.inflight.pop(entry_id, None)
            if known is None:
                return
            batch = ledger.batch()
            batch.delete("entries", rec.encode_key(entry_id))
            ledger.commit(batch, [((known[0], known[1], rec.PENDING), -1)])

    def count_ephemeral(self, name: str) -> None:
        """One more ephemeral message of ``name`` passed (never written)."""
        ephemeral = self.ledger.ephemeral
        ephemeral[name] = ephemeral.get(name, 0) + 1

    def check_size(self, frames: list[bytes]) -> None:
        """Raise MessageTooLargeError for a message over the journal's limit."""
        self.ledger.check_size(frames)

    @property
    def max_message_size(self) -> int:
        return self.ledger.max_message_size

    # -- settling ----------------------------------------------------------

    def settle(self, entry_id: int, slots: SlotFile | None = None) -> None:
        """Ack an in-flight entry on its own (when there is nothing to fold it into).

        ``slots``: the settling socket's slot file, which holds the entry if any slot does.
        """
        ledger = self.ledger
        with ledger.lock:
            if ledger.closed or ledger.settle_held(entry_id, slots):
                return
            self._settle_stored(entry_id)

    def return_in_hand(self, entry_id: int) -> None:
        """A socket closed cleanly holding ``entry_id`` unsettled: it stays pending, its close counted.

        The hand-over still counts in ``attempts`` (``last_attempts`` says
        so when it comes back), but not toward ``max_attempts``: closing is
        not a failure of the message (see Entry.close_returns).
        """
        ledger = self.ledger
        with ledger.lock:
            ledger.inflight.pop(entry_id, None)
            if ledger.closed:
                return
            r = ledger.load_for_update(entry_id)
            if r is None or r[0] != rec.PENDING or rec.counted_attempts(r) <= 0:
                return  # settled meanwhile, or never handed over: nothing to count
            if len(r) > 9:
                r[9] += 1
            else:
                r.append(1)
            batch = ledger.batch()
            batch.put("entries", rec.encode_key(entry_id), rec.encode_record(*r))
            ledger.commit(batch, [])

    def forget(self, entry_id: int) -> None:
        """No socket settles ``entry_id`` any more: it stays pending (until acked, or a restart)."""
        self.ledger.inflight.pop(entry_id, None)

    def in_flight(self, entry_id: int) -> bool:
        """Whether a socket of this process holds ``entry_id`` and will settle it."""
        ledger = self.ledger
        if entry_id in ledger.inflight:
            return True
        with ledger.lock:
            return ledger.find(entry_id)[0] is not None

    def _settle_many_into(self, batch: Any, settle: Sequence[int], changes: list[tuple[CounterKey, int]]) -> list[int]:
        """Deletes for many in-flight entries (no retention), one counter change per stream (lock held)."""
        in_flight, key = self.ledger.inflight, rec.encode_key
        settled: list[int] = []
        per_stream: dict[tuple[str, int], int] = {}
        for entry_id in dict.fromkeys(settle):
            known = in_flight.get(entry_id)
            if known is None:
                continue  # no longer ours (acked, nacked or killed meanwhile)
            batch.delete("entries", key(entry_id))
            per_stream[known] = per_stream.get(known, 0) + 1
            settled.append(entry_id)
        for (name, dcode), n in per_stream.items():
            changes.append(((name, dcode, rec.PENDING), -n))
        return settled

    def _settle_into(self, batch: Any, entry_id: int, changes: list[tuple[CounterKey, int]]) -> bool:
        """Add the ack of an in-flight entry to ``batch`` (lock held); False if it is no longer ours."""
        ledger = self.ledger
        known = ledger.inflight.get(entry_id)
        if known is None:
            return False
        name, dcode = known
        if ledger.retention > 0:
            r = ledger.load_for_update(entry_id)
            if r is None or r[0] != rec.PENDING:
                return False
            r[0] = rec.ACKED
            r[6] = time.time()
            batch.put("entries", rec.encode_key(entry_id), rec.encode_record(*r))
            changes.append(((name, dcode, rec.ACKED), 1))
        else:
            batch.delete("entries", rec.encode_key(entry_id))
        changes.append(((name, dcode, rec.PENDING), -1))
        return True

    def _settle_stored(self, entry_id: int) -> None:
        """Ack an in-flight entry that is in the store, in a write of its own (lock held)."""
        ledger = self.ledger
        batch = ledger.batch()
        changes: list[tuple[CounterKey, int]] = []
        if self._settle_into(batch, entry_id, changes):
            ledger.commit(batch, changes)
            name, dcode = ledger.inflight.pop(entry_id)
            if ledger.observers:
                ledger.emit("on_ack", name, dcode, 1)

    # -- redelivery --------------------------------------------------------

    def deliver(self, entry_id: int, track: bool = True, frames: list[bytes] | None = None) -> Entry | None:
        """Record the handover of a redelivered entry (attempts + 1); None if it is no longer pending.

        ``frames``: the entry's frames, read already (its blob files are not read again).
        """
        ledger = self.ledger
        with ledger.lock:
            ledger.check_open()
            r = ledger.load_for_update(entry_id)
            if r is None or r[0] != rec.PENDING:
                return None
            r[1] += 1
            ledger.rewrite(entry_id, r, rec.PENDING)
            if track:
                ledger.inflight[entry_id] = (r[3], r[4])
            if ledger.observers:
                ledger.emit("on_redelivery", r[3], r[4], entry_id, r[1])
            if frames is not None:
                r[5] = frames
            return rec.entry_from_record(entry_id, r, ledger.rare.blobs)

    def deliver_many(self, entry_ids: Sequence[int]) -> None:
        """Record the first hand-over (attempts + 1) of entries journaled before anyone got them, in one write."""
        ledger = self.ledger
        with ledger.lock:
            ledger.check_open()
            batch = ledger.batch()
            self._count_deliveries(batch, entry_ids, time.time())
            if len(batch):
                ledger.commit(batch, [])

    def resent(self, entry_ids: Sequence[int]) -> None:
        """A confirm sender sent these entries again: attempts + 1 each still pending, in one write."""
        ledger = self.ledger
        with ledger.lock:
            ledger.check_open()
            # Out of their outbox first, in one write (load_for_update would spill each in a write of its own)
            ledger.spill_held([cell for cell in map(ledger.holding, entry_ids) if cell is not None])
            batch = ledger.batch()
            counted = self._count_deliveries(batch, entry_ids, time.time())
            if counted:
                ledger.commit(batch, [])
            if ledger.observers:
                for entry_id, r in counted:
                    ledger.emit("on_redelivery", r[3], r[4], entry_id, r[1])

    def _count_deliveries(self, batch: Any, entry_ids: Sequence[int], now: float) -> list[tuple[int, list]]:
        """Put attempts + 1 into ``batch`` for each entry still pending (acked ones are left alone; lock held).

        Returns the records counted.
        """
        ledger = self.ledger
        counted = []
        for entry_id in entry_ids:
            r = ledger.load_for_update(entry_id)
            if r is None or r[0] != rec.PENDING:
                continue
            r[1] += 1
            r[6] = now
            batch.put("entries", rec.encode_key(entry_id), rec.encode_record(*r))
            counted.append((entry_id, r))
        return counted

    def handed(self, slots: SlotFile, first: int, through: int, acks_earlier: bool) -> None:
        """A prefetching socket handed over its read-ahead entries ``first`` to ``through``: record it in its slot file.

        No store write: the socket's next :meth:`log_many` writes the acks
        and counts the attempts (``delivered=``), and opening the journal after
        a crash does what the slot file says (see SlotFile.mark_handed).
        """
        ledger = self.ledger
        if ledger.closed:
            ledger.check_open()
        if slots.handed is None:
            ledger.handing.append(slots)  # (readers look at these files only: Ledger.handovers)
        slots.mark_handed(first, through, acks_earlier)

    def redeliverable(
        self, name: str, dcode: int, after: int, limit: int, max_attempts: int | None
    ) -> tuple[list[Entry], bool]:
        """Up to ``limit`` pending entries of a stream with ids above ``after``, oldest first; whether more may follow.

        Stops early, after at least one, once the entries hold
        :data:`REDELIVERY_BYTES`: large messages are read back a few at a time,
        not a window of them at once. Entries already delivered
        ``max_attempts`` times go dead here instead, with the reason recorded.
        """
        ledger = self.ledger
        found: list[Entry] = []
        room = REDELIVERY_BYTES
        start = rec.encode_key(max(after + 1, ledger.floor))
        for key, value in ledger.store.scan("entries", start):
            r = rec.decode_record(value)
            if r[0] != rec.PENDING or r[3] != name or r[4] != dcode:
                continue
            entry_id = rec.decode_key(key)
            if entry_id in ledger.inflight:
                continue  # delivered in this process already and not settled
            if max_attempts is not None and rec.counted_attempts(r) >= max_attempts:
                with ledger.lock:
                    ledger.check_open()
                    ledger.attempt(entry_id, max_attempts)  # goes dead, unless it changed meanwhile
                continue
            entry = rec.entry_from_record(entry_id, r, ledger.rare.blobs)
            found.append(entry)
            room -= entry.size
            if len(found) >= limit or room <= 0:
                return found, True
        return found, False

    def first_id_this_open(self) -> int:
        """Entries below this id were journaled before this journal was opened (perhaps by another process)."""
        return self.ledger.first_id_this_open

    def first_unissued(self) -> int:
        """The id the next appended entry gets: every entry journaled so far has a lower one."""
        return self.ledger.next_id

    def forked_error(self) -> JournalForkedError:
        """The error for any use of this journal in a child forked from its process (after ``abandon``)."""
        ledger = self.ledger
        return forking.forked_error(ledger.path, ledger.rare.forked_from)

    def secret(self, purpose: str) -> bytes:
        """16 random bytes kept in the journal for ``purpose`` (the same after every restart)."""
        return self.ledger.secret(purpose)

    # -- sockets and their slot files --------------------------------------

    def lock_is_free_within(self, seconds: float) -> bool:
        """Whether this thread could take the journal's lock within ``seconds`` (False: it may hold it itself).

        Asked for a socket the garbage collector closes (zjournal.sockets.deferred_close); nothing is taken.
        """
        lock = self.ledger.lock
        if lock.acquire(timeout=seconds):
            lock.release()
            return True
        return False

    def attached(self, name: str) -> AttachedSocket | None:
        """The live socket journaling as ``name``, if any."""
        return self.ledger.sockets.get(name)

    def attach(self, name: str, sock: AttachedSocket) -> None:
        """``sock`` journals as ``name`` from now on (held weakly; the journal's close settles it)."""
        self.ledger.sockets[name] = sock

    def detach(self, name: str, sock: AttachedSocket) -> None:
        """``sock`` no longer journals as ``name`` (a no-op if another socket took the name)."""
        sockets = self.ledger.sockets
        if sockets.get(name) is sock:
            del sockets[name]

    def open_slots(self, name: str) -> SlotFile | None:
        """A slot file for a new socket; None when this journal does not use slots."""
        return self._open_slot_file(name, inflight.SlotFile)

    def _open_slot_file(self, name: str, kind: type) -> Any:
        ledger = self.ledger
        if not ledger.rare.use_slots:
            return None
        assert ledger.path is not None
        with ledger.lock:
            ledger.check_open()
            try:
                ledger.rare.slot_file_number, slots = inflight.create(
                    ledger.path,
                    name,
                    ledger.rare.slot_file_number + 1,
                    kind,
                    keep_fd=ledger.durability is not Durability.PROCESS,  # (else only journal.sync(): msync)
                )
            except StoreError as e:  # the socket journals in the store instead: slower, as safe
                log.warning("journal %s: socket %r journals without an in-flight slot: %s", ledger.path, name, e)
                return None
            if slots is not None:
                slots.number = ledger.rare.slot_file_number
                try:
                    ledger.record_slot_file(slots)
                except StoreError as e:  # the socket journals in the store instead: slower, as safe
                    slots.close()
                    log.warning("journal %s: socket %r journals without an in-flight slot: %s", ledger.path, name, e)
                    return None
                ledger.slot_files.append(slots)
                if kind is outbox.Outbox:
                    ledger.counts.lazy.append(slots)  # it counts its own messages
        return slots

    def close_slots(self, slots: SlotFile | outbox.Outbox) -> None:
        """A socket closes: what its slots still hold goes to the store (pending), the file goes."""
        ledger = self.ledger
        with ledger.lock:
            if ledger.closed:
                return  # the journal's close took care of it
            ledger.spill_held(slots.held())
            if not isinstance(slots, outbox.Outbox) and slots.keys_unstored:
                self._store_keys(slots)  # the dedup keys of its key ring outlive the file (an outbox has none)
            ledger.forget_slot_file(slots.number)  # first: a crash now leaves a file nobody records, not the reverse
            slots.close()
            ledger.slot_files.remove(slots)
            if slots in ledger.handing:
                ledger.handing.remove(slots)
            if isinstance(slots, outbox.Outbox):
                ledger.counts.take_in(slots)

    def release(self, name: str) -> None:
        """A socket of ``name`` closed: what it would have settled belongs to whoever wraps ``name`` next."""
        ledger = self.ledger
        with ledger.lock:
            for entry_id in [i for i, (n, _d) in ledger.inflight.items() if n == name]:
                del ledger.inflight[entry_id]
