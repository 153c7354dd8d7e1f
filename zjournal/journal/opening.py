"""Opening a journal's ledger: the schema check, the counters, the id sequence and the floor; its metadata.

A mixin of :class:`zjournal.journal.ledger.Ledger`, kept apart so that the
ledger's module reads as the changes every entry goes through. What is here
runs when a journal opens (or a read-only view catches up) and when a clean
close records its counts, plus the small ``meta`` table: the schema version,
the id reservation (``seq``), the floor, the durability and creation time
recorded, and the secrets a journal keeps for its confirm senders.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import msgpack

from zjournal.errors import IncompatibleJournalError, NotAJournalError
from zjournal.journal import blobs, closecounts, overflow
from zjournal.journal import entry as rec
from zjournal.journal.counters import CounterKey, Counters
from zjournal.journal.durability import Durability

log = logging.getLogger("zjournal")

META_SCHEMA = b"schema"
META_SEQ = b"seq"  # ids below this value may have been handed out
META_FLOOR = b"floor"  # no live entry has an id below this value
META_DURABILITY = b"durability"
META_CREATED = b"created"
META_CREATED_BY = b"created-by"  # a tool that made this journal for itself (the demo)


class Opening:
    """The opening and metadata methods of the ledger (they run on its own state)."""

    store: Any
    path: str | None
    read_only: bool
    durability: Durability
    rare: Any
    lock: Any
    counts: Counters
    seen: Any
    overflow: overflow.Overflow | None
    next_id: int
    reserved: int
    floor: int
    first_id_this_open: int
    batch: Any
    check_open: Any
    load_slot_records: Any
    scan_with_slots: Any
    _sweep_blobs: Any

    def load(self, slots_read_first: list[tuple[int, bytes]] | None = None) -> None:
        """Check the schema, then rebuild counters and the id sequence in one scan (lock not needed)."""
        store = self.store
        raw_schema = store.get("meta", META_SCHEMA)
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
        self.reserved = self.rare.reserved_on_disk = self.meta_int(META_SEQ, 1)
        self.next_id = self.reserved  # at least; the scan below may find higher ids
        self.floor = self.meta_int(META_FLOOR, 1)
        self.seen.load(store)  # first: keys in slot files' key rings are added to what the store has
        if self.path is not None:
            self.load_slot_records(slots_read_first)
        if self.read_only:
            self.count_later()  # `inspect --id`, `--follow` or a get need no scan of every entry
        else:
            self.count_entries()  # (from what the last clean close recorded, when nothing changed since)
        # Every id an earlier open handed out lies below: ids are reserved in the store before use.
        self.first_id_this_open = self.next_id
        if self.path is not None:
            self.rare.blobs = blobs.BlobFiles(self.path, sync=self.durability is not Durability.NONE)
        if self.read_only:
            return
        batch = store.batch()
        batch.put("meta", META_DURABILITY, msgpack.packb(self.durability.value))
        closecounts.forget(batch)
        store.write(batch, sync=True)
        if self.rare.blobs is not None:
            self.rare.blob_writes = True
            self._sweep_blobs()
        if self.rare.use_slots:
            assert self.path is not None
            self.overflow = overflow.Overflow(self.path)
            self.overflow.make_spare()

    def count_later(self) -> None:
        """A view: count at the first count asked for (Journal._counts), not now; set what the count also sets.

        The ids handed out lie below the reserved ones, and an entry may have
        turned pending again below the oldest pending one seen (the floor is
        the one recorded, or the last count's).
        """
        self.rare.counts_stale = True
        self.next_id = max(self.next_id, self.reserved)
        self.rare.pending_floor = self.floor
        self.rare.pending_floor_lowered = 0

    def count_entries(self) -> None:
        """Rebuild the counters, the id sequence and the floor: as the last clean close left them, or in one scan."""
        found = closecounts.recorded(self.store) or self._scan_counts()
        self.counts = found.counts
        self.next_id = max(self.reserved, found.next_id)
        self.floor = found.floor
        self.rare.pending_floor = self.floor  # oldest_pending() moves it up past what is not pending
        self.rare.pending_floor_lowered = 0
        self.rare.counts_stale = False

    def _scan_counts(self) -> closecounts.EntryCounts:
        """Count every entry, in the store and in slot files."""
        last_id = 0
        first_id = None
        tally: dict[CounterKey, int] = {}  # counted here, then added once per key: Counters.add per entry costs more
        tally_get = tally.get
        decode = rec.decode_record
        for entry_id, value in self.scan_with_slots():
            if first_id is None:
                first_id = entry_id
            last_id = entry_id
            r = decode(value)
            key = (r[3], r[4], r[0])
            tally[key] = tally_get(key, 0) + 1
        counts = Counters()
        for key, n in tally.items():
            counts.add(key, n)
        next_id = max(self.reserved, last_id + 1)
        return closecounts.EntryCounts(counts, next_id, first_id if first_id is not None else next_id)

    def _record_counts(self) -> None:
        """The last write of a clean close: the counters, for the next open to take instead of a scan."""
        found = closecounts.EntryCounts(self.counts, self.next_id, self.floor)
        try:
            closecounts.record(self.store, found, sync=self.durability is not Durability.NONE)
        except Exception as e:  # (never a reason for a close to fail: the next open counts)
            log.warning("journal %s: the counts were not recorded at close: %s", self.path, e)

    def _initialise(self) -> None:
        batch = self.store.batch()
        batch.put("meta", META_SCHEMA, msgpack.packb(rec.SCHEMA_VERSION))
        batch.put("meta", META_CREATED, msgpack.packb(time.time()))
        batch.put("meta", META_SEQ, msgpack.packb(1))
        self.store.write(batch, sync=True)

    def meta(self, key: bytes) -> Any:
        """A metadata value, or None."""
        raw = self.store.get("meta", key)
        return None if raw is None else msgpack.unpackb(raw)

    def meta_int(self, key: bytes, default: int) -> int:
        raw = self.store.get("meta", key)
        return default if raw is None else int(msgpack.unpackb(raw))

    def set_meta(self, key: bytes, value: Any) -> None:
        """Write a metadata value, durably (lock held)."""
        self.check_open()
        batch = self.batch()
        batch.put("meta", key, msgpack.packb(value))
        self.store.write(batch, sync=True)

    def secret(self, purpose: str) -> bytes:
        """16 random bytes kept in the journal for ``purpose``: drawn once, the same after every restart."""
        key = b"secret:" + purpose.encode()
        with self.lock:
            self.check_open()
            raw = self.store.get("meta", key)
            if raw is None:
                raw = os.urandom(16)
                batch = self.batch()
                batch.put("meta", key, raw)
                self.store.write(batch, sync=True)
            return raw

    def created_by(self, tool: str | None = None) -> str | None:
        """The tool that made this journal for itself, if one said so; with ``tool``: say so now."""
        self.check_open()
        if tool is not None:
            batch = self.batch()
            batch.put("meta", META_CREATED_BY, msgpack.packb(tool))
            self.store.write(batch, sync=True)
        raw = self.store.get("meta", META_CREATED_BY)
        return None if raw is None else str(msgpack.unpackb(raw))
