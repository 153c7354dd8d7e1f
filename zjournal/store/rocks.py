"""The embedded default store: RocksDB through rocksdict, in raw mode.

Facts this module is built on (see DESIGN.md): every open rewrites
``rocksdict-config.json``, so options and column families are always passed
explicitly; column-family handles are created once and kept (dropping one
flushes its memtable); ``WriteOptions.sync`` is an attribute; a ``WriteBatch``
is atomic across column families.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import threading
from collections.abc import Container, Iterator

import rocksdict

from zjournal.errors import (
    InvalidArgumentError,
    JournalClosedError,
    JournalCorruptError,
    JournalLockedError,
    NotAJournalError,
    StoreError,
)
from zjournal.store import forking
from zjournal.store.base import TABLES, Batch, Store
from zjournal.store.logmark import LogMark, lost_writes

# Files a directory may hold and still count as "empty" for a new journal.
_IGNORABLE = {".DS_Store"}
# The one directory a journal holds: its in-flight slot files (zjournal.journal.inflight).
_SUBDIRECTORIES = {"inflight", "blobs"}

log = logging.getLogger("zjournal")
_warned_about_modes: set[str] = set()


_DROPPED = re.compile(r"(\S+\.log): dropping (\d+) bytes; (.*)$")
_DAMAGED_FILE = re.compile(r"(/\S+\.(?:sst|log)|MANIFEST-\d+)")


# RocksDB's properties that say it has background work: database-wide, and per column family
_RUNNING = ("rocksdb.num-running-flushes", "rocksdb.num-running-compactions")
_DUE = ("rocksdb.mem-table-flush-pending", "rocksdb.compaction-pending")


def _options(recover: bool = False) -> rocksdict.Options:
    opts = rocksdict.Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.create_missing_column_families(True)
    # A torn last record (power loss mid-write) is dropped; damage anywhere else
    # refuses to open, unless the caller asks to recover what precedes it.
    mode = (
        rocksdict.DBRecoveryMode.point_in_time()
        if recover
        else rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records()
    )
    opts.set_wal_recovery_mode(mode)
    # RocksDB starts a new info log at every open and kept every old one (~60 KB each): keep three.
    opts.set_keep_log_file_num(3)
    return opts


def dropped_in(info_log: str) -> list[str]:
    """What RocksDB's info log says it dropped while recovering.

    RocksDB starts a new info log (``LOG``) at every open, so the current one
    speaks of this open only.
    """
    try:
        with open(info_log, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        match = _DROPPED.search(line)
        if match:
            found.append(f"{match.group(1)}: dropped {match.group(2)} bytes ({match.group(3)})")
    return found


def corruption_error(path: str, error: Exception, info_log: str = "") -> JournalCorruptError:
    """One clear error naming the damaged file (from the message, or RocksDB's info log)."""
    message = str(error)
    dropped = dropped_in(info_log) if info_log else []
    named = _DAMAGED_FILE.search(message)
    damaged = named.group(1) if named else (dropped[-1].split(":")[0] if dropped else None)
    where = f" in {damaged}" if damaged else ""
    return JournalCorruptError(
        f"journal {path} is damaged{where}: {message}; zjournal.open(path, recover=True) or "
        "`zjournal recover PATH` keeps what was written before the damage",
        path=path,
        file=damaged,
    )


# A journal's entries are mostly written and deleted again within one memtable;
# RocksDB's default (64 MiB, two of them) made a receiver with many pending
# entries hold ~100 MiB. 16 MiB keeps memory flat as entries pile up on disk.
_MEMTABLE_BYTES = 16 * 1024 * 1024


def _column_families() -> dict[str, rocksdict.Options]:
    families = {}
    for name in TABLES:
        opts = rocksdict.Options(raw_mode=True)
        opts.set_write_buffer_size(_MEMTABLE_BYTES)
        families[name] = opts
    return families


def check_journal_path(path: str) -> bool:
    """Refuse paths that hold something else; True when a journal exists there.

    Runs before RocksDB is touched, because opening would create files (and
    column families) in whatever directory it is given.
    """
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotAJournalError(f"{path} is a file, not a journal directory", path=path)
    if not os.path.isdir(path):
        return False
    names = set(os.listdir(path)) - _IGNORABLE
    if not names:
        return False
    if "CURRENT" not in names:
        raise NotAJournalError(f"{path} is a directory with other files in it, not a journal", path=path)
    check_file_types(path, names)
    try:
        families = set(rocksdict.Rdict.list_cf(path, rocksdict.Options(raw_mode=True)))
    except Exception as e:  # rocksdict raises bare Exception
        raise NotAJournalError(f"{path} is not a readable journal: {e}", path=path) from e
    if not set(TABLES) <= families:
        raise NotAJournalError(f"{path} is a RocksDB database but not a zjournal journal", path=path)
    return True


def check_file_types(path: str, names: set[str]) -> None:
    """Refuse links and anything but regular files in a journal (and in its slot directory).

    A link would make the journal's owner write or delete outside it; a FIFO
    or a device would hang or exhaust memory whoever opens the journal.
    """
    for name in sorted(names):
        full = os.path.join(path, name)
        try:
            mode = os.lstat(full).st_mode
        except FileNotFoundError:
            continue  # removed meanwhile (RocksDB's own files come and go)
        if name in _SUBDIRECTORIES and stat.S_ISDIR(mode):
            check_file_types(full, set(os.listdir(full)))
            continue
        if stat.S_ISLNK(mode):
            raise NotAJournalError(
                f"{full} is a symbolic link: a journal holds no links (refused, so that nothing outside it is "
                "written or deleted); replace it with the file itself",
                path=path,
            )
        if not stat.S_ISREG(mode):
            raise NotAJournalError(f"{full} is not a regular file: a journal holds only regular files", path=path)


def files_size(path: str) -> int:
    """Bytes in a journal's regular files, its slot and blob directories included."""
    total = 0
    for entry in os.scandir(path):
        if entry.is_file(follow_symlinks=False):
            total += entry.stat(follow_symlinks=False).st_size
        elif entry.name in _SUBDIRECTORIES and entry.is_dir(follow_symlinks=False):
            total += files_size(entry.path)
    return total


def make_private(path: str) -> None:
    """A new journal's directory: only its owner may enter it, whatever the umask (its files hold payloads)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
    except OSError as e:
        raise StoreError(f"cannot create journal {path}: {e.strerror}") from None


def warn_if_shared(path: str) -> None:
    """Say once per journal when other users may read it (a journal made before, or opened up on purpose)."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & 0o077 and path not in _warned_about_modes:
        _warned_about_modes.add(path)
        log.warning(
            "journal %s is open to other users (mode %04o): its files hold message payloads; chmod 700 it "
            "unless that is intended",
            path,
            mode,
        )


def iterate(cf: rocksdict.Rdict, start: bytes, path: str) -> Iterator[tuple[bytes, bytes]]:
    """``(key, value)`` from ``start`` on, from a snapshot taken now.

    rocksdict's ``items()`` stops quietly when a block fails its checksum, so
    the iterator's status is checked at the end: a damaged file is reported,
    never taken for the end of the data.
    """
    # A scan reads every entry once (counting at open, listings): keeping its
    # blocks in the cache would only make memory grow with the journal.
    options = rocksdict.ReadOptions()
    options.fill_cache(False)
    it = cf.iter(options)  # the implicit snapshot is taken here, not at the first next()
    it.seek(start)
    return _drain(it, path)


def _drain(it: rocksdict.RdictIter, path: str) -> Iterator[tuple[bytes, bytes]]:
    valid, key, value, advance = it.valid, it.key, it.value, it.next  # (a scan at open reads every entry)
    try:
        while valid():
            yield key(), value()
            advance()
        it.status()
    except Exception as e:
        if "Corruption" in str(e) or "checksum" in str(e):
            raise corruption_error(path, e) from e
        raise StoreError(f"journal {path}: read failed: {e}") from e


class RocksBatch(Batch):
    """Operations for one atomic write.

    Most batches hold one operation (an append, an ack, a dead letter): that
    one waits here as a tuple and :meth:`RocksStore.write` applies it to its
    column family directly, about 1 µs less than a ``WriteBatch`` of one
    (made, filled, written: ``tools/bench --only api``, append 8.6 -> 7.5 µs).
    A second operation makes the ``WriteBatch``, the first one in it.
    """

    __slots__ = ("_batch", "_handles", "one")

    def __init__(self, handles: dict[str, rocksdict.ColumnFamily]) -> None:
        self._batch: rocksdict.WriteBatch | None = None
        self._handles = handles
        self.one: tuple[str, bytes, bytes | None] | None = None  # (table, key, value; None: a delete)

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self._add(table, key, value)

    def delete(self, table: str, key: bytes) -> None:
        self._add(table, key, None)

    def _add(self, table: str, key: bytes, value: bytes | None) -> None:
        if self._batch is None and self.one is None and table in self._handles:
            self.one = (table, key, value)
            return
        self._into(self.write_batch(), table, key, value)

    def _into(self, batch: rocksdict.WriteBatch, table: str, key: bytes, value: bytes | None) -> None:
        try:
            handle = self._handles[table]
        except KeyError:
            raise InvalidArgumentError(f"unknown table {table!r}") from None
        if value is None:
            batch.delete(key, handle)
        else:
            batch.put(key, value, handle)

    def write_batch(self) -> rocksdict.WriteBatch:
        """The operations as a ``WriteBatch`` (made at the second operation, or for a write of several)."""
        batch = self._batch
        if batch is None:
            batch = self._batch = rocksdict.WriteBatch(raw_mode=True)
            one, self.one = self.one, None
            if one is not None:
                self._into(batch, *one)
        return batch

    def __len__(self) -> int:
        if self._batch is None:
            return 0 if self.one is None else 1
        return len(self._batch)


class _NotingBatch(RocksBatch):
    """A batch that lists the watched entries it deletes (see :meth:`RocksStore.watch_deletes`)."""

    __slots__ = ("_watched", "dropped")

    def __init__(self, handles: dict[str, rocksdict.ColumnFamily], watched: Container[bytes]) -> None:
        super().__init__(handles)
        self._watched = watched
        self.dropped: list[bytes] = []

    def delete(self, table: str, key: bytes) -> None:
        super().delete(table, key)
        if table == "entries" and key in self._watched:
            self.dropped.append(key)


class RocksStore(Store):
    """A journal directory as a RocksDB database with one column family per table."""

    owns = True  # (it holds the journal's LOCK: zjournal.store.forking.open_here)

    def __init__(self, path: str, *, wal: bool = True, recover: bool = False) -> None:
        self.path = path
        self.survives_process_crash = wal
        #: what recovery dropped when this store was opened (RocksDB's words)
        self.recovered: list[str] = []
        self._forked_from: int | None = None
        self._watched: Container[bytes] | None = None
        # A background fsync (interval mode, without the journal's lock) against opening the database
        # again after a failed write: rocksdict refuses a close while another thread is inside the database.
        self._reopening = threading.Lock()
        forking.check_can_open(path)
        if check_journal_path(path):
            warn_if_shared(path)
        else:
            make_private(path)
        self._open(recover)
        self.recovering = recover  # (the journal drops what else it finds damaged, and says so in ``recovered``)
        self.recovered = dropped_in(os.path.join(path, "LOG")) if recover else []
        # Without a log there is nothing to lose from it: durability "none" keeps no mark.
        self._mark = LogMark(path) if wal else None
        if self._mark is not None:
            self._check_mark(self._mark, recover)
        forking.opened(self)
        self._write_opts = rocksdict.WriteOptions()
        self._sync_opts = rocksdict.WriteOptions()
        self._sync_opts.sync = True
        if not wal:
            # RocksDB refuses synced writes without a WAL: durability comes from flushes.
            self._write_opts.disable_wal = True
            self._sync_opts = self._write_opts
        self._closed = False

    def _check_mark(self, mark: LogMark, recover: bool) -> None:
        """Refuse a store whose log lost writes it had made durable (see zjournal.store.logmark)."""
        reached = self._db.latest_sequence_number()
        lost = lost_writes(reached, mark.found)
        if lost is not None:
            if not recover:
                mark.close()
                self._tables.clear()  # (a column-family handle keeps the database, and its LOCK, alive)
                self._handles.clear()
                self._db.close()
                raise JournalCorruptError(
                    f"journal {self.path} is damaged: {lost}; zjournal.open(path, recover=True) or "
                    "`zjournal recover PATH` opens it with what is left",
                    path=self.path,
                )
            self.recovered.append(lost)
        mark.start(reached)  # (after a recovery: from what is there now)

    def _open(self, recover: bool = False) -> None:
        path = self.path
        try:
            self._db = rocksdict.Rdict(path, _options(recover), column_families=_column_families())
        except Exception as e:
            message = str(e)
            # RocksDB names the LOCK file when another holder has it ("... /LOCK: Resource temporarily
            # unavailable"); "block checksum mismatch" must not read as a lock.
            if "Corruption" not in message and ("/LOCK:" in message or "lock hold by" in message):
                where = "this process" if "current process" in message else "another process"
                raise JournalLockedError(f"journal {path} is locked by {where}", path=path) from e
            if "Corruption" in message:
                raise corruption_error(path, e, os.path.join(path, "LOG")) from e
            raise StoreError(f"cannot open journal {path}: {message}") from e
        # Kept for the life of the store: dropping a column-family Rdict flushes it.
        self._tables = {name: self._db.get_column_family(name) for name in TABLES}
        self._handles = {name: self._db.get_column_family_handle(name) for name in TABLES}

    def reopen(self) -> None:
        """Open the database again after a failed write: RocksDB refuses all writes after one.

        Everything written before the failure comes back from the log; the
        failed write never happened. Raises StoreError while the cause (a full
        disk) persists.
        """
        if self._closed:
            self._check_usable()
        with self._reopening:
            # Cleared in place: batches still hold these dicts, and a handle keeps RocksDB (and its LOCK) alive.
            self._tables.clear()
            self._handles.clear()
            with contextlib.suppress(Exception):  # a failed database reports its failure again when closed
                self._db.close()
            self._open()

    def busy_in_background(self) -> bool:
        """A flush or a compaction is running or due (a fork waits for none: see zjournal.store.forking)."""
        if self._closed:
            return False
        if any(self._db.property_int_value(p) for p in _RUNNING):
            return True
        return any(table.property_int_value(p) for table in self._tables.values() for p in _DUE)

    def abandon(self, parent: int) -> None:
        """In a forked child: never touch this database again (see zjournal.store.forking)."""
        forking.keep_forever(self._db, *self._tables.values())
        self._forked_from = parent
        self._closed = True

    def _check_usable(self) -> None:
        if self._forked_from is not None:
            raise forking.forked_error(self.path, self._forked_from)
        raise JournalClosedError(f"journal {self.path} is closed")

    def _table(self, table: str) -> rocksdict.Rdict:
        if self._closed:
            self._check_usable()
        if not self._tables:  # opening again after a failed write failed (a full disk): once more, or StoreError
            self._open()
        try:
            return self._tables[table]
        except KeyError:
            raise InvalidArgumentError(f"unknown table {table!r}") from None

    def batch(self) -> RocksBatch:
        if self._watched is None:
            return RocksBatch(self._handles)
        return _NotingBatch(self._handles, self._watched)

    def watch_deletes(self, keys: Container[bytes] | None) -> None:
        """Batches made from now on list (as ``dropped``) the deletions of these entries keys; None: no more."""
        self._watched = keys

    def write(self, batch: Batch, *, sync: bool = False) -> None:
        if self._closed:
            self._check_usable()
        assert isinstance(batch, RocksBatch)
        options = self._sync_opts if sync else self._write_opts
        one = batch.one
        try:
            if one is None:
                self._db.write(batch.write_batch(), options)
            else:  # one operation: straight to its column family (see RocksBatch)
                table, key, value = one
                if value is None:
                    self._tables[table].delete(key, options)
                else:
                    self._tables[table].put(key, value, options)
        except Exception as e:
            raise StoreError(f"journal {self.path}: write failed: {e}") from e
        mark = self._mark
        if mark is not None:  # how far the log went (zjournal.store.logmark)
            if sync:
                mark.synced(self._db.latest_sequence_number())
            else:
                mark.wrote(self._db.latest_sequence_number)

    def get(self, table: str, key: bytes) -> bytes | None:
        cf = self._table(table)
        try:
            return cf.get(key)
        except Exception as e:
            if "Corruption" in str(e):
                raise corruption_error(self.path, e) from e
            raise StoreError(f"journal {self.path}: read failed: {e}") from e

    def scan(self, table: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        cf = self._table(table)
        return iterate(cf, start, self.path)

    def sync(self) -> None:
        if self._closed:
            self._check_usable()
        if not self.survives_process_crash:
            self.flush()
            return
        with self._reopening:
            if not self._tables:  # opening it again after a failed write failed (a full disk): the next write tries
                raise StoreError(f"journal {self.path}: cannot fsync: its database could not be opened again")
            reached = self._db.latest_sequence_number()  # (taken first: what the fsync below covers)
            try:
                self._db.flush_wal(True)  # releases the GIL while it fsyncs
            except Exception as e:
                raise StoreError(f"journal {self.path}: fsync failed: {e}") from e
        if self._mark is not None:
            self._mark.synced(reached)

    def flush(self) -> None:
        """Write memtables to SST files (needed before close when there is no WAL)."""
        if not self._closed:
            for cf in self._tables.values():
                cf.flush(True)

    def compact(self) -> None:
        for name in TABLES:
            self._table(name).compact_range(None, None)

    def size_on_disk(self) -> int:
        if self._closed:
            self._check_usable()
        return files_size(self.path)

    def sequence(self) -> int | None:
        if self._closed:
            self._check_usable()
        try:
            return self._db.latest_sequence_number()
        except Exception:  # (a database being opened again after a failed write): unsure
            return None

    def close(self) -> None:
        if self._closed:
            return
        if not self.survives_process_crash:
            with contextlib.suppress(Exception):  # what could not be flushed is reported by close below
                self.flush()
        if self._mark is not None:
            with contextlib.suppress(Exception):  # a store that cannot sync any more keeps its older mark
                self.sync()
            self._mark.close()
        self._closed = True
        # A column-family Rdict keeps the database (and its LOCK) alive: drop them first.
        self._tables.clear()
        self._handles.clear()
        try:
            self._db.close()
        except Exception as e:  # e.g. the disk filled: the lock is released all the same
            raise StoreError(f"journal {self.path}: closing: {e}") from e
