"""The ledger's bookkeeping of in-flight slot files at rest: what a crash left in them, and which are live.

A mixin of :class:`zjournal.journal.ledger.Ledger`, kept apart so that the
ledger's module reads as entries, ids and slots in use. Sockets write the
messages they move into memory-mapped slot files and outboxes
(zjournal.journal.inflight, zjournal.journal.outbox); here is what the
ledger does with those files as files: a meta row per live file (so that
opening after a crash tells a deleted or emptied file from one never made),
taking in what a crash left in them (records, dedup keys of key rings,
hand-over records of read-ahead batches), and showing hand-overs not yet
written to readers.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from zjournal.errors import JournalCorruptError, StoreError
from zjournal.journal import entry as rec
from zjournal.journal import inflight
from zjournal.journal.durability import Durability

if TYPE_CHECKING:
    from zjournal.journal import outbox

# One record per live in-flight slot file (``slot-file:<number>``): written once the file exists, deleted
# before it goes, so that opening after a crash can tell a deleted or emptied file from one never made.
META_SLOT_FILE = b"slot-file:"

_INBOUND = rec.DIRECTION_CODES[rec.Direction.IN]


class SlotKeeping:
    """The slot-file methods of the ledger (they run on its own state)."""

    path: Any
    store: Any
    read_only: bool
    durability: Durability
    floor: int
    slot_view: dict[int, bytes]
    rare: Any
    seen: Any
    handing: Any
    batch: Any

    def load_slot_records(self, records: list[tuple[int, bytes]] | None = None) -> None:
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
        store = self.store
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
            self.floor = min(self.floor, min(found))
        if self.read_only:
            self.slot_view = found
            self.rare.handover_view = list(inflight.read_handovers(self.path))
            if not store.owner_alive():  # a live owner removes slot files as its sockets close: no check then
                self._check_slot_files(None)
            return
        batch = store.batch()
        self._check_slot_files(batch)
        for entry_id, value in found.items():
            batch.put("entries", rec.encode_key(entry_id), value)
        self._make_handovers_good(batch)
        keys_stored = self._keys_of_key_rings(batch)
        if len(batch):
            store.write(batch, sync=True)
        for committed in keys_stored:
            committed()
        inflight.remove_all(self.path)

    def _check_slot_files(self, batch: Any) -> None:
        """Every slot file the meta records as live must be there, and be one; their records go in ``batch``.

        A recorded file that is missing, or no longer a slot file (emptied, its
        header gone), lost the messages it held: JournalCorruptError naming it,
        unless the store was opened to recover (then it is dropped, and said
        so in ``journal.recovered``). ``batch`` None: a view of a stopped
        journal checks, and changes nothing.
        """
        assert self.path is not None
        store = self.store
        present = {os.path.basename(p): p for p in inflight.slot_files(self.path)}
        for key, _value in store.scan("meta", META_SLOT_FILE):
            if not key.startswith(META_SLOT_FILE):
                break
            if batch is not None:
                batch.delete("meta", key)
            name = key[len(META_SLOT_FILE) :].decode(errors="replace") + inflight.SUFFIX
            path = present.get(name) or os.path.join(inflight.directory(self.path), name)
            damage = None if name in present else "is missing"
            if damage is None and not inflight.is_slot_file(path):
                damage = "is no longer a slot file (emptied or overwritten)"
            if damage is None:
                continue
            what = f"in-flight slot file {path} {damage}: the messages its socket held in it are lost"
            if batch is None and store.owner_alive():
                return  # an owner opened it meanwhile, and moved the slots into its store: no damage
            if not getattr(store, "recovering", False):
                raise JournalCorruptError(
                    f"{what}; zjournal.open(path, recover=True) or `zjournal recover PATH` opens it without them",
                    path=self.path,
                    file=path,
                )
            store.recovered.append(what)

    def record_slot_file(self, slots: inflight.SlotFile | outbox.Outbox) -> None:
        """A socket's new slot file exists (lock held): record it (see META_SLOT_FILE).

        Where a power cut must find what was written (``interval``, ``always``),
        the file's header and its directory entry are made durable first: a
        record that outlives its file, or a file whose header is still zeros,
        would be a false alarm at the next open.
        """
        if self.durability in (Durability.INTERVAL, Durability.ALWAYS):
            assert self.path is not None
            try:
                slots.sync()
            except OSError as e:
                raise StoreError(f"cannot sync the in-flight slot file {slots.path}: {e}") from e
            inflight.sync_directory(self.path)
        batch = self.batch()
        batch.put("meta", META_SLOT_FILE + str(slots.number).encode(), b"")
        self.store.write(batch, sync=self.durability is Durability.ALWAYS)

    def forget_slot_file(self, number: int) -> None:
        """A socket's slot file is about to go (lock held): its record goes first."""
        batch = self.batch()
        batch.delete("meta", META_SLOT_FILE + str(number).encode())
        self.store.write(batch, sync=self.durability is Durability.ALWAYS)

    def _keys_of_key_rings(self, batch: Any) -> list[Any]:
        """The dedup keys slot files' key rings hold, into ``batch`` (those the store lacks); what to run after."""
        assert self.path is not None
        by_origin: dict[bytes, list[int]] = {}
        for origin, seq in inflight.read_keys(self.path):
            by_origin.setdefault(origin, []).append(seq)
        return [self.seen.add_many(batch, origin, sorted(set(seqs))) for origin, seqs in by_origin.items()]

    def handovers(self) -> list[inflight.Handover]:
        """Read-ahead entries that sockets handed over and no store write counted yet (see SlotFile.mark_handed).

        Readers (get, entries, inspect) show those with one attempt, as the
        journal will record them.
        """
        if self.read_only:
            return self.rare.handover_view
        # Only prefetching sockets' files ever record one: no look at every socket's file per get().
        return [inflight.Handover(f.inbound.name, *f.handed) for f in self.handing if f.handed is not None]

    def with_handovers(self, entry_id: int, raw: bytes, handovers: list[inflight.Handover]) -> bytes:
        """``raw``, or its record with the one attempt a hand-over not yet written counts."""
        for handover in handovers:
            if handover.first <= entry_id <= handover.through:
                r = rec.decode_record(raw)
                if r[0] == rec.PENDING and r[1] == 0 and r[3] == handover.name and r[4] == _INBOUND:
                    r[1] = 1
                    return rec.encode_record(*r)
        return raw

    def _make_handovers_good(self, batch: Any) -> None:
        """Write what slot files' hand-over records say into ``batch`` (opening after a crash).

        Each read-ahead entry handed over gets its attempt; with the ``next``
        policy those before the last one were acked by asking for the next,
        so only the message in hand comes back (as without prefetch).
        """
        assert self.path is not None
        for handover in inflight.read_handovers(self.path):
            for key, value in self.store.scan("entries", rec.encode_key(handover.first)):
                entry_id = rec.decode_key(key)
                if entry_id > handover.through:
                    break
                r = rec.decode_record(value)
                if r[0] != rec.PENDING or r[1] != 0 or r[3] != handover.name or r[4] != _INBOUND:
                    continue  # counted already, or another stream's
                if handover.acks_earlier and entry_id < handover.through:
                    batch.delete("entries", key)
                else:
                    r[1] = 1
                    batch.put("entries", key, rec.encode_record(*r))
