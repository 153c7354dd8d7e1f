"""The store contract: what a journal needs from a key-value engine.

A store holds named *tables* of bytes keys to bytes values. The journal uses
two: ``entries`` (key: 8-byte big-endian id) and ``meta``. Every backend must
honour the contract below; ``tests/test_store_contract.py`` runs one suite of
tests against each of them.

Contract:

* :meth:`Store.write` applies a whole :class:`Batch` atomically: after a crash
  at any moment either every operation of the batch is visible or none is.
  Batches become visible in the order they were written.
* With ``sync=False`` a written batch survives the death of the process (the
  bytes are in the operating system's hands) unless the store was opened
  without a write-ahead log; with ``sync=True`` it also survives power loss.
* :meth:`Store.sync` makes every batch written so far survive power loss.
* :meth:`Store.scan` yields ``(key, value)`` pairs in ascending key order,
  starting at the first key ``>= start``, from a consistent snapshot taken when
  the scan starts: writes made while it runs are not seen by it.
* :meth:`Store.get` returns ``None`` for a missing key, never raises for it.
* A closed store raises :class:`zjournal.JournalClosedError` on every call but
  :meth:`Store.close`, which may be called any number of times.
* Failures of the engine raise :class:`zjournal.StoreError`; a failed write
  changed nothing.
"""

from __future__ import annotations

import abc
import errno
from collections.abc import Iterator

TABLES = ("entries", "meta")


def is_disk_full(error: BaseException | None) -> bool:
    """Whether a store's error (or what caused it) says the disk is full."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(error):  # (RocksDB's words, in rocksdict's bare Exception)
            return True
        error = error.__cause__
    return False


class Batch(abc.ABC):
    """Operations collected to be applied at once by :meth:`Store.write`."""

    @abc.abstractmethod
    def put(self, table: str, key: bytes, value: bytes) -> None: ...

    @abc.abstractmethod
    def delete(self, table: str, key: bytes) -> None: ...

    @abc.abstractmethod
    def __len__(self) -> int: ...


class Store(abc.ABC):
    """A key-value engine behind a journal (see the module docstring)."""

    #: True when writes with ``sync=False`` survive the death of the process.
    survives_process_crash: bool = True

    @abc.abstractmethod
    def batch(self) -> Batch:
        """A new, empty batch for this store."""

    @abc.abstractmethod
    def write(self, batch: Batch, *, sync: bool = False) -> None:
        """Apply every operation of ``batch`` atomically."""

    @abc.abstractmethod
    def get(self, table: str, key: bytes) -> bytes | None:
        """The value under ``key``, or ``None``."""

    @abc.abstractmethod
    def scan(self, table: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """``(key, value)`` pairs from the first key ``>= start``, ascending."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Make every batch written so far durable against power loss."""

    @abc.abstractmethod
    def compact(self) -> None:
        """Reclaim the space of deleted keys (a no-op where there is none)."""

    def sequence(self) -> int | None:
        """The number of the last write this store holds, when it numbers them (None otherwise).

        Each key a batch puts or deletes takes the next number, and the number
        survives a close and an open: the same number, with nothing written
        since, is the same data.
        """
        return None

    def owner_alive(self) -> bool:
        """Whether a process holds the journal open as its owner (this one, for a store opened to own it).

        A read-only view of a stopped journal can check what only a stopped
        journal must hold (its slot files); a live owner changes them.
        """
        return True

    @abc.abstractmethod
    def size_on_disk(self) -> int:
        """Bytes the store occupies on disk (0 for a store in memory)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; idempotent."""
