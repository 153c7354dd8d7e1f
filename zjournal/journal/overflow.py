"""Overflow: a received message the store refuses because the disk is full, journaled all the same.

A received message leaves libzmq before it is journaled, and its sender let
go of it when ZeroMQ took it (unless ``confirm=True``). Most are journaled in
their socket's in-flight slot (zjournal.journal.inflight: allocated when the
socket is wrapped, no store write), but one too large for a slot goes to the
store, and on a full disk the store refuses it: the socket could only keep it
in the process, where a crash loses it. So a journal that uses slot files
allocates a spare file when it opens, ``inflight/overflow.spare``
(:data:`SPARE_BYTES`, at most a quarter of the free space), and a received
message the store refused for want of space goes there: the spare is renamed
to a slot file of its own, ``overflow-<entry id>.slots`` (which opening the
journal reads as it reads the sockets' slot files, a crash or not), the
message is written into its one region, and the socket hands it over,
journaled. Acking it (or moving it to the store) empties the region and makes
the file the spare again. One message at a time: another one the store
refuses while the first is held gets the ``StoreError``, as without a spare.

Layout: a slot file's 4 KiB header with its own magic (``ZJSLOTO\\0``, then the
stream's name as a u32 length and UTF-8), then one region: a slot's 32-byte
header (see zjournal.journal.inflight) and the message.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading

from zjournal.journal import entry as rec
from zjournal.journal import inflight

SPARE_NAME = "overflow.spare"
SPARE_BYTES = (1 << 20) + 2 * 4096  # pages for the header and a message of up to 1 MiB (and a little more)
_SHARE_OF_FREE = 4  # the spare takes at most this fraction (1/n) of the free space
_SMALLEST = inflight.FILE_HEADER_SIZE + inflight.HEADER_SIZE + (64 << 10)  # less is not worth a file
_IN = rec.DIRECTION_CODES[rec.Direction.IN]


class OverflowSlot(inflight.Slot):
    """The region of an overflow file: emptying it gives the file back as the spare."""

    __slots__ = ("_owner",)

    def __init__(self, mm: mmap.mmap, name: str, owner: Overflow) -> None:
        super().__init__(mm, inflight.FILE_HEADER_SIZE, name, _IN)
        self._owner = owner

    def clear(self) -> None:
        if self.entry_id:
            super().clear()  # (a crash from here on finds the file empty: nothing to take in)
            self._owner.recycle()


class Overflow:
    """A journal's spare file, and the one received message it may hold (see the module docstring).

    The journal's lock guards it; it is in the journal's ``slot_files`` while
    it holds a message, so that the journal finds, syncs and spills it as a
    socket's slot file.
    """

    number = 0  # (slot files' meta record: an overflow file has none, and needs none)
    keys_unstored: tuple[tuple[bytes, int], ...] = ()  # (slot files' key ring: none here)
    handed = None  # (slot files' prefetch record: none here)

    def __init__(self, journal_path: str) -> None:
        self.journal_path = journal_path
        self.directory = inflight.directory(journal_path)
        self.spare_path = os.path.join(self.directory, SPARE_NAME)
        self.spare_size = 0  # bytes of the spare file (0: none)
        self.slot: OverflowSlot | None = None  # the region holding a message
        self.path = ""  # the file holding it
        self._mm: mmap.mmap | None = None
        self._fd = -1
        self._synced = 0
        self._renamed = False  # the file took its slot-file name since the last sync (its directory entry too)
        self._closing = threading.Lock()  # sync() (the maintainer's thread) against recycle() and close()
        self.quiet_until = 0.0  # (monotonic) the journal says it uses the spare at most once a minute

    @property
    def entry_id(self) -> int:
        """The entry held (0: none)."""
        return 0 if self.slot is None else self.slot.entry_id

    def make_spare(self) -> int:
        """Allocate the spare file, keeping one that is there (best effort: never raises); its size."""
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(self.spare_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError:
            return 0
        try:
            st = os.fstat(fd)
            have = st.st_size
            if have > SPARE_BYTES or st.st_blocks * 512 < have:
                # Not one this journal made (larger, or sparse: writing a hole on a full disk would be SIGBUS)
                os.ftruncate(fd, 0)
                have = 0
            if have < SPARE_BYTES:
                st = os.statvfs(self.directory)
                want = min(SPARE_BYTES, have + st.f_bavail * st.f_frsize // _SHARE_OF_FREE) & ~4095
                if want > have and want >= _SMALLEST:
                    inflight.allocate(fd, want)  # blocks of its own: writing it on a full disk cannot fail
                    os.ftruncate(fd, want)
                    have = want
            self.spare_size = have if have >= _SMALLEST else 0
        except OSError:
            self.spare_size = 0
        finally:
            os.close(fd)
        if not self.spare_size:
            with contextlib.suppress(OSError):
                os.unlink(self.spare_path)
        return self.spare_size

    def fits(self, frames: list[bytes]) -> bool:
        """Whether a message fits the spare's region (msgpack headers take at most 5 bytes a frame)."""
        size = len(frames[0]) if len(frames) == 1 else sum(len(f) for f in frames) + 5 * (len(frames) + 1)
        return size <= self.spare_size - inflight.FILE_HEADER_SIZE - inflight.HEADER_SIZE

    def take(
        self, name: str, entry_id: int, frames: list[bytes], created: float, envelope_size: int
    ) -> OverflowSlot | None:
        """Hold a received message as entry ``entry_id`` in the spare: its slot, or None when it cannot.

        (No spare, a message held already, or one too large for it.)
        """
        encoded = name.encode()
        if self.slot is not None or not self.spare_size or len(encoded) > inflight.MAX_NAME_BYTES:
            return None
        if not self.fits(frames):
            return None
        path = os.path.join(self.directory, f"overflow-{entry_id}{inflight.SUFFIX}")
        try:
            os.rename(self.spare_path, path)  # (no new block: the name changes, the blocks stay)
        except OSError:
            return None
        fd = -1
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
            mm = mmap.mmap(fd, self.spare_size)
        except (OSError, ValueError):
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(OSError):  # (the spare it was, for the next one)
                os.rename(path, self.spare_path)
            return None
        header = inflight.OVERFLOW_MAGIC + inflight.pack_name(encoded)
        mm[: len(header)] = header
        slot = OverflowSlot(mm, name, self)
        slot.write(entry_id, frames, created, envelope_size)
        self._mm, self._fd, self.path, self.slot = mm, fd, path, slot
        self._renamed = True
        return slot

    def held(self) -> list[inflight.Slot]:
        return [self.slot] if self.entry_id else []

    def holding(self, entry_id: int) -> inflight.Slot | None:
        return self.slot if entry_id and self.entry_id == entry_id else None

    def recycle(self) -> None:
        """The message left (acked, or moved to the store): the file becomes the spare again."""
        with self._closing:
            self._unmap()
            with contextlib.suppress(OSError):  # (then no spare: a message refused later gets the StoreError)
                os.rename(self.path, self.spare_path)
            self.slot = None
            self.path = ""
            self._synced = 0  # (nothing held: nothing for the maintainer to sync)

    def _unmap(self) -> None:
        if self._fd >= 0:
            assert self._mm is not None
            self._mm.close()
            os.close(self._fd)
            self._mm, self._fd = None, -1

    def sync(self) -> None:
        with self._closing:
            if self._fd >= 0:
                held = self.entry_id
                inflight.fdatasync(self._fd)
                if self._renamed:  # (interval mode: after a power cut the file must be found by its new name)
                    inflight.sync_directory(self.journal_path)
                    self._renamed = False
                self._synced = held

    def sync_if_changed(self) -> None:
        if self.entry_id != self._synced:
            self.sync()

    def close(self) -> None:
        """The journal closes: unmap; the files stay (one still holding a message is read at the next open)."""
        with self._closing:
            self._unmap()
