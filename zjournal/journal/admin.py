"""Journal operations for people and tools: purge, restore (import), replay records.

The bodies of :meth:`zjournal.Journal.purge`, ``restore``, ``record_replay``
and ``replays``, kept apart from the journal's core because the command line
is their main user. They work on the journal's ledger (zjournal.journal.ledger).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from zjournal.errors import AlreadyRestoredError, InvalidArgumentError
from zjournal.journal import entry as rec
from zjournal.journal.entry import Entry, State
from zjournal.journal.ledger import Ledger

if TYPE_CHECKING:
    from zjournal.journal.counters import CounterKey

_META_REPLAY = b"replay:"  # + 8-byte time in microseconds: one record per zjournal replay
META_RESTORED = b"restored:"  # + the key of a restore(once=KEY): [time, first id, last id]


def purge(ledger: Ledger, state: str | State, before: float | None = None) -> int:
    """Delete done entries, in batches of 10,000 (see Journal.purge)."""
    ledger.check_open()
    scode = rec.parse_state(state)
    if scode not in (rec.ACKED, rec.DEAD):
        raise InvalidArgumentError("purge removes 'acked' or 'dead' entries only: pending ones are not done")
    doomed = [
        (entry_id, r[3], r[4])
        for entry_id, r in ledger.select_records(None, scode, None)
        if before is None or (r[6] or r[2]) < before
    ]
    with ledger.lock:
        ledger.check_open()
        for start in range(0, len(doomed), 10_000):
            batch = ledger.batch()
            changes: list[tuple[CounterKey, int]] = []
            for entry_id, name, dcode in doomed[start : start + 10_000]:
                batch.delete("entries", rec.encode_key(entry_id))
                changes.append(((name, dcode, scode), -1))
            ledger.commit(batch, changes)
    return len(doomed)


def restore(ledger: Ledger, entries: Iterable[Entry], once: str | None = None) -> list[int]:
    """Append entries under new ids, all or nothing (see Journal.restore)."""
    ledger.check_open()
    ids: list[int] = []
    marker = None if once is None else META_RESTORED + once.encode()
    owned: list[tuple[int, list[str]]] = []  # blob files written for the entries of this batch
    with ledger.lock:
        ledger.check_open()
        if marker is not None:
            earlier = ledger.meta(marker)
            if earlier is not None:
                raise AlreadyRestoredError(once, *earlier)
        batch = ledger.batch()
        changes: list[tuple[CounterKey, int]] = []
        try:
            for number, e in enumerate(entries, 1):
                dcode = rec.parse_direction(e.direction)
                scode = rec.parse_state(e.state)
                if dcode is None or scode is None:
                    raise InvalidArgumentError("a restored entry needs a direction and a state")
                frames = rec.as_frames(e.frames)
                _check_restorable(e, frames, number)
                frames, names = ledger.externalize(frames)
                entry_id = ledger.new_id(batch)
                if names:
                    owned.append((entry_id, names))
                    ledger.own_blobs(batch, entry_id, names)
                value = rec.encode_record(
                    scode,
                    e.attempts,
                    e.created,
                    e.name,
                    dcode,
                    frames,
                    e.updated,
                    e.reason,
                    e.envelope_size,
                    e.close_returns,
                )
                batch.put("entries", rec.encode_key(entry_id), value)
                changes.append(((e.name, dcode, scode), 1))
                ids.append(entry_id)
            if marker is not None:  # in the same batch: a crash leaves both or neither
                batch.put("meta", marker, msgpack.packb([time.time(), ids[0] if ids else 0, ids[-1] if ids else 0]))
            ledger.commit(batch, changes)
        except BaseException:
            for _entry_id, names in owned:
                ledger.discard_blobs(names)
            raise
        for entry_id, names in owned:
            ledger.blobs_committed(entry_id, names)
    return ids


def adopt(ledger: Ledger, records: Iterable[tuple[int, bytes]], acked: bool = False) -> int:
    """Write pending and dead records under their own ids into a journal that has no entries (a takeover).

    ``acked=True`` takes acked ones too (a view of another journal, as ``inspect --from`` shows it).

    All or nothing. Each record is checked as hostile input first (it came
    from outside: the replication engine): InvalidArgumentError, naming the
    entry, and nothing written, for one no journal could have written.
    """
    ledger.check_open()
    with ledger.lock:
        ledger.check_open()
        if next(iter(ledger.store.scan("entries")), None) is not None or ledger.held_slots():
            raise InvalidArgumentError("only a journal with no entries can adopt another one's")
        batch = ledger.batch()
        changes: list[tuple[CounterKey, int]] = []
        top, low = 0, None
        for entry_id, raw in records:
            r = _adoptable(entry_id, raw, acked)
            batch.put("entries", rec.encode_key(entry_id), raw)
            changes.append(((r[3], r[4], r[0]), 1))
            top = max(top, entry_id)
            low = entry_id if low is None else min(low, entry_id)
        if top >= ledger.next_id:
            ledger.next_id = top + 1
            ledger.new_id(batch)  # reserves ids above the adopted ones (in the same write) if the block ran out
            ledger.next_id = top + 1
        ledger.commit(batch, changes)
        if low is not None and low < ledger.floor:
            ledger.floor = low  # scans start at the floor: the adopted ids may lie below a new journal's
    return len(changes)


def _adoptable(entry_id: int, raw: bytes, acked: bool) -> list:
    """The record, decoded, if a journal could have written it as a pending or dead (or ``acked``) entry."""
    try:
        r = rec.decode_record(raw)
    except Exception:  # msgpack raises several kinds for garbage
        r = None
    problem = None
    if not isinstance(entry_id, int) or not 0 < entry_id < (1 << 64):
        problem = f"the id {entry_id!r}"
    elif not isinstance(r, list) or len(r) < 9:
        problem = "a record that is not one"
    elif r[0] not in ((rec.PENDING, rec.DEAD, rec.ACKED) if acked else (rec.PENDING, rec.DEAD)):
        problem = f"the state code {r[0]!r}"
    elif r[4] not in (0, 1) or not isinstance(r[3], str) or not r[3]:
        problem = "a direction or name that is not one"
    elif not isinstance(r[5], list) or not r[5] or not all(type(f) is bytes for f in r[5]):
        problem = "frames that are not bytes"
    elif not isinstance(r[1], int) or not 0 <= r[1] <= _MAX_ATTEMPTS:
        problem = f"attempts {r[1]!r}"
    elif not isinstance(r[8], int) or not 0 <= r[8] <= len(r[5]):
        problem = f"an envelope of {r[8]!r} frames"
    elif len(r) > 9 and (len(r) > 10 or not isinstance(r[9], int) or not 0 <= r[9] <= r[1]):
        problem = f"close returns {r[9:]!r} for {r[1]} attempts"
    elif not isinstance(r[2], (int, float)) or not 1e-9 <= r[2] <= _LATEST:
        problem = f"created {r[2]!r}"
    if problem:
        raise InvalidArgumentError(f"entry {entry_id!r} cannot be adopted: {problem} (nothing was written)")
    return r


def record_replay(
    ledger: Ledger, entry_ids: Sequence[int], *, endpoint: str, socket_type: str, run: float | None = None
) -> int:
    """Ack entries a replay handed to ZeroMQ and record the replay, in one batch (see Journal.record_replay)."""
    ledger.check_open()
    now = time.time()
    reason = f"replayed to {endpoint} ({socket_type})"
    with ledger.lock:
        ledger.check_open()
        batch = ledger.batch()
        changes: list[tuple[CounterKey, int]] = []
        done = 0
        for entry_id in entry_ids:
            r = ledger.load_for_update(entry_id)
            if r is None or r[0] == rec.ACKED:
                continue
            ledger.inflight.pop(entry_id, None)
            changes.append(((r[3], r[4], r[0]), -1))
            if ledger.retention > 0:
                r[0], r[6], r[7] = rec.ACKED, now, reason
                batch.put("entries", rec.encode_key(entry_id), rec.encode_record(*r))
                changes.append(((r[3], r[4], rec.ACKED), 1))
            else:
                batch.delete("entries", rec.encode_key(entry_id))
            done += 1
        key = _META_REPLAY + rec.encode_key(int((now if run is None else run) * 1e6))
        earlier = ledger.store.get("meta", key) if run is not None else None
        record: dict[str, Any] = {"at": now, "endpoint": endpoint, "socket_type": socket_type, "count": done}
        if entry_ids:
            record.update(first_id=min(entry_ids), last_id=max(entry_ids))
        if earlier is not None:  # this replay's earlier chunks
            before = msgpack.unpackb(earlier)
            record["count"] += before["count"]
            ends = [record.get(k, before.get(k)) for k in ("first_id", "last_id")] + [
                before.get(k) for k in ("first_id", "last_id")
            ]
            known = [i for i in ends if i is not None]
            if known:
                record.update(first_id=min(known), last_id=max(known))
        batch.put("meta", key, msgpack.packb(record))
        ledger.commit(batch, changes)
    return done


def replays(ledger: Ledger) -> list[dict[str, Any]]:
    """The replay records in the journal's metadata, oldest first."""
    ledger.check_open()
    found = []
    for key, value in ledger.store.scan("meta", _META_REPLAY):
        if not key.startswith(_META_REPLAY):
            break
        found.append(msgpack.unpackb(value))
    return found


_LATEST = 4102444800.0  # 2100-01-01: no journal wrote an entry after that
_MAX_ATTEMPTS = 1 << 62


def _check_restorable(e: Entry, frames: list[bytes], number: int) -> None:
    """Refuse an entry no journal could have written (later commands would trip over it)."""
    problem = None
    if not isinstance(e.name, str) or not e.name:
        problem = "an empty name"
    elif not isinstance(e.attempts, int) or not 0 <= e.attempts <= _MAX_ATTEMPTS:
        problem = f"attempts {e.attempts!r}"
    elif not isinstance(e.close_returns, int) or not 0 <= e.close_returns <= e.attempts:
        problem = f"close_returns {e.close_returns!r} for {e.attempts} attempts"
    elif not isinstance(e.envelope_size, int) or not 0 <= e.envelope_size <= len(frames):
        problem = f"an envelope of {e.envelope_size!r} frames in a message of {len(frames)}"
    else:
        for label, value, lowest in (("created", e.created, 1e-9), ("updated", e.updated, 0.0)):
            # (a time that is not a number, NaN, before 1970 or after 2100; only `updated` may be 0: never)
            if not isinstance(value, (int, float)) or not lowest <= value <= _LATEST:
                problem = f"{label} {value!r}"
    if problem:
        raise InvalidArgumentError(f"entry {number} cannot be restored: {problem} (nothing was imported)")
