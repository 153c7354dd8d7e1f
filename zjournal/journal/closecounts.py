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
class ClosedCounts:
    """What a clean close recorded: the counters, the first id not handed out, the floor."""

    counts: Counters
    next_id: int
    floor: int


def record(store: Store, batch: Batch, counts: Counters, next_id: int, floor: int) -> bool:
    """Put the record into ``batch``, which must hold nothing else and be the store's last write before it closes.

    False (nothing put) when the store does not number its writes.
    """
    sequence = store.sequence()
    if sequence is None or len(batch):
        return False
    value = [_VERSION, sequence + 1, next_id, floor, counts.recorded()]  # (+1: the number this write takes)
    batch.put("meta", META_COUNTS, msgpack.packb(value))
    return True


def forget(batch: Batch) -> None:
    """An owner opening the journal drops the record (its own write there makes it stale anyway)."""
    batch.delete("meta", META_COUNTS)


def recorded(store: Store) -> ClosedCounts | None:
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
        return ClosedCounts(Counters.from_recorded(counters), next_id, floor)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        log.warning("journal: the counts recorded at its last close cannot be read (%s): counting the entries", e)
        return None
