"""The journal: entries, their states, counters, ids and retention.

Every state change is one atomic batch on the store, or one write of a
socket's in-flight slot (zjournal.inflight: the message a socket is moving
lives there until it is settled or has to outlive the slot), so a crash
between any two calls leaves a journal that is consistent with the last call
that returned. Counters are kept in memory (rebuilt by one scan at open) so that
:meth:`Journal.count` never scans.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import msgpack

from zjournal import entry as rec
from zjournal import inflight
from zjournal.counters import CounterKey, Counters
from zjournal.durability import Durability
from zjournal.entry import Direction, Entry, State
from zjournal.errors import (
    IncompatibleJournalError,
    InvalidArgumentError,
    InvalidTransitionError,
    JournalClosedError,
    MessageTooLargeError,
    NotAJournalError,
    StoreError,
    UnknownEntryError,
)
from zjournal.fastpath import SocketSupport
from zjournal.operations import Operations
from zjournal.store import forking
from zjournal.store.base import Store
from zjournal.store.memory import MemoryStore
from zjournal.store.rocks import RocksStore
from zjournal.store.secondary import SecondaryRocksStore

log = logging.getLogger("zjournal")

_MAX_ID = (1 << 64) - 1  # ids are stored as 8 big-endian bytes


def _is_an_id(entry_id: int) -> bool:
    return isinstance(entry_id, int) and 0 < entry_id <= _MAX_ID


_META_SCHEMA = b"schema"
_META_SEQ = b"seq"  # ids below this value may have been handed out
_META_FLOOR = b"floor"  # no live entry has an id below this value
_META_DURABILITY = b"durability"
_META_CREATED = b"created"
_META_CREATED_BY = b"created-by"  # a tool that made this journal for itself (the demo)

# Ids are reserved on disk in blocks, so a restart never reuses one without a
# meta write on every append.
_ID_BLOCK = 4096

# Larger messages are refused with MessageTooLargeError (RocksDB handles values
# up to 4 GiB, but a journal write holds the whole message in memory twice).
DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024


def _check_settings(retention: float, max_attempts: int | None, fsync_interval: float) -> None:
    if retention < 0:
        raise InvalidArgumentError(f"retention must be >= 0 seconds, not {retention}")
    if max_attempts is not None and max_attempts < 1:
        raise InvalidArgumentError(f"max_attempts must be >= 1 or None, not {max_attempts}")
    if fsync_interval <= 0:
        raise InvalidArgumentError(f"fsync_interval must be > 0 ms, not {fsync_interval}")


class _Rare:
    """A journal's state that no per-message path reads (see Journal.__init__)."""

    __slots__ = (
        "forked_from",
        "pending_floor",
        "pending_floor_lowered",
        "reserved_on_disk",
        "slot_file_number",
        "spill_sync",
        "sync_each_write",
        "use_slots",
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


class Journal(SocketSupport, Operations):
    """A durable record of messages and their acknowledgement state.

    Use :func:`zjournal.open` for a journal on disk; ``Journal()`` alone is a
    journal in memory (nothing survives the process). A journal is a context
    manager; :meth:`close` is idempotent. It is safe to share between threads.

    Args:
        store: the store to sit on (default: a new :class:`MemoryStore`).
        durability: ``process`` (default), ``interval``, ``always`` or ``none``.
        retention: seconds to keep acked entries for audit; 0 deletes them at once.
        max_attempts: deliveries allowed before an entry goes ``dead``; None: no limit.
        fsync_interval: milliseconds between fsyncs in ``interval`` mode.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        durability: str | Durability = Durability.PROCESS,
        retention: float = 0.0,
        max_attempts: int | None = None,
        fsync_interval: float = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        path: str | None = None,
        read_only: bool = False,
        plugins: bool = True,
        slots_read_first: list[tuple[int, bytes]] | None = None,
    ) -> None:
        _check_settings(retention, max_attempts, fsync_interval)
        # Keep a journal's own attributes under 30: past that CPython stops sharing the keys of
        # instance dicts, and every attribute read on the hot path gets slower (measured: +3 %
        # instructions per message). Whatever the hot path does not read lives in _rare.
        self._rare = _Rare()
        self.read_only = read_only
        #: what opening had to drop to recover a damaged journal (``open(..., recover=True)``)
        self.recovered: list[str] = []
        self.durability = Durability.parse(durability)
        self.retention = float(retention)
        self.max_attempts = max_attempts
        self.fsync_interval = float(fsync_interval)
        self.max_message_size = max_message_size
        # A single frame up to this size needs no size check on the hot path (it fits a slot and the limit).
        self._unchecked_size = min(inflight.CAPACITY, max_message_size)
        self.path = path
        self._store: Store = store if store is not None else MemoryStore()
        self._lock = threading.Lock()
        self._closed = False
        self._rare.sync_each_write = self.durability is Durability.ALWAYS
        self._dirty = False  # the store was written since the last background fsync (slots: see SlotFile)
        self._background_error: BaseException | None = None
        self._counts = Counters()
        # Entries that a socket appended and will settle itself (next/sent/reply
        # policies): id -> (name, direction code). Public ack/nack/dead take an
        # id out, so a socket never settles an entry somebody else changed.
        self._inflight: dict[int, tuple[str, int]] = {}
        self._ephemeral: dict[str, int] = {}
        # name -> live JournaledSocket, held weakly: pyzmq closes a socket nobody holds, so must this
        self._sockets: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._observers: list[Any] = []
        self._store_failed = False  # a write failed: reopen the store before the next one
        # In-flight slots (zjournal.inflight): each socket's slot file, whose
        # entries are held there instead of the store (and are not in
        # _inflight: a slot is its own record of who settles them). Only
        # journals on disk whose durability a page-cache write meets, and
        # without retention (an acked entry must then be kept: a store write).
        self._slot_files: list[inflight.SlotFile] = []
        self._slot_ring: list[inflight.Slot | None] = [None] * inflight.RING_SIZE  # see _holding
        self._slot_view: dict[int, bytes] = {}  # read-only: the owner's slot records at the last refresh
        self._rare.use_slots = (
            path is not None
            and not read_only
            and retention == 0
            and self.durability in (Durability.PROCESS, Durability.INTERVAL)
        )
        self._rare.spill_sync = self.durability is Durability.INTERVAL
        try:
            self._load(slots_read_first)
        except BaseException:
            self._store.close()
            raise
        if plugins and not read_only:
            self._attach_observers()
        self._stop = threading.Event()  # the maintainer's
        self._maintainer: threading.Thread | None = None
        if not read_only and (self.durability is Durability.INTERVAL or self.retention > 0):
            self._maintainer = threading.Thread(target=self._maintain, name="zjournal-maintainer", daemon=True)
            self._maintainer.start()
        forking.track(self)
        if self.durability is Durability.NONE and not read_only:
            log.warning("journal %s: durability 'none' keeps no write-ahead log; a crash loses messages", path)

    # -- observers (plugins) -----------------------------------------------

    def _attach_observers(self) -> None:
        from zjournal.plugins import load

        for observer in load().observers():
            try:
                attach = getattr(observer, "attach", None)
                if attach is not None and attach(self) is False:
                    continue  # the observer declined this journal (e.g. not switched on)
            except Exception as e:  # a broken observer must not stop the journal
                log.warning("zjournal observer %r failed to attach and is skipped: %s", observer, e)
                continue
            self._observers.append(observer)

    def add_observer(self, observer: Any) -> None:
        """Tell ``observer`` about appends, acks, dead letters and redeliveries (see zjournal.plugins)."""
        if observer in self._observers:
            return
        attach = getattr(observer, "attach", None)
        if attach is not None and attach(self) is False:
            return
        self._observers.append(observer)

    def _emit(self, event: str, name: str, dcode: int, *args: Any) -> None:
        direction = rec.DIRECTIONS_BY_CODE[dcode].value
        for observer in self._observers:
            method = getattr(observer, event, None)
            if method is None:
                continue
            try:
                method(name, direction, *args)
            except Exception as e:  # observers report; they never break the journal
                log.warning("zjournal observer %r failed in %s: %s", observer, event, e)

    # -- opening ---------------------------------------------------------

    def _load(self, slots_read_first: list[tuple[int, bytes]] | None = None) -> None:
        """Check the schema, then rebuild counters and the id sequence in one scan."""
        store = self._store
        raw_schema = store.get("meta", _META_SCHEMA)
        if raw_schema is None:
            if self.read_only:
                raise NotAJournalError(f"{self.path} has no zjournal schema: not a journal", path=str(self.path))
            if next(iter(store.scan("entries")), None) is not None:
                raise NotAJournalError(f"{self.path} has entries but no zjournal schema", path=str(self.path))
            self._initialise()
        else:
            found = msgpack.unpackb(raw_schema)
            if found != rec.SCHEMA_VERSION:
                raise IncompatibleJournalError(
                    f"journal {self.path} has schema version {found}; this zjournal reads version {rec.SCHEMA_VERSION}",
                    path=str(self.path),
                    found=found,
                    supported=rec.SCHEMA_VERSION,
                )
        self._reserved = self._rare.reserved_on_disk = self._meta_int(_META_SEQ, 1)
        self._next_id = self._reserved  # at least; the scan below may find higher ids
        self._floor = self._meta_int(_META_FLOOR, 1)
        if self.path is not None:
            self._load_slot_records(slots_read_first)
        self._count_entries()
        if self.read_only:
            return
        batch = store.batch()
        batch.put("meta", _META_DURABILITY, msgpack.packb(self.durability.value))
        store.write(batch, sync=True)

    def _load_slot_records(self, records: list[tuple[int, bytes]] | None = None) -> None:
        """Take in the records left in in-flight slot files (a crash, or the owner's live slots).

        The owner moves them into the store (one synced write) and deletes the
        files; a read-only view keeps them beside the store. A record whose id
        the store already holds was spilled just before the crash: the store's
        copy is the newer one.

        ``records``: for a view of a live journal, the slot records read just
        before its store caught up. The slots are read again now, and the store
        catches up once more. An entry only moves from a slot to the store, and
        the store is written before the slot changes: so an entry pending since
        before the second read is in the first read, the second, or the store
        after its last catch-up (a view may show a superset for an instant,
        never a subset).
        """
        assert self.path is not None
        store = self._store
        found = {}
        read = list(inflight.read_records(self.path))
        if records is not None:
            read = records + read
            catch_up = getattr(store, "catch_up", None)
            if catch_up is not None:
                catch_up()
        for entry_id, value in read:
            if store.get("entries", rec.encode_key(entry_id)) is None:
                found[entry_id] = value
        if found:
            self._floor = min(self._floor, min(found))
        if self.read_only:
            self._slot_view = found
            return
        if found:
            batch = store.batch()
            for entry_id, value in found.items():
                batch.put("entries", rec.encode_key(entry_id), value)
            store.write(batch, sync=True)
        inflight.remove_all(self.path)

    def _count_entries(self) -> None:
        """Rebuild the counters, the id sequence and the floor in one scan."""
        last_id = 0
        first_id = None
        counts = Counters()
        for entry_id, value in self._scan_with_slots():
            if first_id is None:
                first_id = entry_id
            last_id = entry_id
            r = rec.decode_record(value)
            counts.add((r[3], r[4], r[0]), 1)
        self._counts = counts
        self._next_id = max(self._reserved, last_id + 1)
        self._floor = first_id if first_id is not None else self._next_id
        self._rare.pending_floor = self._floor  # oldest_pending() moves it up past what is not pending
        self._rare.pending_floor_lowered = 0

    def _slot_records(self) -> tuple[list[tuple[int, bytes]], int]:
        """The entries held in slots, by id, and the first id not yet handed out, taken together."""
        if self.read_only:
            return sorted(self._slot_view.items()), self._next_id
        with self._lock:
            return sorted((slot.entry_id, slot.record()) for slot in self._held_slots()), self._next_id

    def _scan_with_slots(self) -> Iterator[tuple[int, bytes]]:
        """``(id, record)`` of every entry from the floor up, store and slots merged, in id order.

        The slots are read first, then the store: an entry only ever moves
        from a slot to the store, so every entry live when the slots were read
        is in one of the two. Moves the floor up, but only past ids proven
        settled: below the first id of the store's snapshot, the lowest id held
        in a slot and the first id not yet handed out when the slots were read
        (an entry appended in between may sit in a slot, then in the store).
        """
        held, unissued = self._slot_records()
        bound = min(held[0][0], unissued) if held else unissued
        first = True
        for key, value in self._store.scan("entries", rec.encode_key(self._floor)):
            entry_id = rec.decode_key(key)
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

    def _raise_floor(self, floor: int) -> None:
        with self._lock:
            if floor > self._floor:
                self._floor = floor

    def _initialise(self) -> None:
        batch = self._store.batch()
        batch.put("meta", _META_SCHEMA, msgpack.packb(rec.SCHEMA_VERSION))
        batch.put("meta", _META_CREATED, msgpack.packb(time.time()))
        batch.put("meta", _META_SEQ, msgpack.packb(1))
        self._store.write(batch, sync=True)

    def _secret(self, purpose: str) -> bytes:
        """16 random bytes kept in the journal for ``purpose``: drawn once, the same after every restart."""
        key = b"secret:" + purpose.encode()
        with self._lock:
            self._check_open()
            raw = self._store.get("meta", key)
            if raw is None:
                raw = os.urandom(16)
                batch = self._batch()
                batch.put("meta", key, raw)
                self._store.write(batch, sync=True)
            return raw

    def _created_by(self, tool: str | None = None) -> str | None:
        """The tool that made this journal for itself, if one said so; with ``tool``: say so now."""
        self._check_open()
        if tool is not None:
            batch = self._batch()
            batch.put("meta", _META_CREATED_BY, msgpack.packb(tool))
            self._store.write(batch, sync=True)
        raw = self._store.get("meta", _META_CREATED_BY)
        return None if raw is None else str(msgpack.unpackb(raw))

    def _meta_int(self, key: bytes, default: int) -> int:
        raw = self._store.get("meta", key)
        return default if raw is None else int(msgpack.unpackb(raw))

    # -- writing -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            if self._rare.forked_from is not None:
                raise forking.forked_error(self.path, self._rare.forked_from)
            raise JournalClosedError(f"journal {self.path or '(memory)'} is closed")
        if self._background_error is not None:
            err, self._background_error = self._background_error, None
            raise StoreError(f"journal {self.path}: background fsync failed: {err}") from err

    def _batch(self) -> Any:
        """A new batch; after a failed write the store is reopened first, so work goes on once space is back."""
        if self._store_failed:
            reopen = getattr(self._store, "reopen", None)
            if reopen is not None:
                reopen()  # raises StoreError while the disk is still full
            self._store_failed = False
        return self._store.batch()

    def _commit(self, batch: Any, changes: list[tuple[CounterKey, int]]) -> None:
        """Write ``batch`` atomically, then apply the counter changes it made.

        Must be called with the lock held. Counters and the id reservation
        change only after the write returned, so a failed write leaves them
        telling the truth.
        """
        try:
            self._store.write(batch, sync=self._rare.sync_each_write)
        except StoreError:
            self._store_failed = True
            self._reserved = self._rare.reserved_on_disk  # the block this batch reserved was not written
            raise
        self._rare.reserved_on_disk = self._reserved
        add = self._counts.add
        for ck, delta in changes:
            add(ck, delta)
        self._dirty = True

    def _reserve_ids(self) -> None:
        """Write the next block of ids before any of it is handed out (lock held; raises StoreError)."""
        batch = self._batch()
        self._reserved = self._next_id + _ID_BLOCK
        batch.put("meta", _META_SEQ, msgpack.packb(self._reserved))
        self._commit(batch, [])

    def _new_id(self, batch: Any) -> int:
        """The next id; reserves the next block in ``batch`` when one runs out."""
        entry_id = self._next_id
        if entry_id >= self._reserved:
            self._reserved = entry_id + _ID_BLOCK
            batch.put("meta", _META_SEQ, msgpack.packb(self._reserved))
        self._next_id = entry_id + 1
        return entry_id

    def append(
        self,
        name: str,
        frames: Sequence[Any],
        *,
        direction: str | Direction,
        attempts: int = 0,
        envelope_size: int = 0,
    ) -> int:
        """Journal one whole message as a pending entry and return its id.

        Args:
            name: the stream (usually the wrapped socket's name).
            frames: every frame of the message, bytes-like.
            direction: ``"in"`` (received) or ``"out"`` (sent).
            attempts: deliveries already made (a socket that hands the message
                over right away passes 1).
            envelope_size: how many leading frames are the routing envelope.

        Raises:
            InvalidFramesError: frames is not a non-empty sequence of bytes-like.
            JournalClosedError: the journal is closed.
            StoreError: the store failed; nothing was journaled.
        """
        self._check_open()
        dcode = rec.parse_direction(direction)
        if dcode is None:
            raise InvalidArgumentError("direction is required: 'in' or 'out'")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"name must be a non-empty str, not {name!r}")
        data = rec.as_frames(frames)
        self._check_size(data)
        if not 0 <= envelope_size <= len(data):
            raise InvalidArgumentError(f"envelope_size {envelope_size} does not fit a {len(data)}-frame message")
        value = rec.encode_record(rec.PENDING, attempts, time.time(), name, dcode, data, 0.0, "", envelope_size)
        with self._lock:
            self._check_open()
            batch = self._batch()
            entry_id = self._new_id(batch)
            batch.put("entries", rec.encode_key(entry_id), value)
            self._commit(batch, [((name, dcode, rec.PENDING), 1)])
            if self._observers:
                self._emit("on_append", name, dcode, 1)
        return entry_id

    def _check_size(self, frames: list[bytes]) -> None:
        size = sum(len(f) for f in frames)
        if size > self.max_message_size:
            raise MessageTooLargeError(size, self.max_message_size)

    def _load_record(self, entry_id: int) -> list | None:
        """The record of an entry, wherever it is (for reading: see :meth:`_load_for_update`)."""
        raw = self._slot_view.get(entry_id)
        if raw is None:
            if self._slot_files:
                with self._lock:  # a socket may be writing its slot in another thread
                    slot, raw = self._find(entry_id)
                    if slot is not None:
                        raw = slot.record()
            else:
                raw = self._store.get("entries", rec.encode_key(entry_id))
        return None if raw is None else rec.decode_record(raw)

    def _load_for_update(self, entry_id: int) -> list | None:
        """The record of an entry about to change in the store (lock held): out of its slot first."""
        slot, raw = self._find(entry_id)
        if slot is not None:
            raw = slot.record()
            self._spill(slot)
        return None if raw is None else rec.decode_record(raw)

    def _held_slots(self) -> list[inflight.Slot]:
        """The slots holding an entry (a journal has a slot file per live socket: a short list)."""
        return [slot for f in self._slot_files for slot in (f.inbound, f.outbound) if slot.entry_id]

    def _holding(self, entry_id: int) -> inflight.Slot | None:
        """The slot holding ``entry_id`` if it was written there recently (lock held; see :meth:`_find`)."""
        slot = self._slot_ring[entry_id & inflight.RING_MASK]
        if slot is not None and slot.entry_id == entry_id and entry_id:  # 0 is an empty slot, never an entry
            return slot
        return None

    def _find(self, entry_id: int) -> tuple[inflight.Slot | None, bytes | None]:
        """Where an entry is (lock held): ``(its slot, None)``, ``(None, its store record)`` or ``(None, None)``.

        Every slot write puts its slot in a ring cell chosen by the entry's
        id, so the slot of a recent entry is found at once; then the store.
        Only an id that is in neither is looked for in the slot files (an
        entry held for thousands of messages, whose cell a later id took):
        no scan of the sockets' slots for anything the journal knows.
        """
        slot = self._holding(entry_id)
        if slot is not None:
            return slot, None
        raw = self._store.get("entries", rec.encode_key(entry_id))
        if raw is not None or not self._slot_files or not entry_id:
            return None, raw
        for f in self._slot_files:
            if f.inbound.entry_id == entry_id:
                return f.inbound, None
            if f.outbound.entry_id == entry_id:
                return f.outbound, None
        return None, None

    def _spill(self, slot: inflight.Slot) -> None:
        """Move the entry a slot holds to the store (lock held); it stays pending.

        It becomes an ordinary in-flight entry: its socket (a REQ awaiting the
        reply, say) may still settle it, and redelivery in this process leaves
        it alone, as for any entry a socket handed over.
        """
        entry_id = slot.entry_id
        batch = self._batch()
        batch.put("entries", rec.encode_key(entry_id), slot.record())
        self._commit(batch, [])
        if self._rare.spill_sync:
            self._store.sync()
        # Store first, then the slot: a crash between leaves both, and opening keeps the store's.
        slot.clear()
        self._inflight[entry_id] = (slot.name, slot.dcode)

    def _spill_all(self) -> None:
        """Move every slot-held entry to the store in one write (lock held)."""
        held = self._held_slots()
        if not held:
            return
        batch = self._batch()
        for slot in held:
            batch.put("entries", rec.encode_key(slot.entry_id), slot.record())
        self._commit(batch, [])
        if self._rare.spill_sync:
            self._store.sync()
        for slot in held:
            self._inflight[slot.entry_id] = (slot.name, slot.dcode)
            slot.clear()

    def _settle_held(self, entry_id: int, slots: inflight.SlotFile | None = None) -> bool:
        """Ack a slot-held entry by emptying its slot (lock held); False if no slot holds it.

        ``slots``: the slot file of the socket the entry belongs to, when the
        caller knows it (no scan of the journal's slot files then).
        """
        if not self._slot_files or not entry_id:
            return False
        if slots is None:
            slot = self._holding(entry_id)
        elif slots.inbound.entry_id == entry_id:
            slot = slots.inbound
        elif slots.outbound.entry_id == entry_id:
            slot = slots.outbound
        else:
            return False
        if slot is None:
            return False
        slot.clear()
        self._counts.add(slot.counter_key, -1)
        if self._observers:
            self._emit("on_ack", slot.name, slot.dcode, 1)
        return True

    def _open_slots(self, name: str) -> inflight.SlotFile | None:
        """A slot file for a new socket; None when this journal does not use slots."""
        if not self._rare.use_slots:
            return None
        assert self.path is not None
        with self._lock:
            self._check_open()
            try:
                self._rare.slot_file_number, slots = inflight.create(self.path, name, self._rare.slot_file_number + 1)
            except StoreError as e:  # the socket journals in the store instead: slower, as safe
                log.warning("journal %s: socket %r journals without an in-flight slot: %s", self.path, name, e)
                return None
            if slots is not None:
                self._slot_files.append(slots)
        return slots

    def _close_slots(self, slots: inflight.SlotFile) -> None:
        """A socket closes: what its slots still hold goes to the store (pending), the file goes."""
        with self._lock:
            if self._closed:
                return  # the journal's close took care of it
            for slot in (slots.inbound, slots.outbound):
                if slot.entry_id:
                    self._spill(slot)
            slots.close()
            self._slot_files.remove(slots)

    def _release(self, name: str) -> None:
        """A socket of ``name`` closed: what it would have settled belongs to whoever wraps ``name`` next."""
        with self._lock:
            for entry_id in [i for i, (n, _d) in self._inflight.items() if n == name]:
                del self._inflight[entry_id]

    def _require_record(self, entry_id: int, action: str) -> list:
        if not isinstance(entry_id, int) or isinstance(entry_id, bool):
            raise InvalidArgumentError(f"an entry id is an int, not {entry_id!r}")
        if not _is_an_id(entry_id):
            raise UnknownEntryError(entry_id, f"ids are 1 to 2**64-1: cannot {action} it")
        r = self._load_for_update(entry_id)
        if r is None:
            gone = 0 < entry_id < self._next_id
            raise UnknownEntryError(entry_id, "already acked and removed" if gone else f"cannot {action} it")
        return r

    def _rewrite(self, entry_id: int, r: list, new_state: int) -> None:
        """Store record ``r`` (already changed by the caller) and move its counter."""
        old_key = (r[3], r[4], r[0])
        r[0] = new_state
        r[6] = time.time()
        batch = self._batch()
        batch.put("entries", rec.encode_key(entry_id), rec.encode_record(*r))
        self._commit(batch, [(old_key, -1), ((r[3], r[4], new_state), 1)])
        if new_state == rec.PENDING and entry_id < self._rare.pending_floor:
            self._rare.pending_floor = entry_id  # a dead letter revived below the oldest pending one
            self._rare.pending_floor_lowered += 1

    def _remove(self, entry_id: int, r: list) -> None:
        batch = self._batch()
        batch.delete("entries", rec.encode_key(entry_id))
        self._commit(batch, [((r[3], r[4], r[0]), -1)])

    def ack(self, entry_id: int) -> bool:
        """Mark an entry done; with no retention it is deleted at once.

        Acking is idempotent: an entry acked (and removed) before returns False.
        A dead entry may be acked (an operator resolved it). Returns True when
        the entry changed.

        Raises:
            UnknownEntryError: no entry with this id was ever journaled.
        """
        self._check_open()
        with self._lock:
            self._check_open()
            if self._settle_held(entry_id):
                return True
            try:
                r = self._require_record(entry_id, "ack")
            except UnknownEntryError:
                if 0 < entry_id < self._next_id:
                    return False
                raise
            self._inflight.pop(entry_id, None)
            if r[0] == rec.ACKED:
                return False
            if self.retention > 0:
                self._rewrite(entry_id, r, rec.ACKED)
            else:
                self._remove(entry_id, r)
            if self._observers:
                self._emit("on_ack", r[3], r[4], 1)
            return True

    def nack(self, entry_id: int) -> None:
        """Put an entry back to pending, for redelivery.

        A dead entry is revived with its attempts reset, so that it gets a full
        ``max_attempts`` again. An acked entry cannot be nacked.
        """
        self._check_open()
        with self._lock:
            self._check_open()
            r = self._require_record(entry_id, "nack")
            self._inflight.pop(entry_id, None)
            if r[0] == rec.ACKED:
                raise InvalidTransitionError(entry_id, State.ACKED, "nack")
            if r[0] == rec.DEAD:
                r[1] = 0
                r[7] = ""
            self._rewrite(entry_id, r, rec.PENDING)

    def dead(self, entry_id: int, reason: str = "") -> None:
        """Give up on an entry: it stays in the journal as a dead letter."""
        self._check_open()
        with self._lock:
            self._check_open()
            r = self._require_record(entry_id, "mark dead")
            self._inflight.pop(entry_id, None)
            if r[0] == rec.ACKED:
                raise InvalidTransitionError(entry_id, State.ACKED, "mark dead")
            r[7] = str(reason)
            self._rewrite(entry_id, r, rec.DEAD)
            if self._observers:
                self._emit("on_dead", r[3], r[4], entry_id, r[7])

    def attempt(self, entry_id: int, max_attempts: int | None = None) -> Entry:
        """Record one more delivery of a pending entry, before handing it over.

        When the entry has already been delivered ``max_attempts`` times (the
        argument, else the journal's), it goes ``dead`` instead; the returned
        entry's ``state`` says which happened.
        """
        self._check_open()
        limit = self.max_attempts if max_attempts is None else max_attempts
        with self._lock:
            self._check_open()
            r = self._require_record(entry_id, "deliver")
            if r[0] != rec.PENDING:
                raise InvalidTransitionError(entry_id, rec.STATES_BY_CODE[r[0]], "deliver")
            if limit is not None and r[1] >= limit:
                r[7] = f"delivered {r[1]} times (max_attempts={limit})"
                self._rewrite(entry_id, r, rec.DEAD)
                if self._observers:
                    self._emit("on_dead", r[3], r[4], entry_id, r[7])
            else:
                r[1] += 1
                self._rewrite(entry_id, r, rec.PENDING)
                if self._observers:
                    self._emit("on_redelivery", r[3], r[4], entry_id, r[1])
            return rec.entry_from_record(entry_id, r)

    # -- reading -----------------------------------------------------------

    def get(self, entry_id: int) -> Entry | None:
        """The entry with this id, or None when there is none (or it was removed)."""
        self._check_open()
        if not _is_an_id(entry_id):
            return None  # -1, 2**64: no entry ever had such an id
        r = self._load_record(entry_id)
        return None if r is None else rec.entry_from_record(entry_id, r)

    def entries(
        self,
        *,
        name: str | None = None,
        state: str | State | None = None,
        direction: str | Direction | None = None,
    ) -> Iterator[Entry]:
        """Entries matching every filter given, oldest first.

        The iteration reads a consistent snapshot taken at its start.
        """
        self._check_open()
        scode = rec.parse_state(state)
        dcode = rec.parse_direction(direction)
        return self._iter_entries(name, scode, dcode)

    def _iter_entries(self, name: str | None, scode: int | None, dcode: int | None) -> Iterator[Entry]:
        for entry_id, value in self._scan_with_slots():
            r = rec.decode_record(value)
            if (scode is None or r[0] == scode) and (dcode is None or r[4] == dcode) and (name is None or r[3] == name):
                yield rec.entry_from_record(entry_id, r)

    def oldest_pending(self) -> Entry | None:
        """The oldest pending entry (lowest id), or None when nothing is pending.

        Cheap however many dead letters or retained acked entries precede it:
        what was seen not to be pending is skipped from then on (a metrics
        scrape asks this every few seconds).
        """
        self._check_open()
        lowered = self._rare.pending_floor_lowered
        held, unissued = self._slot_records()
        lowest_held = held[0][0] if held else None
        start = max(self._rare.pending_floor, self._floor)
        found: Entry | None = None
        first_pending = None
        for key, value in self._store.scan("entries", rec.encode_key(start)):
            entry_id = rec.decode_key(key)
            if lowest_held is not None and entry_id > lowest_held:
                break  # the slot's entry is older than any pending entry further on
            r = rec.decode_record(value)
            if r[0] == rec.PENDING:
                first_pending = entry_id
                found = rec.entry_from_record(entry_id, r)
                break
        if held and (found is None or held[0][0] < found.id):
            found = rec.entry_from_record(held[0][0], rec.decode_record(held[0][1]))
        if not self.read_only:
            # Below the first pending id of the store's snapshot, the lowest held one and the
            # first id not yet handed out, nothing was pending (see _scan_with_slots).
            bound = min(x for x in (first_pending, lowest_held, unissued) if x is not None)
            with self._lock:
                if lowered == self._rare.pending_floor_lowered:  # no entry turned pending below it meanwhile
                    self._rare.pending_floor = max(self._rare.pending_floor, bound)
        return found

    def count(
        self,
        *,
        name: str | None = None,
        state: str | State | None = None,
        direction: str | Direction | None = None,
    ) -> int:
        """How many entries match every filter given, from counters (no scan)."""
        self._check_open()
        scode = rec.parse_state(state)
        dcode = rec.parse_direction(direction)
        return self._counts.count(name, dcode, scode)

    def names(self) -> list[str]:
        """The names (streams) that have entries, sorted."""
        self._check_open()
        return self._counts.names()

    def size_on_disk(self) -> int:
        self._check_open()
        return self._store.size_on_disk()

    def refresh(self) -> None:
        """Read-only journals: catch up with what the journal's owner wrote since opening."""
        self._check_open()
        refresh = getattr(self._store, "refresh", None)
        if refresh is None:
            return
        with self._lock:  # a view's slot records come from files: no lock taken below
            slots = None if self.path is None else list(inflight.read_records(self.path))  # slots first
            refresh()
            self._reserved = self._rare.reserved_on_disk = self._meta_int(_META_SEQ, 1)
            if slots is not None:
                self._load_slot_records(slots)
            self._count_entries()

    def info(self) -> dict[str, Any]:
        """What the journal says about itself: schema, recorded durability, creation time, size."""
        self._check_open()

        def meta(key: bytes) -> Any:
            raw = self._store.get("meta", key)
            return None if raw is None else msgpack.unpackb(raw)

        return {
            "path": self.path,
            "schema": meta(_META_SCHEMA),
            "durability": meta(_META_DURABILITY),
            "created": meta(_META_CREATED),
            "size_on_disk": self._store.size_on_disk(),
        }

    # -- maintenance -------------------------------------------------------

    def sync(self) -> None:
        """fsync everything written so far (whatever the durability mode), the sockets' slot files too."""
        self._check_open()
        self._store.sync()
        with self._lock:
            for slots in self._slot_files:
                slots.sync()

    def expire(self, now: float | None = None) -> int:
        """Remove acked entries older than the retention period; returns how many."""
        self._check_open()
        if self.retention <= 0:
            return 0
        cutoff = (time.time() if now is None else now) - self.retention
        doomed = [(e.id, e.name, e.direction) for e in self._iter_entries(None, rec.ACKED, None) if e.updated <= cutoff]
        if not doomed:
            return 0
        with self._lock:
            self._check_open()
            batch = self._batch()
            changes: list[tuple[CounterKey, int]] = []
            for entry_id, name, direction in doomed:
                batch.delete("entries", rec.encode_key(entry_id))
                changes.append(((name, rec.DIRECTION_CODES[direction], rec.ACKED), -1))
            self._commit(batch, changes)
        return len(doomed)

    def compact(self) -> None:
        """Reclaim the space of removed entries now rather than when RocksDB decides."""
        self._check_open()
        self._store.compact()

    def _maintain(self) -> None:
        """Background fsync (interval mode) and retention sweeps."""
        interval = self.durability is Durability.INTERVAL
        period = self.fsync_interval / 1000.0 if interval else 1.0
        sweep_every = min(max(self.retention / 2, 0.05), 60.0)
        if self.retention > 0:
            period = min(period, sweep_every)
        next_sweep = time.monotonic() + sweep_every
        while not self._stop.wait(period):
            try:
                if interval:
                    if self._dirty:
                        self._dirty = False
                        self._store.sync()
                    for slots in list(self._slot_files):
                        slots.sync_if_changed()
                if self.retention > 0 and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + sweep_every
                    self.expire()
            except JournalClosedError:
                return
            except BaseException as e:  # surfaced by the next call on the journal
                self._background_error = e
                log.error("journal %s: background maintenance failed: %s", self.path, e)

    def abandon(self, parent: int) -> None:
        """In a forked child: the parent's journal is never used, written or closed here.

        Its slot files are shared mappings of the parent's live ones, its
        lock may have been held by a thread that does not exist here: nothing
        of it is touched again (zjournal.store.forking).
        """
        self._rare.forked_from = parent
        self._closed = True
        self._slot_files = []
        self._slot_ring = [None] * inflight.RING_SIZE
        self._lock = threading.Lock()
        for sock in list(self._sockets.values()):
            sock._abandon()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Make everything durable and release the journal; idempotent."""
        if self._closed:
            return
        for sock in list(self._sockets.values()):
            if not sock.closed:
                sock._settle_deferred(inbound=False)  # what ZeroMQ already took is done
        if self._maintainer is not None:
            self._stop.set()
            self._maintainer.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            failure: StoreError | None = None
            if not self.read_only:
                try:
                    self._spill_all()  # what sockets still hold stays pending, in the store
                    for slots in self._slot_files:
                        slots.close()
                    self._slot_files.clear()
                    batch = self._batch()
                    batch.put("meta", _META_FLOOR, msgpack.packb(self._floor))
                    # A clean close knows exactly which ids were handed out.
                    batch.put("meta", _META_SEQ, msgpack.packb(self._next_id))
                    self._store.write(batch, sync=self.durability is not Durability.NONE)
                except StoreError as e:  # the journal is still released; opening it again recovers
                    failure = e
            try:
                self._store.close()
            except StoreError as e:
                failure = failure or e
            if failure is not None:
                raise failure

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or "(memory)"
        status = "closed" if self._closed else f"{self.count(state=State.PENDING)} pending"
        return f"<zjournal.Journal {where} durability={self.durability.value} {status}>"


def open(  # noqa: A001 - the public name the issues ask for
    path: str,
    *,
    durability: str | Durability = Durability.PROCESS,
    retention: float = 0.0,
    max_attempts: int | None = None,
    fsync_interval: float = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    read_only: bool = False,
    plugins: bool = True,
    recover: bool = False,
) -> Journal:
    """Open (or create) the journal in directory ``path``.

    One process at a time may hold a journal open; others get
    :class:`JournalLockedError`. See :class:`Journal` for the arguments.

    ``read_only=True`` opens a view that never writes to the directory and
    works while another process holds the journal open (a RocksDB secondary
    instance); :meth:`Journal.refresh` catches up with the owner's writes.
    ``plugins=False`` attaches no plugin observers.

    A journal whose files are damaged is refused with
    :class:`JournalCorruptError` naming the file (a torn last record, as power
    loss leaves, is dropped silently). ``recover=True`` opens it anyway, keeping
    everything written before the damage; ``journal.recovered`` then says what
    was dropped.
    """
    path = os.fspath(path)
    mode = Durability.parse(durability)
    _check_settings(retention, max_attempts, fsync_interval)
    # A view reads the owner's slot files before its store catches up (see Journal._load_slot_records).
    slots = list(inflight.read_records(path)) if read_only else None
    store: Store = (
        SecondaryRocksStore(path) if read_only else RocksStore(path, wal=mode is not Durability.NONE, recover=recover)
    )
    journal = Journal(
        store,
        durability=mode,
        retention=retention,
        max_attempts=max_attempts,
        fsync_interval=fsync_interval,
        max_message_size=max_message_size,
        path=path,
        read_only=read_only,
        plugins=plugins,
        slots_read_first=slots,
    )
    journal.recovered = list(getattr(store, "recovered", []))
    if journal.recovered:
        log.warning("journal %s was recovered: %s", path, "; ".join(journal.recovered))
    return journal
