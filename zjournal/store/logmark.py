"""A mark, beside the store, of how far its writes went: a lost write-ahead log is noticed at open.

RocksDB replays its write-ahead log when it opens. A log file that is gone
(deleted by hand, left out of a copy) takes its writes with it without a word,
and rocksdict 0.3 does not reach RocksDB's own log tracking in the MANIFEST.
So the store keeps the sequence number of its latest write in a small
memory-mapped file, ``zjournal-logmark``, written only once the log holds
those writes on disk: after a synced write, an fsync of the log (``interval``
mode's, ``journal.sync()``), and a clean close. So a power cut never makes the
mark run ahead of the log, in any durability mode. When RocksDB opens at a
sequence number below the mark, writes it had made durable are gone: that is
damage (a log deleted after a clean close, or after a crash in ``interval`` or
``always`` mode; a log lost after a kill in ``process`` mode, before any fsync,
is not seen).

A missing, short or torn mark file is no mark (a journal made before it, or a
mark torn by a crash): nothing is checked then, so a damaged mark can hide a
loss but never invent one.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import stat
import struct

MARK_NAME = "zjournal-logmark"
_MAGIC = b"zjlogmk1"
_LAYOUT = struct.Struct("<8sQQ")  # magic, the sequence number, the same again (a torn write differs)
_SIZE = 4096


def read_mark(directory: str) -> int | None:
    """The mark of a journal, read without changing anything (a read-only view; None: no valid mark)."""
    try:
        fd = os.open(os.path.join(directory, MARK_NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return LogMark._read(fd) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def lost_writes(reached: int, found: int | None) -> str | None:
    """What a store that opened at ``reached`` lost against its mark ``found`` (None: nothing)."""
    if found is None or reached >= found:
        return None
    return f"writes {reached + 1} to {found} of its store are gone (a write-ahead log file deleted?)"


class LogMark:
    """The mark file of one journal directory (open for the journal's owner)."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, MARK_NAME)
        self.noted = 0
        self._mm: mmap.mmap | None = None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return  # (refused by name when the journal is opened: see check_file_types)
            self.found = self._read(fd)
            if os.fstat(fd).st_size != _SIZE:
                os.ftruncate(fd, _SIZE)
            fallocate = getattr(os, "posix_fallocate", None)
            if fallocate is not None:
                fallocate(fd, 0, _SIZE)  # a page of a sparse mapping on a full disk is SIGBUS, not an error
            self._mm = mmap.mmap(fd, _SIZE)
        except OSError:
            self._mm = None  # no mark: the journal works, unguarded (a full disk, a read-only directory)
        finally:
            os.close(fd)

    found: int | None = None  #: the mark as the file held it before this open (None: no valid mark)

    @staticmethod
    def _read(fd: int) -> int | None:
        data = os.pread(fd, _LAYOUT.size, 0)
        if len(data) < _LAYOUT.size:
            return None
        magic, seq, again = _LAYOUT.unpack(data)
        return seq if magic == _MAGIC and seq == again else None

    def note(self, seq: int) -> None:
        """The store's writes reached ``seq`` (only ever moves forward)."""
        if seq > self.noted and self._mm is not None:
            self.noted = seq
            _LAYOUT.pack_into(self._mm, 0, _MAGIC, seq, seq)

    def close(self) -> None:
        if self._mm is not None:
            with contextlib.suppress(BufferError, ValueError):
                self._mm.close()
            self._mm = None
