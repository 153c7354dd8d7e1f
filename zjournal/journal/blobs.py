"""Blob files: where a large frame is kept, out of RocksDB.

RocksDB holds a value several times over while it writes it (the encoded
record, the write batch, the memtable, then the blocks a flush builds): a
100 MB message cost a process ~500 MB at its peak. So a frame of at least
:data:`BLOB_SIZE` bytes goes to a file of its own under ``<journal>/blobs/``,
written straight from the buffer it arrived in, and the entry's record holds a
reference to it (a msgpack ext value) where the bytes would be. Only entries
read back (a listing, a redelivery, an export) read the file.

Order, so that no crash (a power cut included) leaves a record without its
file: the file is written and fsynced with its directory entry (in every
mode but ``none``) before the record; a file is deleted only once the deletion
of its record is fsynced (Ledger._blobs_after_write). A meta row per entry with
blobs (``blob:`` + the entry's key, in the record's own write) says which
files it owns, so that opening a journal finds leftovers without scanning
every entry: a file no row names (its record was never written) and a row
whose entry is gone (deleted before its files were) are removed then.

A reference is ``[name, size, crc32]``: a file of another size or checksum
is reported as damage, naming the file, never handed over.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import msgpack

from zjournal.errors import JournalCorruptError, StoreError

DIRECTORY = "blobs"
BLOB_SIZE = 1 << 20  # frames from this size on live in blob files
EXT_CODE = 1  # the msgpack ext type of a reference in a record's frames
META_PREFIX = b"blob:"  # + the entry's key -> msgpack list of its blob names
_NAME = re.compile(r"[0-9a-f]{24}\Z")
_CHUNK = 1 << 30  # os.write takes at most ~2 GiB at once


class BlobGoneError(JournalCorruptError):
    """A record names a blob file that is not there (damage, or a view racing the owner's ack)."""


def is_reference(frame: Any) -> bool:
    return type(frame) is msgpack.ExtType and frame.code == EXT_CODE


def references(frames: Sequence[Any]) -> bool:
    """Whether a record's frames hold a blob reference (a loop over a few frames)."""
    return any(type(frame) is not bytes for frame in frames)


def _parse(ref: Any, journal_path: str) -> tuple[str, int, int]:
    try:
        name, size, crc = msgpack.unpackb(ref.data)
    except Exception:  # msgpack raises several kinds for garbage
        name = None
    if not (isinstance(name, str) and _NAME.match(name) and isinstance(size, int) and isinstance(crc, int)):
        raise JournalCorruptError(
            f"journal {journal_path}: a record holds a blob reference that is not one", path=journal_path
        )
    return name, size, crc


class BlobFiles:
    """The blob files of one journal directory.

    ``sync``: fsync each new file and its directory entry before its record
    is written (a power cut must not leave a record without its file: in
    ``process`` mode too, where RocksDB's log may reach the disk before it).
    """

    def __init__(self, journal_path: str, *, sync: bool) -> None:
        self.journal_path = journal_path
        self.directory = os.path.join(journal_path, DIRECTORY)
        self.sync = sync
        self._made = os.path.isdir(self.directory)

    def path_of(self, name: str) -> str:
        return os.path.join(self.directory, name)

    # -- writing (the owner) ------------------------------------------------

    def write(self, frame: Any) -> tuple[msgpack.ExtType, str]:
        """Write one frame to a new blob file; its reference and name (raises StoreError, leaving no file)."""
        if not self._made:
            self._make_directory()
        name = secrets.token_hex(12)
        path = self.path_of(name)
        view = memoryview(frame).cast("B")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise StoreError(f"cannot write blob file {path}: {e.strerror}") from None
        try:
            written = 0
            while written < len(view):
                written += os.write(fd, view[written : written + _CHUNK])
            if self.sync:
                os.fsync(fd)
        except OSError as e:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise StoreError(f"cannot write blob file {path}: {e.strerror}") from None
        os.close(fd)
        if self.sync:
            self._sync_directory()
        ref = msgpack.ExtType(EXT_CODE, msgpack.packb([name, len(view), zlib.crc32(view)]))
        return ref, name

    def _make_directory(self) -> None:
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise StoreError(f"cannot create {self.directory}: {e.strerror}") from None
        if self.sync:  # the directory's own entry in the journal directory
            _fsync_directory(os.path.dirname(self.directory))
        self._made = True

    def _sync_directory(self) -> None:
        try:
            _fsync_directory(self.directory)
        except OSError as e:
            raise StoreError(f"cannot fsync {self.directory}: {e.strerror}") from None

    def remove(self, names: Iterable[str]) -> None:
        """Delete blob files (those already gone are fine: a delete may be repeated after a crash)."""
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path_of(name))

    def names_on_disk(self) -> set[str]:
        """The blob files present (anything else in the directory is left alone: the open checks refuse it)."""
        try:
            return {n for n in os.listdir(self.directory) if _NAME.match(n)}
        except FileNotFoundError:
            return set()

    # -- reading (anyone) ---------------------------------------------------

    def resolve(self, frames: list[Any]) -> list[bytes]:
        """The frames with every reference replaced by its file's bytes."""
        return [self.read(f) if is_reference(f) else f for f in frames]

    def read(self, ref: msgpack.ExtType) -> bytes:
        """The frame a reference names, checked against its size and checksum."""
        name, size, crc = _parse(ref, self.journal_path)
        path = self.path_of(name)
        try:  # O_NONBLOCK: a FIFO put in its place must not hang the reader
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise self._damaged(path, "is missing: the message it held is lost", BlobGoneError) from None
        except OSError as e:
            raise self._damaged(path, f"cannot be read: {e.strerror}") from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self._damaged(path, "is not a regular file")
            if info.st_size != size:
                raise self._damaged(path, f"holds {info.st_size} bytes, not {size}")
            with os.fdopen(fd, "rb", buffering=0, closefd=False) as f:
                data = f.read(size)
        finally:
            os.close(fd)
        if len(data) != size or zlib.crc32(data) != crc:
            raise self._damaged(path, "is damaged (its checksum does not match)")
        return data

    def _damaged(self, path: str, what: str, kind: type[JournalCorruptError] = JournalCorruptError) -> Exception:
        return kind(f"blob file {path} {what}", path=self.journal_path, file=path)


def meta_key(entry_key: bytes) -> bytes:
    return META_PREFIX + entry_key


def _fsync_directory(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
