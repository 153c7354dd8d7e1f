"""A read-only view of a journal directory that may be live: a RocksDB secondary instance.

It never writes to the journal directory. rocksdict rewrites
``rocksdict-config.json`` in whatever directory it opens, and a secondary
instance still opens the primary's path, so the view opens a private *shadow*
directory of links to the journal's files instead (hard links where it can:
see _link_files), and refreshes the links before each catch-up with the primary (new WAL, SST and MANIFEST files
appear as the owner writes). Works the same on a stopped journal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator

import rocksdict

from zjournal.errors import (
    InvalidArgumentError,
    JournalClosedError,
    JournalCorruptError,
    NotAJournalError,
    ReadOnlyJournalError,
    StoreError,
)
from zjournal.store import forking
from zjournal.store.base import TABLES, Batch, Store
from zjournal.store.logmark import MARK_NAME, lost_writes, read_mark
from zjournal.store.rocks import check_journal_path, corruption_error, files_size, iterate

# Files of the owner's that the view must not share: its lock, its info logs, rocksdict's config,
# zjournal's in-flight slot files (not RocksDB's; the journal reads them itself) and its log mark.
_MORE_CATCH_UPS = 8  # catch-ups past the asked number while the owner's files keep changing (see _catch_up)
_OPEN_SETTLE_SECONDS = 2.0  # opens tried again while the owner's files keep changing (see _open_settled)
_OPEN_ATTEMPTS = 3  # ... and at least this many times (an open of a large, busy journal can take seconds)
_RELINKS = 5  # opens linking again while a table the manifest names was made after the link (see _relinking)
_TOO_FAST = "its owner replaces its files faster than a view can read them; try again"
_REPLACED_BY_RENAME = {"CURRENT"}  # RocksDB writes it anew and renames it over the old one
_PRIVATE = {"LOCK", "LOG", "rocksdict-config.json", "inflight", "blobs", MARK_NAME}


_PREFIX = "zjournal-view-"


def sweep_abandoned_views() -> None:
    """Remove the private directories of views whose process is gone (killed before it could)."""
    base = tempfile.gettempdir()
    try:
        names = [n for n in os.listdir(base) if n.startswith(_PREFIX)]
    except OSError:
        return
    for name in names:
        pid_text = name[len(_PREFIX) :].removeprefix("secondary-").split("-", 1)[0]
        full = os.path.join(base, name)
        try:
            if not pid_text.isdigit() or os.lstat(full).st_uid != os.getuid():
                continue  # not ours to judge (another user's, or made before the names held a pid)
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(full, ignore_errors=True)
        except OSError:
            continue  # alive (under another user: EPERM) or vanished meanwhile


class SecondaryRocksStore(Store):
    """Read-only, refreshable view of a journal directory (live or stopped)."""

    def __init__(self, path: str, sentinel: tuple[str, bytes] | None = None) -> None:
        """``sentinel``: a key every complete view of the journal has (its schema, say): see _open_settled."""
        self.path = path
        self._sentinel = sentinel
        forking.check_can_open(path)
        if not os.path.exists(path):
            raise NotAJournalError(f"no journal at {path}", path=path)
        if not check_journal_path(path):
            raise NotAJournalError(f"{path} is empty: not a journal", path=path)
        sweep_abandoned_views()
        # Read before the view catches up: a mark is never ahead of what the owner's log then held.
        mark = read_mark(path)
        # The pid in the names tells a later view whether their owner is still alive (see the sweep).
        self._shadow = tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-")
        self._secondary = tempfile.mkdtemp(prefix=f"{_PREFIX}secondary-{os.getpid()}-")
        self._closed = False
        self._linked: set[str] = set()  # names linked into the shadow
        self._settled = False  # the last catch-up ended with the owner's files unchanged (see version)
        self._all_hard = True  # every linked file but CURRENT is a hard link (see _link_files)
        try:
            self._db = self._open_settled()
            self._tables = {name: self._db.get_column_family(name) for name in TABLES}
            lost = lost_writes(self._db.latest_sequence_number(), mark)
            if lost is not None:
                self._db.close()
                raise JournalCorruptError(
                    f"journal {path} is damaged: {lost}; `zjournal recover PATH` opens it with what is left",
                    path=path,
                )
            forking.opened(self)
        except (NotAJournalError, JournalCorruptError):
            self._remove_dirs()
            raise
        except (KeyboardInterrupt, SystemExit):  # Ctrl-C or SIGTERM while opening: leave nothing behind
            self._remove_dirs()
            raise
        except Exception as e:
            # Speak of the journal's files, not of the private links to them.
            real = os.path.abspath(path)
            error: StoreError = StoreError(f"cannot read journal {path}: {str(e).replace(self._shadow, real)}")
            if "Corruption" in str(e):
                found = corruption_error(path, e, os.path.join(self._secondary, "LOG"))
                error = JournalCorruptError(
                    str(found).replace(self._shadow, real),
                    path=path,
                    file=found.file.replace(self._shadow, real) if found.file else None,
                )
            self._remove_dirs()
            raise error from e

    def owner_alive(self) -> bool:
        """Whether a process holds the journal's LOCK (RocksDB's fcntl lock), asked without taking it.

        F_GETLK does not see locks of this process: a journal this process
        owns counts as alive by the registry of open journals instead.
        """
        if forking.open_here(self.path):
            return True
        try:
            fd = os.open(os.path.join(self.path, "LOCK"), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return False  # no LOCK file: nobody ever held it open, or it was removed with the journal
        try:
            asked = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
            answer = fcntl.fcntl(fd, fcntl.F_GETLK, asked)
            return struct.unpack("hhqqi4x", answer)[0] != fcntl.F_UNLCK
        except OSError:
            return True  # cannot tell: assume an owner (and check nothing that it may be changing)
        finally:
            os.close(fd)

    def busy_in_background(self) -> bool:
        return False  # a secondary instance never flushes nor compacts

    def _open_settled(self) -> rocksdict.Rdict:
        """Link the owner's files and open them, again while files came or went meanwhile.

        A live owner's flush or compaction deletes files: one linked a moment
        ago may be gone when RocksDB reads it. RocksDB then reports corruption,
        or skips what it cannot read (a view without some writes, even without
        the journal's schema). Neither is damage, so an open counts once no
        file of the owner's came or went while it ran, as a catch-up does
        (see _catch_up). An owner that writes without pause may change its
        files during every open: after :data:`_OPEN_SETTLE_SECONDS` and
        :data:`_OPEN_ATTEMPTS` attempts the next one is the last; if it fails
        on a file gone, or comes out incomplete (see :meth:`_complete`), the
        error says to try again rather than that the journal is damaged.
        """
        opts = rocksdict.Options(raw_mode=True)
        opts.set_wal_recovery_mode(rocksdict.DBRecoveryMode.tolerate_corrupted_tail_records())
        families = {name: rocksdict.Options(raw_mode=True) for name in TABLES}
        deadline = time.monotonic() + _OPEN_SETTLE_SECONDS
        attempts = 0
        while True:
            attempts += 1
            last = attempts >= _OPEN_ATTEMPTS and time.monotonic() >= deadline
            linked = self._link_files()
            try:
                self._check_tables()
                db = self._relinking(
                    lambda: rocksdict.Rdict(
                        self._shadow,
                        opts,
                        column_families=families,
                        access_type=rocksdict.AccessType.secondary(self._secondary),
                    )
                )
            except Exception as e:
                if self._owner_files() == linked:
                    raise  # not the owner's doing: damage (or an error of its own)
                if not last:
                    continue
                if "No such file" in str(e):  # a file linked, or named, and deleted meanwhile
                    raise StoreError(_TOO_FAST) from e
                raise
            if last or self._all_hard or self._owner_files() == linked:
                # (Hard links: what it read cannot have gone meanwhile.) Tables open lazily: one made
                # meanwhile, which the manifest it read may name, is linked before anything is read;
                # one made and deleted meanwhile cannot be, and the view is opened again.
                self._link_files(prune=False)
                if self._complete(db) or self._owner_files() == linked:
                    return db  # (incomplete and not changing: the caller finds out what is missing)
                if last:
                    db.close()
                    raise StoreError(_TOO_FAST)
            db.close()

    def _complete(self, db: rocksdict.Rdict) -> bool:
        """Whether an open view has every table its version names, and the sentinel key.

        Against an owner that flushes and compacts without pause, an open
        can come out short: a table made and compacted away while it ran is
        named but gone (a secondary opens tables lazily, and reads one it
        cannot open as empty), or the view misses data of a log the owner
        deleted meanwhile (seen: a view of a live journal without its schema,
        about one open in fifteen at 200 KB appends at full speed). Such a
        view is opened again. (Catch-ups need no such look: see _catch_up.)
        """
        names = (os.path.basename(f["name"]) for f in db.live_files())
        if not all(os.path.exists(os.path.join(self._shadow, name)) for name in names):
            return False
        if self._sentinel is None:
            return True
        table, key = self._sentinel
        return db.get_column_family(table).get(key) is not None

    def _check_tables(self) -> None:
        """Open every table file once, read-only: a damaged one is reported now, as damage.

        A secondary instance opens tables lazily, and an iterator over one it
        cannot open is merely empty: a damaged journal would read as one
        without entries. A read-only instance opens them all (max_open_files
        -1) and says which is damaged; only that is taken from it (a live
        owner may delete a file meanwhile: such errors are not damage).
        """
        opts = rocksdict.Options(raw_mode=True)
        opts.set_max_open_files(-1)
        families = {name: rocksdict.Options(raw_mode=True) for name in TABLES}
        try:
            check = self._relinking(
                lambda: rocksdict.Rdict(
                    self._shadow, opts, column_families=families, access_type=rocksdict.AccessType.read_only()
                )
            )
        except Exception as e:
            if "Corruption" in str(e):
                raise
            return
        check.close()

    def _relinking(self, open_db: Callable[[], rocksdict.Rdict]) -> rocksdict.Rdict:
        """``open_db()``, again while it fails on a file missing from the shadow that the owner has made since.

        The manifest is hard-linked, so the owner's appends to it show: an
        open may read of a table made after the files were linked (seen in CI:
        "No such file ... 000318.sst" while the owner compacted). Linking again
        brings it in. Nothing new to link: the error stands (the caller judges it).
        """
        for _ in range(_RELINKS):
            try:
                return open_db()
            except Exception as e:
                if "No such file" not in str(e):
                    raise
                before = set(self._linked)
                self._link_files(prune=False)
                if self._linked == before:
                    raise
        return open_db()

    def abandon(self, parent: int) -> None:
        """In a forked child: never touch this view again (see zjournal.store.forking)."""
        forking.keep_forever(self._db, *self._tables.values())
        self._closed = True

    def _owner_files(self) -> set[str]:
        return {n for n in os.listdir(self.path) if n not in _PRIVATE and not n.startswith("LOG.old")}

    def _link_files(self, prune: bool = True) -> set[str]:
        """Link the owner's files into the shadow; the names the owner had.

        ``prune``: unlink what the owner deleted (not while the view may still
        read it: right after an open, whose version may name such files).

        Hard links where the filesystem lets us: a file the owner deletes (the
        log a flush replaced, a compaction's inputs) stays readable until this
        view's next catch-up, so an open or catch-up never finds a linked file
        gone. CURRENT, which the owner replaces by a rename, and whatever cannot
        be hard-linked (another filesystem, another user's file) are symlinks.
        """
        wanted = self._owner_files()
        source = os.path.abspath(self.path)  # the links live elsewhere: a relative target would dangle
        for name in wanted - self._linked:
            target, link = os.path.join(source, name), os.path.join(self._shadow, name)
            if name not in _REPLACED_BY_RENAME:
                try:
                    os.link(target, link, follow_symlinks=False)
                    self._linked.add(name)
                    continue
                except FileNotFoundError:
                    continue  # deleted since it was listed: the caller sees the files changed
                except OSError:
                    self._all_hard = False
            os.symlink(target, link)
            self._linked.add(name)
        if prune:
            for name in self._linked - wanted:
                os.unlink(os.path.join(self._shadow, name))
            self._linked &= wanted
        return wanted

    def refresh(self) -> None:
        """Catch up with what the owner wrote since the last refresh."""
        self._catch_up(2)  # twice: files the owner creates during the first catch-up are linked for the second

    def catch_up(self) -> None:
        """Catch up once more (a view's last step, after it read the owner's slot files: see Journal.refresh)."""
        self._catch_up(1)

    def _catch_up(self, times: int) -> None:
        """Link and catch up ``times`` times, and again while the owner's files changed meanwhile.

        A flush that ends during a catch-up deletes the log it replaced: the
        link to it dangles, and RocksDB skips what it cannot read, silently,
        until it reads the manifest that names the flush's table. So a catch-up
        counts only once no file came or went while it ran (a few rounds at most).
        """
        self._check_open()
        try:
            self._settled = False
            for round_ in range(times + _MORE_CATCH_UPS):
                linked = self._link_files()
                self._db.try_catch_up_with_primary()
                if round_ + 1 >= times and self._owner_files() == linked:
                    self._settled = True
                    break
        except Exception as e:
            raise StoreError(f"cannot catch up with journal {self.path}: {e}") from e

    def version(self) -> tuple[int, frozenset[str]] | None:
        """What this view has read: its last sequence number and the owner's files; None when unsure.

        Every write of the owner's takes a new sequence number, and a flush or
        compaction changes its files: the same version twice is the same data.
        None after a catch-up that ended while the owner's files kept changing
        (it may have skipped a log that a later catch-up reads as a table).
        """
        self._check_open()
        if not self._settled:
            return None
        return self._db.latest_sequence_number(), frozenset(self._linked)

    def _check_open(self) -> None:
        if self._closed:
            raise JournalClosedError(f"journal view of {self.path} is closed")

    def _table(self, table: str) -> rocksdict.Rdict:
        self._check_open()
        try:
            return self._tables[table]
        except KeyError:
            raise InvalidArgumentError(f"unknown table {table!r}") from None

    def batch(self) -> Batch:
        raise ReadOnlyJournalError(f"journal {self.path} is open read-only")

    def write(self, batch: Batch, *, sync: bool = False) -> None:
        raise ReadOnlyJournalError(f"journal {self.path} is open read-only")

    def get(self, table: str, key: bytes) -> bytes | None:
        cf = self._table(table)
        try:
            return cf.get(key)
        except Exception as e:
            raise StoreError(f"journal {self.path}: read failed: {e}") from e

    def scan(self, table: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        try:
            yield from iterate(self._table(table), start, self.path)
        except JournalCorruptError as e:
            raise self._of_the_journal(e) from e.__cause__

    def _of_the_journal(self, error: JournalCorruptError) -> JournalCorruptError:
        """The same error, naming the journal's own files instead of this view's links to them."""
        real = os.path.abspath(self.path)
        return JournalCorruptError(
            str(error).replace(self._shadow, real),
            path=self.path,
            file=error.file.replace(self._shadow, real) if error.file else None,
        )

    def sync(self) -> None:
        self._check_open()

    def compact(self) -> None:
        raise ReadOnlyJournalError(f"journal {self.path} is open read-only")

    def size_on_disk(self) -> int:
        self._check_open()
        return files_size(self.path)

    def sequence(self) -> int | None:
        """The owner's last write this view has read; None when unsure (see :meth:`version`)."""
        version = self.version()
        return None if version is None else version[0]

    def _remove_dirs(self) -> None:
        shutil.rmtree(self._shadow, ignore_errors=True)
        shutil.rmtree(self._secondary, ignore_errors=True)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._tables.clear()
        with contextlib.suppress(Exception):
            self._db.close()
        self._remove_dirs()
