"""The ledger's bookkeeping of blob files (zjournal.journal.blobs): which entries own which files, and when they go.

A mixin of :class:`zjournal.journal.ledger.Ledger`, kept apart so that the
ledger's module reads as entries, ids and slots. Everything here runs on the
ledger's own state: the files are ``rare.blobs``, the entries that own files
``rare.blob_index`` (entry key -> file names), the files whose entries'
deletion is not fsynced yet ``rare.blobs_unsynced``.

The rules: a file is written (and fsynced, but in ``none`` mode) before the
record naming it; a ``meta`` row ``blob:<entry key>``, in the record's own
batch, names an entry's files, so opening after a crash removes leftovers
without reading entries; a deleted entry's files go only once its deletion
is as durable as the journal promises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgpack

from zjournal.errors import JournalCorruptError
from zjournal.journal import blobs
from zjournal.journal import entry as rec
from zjournal.journal.durability import Durability

if TYPE_CHECKING:
    import threading

    from zjournal.journal.counters import Counters
    from zjournal.store.base import Store

# process and none mode: blob files of deleted entries removed after one fsync of the log for this many
_BLOBS_PER_SYNC = 16


class BlobKeeping:
    """The ledger's blob-file methods (see the module docstring)."""

    # (the ledger's, which this mixin reads)
    store: Store
    rare: Any  # (the ledger's _Rare: blobs, blob_index, blobs_unsynced, blob_writes)
    path: str | None
    counts: Counters
    durability: Durability
    lock: threading.Lock
    closed: bool
    fenced: str | None

    if TYPE_CHECKING:  # (the ledger's too)

        def check_size(self, frames: list[bytes]) -> int: ...

        def check_open(self) -> None: ...

    def _sweep_blobs(self) -> None:
        """Remove the blob files a crash left behind; refuse a journal whose live entry lost its blob file.

        Reads only the meta rows of entries with blobs and the blob directory,
        never every entry (see zjournal.journal.blobs).
        """
        store, files = self.store, self.rare.blobs
        assert files is not None
        on_disk = files.names_on_disk()
        rows: dict[bytes, list[str]] = {}
        for key, value in store.scan("meta", blobs.META_PREFIX):
            if not key.startswith(blobs.META_PREFIX):
                break
            names = msgpack.unpackb(value)
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise JournalCorruptError(f"journal {self.path}: a blob row that is not one", path=str(self.path))
            rows[key[len(blobs.META_PREFIX) :]] = names
        if not rows and not on_disk:
            return
        batch = store.batch()
        owned: set[str] = set()
        for entry_key, names in rows.items():
            if store.get("entries", entry_key) is None:
                batch.delete("meta", blobs.meta_key(entry_key))  # deleted before its files were
                continue
            missing = [n for n in names if n not in on_disk]
            if missing:
                what = f"blob file {files.path_of(missing[0])} of entry {rec.decode_key(entry_key)} is missing"
                if not getattr(store, "recovering", False):
                    raise JournalCorruptError(
                        f"{what}; zjournal.open(path, recover=True) or `zjournal recover PATH` opens it without "
                        "that entry",
                        path=str(self.path),
                        file=files.path_of(missing[0]),
                    )
                store.recovered.append(f"{what}: the entry is removed")
                self._drop_entry(batch, entry_key)
                continue
            self.rare.blob_index[entry_key] = names
            owned.update(names)
        if len(batch):
            store.write(batch, sync=True)
        files.remove(on_disk - owned)  # files of records never written, or deleted since
        self._watch_blob_entries()

    def _drop_entry(self, batch: Any, entry_key: bytes) -> None:
        raw = self.store.get("entries", entry_key)
        if raw is not None:
            r = rec.decode_record(raw)
            self.counts.add((r[3], r[4], r[0]), -1)
        batch.delete("entries", entry_key)
        batch.delete("meta", blobs.meta_key(entry_key))

    def checked(self, frames: list[Any]) -> tuple[list[Any], list[str]]:
        """:meth:`check_size`, then each large frame written to a blob file and replaced by its reference.

        Returns the frames to encode and the blob files written (lock not
        needed). The caller names them in the record's batch
        (:meth:`own_blobs`), then, once that batch is committed, calls
        :meth:`blobs_committed`; if it never gets there, :meth:`discard_blobs`.
        """
        return self.externalize(frames) if self.check_size(frames) >= blobs.BLOB_SIZE else (frames, [])

    def externalize(self, frames: list[Any]) -> tuple[list[Any], list[str]]:
        """:meth:`checked` without the size check (a restore takes what another journal held)."""
        files = self.rare.blobs
        if files is None or not self.rare.blob_writes:
            return frames, []
        if self.closed or self.fenced is not None:
            self.check_open()  # (a forked child's journal too: nothing is written into the parent's)
        out, names = list(frames), []
        try:
            for index, frame in enumerate(frames):
                if len(frame) >= blobs.BLOB_SIZE:
                    out[index], name = files.write(frame)
                    names.append(name)
        except BaseException:
            files.remove(names)
            raise
        return out, names

    def own_blobs(self, batch: Any, entry_id: int, names: list[str]) -> None:
        """The entry ``entry_id`` written in ``batch`` refers to blob files ``names`` (lock held)."""
        batch.put("meta", blobs.meta_key(rec.encode_key(entry_id)), msgpack.packb(names))

    def blobs_committed(self, entry_id: int, names: list[str]) -> None:
        """The batch naming them was written: they are the entry's (lock held)."""
        self.rare.blob_index[rec.encode_key(entry_id)] = names
        self._watch_blob_entries()

    def discard_blobs_unless_owned(self, names: list[str]) -> None:
        """After a failure: the blob files written for a record go, unless its batch was committed."""
        if not any(owned is names for owned in self.rare.blob_index.values()):
            self.discard_blobs(names)

    def discard_blobs(self, names: list[str]) -> None:
        """Blob files written for a record that was not written after all."""
        files = self.rare.blobs
        if files is not None and names:
            files.remove(names)

    def _watch_blob_entries(self) -> None:
        """Have the store's batches note deletions of entries with blobs, only while there are any."""
        watch = getattr(self.store, "watch_deletes", None)
        if watch is not None:
            watch(self.rare.blob_index or None)

    def _blobs_before_write(self, batch: Any) -> list[bytes]:
        """The entries with blobs this batch deletes; their meta rows go in the same batch."""
        dropped = [key for key in getattr(batch, "dropped", ()) if key in self.rare.blob_index]
        for key in dropped:
            batch.delete("meta", blobs.meta_key(key))
        return dropped

    def _blobs_after_write(self, dropped: list[bytes]) -> None:
        """The entries ``dropped`` are deleted: their blob files go, once that is as durable as promised."""
        rare = self.rare
        released = [name for key in dropped for name in rare.blob_index.pop(key, ())]
        if released:
            if self.durability is Durability.ALWAYS:
                self.discard_blobs(released)  # (the write that deleted their records was fsynced)
            else:
                # Removed once their records' deletion is fsynced: a power cut must not bring back a
                # record without its file (interval: the maintainer's next fsync; else one every few).
                rare.blobs_unsynced.extend(released)
                if self.durability is not Durability.INTERVAL and len(rare.blobs_unsynced) >= _BLOBS_PER_SYNC:
                    self.store.sync()
                    self.discard_blobs(rare.blobs_unsynced)
                    rare.blobs_unsynced = []
            self._watch_blob_entries()

    def release_synced_blobs(self, count: int) -> None:
        """interval mode: the first ``count`` blob files waiting for an fsync had it."""
        with self.lock:
            done, self.rare.blobs_unsynced[:count] = self.rare.blobs_unsynced[:count], []
        self.discard_blobs(done)
