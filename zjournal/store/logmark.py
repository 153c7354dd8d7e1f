"""A mark, beside the store, of how far its writes went: a lost write-ahead log is noticed at open.

RocksDB replays its write-ahead log when it opens. A log file that is gone
(deleted by hand, left out of a copy) takes its writes with it without a word,
and rocksdict 0.3 does not reach RocksDB's own log tracking in the MANIFEST.
So the store keeps the sequence numbers its writes reached in a small
small file, ``zjournal-logmark``, as two marks (written with ``pwrite`` on a
descriptor opened for the write: the journal holds no descriptor open for it,
so a process near its file-descriptor limit gets no closer):

* *synced*: what the log holds on disk, written after a synced write, an fsync
  of the log (``interval`` mode's, ``journal.sync()``) and a clean close;
* *written*: what the log holds in the kernel's page cache, written at the
  first write after each millisecond, with the id of the boot it was written
  in (``/proc/sys/kernel/random/boot_id``).

A page cache survives the death of the process and is lost only with the
machine (a power cut, a kernel crash), which is a new boot. So at open the
store trusts the written mark when the boot is the same, and the synced one
otherwise: a power cut never raises a false alarm, in any durability mode.
When RocksDB opens at a sequence number below the mark it trusts, writes it
had taken are gone: that is damage.

A missing, short or torn mark is no mark (a journal made before it, or a mark
torn by a crash): nothing is checked then, so a damaged mark can hide a loss
but never invent one.
"""

from __future__ import annotations

import os
import stat
import struct
import time

MARK_NAME = "zjournal-logmark"
_MAGIC = b"zjlogmk2"
# magic; the synced mark twice; the boot id and the written mark twice (a torn write leaves a pair unequal)
_LAYOUT = struct.Struct("<8sQQ16sQQ")
_SYNCED = struct.Struct("<QQ")
_WRITTEN = struct.Struct("<16sQQ")
_SIZE = 4096
# The written mark is noted at most this often (a note costs ~5 µs: open, pwrite, close; a store write ~3).
_EVERY_SECONDS = 0.001


def boot_id() -> bytes:
    """This boot's id (16 zero bytes where the system does not tell it: only the synced mark counts then)."""
    # (Parsed by hand: importing uuid imports platform, and measurably slowed every message afterwards.)
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            found = bytes.fromhex(f.read().strip().replace("-", ""))
    except (OSError, ValueError):
        return bytes(16)
    return found if len(found) == 16 else bytes(16)


def _trusted(data: bytes, boot: bytes) -> int | None:
    """The mark a store must reach, from a mark file's bytes (None: no valid mark)."""
    if len(data) < _LAYOUT.size:
        return None
    magic, synced, synced_again, written_boot, written, written_again = _LAYOUT.unpack(data[: _LAYOUT.size])
    if magic != _MAGIC:
        return None
    marks = []
    if synced == synced_again:
        marks.append(synced)
    if written == written_again and written_boot == boot and boot != bytes(16):
        marks.append(written)
    return max(marks) if marks else None


def read_mark(directory: str) -> int | None:
    """The mark of a journal, read without changing anything (a read-only view; None: no valid mark)."""
    try:
        fd = os.open(os.path.join(directory, MARK_NAME), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        return _trusted(os.pread(fd, _LAYOUT.size, 0), boot_id()) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def after_a_power_cut(directory: str, synced_at_most: int) -> None:
    """Make a copied journal's mark what a power cut leaves of it (for tools/powerloss.py's images).

    The page cache is gone with the boot (a new boot id), and the synced mark
    is no further than the copy's logs were cut back to.
    """
    where = os.path.join(directory, MARK_NAME)
    with open(where, "r+b") as f:
        data = f.read(_LAYOUT.size)
        if len(data) < _LAYOUT.size:
            return
        magic, synced, again, _boot, written, written_again = _LAYOUT.unpack(data)
        synced = min(synced, synced_at_most)
        f.seek(0)
        f.write(_LAYOUT.pack(magic, synced, min(again, synced_at_most), os.urandom(16), written, written_again))


def lost_writes(reached: int, found: int | None) -> str | None:
    """What a store that opened at ``reached`` lost against its mark ``found`` (None: nothing)."""
    if found is None or reached >= found:
        return None
    return f"writes {reached + 1} to {found} of its store are gone (a write-ahead log file deleted?)"


class LogMark:
    """The mark file of one journal directory (open for the journal's owner)."""

    found: int | None = None  #: the mark this open must reach (None: no valid mark)

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, MARK_NAME)
        self._boot = boot_id()
        self._synced = 0
        self._written = 0
        self._noted_at = 0.0
        self._usable = False
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return  # (refused by name when the journal is opened: see check_file_types)
            self.found = _trusted(os.pread(fd, _LAYOUT.size, 0), self._boot)
            if os.fstat(fd).st_size != _SIZE:
                os.ftruncate(fd, _SIZE)
            fallocate = getattr(os, "posix_fallocate", None)
            if fallocate is not None:
                fallocate(fd, 0, _SIZE)  # its blocks now: a later write never needs space on a full disk
            self._usable = True
        except OSError:
            pass  # no mark: the journal works, unguarded (a full disk, a read-only directory)
        finally:
            os.close(fd)

    def _put(self, offset: int, data: bytes) -> None:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return  # (the mark only ever hides a loss when it cannot be written, never invents one)
        try:
            os.pwrite(fd, data, offset)
        except OSError:
            pass
        finally:
            os.close(fd)

    def start(self, reached: int) -> None:
        """A new mark from what the store holds now (after the check at open, or a recovery)."""
        if self._usable:
            self._synced = self._written = reached
            self._put(0, _LAYOUT.pack(_MAGIC, reached, reached, self._boot, reached, reached))

    def synced(self, seq: int) -> None:
        """The log is on disk up to ``seq`` (only ever moves forward)."""
        if seq > self._synced and self._usable:
            self._synced = seq
            self._put(8, _SYNCED.pack(seq, seq))

    def wrote(self, sequence: object) -> None:
        """One more write; at most every millisecond, the mark of what the page cache holds (``sequence()``)."""
        now = time.monotonic()
        if now - self._noted_at >= _EVERY_SECONDS and self._usable:
            self._noted_at = now
            seq = sequence()  # type: ignore[operator]
            if seq > self._written:
                self._written = seq
                self._put(24, _WRITTEN.pack(self._boot, seq, seq))

    def close(self) -> None:
        self._usable = False
