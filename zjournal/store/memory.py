"""A store in memory: for tests, throwaway journals, and as the reference
implementation of the store contract. Nothing survives the process."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from zjournal.errors import InvalidArgumentError, JournalClosedError
from zjournal.store.base import TABLES, Batch, Store


class MemoryBatch(Batch):
    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple[str, bytes, bytes | None]] = []

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self.ops.append((table, bytes(key), bytes(value)))

    def delete(self, table: str, key: bytes) -> None:
        self.ops.append((table, bytes(key), None))

    def __len__(self) -> int:
        return len(self.ops)


class MemoryStore(Store):
    """Dicts behind a lock; scans sort a snapshot of the keys."""

    survives_process_crash = False

    def __init__(self) -> None:
        self._tables: dict[str, dict[bytes, bytes]] | None = {t: {} for t in TABLES}
        self._lock = threading.Lock()

    def _open_tables(self) -> dict[str, dict[bytes, bytes]]:
        if self._tables is None:
            raise JournalClosedError("the store is closed")
        return self._tables

    def _table(self, table: str) -> dict[bytes, bytes]:
        try:
            return self._open_tables()[table]
        except KeyError:
            raise InvalidArgumentError(f"unknown table {table!r}") from None

    def batch(self) -> MemoryBatch:
        return MemoryBatch()

    def write(self, batch: Batch, *, sync: bool = False) -> None:
        assert isinstance(batch, MemoryBatch)
        tables = self._open_tables()
        for table, _key, _value in batch.ops:
            self._table(table)  # validate every op before applying any
        with self._lock:
            for table, key, value in batch.ops:
                if value is None:
                    tables[table].pop(key, None)
                else:
                    tables[table][key] = value

    def get(self, table: str, key: bytes) -> bytes | None:
        return self._table(table).get(key)

    def scan(self, table: str, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        data = self._table(table)
        with self._lock:
            snapshot = sorted(item for item in data.items() if item[0] >= start)
        return iter(snapshot)

    def sync(self) -> None:
        self._open_tables()

    def compact(self) -> None:
        self._open_tables()

    def size_on_disk(self) -> int:
        self._open_tables()
        return 0

    def close(self) -> None:
        self._tables = None
