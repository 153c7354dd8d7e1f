"""Outboxes: where a ``confirm=True`` socket keeps the messages it sent until their receiver confirms them.

A confirm sender's entry stays pending for a few milliseconds at least (the
round trip of its confirmation), so the one-slot design of
zjournal.journal.inflight does not fit it, and one store write per message
was the floor of the confirmed path (~13 µs). An outbox is a memory-mapped
ring of records instead, in the same ``inflight/`` directory: each message
goes in at the write position (no store write), its confirmation clears the
record (a store to the mapping), and a record still unconfirmed when the
ring comes round to it again goes to the store first ("spilled", a batch of
them in one write, by the journal), as for slots. Page-cache writes survive
the process being killed (``process`` mode); ``interval`` mode fsyncs the
file with the WAL.

File layout: a 4 KiB header (magic, a random u32 *key*, the socket's name as
a u32 length and UTF-8), then :data:`RING_BYTES` of records, each at a
multiple of :data:`ALIGN`. A record is a 32-byte header, as a slot's (little
endian: checksum u32, length u32, entry id u64, created f64, envelope size
u8, kind u8), then the message: one frame (kind 0) or a msgpack list of
frames (kind 1). Entry id 0 is a cleared record. The checksum (Adler-32 of
the message, seeded with the id, envelope size, kind and the file's key)
rejects a record torn by a crash, and a record-like run of bytes inside a
message: without the key an application's payload cannot pass for one.
Opening the journal reads every aligned offset for a valid record.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import mmap
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence

import msgpack

from zjournal.errors import StoreError
from zjournal.journal import entry as rec
from zjournal.journal import mapped_file
from zjournal.journal.mapped_file import close_descriptor, create_file

MAGIC = b"ZJRING1\0"
FILE_HEADER_SIZE = 4096
RING_BYTES = 8 << 20  # unconfirmed messages held per socket before the oldest go to the store
ALIGN = 64
HEADER_SIZE = 32
CAPACITY = 64 * 1024  # the largest message (encoded) an outbox holds; larger ones go to the store
SPILL_CHUNK = RING_BYTES // 16  # when the ring is full, this much of it goes to the store in one write
_FIXED = struct.Struct("<8sII")  # magic, key, name length
MAX_NAME_BYTES = FILE_HEADER_SIZE - _FIXED.size
_HEADER = struct.Struct("<IIQdBB")
_ID_AT = FILE_HEADER_SIZE + 8  # a record's entry id field, from its offset in the ring
_NO_ID = bytes(8)
SINGLE, _LIST = 0, 1  # a record's kinds: one frame as it is, a msgpack list of frames
_SINGLE = SINGLE
_MASK = 0xFFFFFFFF
_pack_header = _HEADER.pack_into
_checksum = zlib.adler32
_pack_frames = msgpack.Packer(use_bin_type=True).pack
FILE_SIZE = FILE_HEADER_SIZE + RING_BYTES


def fits(frames: list[bytes]) -> bool:
    """Whether a message fits an outbox record (a msgpack list header and bin headers take at most 5 bytes each)."""
    if len(frames) == 1:
        return len(frames[0]) <= CAPACITY
    return sum(len(f) for f in frames) + 5 * (len(frames) + 1) <= CAPACITY


class Cell:
    """One record of an outbox: what the journal needs of a held entry (as zjournal.journal.inflight.Slot).

    Made when the journal asks for one (to spill, ack or read an entry), from
    the record in the ring: a send makes none (see :attr:`Outbox.live`).
    """

    __slots__ = ("_outbox", "created", "entry_id", "envelope_size", "frames", "offset")

    def __init__(
        self, outbox: Outbox, offset: int, entry_id: int, frames: list[bytes], created: float, envelope_size: int
    ) -> None:
        self._outbox = outbox
        self.offset = offset
        self.entry_id = entry_id
        self.frames = frames
        self.created = created
        self.envelope_size = envelope_size

    # The stream's, as a slot has them (read when an entry is spilled or acked on its own: not per message).
    @property
    def name(self) -> str:
        return self._outbox.name

    @property
    def dcode(self) -> int:
        return self._outbox.dcode

    @property
    def counter_key(self) -> tuple[str, int, int]:
        return self._outbox.counter_key

    def clear(self) -> None:
        """The entry is settled, or in the store now: the record no longer holds it."""
        if self.entry_id:
            self._outbox.clear_many([self.entry_id])
            self.entry_id = 0
            self.frames = []

    def record(self) -> bytes:
        """The store record of the entry held (pending, sent once)."""
        return rec.encode_record(
            rec.PENDING, 1, self.created, self.name, self.dcode, self.frames, 0.0, "", self.envelope_size
        )


class Outbox:
    """A confirm socket's ring of unconfirmed messages (see the module docstring). The journal's lock guards it."""

    handed = None  # (slot files' prefetch record: an outbox never has one)
    keys_unstored: tuple[tuple[bytes, int], ...] = ()  # (slot files' key ring: an outbox has none)

    def __init__(self, path: str, name: str, keep_fd: bool = True) -> None:
        encoded = name.encode()
        if len(encoded) > MAX_NAME_BYTES:
            raise ValueError(f"socket name of {len(encoded)} bytes is too long for an outbox")
        self.path = path
        self.number = 0  # its number in the journal's slot directory (the journal sets it: META_SLOT_FILE)
        self.name = name
        self.dcode = rec.DIRECTION_CODES[rec.Direction.OUT]
        self.counter_key = (name, self.dcode, rec.PENDING)
        fd = create_file(path, "outbox file")
        try:
            _allocate(fd, FILE_SIZE)  # a sparse page written on a full disk would be SIGBUS, not an error
            self._mm = mmap.mmap(fd, FILE_SIZE)
        except OSError as e:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise StoreError(f"cannot create the outbox file {path}: {e}") from e
        self._key = int.from_bytes(os.urandom(4), "little")
        self._mm[: _FIXED.size + len(encoded)] = _FIXED.pack(MAGIC, self._key, len(encoded)) + encoded
        self.fd = fd if keep_fd else close_descriptor(fd)
        self.pos = 0  # where the next record goes, from the start of the ring (the journal's lock guards it)
        self.uncounted = 0  # appends less confirmations not in the journal's counters yet (Counters.lazy)
        # While the write position is below this, nothing is in the way of the next record (see in_the_way).
        self.clear_below = 0
        # Entry ids in ring order (cleared ones leave lazily), and where each live one's record is. Ints,
        # not Cells: a send then allocates nothing the garbage collector tracks (the record has the rest).
        self._order: collections.deque[int] = collections.deque()
        self.live: dict[int, int] = {}  # entry id -> offset of its record in the ring
        self._writes = 0
        self._synced = 0
        self._closing = threading.Lock()  # sync() against close(), as a slot file's

    # -- held entries (what the journal asks of a slot file) -----------------

    def held(self) -> list[Cell]:
        return [self._cell(entry_id, offset) for entry_id, offset in self.live.items()]

    def holding(self, entry_id: int) -> Cell | None:
        offset = self.live.get(entry_id)
        return None if offset is None else self._cell(entry_id, offset)

    def _cell(self, entry_id: int, offset: int) -> Cell:
        """The held entry whose record is at ``offset``, read back from the ring (written by :meth:`write`)."""
        base = FILE_HEADER_SIZE + offset
        _crc, size, _id, created, envelope_size, kind = _HEADER.unpack_from(self._mm, base)
        message = self._mm[base + HEADER_SIZE : base + HEADER_SIZE + size]
        frames = [message] if kind == _SINGLE else _frames_of(message)
        assert _id == entry_id and frames is not None, "an outbox record changed under its entry"
        return Cell(self, offset, entry_id, frames, created, envelope_size)

    # -- writing (journal lock held) -----------------------------------------

    @staticmethod
    def encode(frames: list[bytes]) -> tuple[bytes, int]:
        if len(frames) == 1:
            return frames[0], _SINGLE
        return _pack_frames(frames), _LIST

    def in_the_way(self, size: int) -> list[Cell]:
        """The unconfirmed cells to move to the store before the next record of ``size`` bytes is written.

        None until the oldest one lies within the largest record of the write
        position; then a chunk of the ring from it (one store write for many,
        and the next look a chunk later: spilling only what the next record
        overwrites made every send after the first chunk a store write of its
        own, ~40 µs). When the record does not fit before the end
        and goes to the start, the cells left in the tail go too: so the
        cells, oldest first, always lie from the write position on, then
        from the start up to it, and the first one out of range ends the look.
        """
        order, live = self._order, self.live
        while order and order[0] not in live:
            order.popleft()
        pos = self.pos
        if not order:
            self.clear_below = _LAST_SAFE
            return []
        wraps = pos + ((HEADER_SIZE + size + ALIGN - 1) & _ALIGN_MASK) > RING_BYTES
        oldest = live[order[0]]
        if not wraps and not pos <= oldest < pos + _REACH:
            # The common case: the oldest unconfirmed message is more than the largest record ahead (or
            # behind). Until the write position comes that close to it (or to the end), no look is needed:
            # cells ahead of it only ever go (cleared), new ones are written behind it.
            self.clear_below = min(_LAST_SAFE, oldest - _REACH) if oldest > pos else _LAST_SAFE
            return []
        self.clear_below = 0  # the caller spills what is found: look again next time
        start = 0 if wraps else oldest  # (nothing lies between the write position and the oldest)
        end = start + SPILL_CHUNK  # (a record is always smaller than a chunk)
        found = []
        for entry_id in order:
            offset = live.get(entry_id)
            if offset is None:
                continue
            if (wraps and offset >= self.pos) or start <= offset < end:
                found.append(self._cell(entry_id, offset))
                continue
            break
        return found

    def write(self, entry_id: int, data: bytes, kind: int, created: float, envelope_size: int) -> None:
        """Hold entry ``entry_id`` (``data`` from :meth:`encode`); what :meth:`in_the_way` named is gone first.

        The caller looked with :meth:`in_the_way` unless the write position is below :attr:`clear_below`.
        """
        size = len(data)
        need = (HEADER_SIZE + size + ALIGN - 1) & _ALIGN_MASK
        offset = self.pos if self.pos + need <= RING_BYTES else 0
        base = FILE_HEADER_SIZE + offset
        mm = self._mm
        mm[base + HEADER_SIZE : base + HEADER_SIZE + size] = data  # the message first, the header last
        seed = (((entry_id << 9) | (envelope_size << 1) | kind) ^ self._key) & _MASK
        _pack_header(mm, base, _checksum(data, seed), size, entry_id, created, envelope_size, kind)
        self.pos = offset + need
        self._order.append(entry_id)
        self.live[entry_id] = offset
        self._writes += 1

    def clear_many(self, entry_ids: Sequence[int]) -> list[int]:
        """Clear the records of those entries this outbox holds; returns the others (in the store)."""
        take, mm = self.live.pop, self._mm
        elsewhere = []
        mapped = not mm.closed
        for entry_id in entry_ids:
            offset = take(entry_id, None)
            if offset is None:
                elsewhere.append(entry_id)
            elif mapped:
                at = _ID_AT + offset
                mm[at : at + 8] = _NO_ID  # (entry id 0: a cleared record)
        self._writes += 1
        return elsewhere

    # -- durability and closing ------------------------------------------------

    def sync(self) -> None:
        with self._closing:
            if not self._mm.closed:
                writes = self._writes  # read first: a later write is synced next time
                mapped_file.sync(self.fd, self._mm, _fdatasync)
                self._synced = writes

    def sync_if_changed(self) -> None:
        if self._writes != self._synced:
            self.sync()

    def close(self) -> None:
        """Unmap and delete the file; the caller spilled what it held."""
        with self._closing:
            if self._mm.closed:
                return
            self._mm.close()
            self.fd = close_descriptor(self.fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


_ALIGN_MASK = ~(ALIGN - 1)
_REACH = HEADER_SIZE + CAPACITY + ALIGN  # more than the largest record takes of the ring
assert _REACH <= SPILL_CHUNK  # the largest record fits one chunk (see in_the_way)
_LAST_SAFE = RING_BYTES - _REACH  # from here on the next record may have to go to the start: look


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) & _ALIGN_MASK


_fdatasync = getattr(os, "fdatasync", os.fsync)


def _allocate(fd: int, size: int) -> None:
    fallocate = getattr(os, "posix_fallocate", None)
    try:
        if fallocate is not None:
            fallocate(fd, 0, size)
            return
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.pwrite(fd, bytes(size), 0)


_LATEST = 4102444800.0  # 2100-01-01
_MAX_ID = (1 << 63) - 1


def records_of(data: bytes) -> Iterator[tuple[int, bytes]]:
    """``(entry id, store record)`` of every valid record in an outbox file's bytes (torn or cleared ones skipped).

    Nothing here can be "impossible": a record that fails its checksum is
    not one (a torn write, a cleared one, or the inside of a message), so
    a damaged outbox only ever shows fewer records, as a damaged WAL would.
    """
    if not data.startswith(MAGIC) or len(data) < FILE_HEADER_SIZE:
        return
    _magic, key, length = _FIXED.unpack_from(data)
    if not 0 < length <= MAX_NAME_BYTES:
        return
    try:
        name = data[_FIXED.size : _FIXED.size + length].decode()
    except UnicodeDecodeError:
        return
    dcode = rec.DIRECTION_CODES[rec.Direction.OUT]
    end = min(len(data), FILE_SIZE)
    offset = FILE_HEADER_SIZE
    unpack = _HEADER.unpack_from
    while offset + HEADER_SIZE <= end:
        crc, n, entry_id, created, envelope_size, kind = unpack(data, offset)
        seed = (((entry_id << 9) | (envelope_size << 1) | kind) ^ key) & _MASK
        if (
            not entry_id
            or entry_id > _MAX_ID
            or kind > _LIST
            or n > CAPACITY
            or offset + HEADER_SIZE + n > end
            or _checksum(data[offset + HEADER_SIZE : offset + HEADER_SIZE + n], seed) != crc
        ):
            offset += ALIGN
            continue
        message = data[offset + HEADER_SIZE : offset + HEADER_SIZE + n]
        frames = [message] if kind == _SINGLE else _frames_of(message)
        if frames is not None and envelope_size <= len(frames):
            if not 0 < created <= _LATEST:
                created = time.time()
            yield entry_id, rec.encode_record(rec.PENDING, 1, created, name, dcode, frames, 0.0, "", envelope_size)
        offset += _aligned(HEADER_SIZE + n)


def _frames_of(message: bytes) -> list[bytes] | None:
    try:
        frames = msgpack.unpackb(message, raw=False)
    except Exception:  # msgpack raises several unrelated types
        return None
    if not isinstance(frames, list) or not frames or not all(isinstance(f, bytes) for f in frames):
        return None
    return frames
