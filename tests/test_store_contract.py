"""The store contract (zjournal/store/base.py), run against every store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import zjournal
from zjournal.store import MemoryStore, RocksStore, Store


@pytest.fixture(params=["memory", "rocks"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    s: Store = MemoryStore() if request.param == "memory" else RocksStore(str(tmp_path / "db"))
    yield s
    s.close()


def put(store: Store, table: str, key: bytes, value: bytes) -> None:
    b = store.batch()
    b.put(table, key, value)
    store.write(b)


def test_get_missing_key_is_none(store: Store) -> None:
    assert store.get("entries", b"nope") is None


def test_batch_applies_puts_and_deletes_across_tables(store: Store) -> None:
    put(store, "entries", b"a", b"1")
    b = store.batch()
    b.put("entries", b"b", b"2")
    b.delete("entries", b"a")
    b.put("meta", b"m", b"x")
    assert len(b) == 3
    store.write(b, sync=True)
    assert store.get("entries", b"a") is None
    assert store.get("entries", b"b") == b"2"
    assert store.get("meta", b"m") == b"x"


def test_a_batch_of_one_operation_counts_one_and_applies_it(store: Store) -> None:
    put(store, "entries", b"a", b"1")
    b = store.batch()
    assert len(b) == 0
    b.delete("entries", b"a")
    assert len(b) == 1
    store.write(b)
    assert store.get("entries", b"a") is None
    b = store.batch()
    b.put("meta", b"m", b"x")
    store.write(b, sync=True)
    assert store.get("meta", b"m") == b"x"
    store.write(store.batch())  # an empty batch changes nothing
    assert store.get("meta", b"m") == b"x"


@pytest.mark.parametrize("first", ["put", "delete"])
def test_operations_of_a_batch_apply_in_order(store: Store, first: str) -> None:
    """The last operation on a key wins, whichever came first (the first one may wait apart: RocksBatch)."""
    put(store, "entries", b"k", b"old")
    b = store.batch()
    if first == "put":
        b.put("entries", b"k", b"first")
        b.delete("entries", b"k")
    else:
        b.delete("entries", b"k")
        b.put("entries", b"k", b"second")
    assert len(b) == 2
    store.write(b)
    assert store.get("entries", b"k") == (None if first == "put" else b"second")


def test_tables_are_separate(store: Store) -> None:
    put(store, "entries", b"k", b"entries")
    put(store, "meta", b"k", b"meta")
    assert store.get("entries", b"k") == b"entries"
    assert store.get("meta", b"k") == b"meta"


def test_scan_is_ordered_and_starts_at_start(store: Store) -> None:
    for key in [b"\x00\x03", b"\x00\x01", b"\x01\x00", b"\x00\x02"]:
        put(store, "entries", key, key * 2)
    assert [k for k, _ in store.scan("entries")] == [b"\x00\x01", b"\x00\x02", b"\x00\x03", b"\x01\x00"]
    assert list(store.scan("entries", b"\x00\x02\x00")) == [
        (b"\x00\x03", b"\x00\x03" * 2),
        (b"\x01\x00", b"\x01\x00" * 2),
    ]


def test_scan_reads_a_snapshot(store: Store) -> None:
    put(store, "entries", b"a", b"1")
    put(store, "entries", b"b", b"2")
    it = store.scan("entries")
    put(store, "entries", b"c", b"3")
    b = store.batch()
    b.delete("entries", b"b")
    store.write(b)
    assert [k for k, _ in it] == [b"a", b"b"]


def test_unknown_table_is_refused(store: Store) -> None:
    b = store.batch()
    with pytest.raises(zjournal.InvalidArgumentError):
        b.put("nope", b"k", b"v")
        store.write(b)
    with pytest.raises(zjournal.InvalidArgumentError):
        store.get("nope", b"k")


def test_sync_and_compact_keep_data(store: Store) -> None:
    put(store, "entries", b"a", b"1")
    store.sync()
    store.compact()
    assert store.get("entries", b"a") == b"1"
    assert store.size_on_disk() >= 0


def test_closed_store_refuses_everything_but_close(store: Store) -> None:
    store.close()
    store.close()
    with pytest.raises(zjournal.JournalClosedError):
        store.get("entries", b"a")
    with pytest.raises(zjournal.JournalClosedError):
        store.write(store.batch())
    with pytest.raises(zjournal.JournalClosedError):
        store.scan("entries")
    with pytest.raises(zjournal.JournalClosedError):
        store.sync()


def test_rocks_store_keeps_data_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = RocksStore(path)
    put(s, "entries", b"a", b"1")
    s.close()
    s = RocksStore(path)
    try:
        assert s.get("entries", b"a") == b"1"
    finally:
        s.close()


def test_rocks_store_without_wal_keeps_data_on_clean_close(tmp_path: Path) -> None:
    path = str(tmp_path / "db")
    s = RocksStore(path, wal=False)
    put(s, "entries", b"a", b"1")
    s.close()
    s = RocksStore(path)
    try:
        assert s.get("entries", b"a") == b"1"
    finally:
        s.close()


def test_memory_store_numbers_no_writes(store: Store) -> None:
    if isinstance(store, MemoryStore):
        put(store, "entries", b"a", b"1")
        assert store.sequence() is None


@pytest.mark.parametrize("wal", [True, False])
def test_rocks_store_numbers_each_key_written_and_keeps_the_number(tmp_path: Path, wal: bool) -> None:
    """What the counts recorded at a clean close rely on (zjournal.journal.closecounts)."""
    path = str(tmp_path / "db")
    s = RocksStore(path, wal=wal)
    start = s.sequence()
    assert start is not None
    b = s.batch()
    b.put("entries", b"a", b"1")
    b.delete("entries", b"b")
    b.put("meta", b"m", b"x")
    s.write(b)
    put(s, "meta", b"n", b"y")
    assert s.sequence() == start + 4
    s.close()
    s = RocksStore(path)
    try:
        assert s.sequence() == start + 4
        s.compact()  # (a compaction writes no keys)
        assert s.sequence() == start + 4
    finally:
        s.close()
