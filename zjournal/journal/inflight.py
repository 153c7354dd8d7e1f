"""In-flight slots: where a socket keeps the one message it is moving right now.

Most entries a socket journals are settled by that same socket moments later
(the ``next``, ``sent`` and ``reply`` policies): received, handled, acked when
the application asks for the next one; or sent, acked once ZeroMQ took it.
Writing each of them to RocksDB and deleting it again was the floor of the
hot path (one store write per message, ~3 µs). Instead each journaled socket
owns a small memory-mapped file with one slot per direction. A slot holds the
message in flight; the next message overwrites it, and that overwrite *is* the
ack of the previous one. An entry that must outlive its slot (nacked, kept
pending, its socket closes) is moved to the store first ("spilled", by the
journal), as the store record :meth:`Slot.record` builds.

Why this keeps write-ahead: a store to a shared file mapping is in the kernel's
page cache the instant it is made, so it survives the process being killed, as
RocksDB's unsynced WAL writes do (``process`` mode). ``interval`` mode fsyncs
the slot files in the background with the WAL; ``always`` mode does not use
slots. Opening a journal moves every valid slot record into the store before
anything else reads it.

File layout: a 4 KiB file header (magic, then the socket's name as a u32
length and UTF-8), then two regions of :data:`REGION_SIZE` bytes, inbound and
outbound. A region starts with a 32-byte header (little endian: checksum u32,
length u32, entry id u64, created f64, envelope size u8, kind u8) followed by
``length`` bytes of message: the frame itself (kind 0, one frame) or a msgpack
list of frames (kind 1). Entry id 0 is an empty slot (a message may be empty). The message is written
before the header, and the checksum (Adler-32 of the message, seeded with the
id, envelope size and kind) rejects a slot torn by a crash or power loss, so a slot is the
old message, the new one, or empty. (A torn ``created`` alone only makes the
recovered timestamp a little off.) A journal's overflow file
(zjournal.journal.overflow) is read here too: the same file header with its
own magic, then one inbound region filling the rest of the file.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol

import msgpack

from zjournal.errors import JournalCorruptError, StoreError
from zjournal.journal import entry as rec
from zjournal.journal import mapped_file, outbox
from zjournal.journal.mapped_file import close_descriptor, create_file

DIRECTORY = "inflight"
SUFFIX = ".slots"
_MAGIC = b"ZJSLOT1\0"
# A journal's overflow file: one inbound region, as large as the file (zjournal.journal.overflow)
OVERFLOW_MAGIC = b"ZJSLOTO\0"
_OVERFLOW_MAX = 64 << 20  # the most of an overflow file read (they are made ~1 MiB)
FILE_HEADER_SIZE = 4096
_NAME_LENGTH = struct.Struct("<I")
MAX_NAME_BYTES = FILE_HEADER_SIZE - len(_MAGIC) - _NAME_LENGTH.size
REGION_SIZE = 16 * 1024  # larger messages go to the store (a file per socket: 100 KiB with the key ring)
_HEADER = struct.Struct("<IIQdBB")
_ID_FIELD = struct.Struct("<Q")  # at offset 8 of a region: entry id 0 marks an empty slot
HEADER_SIZE = 32
#: the largest message (encoded) a slot holds; larger ones go to the store directly
CAPACITY = REGION_SIZE - HEADER_SIZE
_SINGLE, _LIST = 0, 1
# A prefetching socket's inbound region holds no message; it records instead which of the entries
# it read ahead it has handed to the application (see SlotFile.mark_handed).
_HANDED = 2
_HANDOVER = struct.Struct("<QQ")
_HANDOVER_COPY = 64  # bytes between the two copies of the record
# After the two regions, a ring of dedup keys (zjournal.journal.seen) of confirm messages this
# socket journaled in its inbound slot: the key must outlive the slot's message, and a store write
# per key would cost what the slot saves. Each record: checksum u32 (Adler-32 of the rest, seeded
# with its index), origin (16 bytes), sequence u64; the journal moves them to the store a ring at a time.
KEY_RECORD = struct.Struct("<I16sQ")
KEY_SLOT = 32
# Keys a ring holds: the store takes them in one write every this many (512 made that write 7 % of a
# confirm receiver's time, 2,048 makes it under 5 %; a ring costs 64 KiB of disk per socket).
KEYS = 2048
SLOT_FILE_SIZE = FILE_HEADER_SIZE + 2 * REGION_SIZE + KEYS * KEY_SLOT
_KEYS_START = FILE_HEADER_SIZE + 2 * REGION_SIZE  # where the key ring begins
_pack_key = KEY_RECORD.pack_into
_pack_key_body = struct.Struct("<16sQ").pack  # origin and sequence: what a key record's checksum covers
#: the journal finds the slot holding an entry in a ring of this many cells, indexed by id
RING_SIZE = 4096
RING_MASK = RING_SIZE - 1
_MASK = 0xFFFFFFFF
_pack_header = _HEADER.pack_into
_checksum = zlib.adler32  # a third of crc32's cost on small messages; ample for torn writes
_pack_frames = msgpack.Packer(use_bin_type=True).pack


def pack_name(encoded: bytes) -> bytes:
    """A stream's name in a slot file's header (after the magic): a u32 length, then the UTF-8."""
    return _NAME_LENGTH.pack(len(encoded)) + encoded


def fits_slot(frames: list[bytes]) -> bool:
    """Whether a message fits a slot (a msgpack list header and bin headers take at most 5 bytes each)."""
    if len(frames) == 1:
        return len(frames[0]) <= CAPACITY
    return sum(len(f) for f in frames) + 5 * (len(frames) + 1) <= CAPACITY


def _seed(entry_id: int, envelope_size: int, kind: int) -> int:
    return ((entry_id << 9) | (envelope_size << 1) | kind) & _MASK


class Held(Protocol):
    """An entry held outside the store: a :class:`Slot`, or a cell of a confirm sender's outbox (outbox.Cell)."""

    entry_id: int

    @property
    def name(self) -> str: ...

    @property
    def dcode(self) -> int: ...

    @property
    def counter_key(self) -> tuple[str, int, int]: ...

    def record(self) -> bytes:
        """The store record of the entry held (pending)."""
        ...

    def clear(self) -> None:
        """The entry is settled, or in the store now."""
        ...


class Slot:
    """One region of a slot file: at most one in-flight entry, the message and what its record needs."""

    __slots__ = (
        "_base",
        "_mm",
        "_start",
        "counter_key",
        "created",
        "dcode",
        "entry_id",
        "envelope_size",
        "frames",
        "name",
    )

    def __init__(self, mm: mmap.mmap, base: int, name: str, dcode: int) -> None:
        self._mm = mm
        self._base = base
        self._start = base + HEADER_SIZE  # where the message goes
        self.name = name
        self.dcode = dcode
        self.counter_key = (name, dcode, rec.PENDING)  # the journal's counter of this stream's pending entries
        self.entry_id = 0  # 0: empty
        self.frames: list[bytes] = []
        self.created = 0.0
        self.envelope_size = 0

    def write(self, entry_id: int, frames: list[bytes], created: float, envelope_size: int) -> None:
        """Hold a message (one that :func:`fits_slot`) as entry ``entry_id``, replacing what the slot held."""
        if len(frames) == 1:
            data = frames[0]
            kind = _SINGLE
        else:
            data = _pack_frames(frames)
            kind = _LIST
        mm, start, size = self._mm, self._start, len(data)
        mm[start : start + size] = data  # the message first, the header last
        seed = ((entry_id << 9) | (envelope_size << 1) | kind) & _MASK  # _seed, inlined
        _pack_header(mm, self._base, _checksum(data, seed), size, entry_id, created, envelope_size, kind)
        self.entry_id = entry_id
        self.frames = frames
        self.created = created
        self.envelope_size = envelope_size

    def clear(self) -> None:
        _ID_FIELD.pack_into(self._mm, self._base + 8, 0)
        self.entry_id = 0
        self.frames = []

    def record(self) -> bytes:
        """The store record of the entry held (pending, delivered once)."""
        return rec.encode_record(
            rec.PENDING, 1, self.created, self.name, self.dcode, self.frames, 0.0, "", self.envelope_size
        )


class SlotFile:
    """A socket's slot file: an inbound and an outbound :class:`Slot`."""

    def __init__(self, path: str, name: str, keep_fd: bool = True) -> None:
        encoded = name.encode()
        if len(encoded) > MAX_NAME_BYTES:
            raise ValueError(f"socket name of {len(encoded)} bytes is too long for a slot file")
        self.path = path
        self.number = 0  # its number in the journal's slot directory (the journal sets it: META_SLOT_FILE)
        size = SLOT_FILE_SIZE
        fd = create_file(path, "in-flight slot file")
        try:
            # Allocate the blocks now: writing a page of a sparse mapping on a
            # full disk kills the process with SIGBUS instead of failing a call.
            allocate(fd, size)
            self._mm = mmap.mmap(fd, size)
        except OSError as e:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise StoreError(f"cannot create the in-flight slot file {path}: {e}") from e
        self._mm[: len(_MAGIC) + _NAME_LENGTH.size + len(encoded)] = _MAGIC + pack_name(encoded)
        self.fd = fd if keep_fd else close_descriptor(fd)
        self._closing = threading.Lock()  # sync() against close(): see sync
        self._synced = (0, 0)  # the entry ids the slots held at the last fsync
        self._handed_copy = 0  # which copy of the hand-over record was written last (see mark_handed)
        self.handed: tuple[int, int, bool] | None = None  # the last hand-over record (see mark_handed)
        self._key_index = 0  # where the next dedup key goes in the ring (see note_key)
        self.keys_unstored: list[tuple[bytes, int]] = []  # keys in the ring only, oldest first
        self.inbound = Slot(self._mm, FILE_HEADER_SIZE, name, rec.DIRECTION_CODES[rec.Direction.IN])
        self.outbound = Slot(self._mm, FILE_HEADER_SIZE + REGION_SIZE, name, rec.DIRECTION_CODES[rec.Direction.OUT])

    def mark_handed(self, first: int, through: int, acks_earlier: bool) -> None:
        """Record that this socket handed over its read-ahead entries ``first`` to ``through`` (inclusive).

        Prefetch journals what it reads ahead with 0 attempts, in one write,
        and hands the entries over one by one; a store write per hand-over
        would undo the batching. This record in the inbound region (which a
        prefetching socket never uses for a message) costs a few stores to the
        mapping instead, and the socket's next write makes it good; opening
        the journal after a crash does that from the record. ``acks_earlier``
        (the ``next`` policy): asking for ``through`` acked those before it,
        so only the message in hand comes back after a crash. Two copies,
        written in turn, so that a kill in the middle of one write leaves the
        other (the newest valid one counts). The caller emptied the inbound slot.
        """
        data = _HANDOVER.pack(first, through)
        self._handed_copy ^= 1
        base = self.inbound._base + self._handed_copy * _HANDOVER_COPY
        mm = self._mm
        mm[base + HEADER_SIZE : base + HEADER_SIZE + _HANDOVER.size] = data
        flag = 1 if acks_earlier else 0
        seed = ((first << 9) | (flag << 1) | _HANDED) & _MASK
        _pack_header(mm, base, _checksum(data, seed), _HANDOVER.size, first, 0.0, flag, _HANDED)
        self.handed = (first, through, acks_earlier)

    def note_key(self, origin: bytes, seq: int) -> None:
        """Record the dedup key of the confirm message just journaled in the inbound slot (after it).

        The caller (the journal, lock held) moved the keys this record
        overwrites to the store first: :attr:`keys_unstored` never exceeds :data:`KEYS`.
        """
        index = self._key_index
        self._key_index = (index + 1) % KEYS
        crc = _checksum(_pack_key_body(origin, seq), index + 1)  # (the body as read_keys checks it)
        _pack_key(self._mm, _KEYS_START + index * KEY_SLOT, crc, origin, seq)
        self.keys_unstored.append((origin, seq))

    def hold_keyed(self, entry_id: int, data: bytes, created: float, origin: bytes, seq: int) -> None:
        """``Slot.write`` of one frame into the inbound slot, then :meth:`note_key`, in one call (the confirm path)."""
        slot = self.inbound
        mm, start, size = self._mm, slot._start, len(data)
        mm[start : start + size] = data  # the message first, the header last
        _pack_header(mm, slot._base, _checksum(data, (entry_id << 9) & _MASK), size, entry_id, created, 0, _SINGLE)
        slot.entry_id = entry_id
        slot.frames = [data]
        slot.created = created
        slot.envelope_size = 0
        index = self._key_index
        self._key_index = (index + 1) % KEYS
        _pack_key(mm, _KEYS_START + index * KEY_SLOT, _checksum(_pack_key_body(origin, seq), index + 1), origin, seq)
        self.keys_unstored.append((origin, seq))

    def held(self) -> list[Slot]:
        """The slots holding an entry."""
        return [slot for slot in (self.inbound, self.outbound) if slot.entry_id]

    def holding(self, entry_id: int) -> Slot | None:
        if self.inbound.entry_id == entry_id:
            return self.inbound
        if self.outbound.entry_id == entry_id:
            return self.outbound
        return None

    def sync(self) -> None:
        # Under the file's own lock: the maintainer thread fsyncs while the socket's thread may close
        # the file (a descriptor closed, or even reused, in between would fail or sync the wrong file).
        with self._closing:
            if not self._mm.closed:
                held = (self.inbound.entry_id, self.outbound.entry_id)  # read first: a later write is synced next
                mapped_file.sync(self.fd, self._mm, _fdatasync)
                self._synced = held

    def sync_if_changed(self) -> None:
        """fsync when a slot changed since the last fsync (every write gives a slot a new id, or 0)."""
        if (self.inbound.entry_id, self.outbound.entry_id) != self._synced:
            self.sync()

    def close(self) -> None:
        """Unmap and delete the file; the caller has emptied (or spilled) both slots."""
        with self._closing:
            if self._mm.closed:
                return
            self._mm.close()
            self.fd = close_descriptor(self.fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def fdatasync(fd: int) -> None:
    """fsync a slot file's data (where a probe or a power-loss harness may watch: ``_fdatasync``)."""
    _fdatasync(fd)


def allocate(fd: int, size: int) -> None:
    fallocate = getattr(os, "posix_fallocate", None)  # not on macOS
    try:
        if fallocate is not None:
            fallocate(fd, 0, size)
            return
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.pwrite(fd, bytes(size), 0)  # no fallocate here: write the zeros ourselves


def directory(journal_path: str) -> str:
    return os.path.join(journal_path, DIRECTORY)


def create(journal_path: str, name: str, number: int, kind: type = SlotFile, keep_fd: bool = True) -> tuple[int, Any]:
    """A new slot file ``number`` (or the next free one) in the journal's slot directory.

    ``kind``: :class:`SlotFile`, or zjournal.journal.outbox.Outbox for a
    confirm sender. ``keep_fd``: keep a descriptor to fsync it through (where the
    journal fsyncs on its own: see zjournal.journal.mapped_file.close_descriptor). Returns the number
    used and the file; None for a name too long to record. The journal counts
    the numbers, so making a file costs the same with one socket open or thousands.
    """
    if len(name.encode()) > min(MAX_NAME_BYTES, outbox.MAX_NAME_BYTES):
        return number - 1, None  # such a socket journals in the store only
    where = directory(journal_path)
    try:
        os.makedirs(where, mode=0o700, exist_ok=True)
    except OSError as e:
        raise StoreError(f"cannot create the in-flight slot directory {where}: {e}") from e
    for n in range(number, number + 1000):
        try:
            return n, kind(os.path.join(where, f"{n}{SUFFIX}"), name, keep_fd)
        except FileExistsError:
            continue  # left by something else: the next number
    raise StoreError(f"no free slot file name in {where}")


def sync_directory(journal_path: str) -> None:
    """fsync the slot directory: the files made in it so far survive a power cut (StoreError if it fails)."""
    where = directory(journal_path)
    try:
        fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as e:
        raise StoreError(f"cannot sync the in-flight slot directory {where}: {e}") from e


def is_slot_file(path: str) -> bool:
    """Whether ``path`` starts as a slot file or an outbox does (its header was written)."""
    try:
        data = _read_slot_file(path)
    except OSError:
        return False
    return data.startswith(_MAGIC) or data.startswith(outbox.MAGIC)


def slot_files(journal_path: str) -> list[str]:
    where = directory(journal_path)
    try:
        names = os.listdir(where)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [os.path.join(where, n) for n in sorted(names) if n.endswith(SUFFIX)]


def read_records(journal_path: str) -> Iterator[tuple[int, bytes]]:
    """Every valid ``(entry id, store record)`` in the journal's slot files (torn or empty slots skipped)."""
    for path in slot_files(journal_path):
        try:
            data = _read_slot_file(path)
        except FileNotFoundError:
            continue  # a socket closed meanwhile (read-only views race with the owner)
        if data.startswith(outbox.MAGIC):
            yield from outbox.records_of(data)
        else:  # a socket's slot file, or an overflow file
            yield from _records_of(data, path)


def read_keys(journal_path: str) -> Iterator[tuple[bytes, int]]:
    """``(origin, seq)`` of every valid dedup key in the slot files' key rings (see SlotFile.note_key)."""
    for path in slot_files(journal_path):
        try:
            data = _read_slot_file(path)
        except FileNotFoundError:
            continue
        if not data.startswith(_MAGIC):
            continue
        start = FILE_HEADER_SIZE + 2 * REGION_SIZE
        for index in range(KEYS):
            base = start + index * KEY_SLOT
            if base + KEY_RECORD.size > len(data):
                break
            crc, origin, seq = KEY_RECORD.unpack_from(data, base)
            if seq and _checksum(origin + seq.to_bytes(8, "little"), index + 1) == crc:
                yield origin, seq


def read_handovers(journal_path: str) -> Iterator[Handover]:
    """The hand-over record of each slot file that has one (see SlotFile.mark_handed)."""
    for path in slot_files(journal_path):
        try:
            data = _read_slot_file(path)
        except FileNotFoundError:
            continue
        found = _handover_of(data)
        if found is not None:
            yield found


class Handover(NamedTuple):
    name: str
    first: int
    through: int
    acks_earlier: bool


def _handover_of(data: bytes) -> Handover | None:
    """The newest valid hand-over record of a slot file's bytes, if it has one (a torn copy is skipped)."""
    if not data.startswith(_MAGIC) or len(data) < FILE_HEADER_SIZE + 2 * _HANDOVER_COPY:
        return None
    newest = None
    for copy in (0, 1):
        base = FILE_HEADER_SIZE + copy * _HANDOVER_COPY
        crc, n, first, _created, flag, kind = _HEADER.unpack_from(data, base)
        if kind != _HANDED or n != _HANDOVER.size or not first or flag > 1:
            continue
        message = data[base + HEADER_SIZE : base + HEADER_SIZE + n]
        if _checksum(message, ((first << 9) | (flag << 1) | _HANDED) & _MASK) != crc:
            continue
        start, through = _HANDOVER.unpack(message)
        if start == first <= through and (newest is None or (first, through) > newest[:2]):
            newest = (first, through, bool(flag))
    if newest is None:
        return None
    (length,) = _NAME_LENGTH.unpack_from(data, len(_MAGIC))
    if not 0 < length <= MAX_NAME_BYTES:
        return None
    try:
        name = data[len(_MAGIC) + _NAME_LENGTH.size : len(_MAGIC) + _NAME_LENGTH.size + length].decode()
    except UnicodeDecodeError:
        return None
    return Handover(name, *newest)


def _read_slot_file(path: str) -> bytes:
    """At most the bytes a slot file holds, from a regular file only (never through a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise StoreError(f"cannot read the in-flight slot file {path}: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreError(f"{path} is not a regular file: not an in-flight slot file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            head = f.read(len(_MAGIC))
            size = outbox.FILE_SIZE if head == outbox.MAGIC else SLOT_FILE_SIZE
            if head == OVERFLOW_MAGIC:
                size = _OVERFLOW_MAX
            return head + f.read(size - len(head))
    finally:
        os.close(fd)


_LATEST = 4102444800.0  # 2100-01-01: no slot was written after that
_MAX_ID = (1 << 63) - 1


def _records_of(data: bytes, path: str = "") -> Iterator[tuple[int, bytes]]:
    """The valid slots of a slot file's bytes; torn slots are skipped, impossible ones refused by name.

    A slot whose checksum fails was being written when the process died: it
    never held a journaled message. A slot whose checksum holds but whose
    fields no socket writes (a crafted or foreign file) raises
    JournalCorruptError naming the file, as does a damaged file header. An
    impossible ``created`` is replaced by the time of reading: the checksum
    does not cover it, so a torn write or a read racing one leaves it so.
    """
    overflow = data.startswith(OVERFLOW_MAGIC)
    if not (overflow or data.startswith(_MAGIC)) or len(data) < FILE_HEADER_SIZE:
        return  # created but never written (a crash right at socket creation, or at an overflow)
    (length,) = _NAME_LENGTH.unpack_from(data, len(_MAGIC))
    start = len(_MAGIC) + _NAME_LENGTH.size
    if not 0 < length <= MAX_NAME_BYTES:
        raise _damaged(path, f"a socket name of {length} bytes in its header")
    try:
        name = data[start : start + length].decode()
    except UnicodeDecodeError:
        raise _damaged(path, "a socket name that is not UTF-8") from None
    # A socket's file: an inbound and an outbound region; an overflow file: one inbound region, the rest of it.
    regions = ((0, CAPACITY), (1, CAPACITY)) if not overflow else ((0, len(data) - FILE_HEADER_SIZE - HEADER_SIZE),)
    for dcode, capacity in regions:
        base = FILE_HEADER_SIZE + dcode * REGION_SIZE
        if len(data) < base + HEADER_SIZE:
            return
        crc, n, entry_id, created, envelope_size, kind = _HEADER.unpack_from(data, base)
        if not entry_id or n > capacity or kind not in (_SINGLE, _LIST):
            continue
        message = data[base + HEADER_SIZE : base + HEADER_SIZE + n]
        if len(message) != n or _checksum(message, _seed(entry_id, envelope_size, kind)) != crc:
            continue
        frames = [message] if kind == _SINGLE else _frames_of(message, path)
        if not frames or envelope_size > len(frames):
            raise _damaged(path, f"a message of {len(frames)} frames with an envelope of {envelope_size}")
        if entry_id > _MAX_ID:
            raise _damaged(path, f"entry {entry_id}")
        if not 0 < created <= _LATEST:  # (NaN fails it) the checksum does not cover the time: a read
            created = time.time()  # racing the socket's write (a live view) or a kill mid-write tore it
        yield entry_id, rec.encode_record(rec.PENDING, 1, created, name, dcode, frames, 0.0, "", envelope_size)


def _frames_of(message: bytes, path: str) -> list[bytes]:
    try:
        frames = msgpack.unpackb(message, raw=False)
    except Exception:  # msgpack raises several unrelated types (ExtraData, FormatError, ValueError...)
        raise _damaged(path, "a multipart message that is not msgpack") from None
    if not isinstance(frames, list) or not all(isinstance(f, bytes) for f in frames):
        raise _damaged(path, "a multipart message that is not a list of frames")
    return frames


def _damaged(path: str, what: str) -> JournalCorruptError:
    journal = os.path.dirname(os.path.dirname(path)) if path else ""
    return JournalCorruptError(
        f"in-flight slot file {path} holds {what}: not written by zjournal; move it out of the journal "
        "to open it (it holds no message zjournal journaled)",
        path=journal,
        file=path or None,
    )


def remove_all(journal_path: str) -> None:
    """Delete the slot files (after their records were moved to the store)."""
    for path in slot_files(journal_path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
