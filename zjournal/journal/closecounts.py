"""The counters a clean close leaves in the store, so that the next open needs no scan of every entry.

Counting a journal's entries at open reads every one of them (about a second
per million). A clean close knows the counts exactly, so it records them, with
the ids handed out and the floor, in one ``meta`` key. The record holds only
while the store is exactly as that close left it: it names the sequence number
its own write takes (RocksDB numbers every key written, and the number survives
a close and an open). Any later write moves the number on, whoever makes it: an
owner opening the journal (its open always writes), a crash's recovery, an
older zjournal that knows nothing of the record. Then the record is ignored,
and the entries are counted as before. A record that cannot be read is
ignored the same way: it is only ever a shortcut.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import msgpack

from zjournal.journal.counters import Counters
from zjournal.store.base import Batch, Store

log = logging.getLogger("zjournal")

META_COUNTS = b"counts-at-close"
_VERSION = 1


@dataclass(frozen=True)
class EntryCounts:
    """A journal's counters, the first id not handed out, and the floor (no entry below it)."""

    counts: Counters
    next_id: int
    floor: int


def record(store: Store, found: EntryCounts, *, sync: bool) -> None:
    """Write the record: the store's last write before it closes (nothing when the store numbers no writes)."""
    sequence = store.sequence()
    if sequence is None:
        return
    # A write of one key: it takes the number after the store's last.
    value = [_VERSION, sequence + 1, found.next_id, found.floor, found.counts.recorded()]
    batch = store.batch()
    batch.put("meta", META_COUNTS, msgpack.packb(value))
    store.write(batch, sync=sync)


def forget(batch: Batch) -> None:
    """An owner opening the journal drops the record (its own write there makes it stale anyway)."""
    batch.delete("meta", META_COUNTS)


def recorded(store: Store) -> EntryCounts | None:
    """The record of the last clean close, when nothing was written since; None otherwise."""
    raw = store.get("meta", META_COUNTS)
    if raw is None:
        return None
    sequence = store.sequence()
    try:
        version, at, next_id, floor, counters = msgpack.unpackb(raw)
        if version != _VERSION:
            return None  # (a later zjournal's: counting is always right)
        if at != sequence:
            return None  # written to since that close
        if type(next_id) is not int or type(floor) is not int or not 1 <= floor <= next_id:
            raise ValueError(f"ids {next_id!r}, floor {floor!r}")
        return EntryCounts(Counters.from_recorded(counters), next_id, floor)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        log.warning("journal: the counts recorded at its last close cannot be read (%s): counting the entries", e)
        return None
