"""The ledger: a journal's state, and the primitives every change of it goes through.

A :class:`zjournal.Journal` owns one ledger; so do the journal layer's other
parts, by reference: the socket port (``port.py``: the path of messages),
the operators' operations (``admin.py``) and the maintainer
(``maintenance.py``). They read and change the journal only through what
this class documents. Its attribute names carry no underscore because they
are this interface; nothing outside ``zjournal.journal`` uses them.

Every state change is one atomic batch on the store (:meth:`Ledger.commit`,
the one choke point: counters and the id reservation change only after the
write returned), or one write of a socket's in-flight slot (zjournal.journal
.inflight: the message a socket is moving lives there until it is settled or
has to outlive the slot, when it is *spilled* to the store). So a crash
between any two calls leaves a journal consistent with the last call that
returned. Every method that changes something expects :attr:`Ledger.lock`
held unless it says otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import msgpack

from zjournal.errors import (
    InvalidArgumentError,
    InvalidTransitionError,
    JournalClosedError,
    JournalFencedError,
    MessageTooLargeError,
    StoreError,
    UnknownEntryError,
)
from zjournal.journal import blobs, inflight, outbox, overflow
from zjournal.journal import entry as rec
from zjournal.journal.blobkeeping import BlobKeeping
from zjournal.journal.counters import CounterKey, Counters
from zjournal.journal.durability import Durability
from zjournal.journal.entry import Entry
from zjournal.journal.opening import META_FLOOR, META_SEQ, Opening
from zjournal.journal.seen import SeenIndex
from zjournal.journal.slotkeeping import META_SLOT_FILE, SlotKeeping
from zjournal.store import forking
from zjournal.store.base import Store, is_disk_full

log = logging.getLogger("zjournal")

MAX_ID = (1 << 64) - 1  # ids are stored as 8 big-endian bytes

# Ids are reserved on disk in blocks, so a restart never reuses one without a
# meta write on every append.
_ID_BLOCK = 4096


def is_an_id(entry_id: int) -> bool:
    return isinstance(entry_id, int) and 0 < entry_id <= MAX_ID


class AttachedSocket(Protocol):
    """What a socket registered in :attr:`Ledger.sockets` offers the journal (zjournal.sockets implements it)."""

    @property
    def closed(self) -> bool: ...

    def _settle_deferred(self) -> None:
        """Settle what the socket deferred (the journal closes: what ZeroMQ already took is done)."""

    def _return_in_hand(self, clean: bool) -> None:
        """Leave the message the application holds pending (``clean``: its close not counted as a failure)."""

    def _abandon(self) -> None:
        """In a forked child: never touch the parent's journal again."""


class _Rare:
    """A ledger's state that no per-message path reads (see Ledger.__init__)."""

    __slots__ = (
        "blob_index",
        "blob_writes",
        "blobs",
        "blobs_unsynced",
        "confirm_latency",
        "counts_stale",
        "forked_from",
        "handover_view",
        "pending_floor",
        "pending_floor_lowered",
        "reserved_on_disk",
        "slot_file_number",
        "spill_sync",
        "sync_each_write",
        "use_slots",
        "view_version",
    )

    def __init__(self) -> None:
        self.forked_from: int | None = None  # in a forked child: the pid that owns this journal
        self.sync_each_write = False  # always mode: every store write is fsynced
        self.use_slots = False  # sockets hold their in-flight messages in slot files
        # interval mode fsyncs slot files in the background: a spilled entry's store record must be
        # durable before the slot that held it can be overwritten (and that overwrite fsynced).
        self.spill_sync = False
        self.slot_file_number = 0  # the last slot file made (names are never reused while open)
        self.reserved_on_disk = 1  # ids below this are reserved by a write that succeeded
        self.pending_floor = 1  # no pending entry below this id (oldest_pending() moves it up)
        self.pending_floor_lowered = 0  # how often an entry turned pending below it
        # read-only: the owner's prefetch hand-overs at the last refresh (see Ledger.handovers)
        self.handover_view: list[tuple[str, int, int]] = []
        # read-only: what the view's counters were counted from (see Journal.refresh); None: count again
        self.view_version: tuple[Any, ...] | None = None
        self.counts_stale = False  # read-only: the journal changed since the counters were counted
        # confirm=True senders of this process: entries confirmed, seconds from send to confirmation in
        # all, the longest (see SocketPort.confirmed)
        self.confirm_latency: list[float] = [0, 0.0, 0.0]
        # Large frames live in blob files (zjournal.journal.blobs): None for a journal in memory.
        self.blobs: blobs.BlobFiles | None = None
        self.blob_writes = False  # new large frames go to blob files (not in a replicated journal)
        self.blob_index: dict[bytes, list[str]] = {}  # entry key -> its blob files, for live entries with some
        self.blobs_unsynced: list[str] = []  # their records' deletion awaits an fsync (all modes but always)


def dead_reason(r: list, limit: int) -> str:
    """Why an entry with record ``r`` goes dead under ``max_attempts=limit``."""
    returned = rec.close_returns(r)
    if returned:
        return f"delivered {r[1]} times, {returned} of them ended by a clean close (max_attempts={limit})"
    return f"delivered {r[1]} times (max_attempts={limit})"


class Ledger(Opening, SlotKeeping, BlobKeeping):
    """A journal's state (see the module docstring); made and owned by :class:`zjournal.Journal`."""

    def __init__(
        self,
        store: Store,
        *,
        durability: Durability,
        retention: float,
        max_attempts: int | None,
        fsync_interval: float,
        max_message_size: int,
        path: str | None,
        read_only: bool,
    ) -> None:
        # Keep a ledger's attributes under 30: past that CPython stops sharing the keys of
        # instance dicts, and every attribute read on the hot path gets slower (measured: +3 %
        # instructions per message). Whatever the hot path does not read lives in rare.
        self.rare = _Rare()
        self.read_only = read_only
        self.durability = durability
        self.retention = retention
        self.max_attempts = max_attempts
        self.fsync_interval = fsync_interval
        self.max_message_size = max_message_size
        # A single frame up to this size needs no size check on the hot path (it fits a slot and the limit).
        self.unchecked_size = min(inflight.CAPACITY, max_message_size)
        self.path = path
        self.store = store
        self.lock = threading.Lock()
        self.closed = False
        self.rare.sync_each_write = durability is Durability.ALWAYS
        self.dirty = False  # the store was written since the last background fsync (slots: see SlotFile)
        self.background_error: BaseException | None = None
        self.fenced: str | None = None  # why another owner has this journal now (zjournal.replication)
        # durability="replicated": returns once the entry is on the engine's quorum (raises after a timeout);
        # the socket port calls it after each append, outside the lock, before the message moves
        self.barrier: Callable[[int], None] | None = None
        self.counts = Counters()
        # Entries that a socket appended and will settle itself (next/sent/reply
        # policies): id -> (name, direction code). Public ack/nack/dead take an
        # id out, so a socket never settles an entry somebody else changed.
        self.inflight: dict[int, tuple[str, int]] = {}
        self.ephemeral: dict[str, int] = {}  # ephemeral messages passed, by name
        # name -> live socket, held weakly: pyzmq closes a socket nobody holds, so must this
        self.sockets: weakref.WeakValueDictionary[str, AttachedSocket] = weakref.WeakValueDictionary()
        self.observers: list[Any] = []
        self.store_failed = False  # a write failed: reopen the store before the next one
        # In-flight slots (zjournal.journal.inflight): each socket's slot file,
        # whose entries are held there instead of the store (and are not in
        # inflight: a slot is its own record of who settles them). Only
        # journals on disk whose durability a page-cache write meets, and
        # without retention (an acked entry must then be kept: a store write).
        self.slot_files: list[inflight.SlotFile | outbox.Outbox] = []  # outboxes: confirm senders' rings
        self.slot_ring: list[inflight.Slot | outbox.Outbox | None] = [None] * inflight.RING_SIZE  # see holding()
        self.handing: list[inflight.SlotFile] = []  # the slot files that recorded a hand-over (see handovers)
        self.slot_view: dict[int, bytes] = {}  # read-only: the owner's slot records at the last refresh
        # Where a received message goes when the disk is full under its store write (None: no slots here)
        self.overflow: overflow.Overflow | None = None
        self.rare.use_slots = (
            path is not None
            and not read_only
            and retention == 0
            and durability in (Durability.PROCESS, Durability.INTERVAL)
        )
        self.rare.spill_sync = durability is Durability.INTERVAL
        self.next_id = 1  # the next id to hand out
        self.reserved = 1  # ids below this are reserved (the next block is written before it is used)
        self.floor = 1  # no live entry has an id below this
        self.seen = SeenIndex()  # confirm-carrying messages journaled here, for deduplication
        self.confirm_endpoint: str | None = None  # where confirm senders bind (None: a loopback tcp port)

    # -- observers (plugins) -----------------------------------------------

    def emit(self, event: str, name: str, dcode: int, *args: Any) -> None:
        """Tell every observer (callers check ``if self.observers`` first: this runs per message)."""
        direction = rec.DIRECTIONS_BY_CODE[dcode].value
        for observer in self.observers:
            method = getattr(observer, event, None)
            if method is None:
                continue
            try:
                method(name, direction, *args)
            except Exception as e:  # observers report; they never break the journal
                log.warning("zjournal observer %r failed in %s: %s", observer, event, e)

    # -- writing -----------------------------------------------------------

    def check_open(self) -> None:
        """Raise if the journal is closed, or a background fsync failed since the last call (once)."""
        if self.closed:
            if self.rare.forked_from is not None:
                raise forking.forked_error(self.path, self.rare.forked_from)
            raise JournalClosedError(f"journal {self.path or '(memory)'} is closed")
        if self.fenced is not None:
            raise JournalFencedError(self.fenced)  # for good: background_error stays set, so every append checks
        if self.background_error is not None:
            err, self.background_error = self.background_error, None
            raise StoreError(f"journal {self.path}: background fsync failed: {err}") from err

    def fence(self, reason: str) -> None:
        """Another owner took this journal over: every append and send raises JournalFencedError from now on."""
        self.fenced = reason
        self.background_error = JournalFencedError(reason)  # the hot paths look at this before check_open

    def batch(self) -> Any:
        """A new batch; after a failed write the store is reopened first, so work goes on once space is back."""
        if self.store_failed:
            reopen = getattr(self.store, "reopen", None)
            if reopen is not None:
                reopen()  # raises StoreError while the disk is still full
            self.store_failed = False
        return self.store.batch()

    def commit(self, batch: Any, changes: list[tuple[CounterKey, int]]) -> None:
        """Write ``batch`` atomically, then apply the counter changes it made.

        Counters and the id reservation change only after the write returned,
        so a failed write leaves them telling the truth.
        """
        rare = self.rare
        dropped = self._blobs_before_write(batch) if rare.blob_index else None
        try:
            self.store.write(batch, sync=rare.sync_each_write)
        except StoreError:
            self.store_failed = True
            self.reserved = rare.reserved_on_disk  # the block this batch reserved was not written
            raise
        rare.reserved_on_disk = self.reserved
        if dropped:
            self._blobs_after_write(dropped)
        add = self.counts.add
        for ck, delta in changes:
            add(ck, delta)
        self.dirty = True

    def overflow_received(self, error: StoreError, name: str, frames: list[bytes], envelope_size: int) -> int:
        """The store refused a received message (lock held): journal it in the overflow file, or raise ``error``.

        Only when the disk is full and the message's id was reserved by a write
        that succeeded (ids are never handed out twice, crash or not); see
        zjournal.journal.overflow. Returns its entry id: held as a slot holds
        one (acked by emptying it), pending in the counters.
        """
        spare = self.overflow
        entry_id = self.next_id
        if spare is None or entry_id >= self.rare.reserved_on_disk or not is_disk_full(error):
            raise error
        slot = spare.take(name, entry_id, frames, time.time(), envelope_size)
        if slot is None:
            raise error
        self.next_id = entry_id + 1
        self.slot_ring[entry_id & inflight.RING_MASK] = slot
        self.counts.add(slot.counter_key, 1)
        if spare not in self.slot_files:
            self.slot_files.append(spare)  # found, synced and spilled as a socket's slot file is
        now = time.monotonic()
        if now >= spare.quiet_until:  # (once a minute: a stream of large messages would say it for each)
            spare.quiet_until = now + 60
            log.error(
                "journal %s: the disk is full: a received message (entry %d, %s) is journaled in the spare file "
                "kept for this, %s; free space: while it holds a message, another one the store refuses stays "
                "in the process only",
                self.path,
                entry_id,
                name,
                spare.path,
            )
        if self.observers:
            self.emit("on_append", name, slot.dcode, 1)
        return entry_id

    def reserve_ids(self) -> None:
        """Write the next block of ids before any of it is handed out (raises StoreError)."""
        batch = self.batch()
        self.reserved = self.next_id + _ID_BLOCK
        batch.put("meta", META_SEQ, msgpack.packb(self.reserved))
        self.commit(batch, [])

    def new_id(self, batch: Any) -> int:
        """The next id; reserves the next block in ``batch`` when one runs out."""
        entry_id = self.next_id
        if entry_id >= self.reserved:
            self.reserved = entry_id + _ID_BLOCK
            batch.put("meta", META_SEQ, msgpack.packb(self.reserved))
        self.next_id = entry_id + 1
        return entry_id

    def put_new_entry(self, batch: Any, value: bytes, blob_names: list[str] | None = None) -> int:
        """Put ``value`` in ``batch`` as a new entry, naming its blob files; its id (lock held)."""
        entry_id = self.next_id
        if entry_id < self.reserved:
            self.next_id = entry_id + 1  # (new_id, inlined: once per message on the store paths)
        else:
            self.new_id(batch)
        batch.put("entries", rec.encode_key(entry_id), value)
        if blob_names:
            self.own_blobs(batch, entry_id, blob_names)
        return entry_id

    def check_size(self, frames: list[bytes]) -> int:
        """The message's size; MessageTooLargeError for one over the journal's limit (lock not needed)."""
        size = sum(len(f) for f in frames)
        if size > self.max_message_size:
            raise MessageTooLargeError(size, self.max_message_size)
        return size

    def require_record(self, entry_id: int, action: str) -> list:
        """The record of an entry about to change; UnknownEntryError naming ``action`` if there is none."""
        if not isinstance(entry_id, int) or isinstance(entry_id, bool):
            raise InvalidArgumentError(f"an entry id is an int, not {entry_id!r}")
        if not is_an_id(entry_id):
            raise UnknownEntryError(entry_id, f"ids are 1 to 2**64-1: cannot {action} it")
        r = self.load_for_update(entry_id)
        if r is None:
            gone = 0 < entry_id < self.next_id
            raise UnknownEntryError(entry_id, "already acked and removed" if gone else f"cannot {action} it")
        return r

    def rewrite(self, entry_id: int, r: list, new_state: int) -> None:
        """Store record ``r`` (already changed by the caller) and move its counter."""
        old_key = (r[3], r[4], r[0])
        r[0] = new_state
        r[6] = time.time()
        batch = self.batch()
        batch.put("entries", rec.encode_key(entry_id), rec.encode_record(*r))
        self.commit(batch, [(old_key, -1), ((r[3], r[4], new_state), 1)])
        if new_state == rec.PENDING and entry_id < self.rare.pending_floor:
            self.rare.pending_floor = entry_id  # a dead letter revived below the oldest pending one
            self.rare.pending_floor_lowered += 1

    def dead(self, entry_id: int, reason: str) -> None:
        """Make an entry a dead letter with ``reason`` (lock held; see Journal.dead)."""
        r = self.require_record(entry_id, "mark dead")
        self.inflight.pop(entry_id, None)
        if r[0] == rec.ACKED:
            raise InvalidTransitionError(entry_id, rec.State.ACKED, "mark dead")
        r[7] = str(reason)
        self.rewrite(entry_id, r, rec.DEAD)
        if self.observers:
            self.emit("on_dead", r[3], r[4], entry_id, r[7])

    def attempt(self, entry_id: int, limit: int | None) -> Entry:
        """One more delivery of a pending entry, or ``dead`` once it had ``limit`` (see Journal.attempt)."""
        r = self.require_record(entry_id, "deliver")
        if r[0] != rec.PENDING:
            raise InvalidTransitionError(entry_id, rec.STATES_BY_CODE[r[0]], "deliver")
        if limit is not None and rec.counted_attempts(r) >= limit:
            r[7] = dead_reason(r, limit)
            self.inflight.pop(entry_id, None)  # (as dead() does: a socket's settle must not delete a dead letter)
            self.rewrite(entry_id, r, rec.DEAD)
            if self.observers:
                self.emit("on_dead", r[3], r[4], entry_id, r[7])
        else:
            r[1] += 1
            self.rewrite(entry_id, r, rec.PENDING)
            if self.observers:
                self.emit("on_redelivery", r[3], r[4], entry_id, r[1])
        return rec.entry_from_record(entry_id, r, self.rare.blobs)

    def acknowledge(self, entry_id: int, r: list) -> None:
        """Ack an entry (pending or dead) whose record is ``r`` (lock held): acked under retention, else gone."""
        if self.retention > 0:
            self.rewrite(entry_id, r, rec.ACKED)
        else:
            self.remove(entry_id, r)
        if self.observers:
            self.emit("on_ack", r[3], r[4], 1)

    def remove(self, entry_id: int, r: list) -> None:
        """Delete an entry whose record is ``r``."""
        batch = self.batch()
        batch.delete("entries", rec.encode_key(entry_id))
        self.commit(batch, [((r[3], r[4], r[0]), -1)])

    # -- where an entry is: a slot or the store ----------------------------

    def load_record(self, entry_id: int) -> list | None:
        """The record of an entry, wherever it is (for reading, lock not held: see :meth:`load_for_update`)."""
        raw = self.slot_view.get(entry_id)
        if raw is None:
            if self.slot_files:
                with self.lock:  # a socket may be writing its slot in another thread
                    slot, raw = self.find(entry_id)
                    if slot is not None:
                        raw = slot.record()
            else:
                raw = self.store.get("entries", rec.encode_key(entry_id))
        if raw is None:
            return None
        handovers = self.handovers()
        return rec.decode_record(self.with_handovers(entry_id, raw, handovers) if handovers else raw)

    def load_for_update(self, entry_id: int) -> list | None:
        """The record of an entry about to change in the store: out of its slot first."""
        slot, raw = self.find(entry_id)
        if slot is not None:
            raw = slot.record()
            self.spill(slot)
        return None if raw is None else rec.decode_record(raw)

    def held_slots(self) -> list[inflight.Held]:
        """The slots holding an entry (a journal has a slot file per live socket: a short list)."""
        return [slot for f in self.slot_files for slot in f.held()]

    def holding(self, entry_id: int) -> inflight.Held | None:
        """The slot holding ``entry_id`` if it was written there recently (see :meth:`find`)."""
        slot = self.slot_ring[entry_id & inflight.RING_MASK]
        if slot is None or not entry_id:  # (0 is an empty slot, never an entry)
            return None
        if isinstance(slot, outbox.Outbox):  # an outbox holds many: the cell of this one, if it still holds it
            return slot.holding(entry_id)
        return slot if slot.entry_id == entry_id else None

    def find(self, entry_id: int) -> tuple[inflight.Held | None, bytes | None]:
        """Where an entry is: ``(its slot, None)``, ``(None, its store record)`` or ``(None, None)``.

        Every slot write puts its slot in a ring cell chosen by the entry's
        id, so the slot of a recent entry is found at once; then the store.
        Only an id that is in neither is looked for in the slot files (an
        entry held for thousands of messages, whose cell a later id took):
        no scan of the sockets' slots for anything the journal knows.
        """
        slot = self.holding(entry_id)
        if slot is not None:
            return slot, None
        raw = self.store.get("entries", rec.encode_key(entry_id))
        if raw is not None or not self.slot_files or not entry_id:
            return None, raw
        for f in self.slot_files:
            slot = f.holding(entry_id)
            if slot is not None:
                return slot, None
        return None, None

    def spill(self, slot: inflight.Held) -> None:
        """Move the entry a slot holds to the store; it stays pending.

        It becomes an ordinary in-flight entry: its socket (a REQ awaiting the
        reply, say) may still settle it, and redelivery in this process leaves
        it alone, as for any entry a socket handed over.
        """
        entry_id = slot.entry_id
        batch = self.batch()
        batch.put("entries", rec.encode_key(entry_id), slot.record())
        self.commit(batch, [])
        if self.rare.spill_sync:
            self.store.sync()
        # Store first, then the slot: a crash between leaves both, and opening keeps the store's.
        slot.clear()
        self.inflight[entry_id] = (slot.name, slot.dcode)

    def spill_all(self) -> None:
        """Move every slot-held entry to the store in one write."""
        self.spill_held(self.held_slots())

    def spill_held(self, held: list[Any]) -> None:
        """Move these slot-held entries (slots or outbox cells) to the store in one write; they stay pending."""
        if not held:
            return
        batch = self.batch()
        for slot in held:
            batch.put("entries", rec.encode_key(slot.entry_id), slot.record())
        self.commit(batch, [])
        if self.rare.spill_sync:
            self.store.sync()
        for slot in held:
            self.inflight[slot.entry_id] = (slot.name, slot.dcode)
            slot.clear()

    def settle_held(self, entry_id: int, slots: Any = None) -> bool:
        """Ack a slot-held entry by emptying its slot; False if no slot holds it.

        ``slots``: the slot file of the socket the entry belongs to, when the
        caller knows it (no scan of the journal's slot files then).
        """
        if not self.slot_files or not entry_id:
            return False
        slot = self.holding(entry_id) if slots is None else slots.holding(entry_id)
        if slot is None:
            spare = self.overflow  # (a received message a full disk sent there)
            slot = None if spare is None else spare.holding(entry_id)
            if slot is None:
                return False
        slot.clear()
        self.counts.add(slot.counter_key, -1)
        if self.observers:
            self.emit("on_ack", slot.name, slot.dcode, 1)
        return True

    # -- reading -----------------------------------------------------------

    def slot_records(self) -> tuple[list[tuple[int, bytes]], int]:
        """The entries held in slots, by id, and the first id not yet handed out, taken together (lock not held)."""
        if self.read_only:
            return sorted(self.slot_view.items()), self.next_id
        with self.lock:
            return sorted((slot.entry_id, slot.record()) for slot in self.held_slots()), self.next_id

    def scan_with_slots(self, after: int = 0) -> Iterator[tuple[int, bytes]]:
        """``(id, record)`` of every entry from the floor up, store and slots merged, in id order (lock not held).

        ``after``: only the entries with a higher id (the scan starts there, not at the floor).

        The slots are read first, then the store: an entry only ever moves
        from a slot to the store, so every entry live when the slots were read
        is in one of the two. Moves the floor up, but only past ids proven
        settled: below the first id of the store's snapshot, the lowest id held
        in a slot and the first id not yet handed out when the slots were read
        (an entry appended in between may sit in a slot, then in the store).
        """
        held, unissued = self.slot_records()
        handovers = self.handovers()
        bound = min(held[0][0], unissued) if held else unissued
        first = not after  # (the first id from a later start says nothing about the floor)
        if after:
            held = [item for item in held if item[0] > after]
        for key, stored in self.store.scan("entries", rec.encode_key(max(self.floor, after + 1))):
            entry_id = rec.decode_key(key)
            value = self.with_handovers(entry_id, stored, handovers) if handovers else stored
            if first:
                # The first live id of a snapshot only grows: skip the tombstones below it next time.
                first = False
                if not self.read_only:
                    self._raise_floor(min(entry_id, bound))
            while held and held[0][0] < entry_id:
                yield held.pop(0)
            if held and held[0][0] == entry_id:
                held.pop(0)  # spilled since the snapshot: the store's copy is the newer one
            yield entry_id, value
        yield from held

    def select(self, name: str | None, scode: int | None, dcode: int | None, after: int = 0) -> Iterator[Entry]:
        """The entries matching every filter that is not None, ids above ``after``, oldest first (lock not held)."""
        for entry_id, r in self.select_records(name, scode, dcode, after):
            try:
                found = rec.entry_from_record(entry_id, r, self.rare.blobs)
            except blobs.BlobGoneError:
                if self.settled_since(entry_id):
                    continue  # acked after this scan's snapshot, and its blob file removed
                raise
            yield found

    def select_records(
        self, name: str | None, scode: int | None, dcode: int | None, after: int = 0
    ) -> Iterator[tuple[int, list]]:
        """``(id, record)`` of the entries :meth:`select` yields, their blob files not read (lock not held)."""
        for entry_id, value in self.scan_with_slots(after):
            r = rec.decode_record(value)
            if (scode is None or r[0] == scode) and (dcode is None or r[4] == dcode) and (name is None or r[3] == name):
                yield entry_id, r

    def settled_since(self, entry_id: int) -> bool:
        """Whether an entry read from an earlier snapshot is gone from the store now (a view catches up first)."""
        catch_up = getattr(self.store, "catch_up", None)
        if catch_up is not None:
            catch_up()
        return self.store.get("entries", rec.encode_key(entry_id)) is None

    def _raise_floor(self, floor: int) -> None:
        with self.lock:
            if floor > self.floor:
                self.floor = floor

    # -- closing -----------------------------------------------------------

    def close(self) -> None:
        """Spill what sockets hold, record the floor and the ids handed out, close the store (lock held)."""
        self.closed = True
        failure: StoreError | None = None
        if not self.read_only:
            try:
                self.spill_all()  # what sockets still hold stays pending, in the store
                batch = self.batch()
                keys = [key for slots in self.slot_files for key in slots.keys_unstored]
                if keys:  # the dedup keys of key rings outlive their files
                    self.seen.store_records(batch, keys)
                for slots in self.slot_files:
                    batch.delete("meta", META_SLOT_FILE + str(slots.number).encode())
                batch.put("meta", META_FLOOR, msgpack.packb(self.floor))
                # A clean close knows exactly which ids were handed out.
                batch.put("meta", META_SEQ, msgpack.packb(self.next_id))
                self.store.write(batch, sync=self.durability is not Durability.NONE)
                for slots in self.slot_files:  # (after their records went: never a recorded file missing)
                    slots.close()
                self.slot_files.clear()
                self.handing.clear()
                for counter in list(self.counts.lazy):  # (outboxes: their counts are the store's now)
                    self.counts.take_in(counter)
                self._record_counts()
            except StoreError as e:  # the journal is still released; opening it again recovers
                failure = e
        try:
            self.store.close()
        except StoreError as e:
            failure = failure or e
        else:
            if failure is None and not self.read_only:  # (the close's write was fsynced, or its memtables flushed)
                self.discard_blobs(self.rare.blobs_unsynced)
                self.rare.blobs_unsynced = []
        if failure is not None:
            raise failure

    def abandon(self, parent: int) -> None:
        """In a forked child: nothing of the parent's journal is touched again (zjournal.store.forking).

        Its slot files are shared mappings of the parent's live ones, its
        lock may have been held by a thread that does not exist here.
        """
        self.rare.forked_from = parent
        self.closed = True
        self.slot_files = []
        self.handing = []
        self.slot_ring[:] = [None] * inflight.RING_SIZE
        self.lock = threading.Lock()
        for sock in list(self.sockets.values()):
            sock._abandon()
