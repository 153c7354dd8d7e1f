"""In-flight slots: where a socket keeps the one message it is moving right now.

Most entries a socket journals are settled by that same socket moments later
(the ``next``, ``sent`` and ``reply`` policies): received, handled, acked when
the application asks for the next one; or sent, acked once ZeroMQ took it.
Writing each of them to RocksDB and deleting it again was the floor of the
hot path (one store write per message, ~3 µs). Instead each journaled socket
owns a small memory-mapped file with one slot per direction. A slot holds the
record of the message in flight, exactly as the store would hold it; the next
message overwrites it, and that overwrite *is* the ack of the previous one. An
entry that must outlive its slot (nacked, kept pending, the socket closes) is
moved to the store first ("spilled", by the journal).

Why this keeps write-ahead: a store to a shared file mapping is in the kernel's
page cache the instant it is made, so it survives the process being killed, as
RocksDB's unsynced WAL writes do (``process`` mode). ``interval`` mode fsyncs
the slot files in the background with the WAL; ``always`` mode does not use
slots. Opening a journal moves every valid slot record into the store before
anything else reads it.

Layout: a file holds two regions of :data:`REGION_SIZE` bytes (inbound,
outbound). A region starts with a header ``crc32, length, entry id`` (little
endian u32, u32, u64) followed by ``length`` bytes of record; length 0 is an
empty slot. The record is written before the header, and the crc (of the
record, seeded with the id) rejects a header or record torn by a crash or
power loss, so a slot is either the old record, the new one, or empty.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import struct
import zlib
from collections.abc import Iterator

from zjournal.errors import StoreError

DIRECTORY = "inflight"
SUFFIX = ".slots"
REGION_SIZE = 64 * 1024
_HEADER = struct.Struct("<IIQ")
_EMPTY = struct.Struct("<II")
HEADER_SIZE = _HEADER.size
#: the largest record a slot holds; larger messages go to the store directly
CAPACITY = REGION_SIZE - HEADER_SIZE
_ID_SEED_MASK = 0xFFFFFFFF
_pack_header = _HEADER.pack_into
_crc32 = zlib.crc32


class Slot:
    """One region of a slot file: the record of at most one in-flight entry."""

    __slots__ = ("_base", "_mm", "counter_key", "dcode", "entry_id", "name", "stream", "value")

    def __init__(self, mm: mmap.mmap, base: int, name: str, dcode: int) -> None:
        self._mm = mm
        self._base = base
        self.name = name
        self.dcode = dcode
        self.stream = (name, dcode)  # what the journal's in-flight map holds for an entry
        self.counter_key = (name, dcode, 0)  # (name, direction code, pending): the journal's counter
        self.entry_id = 0  # 0: empty
        self.value: bytes | None = None

    def write(self, entry_id: int, value: bytes) -> None:
        """Hold ``value`` as the record of ``entry_id``, replacing what the slot held."""
        base = self._base
        n = len(value)
        self._mm[base + HEADER_SIZE : base + HEADER_SIZE + n] = value  # the record first, the header last
        _pack_header(self._mm, base, _crc32(value, entry_id & _ID_SEED_MASK), n, entry_id)
        self.entry_id = entry_id
        self.value = value

    def clear(self) -> None:
        _EMPTY.pack_into(self._mm, self._base, 0, 0)
        self.entry_id = 0
        self.value = None


class SlotFile:
    """A socket's slot file: an inbound and an outbound :class:`Slot`."""

    def __init__(self, path: str, name: str) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            # Allocate the blocks now: writing a page of a sparse mapping on a
            # full disk kills the process with SIGBUS instead of failing a call.
            os.posix_fallocate(fd, 0, 2 * REGION_SIZE)
            self._mm = mmap.mmap(fd, 2 * REGION_SIZE)
        except OSError as e:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise StoreError(f"cannot create the in-flight slot file {path}: {e}") from e
        self.fd = fd
        self.inbound = Slot(self._mm, 0, name, 0)
        self.outbound = Slot(self._mm, REGION_SIZE, name, 1)

    def sync(self) -> None:
        os.fsync(self.fd)  # writes the mapping's dirty pages too (Linux page cache)

    def close(self) -> None:
        """Unmap and delete the file; the caller has emptied (or spilled) both slots."""
        if self.fd < 0:
            return
        self._mm.close()
        os.close(self.fd)
        self.fd = -1
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def directory(journal_path: str) -> str:
    return os.path.join(journal_path, DIRECTORY)


def create(journal_path: str, name: str) -> SlotFile:
    """A new slot file in the journal's slot directory."""
    where = directory(journal_path)
    os.makedirs(where, exist_ok=True)
    for n in range(1, 1_000_000):
        path = os.path.join(where, f"{n}{SUFFIX}")
        if not os.path.exists(path):
            try:
                return SlotFile(path, name)
            except FileExistsError:
                continue
    raise StoreError(f"no free slot file name in {where}")


def slot_files(journal_path: str) -> list[str]:
    where = directory(journal_path)
    try:
        names = os.listdir(where)
    except FileNotFoundError:
        return []
    return [os.path.join(where, n) for n in sorted(names) if n.endswith(SUFFIX)]


def read_records(journal_path: str) -> Iterator[tuple[int, bytes]]:
    """Every valid ``(entry id, record)`` in the journal's slot files (torn or empty slots skipped)."""
    for path in slot_files(journal_path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue  # a socket closed meanwhile (read-only views race with the owner)
        for base in range(0, len(data) - HEADER_SIZE + 1, REGION_SIZE):
            crc, length, entry_id = _HEADER.unpack_from(data, base)
            if not length or length > CAPACITY or not entry_id:
                continue
            value = data[base + HEADER_SIZE : base + HEADER_SIZE + length]
            if len(value) == length and zlib.crc32(value, entry_id & _ID_SEED_MASK) == crc:
                yield entry_id, value


def remove_all(journal_path: str) -> None:
    """Delete the slot files (after their records were moved to the store)."""
    for path in slot_files(journal_path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
