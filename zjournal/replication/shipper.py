"""Asynchronous journal shipping: the journal's changes go to its JetStream stream in packed, fenced batches.

Nothing on the local path waits for the engine. The shipper learns of
changes in two ways:

* Every write to the store passes through :class:`RecordingStore`, which
  notes, after the write returned, which entries it put (with their record)
  or deleted. That is everything the store learns: appends that do not fit a
  slot, spills, nacks, attempts, dead letters, acks of stored entries, purges.
* Entries a socket holds in its in-flight slot never reach the store while
  they are settled quickly (most traffic). Each cycle the shipper reads the
  slots (one per socket and direction: a short list) and ships the entries
  held there longer than ``ship_interval``: a message a worker has handled
  for seconds is on the engine, one acked within microseconds never travels.
  A shipped entry that leaves its slot is looked up: gone means acked.

Each cycle takes what was noted, keeps the last change per entry, drops an
entry both written and removed since the last cycle (it never travels), and
ships the rest in batches of at most the engine's payload, one in flight at
a time (the fence check needs it), each fenced on this owner's fence. The
first cycle ships a snapshot of every live entry; another follows once the
batches since the last one outgrow it, and the log below a snapshot is purged,
so the stream stays about the size of the live entries.

If the engine refuses a batch for a newer fence, another process took the
journal over: the journal is fenced (every append and send raises
JournalFencedError) and shipping stops. If the engine cannot be reached,
local traffic goes on, changes pile up (``lag_entries``, ``lag_seconds``)
and are shipped once it answers again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from zjournal.errors import JournalFencedError, ReplicationError
from zjournal.journal import entry as rec
from zjournal.replication import wire

if TYPE_CHECKING:
    from zjournal.journal import Journal
    from zjournal.replication.engine import Engine

log = logging.getLogger("zjournal")

HEARTBEAT = 1.0  # seconds between empty batches when nothing changes: the owner's heartbeat
SNAPSHOT_MIN_OPS = 10_000  # changes shipped before a new snapshot is worth it (also: twice the live entries)


class RecordingBatch:
    """A store batch that remembers what it does to the entries table."""

    __slots__ = ("changes", "inner")

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.changes: list[tuple[bytes, bytes | None]] = []

    def put(self, table: str, key: bytes, value: bytes) -> None:
        self.inner.put(table, key, value)
        if table == "entries":
            self.changes.append((key, value))

    def delete(self, table: str, key: bytes) -> None:
        self.inner.delete(table, key)
        if table == "entries":
            self.changes.append((key, None))

    def __len__(self) -> int:
        return len(self.inner)


class RecordingStore:
    """The journal's store, with each written batch's entry changes handed to ``sink`` once written."""

    def __init__(self, inner: Any, sink: Callable[[list[tuple[bytes, bytes | None]]], None]) -> None:
        self.inner = inner
        self._sink = sink

    def batch(self) -> RecordingBatch:
        return RecordingBatch(self.inner.batch())

    def write(self, batch: Any, *, sync: bool = False) -> None:
        if isinstance(batch, RecordingBatch):
            self.inner.write(batch.inner, sync=sync)
            if batch.changes:
                self._sink(batch.changes)
        else:
            self.inner.write(batch, sync=sync)

    def __getattr__(self, name: str) -> Any:  # get, scan, sync, compact, close, reopen, …: the store's own
        return getattr(self.inner, name)


class Shipper:
    """Ships one journal's changes to its stream from a thread of its own (see the module docstring)."""

    def __init__(
        self,
        journal: Journal,
        connect: Callable[[], Engine],
        engine: Engine | None,
        alias: str,
        claim: Callable[[Engine], tuple[int, int]] | None,
        fence: tuple[int, int],
        ship_interval: float,
        timeout: float,
        synchronous: bool = False,
    ) -> None:
        self._journal = journal
        # durability="replicated": every entry ships at once (none waits out the interval in its slot),
        # and appends wait in wait_replicated until a batch holding them was acked
        self.synchronous = synchronous
        self._replicated = threading.Condition()
        self.durable_below = 0  # every entry with a lower id is on the engine (or was settled before it had to be)
        self._ledger = journal._ledger
        self._connect = connect
        self._engine = engine
        self._claim = claim  # opened while the engine was away: take (or check) ownership once it answers
        self.alias = alias
        self.fence_seq, self.epoch = fence
        self.ship_interval = ship_interval
        self.timeout = timeout
        self._lock = threading.Lock()
        self._changes: dict[int, bytes | None] = {}  # id -> its latest record (None: removed), not shipped yet
        self._since = 0.0  # when the oldest of them was noted
        self._sending: tuple[int, float] | None = None  # (changes, since when) of the cycle on its way: lag too
        self._shipped: set[int] = set()  # ids live on the engine
        self._from_slots: set[int] = set()  # ... of them, shipped while a slot held them
        self._number = 0
        self._snapshot_number = 0
        self._ops_since_snapshot = 0
        self._snapshot_due = True  # the first cycle ships the whole live state
        self._last_shipped_at = 0.0
        self.shipped_through = 0  # the stream sequence of the last batch the engine took
        self.batches = 0
        self.state = "starting"
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"zjournal-ship-{alias}", daemon=True)

    # -- the journal's side ----------------------------------------------------

    def note(self, changes: list[tuple[bytes, bytes | None]]) -> None:
        """Entries a store write changed (called by RecordingStore, the ledger's lock held)."""
        with self._lock:
            if not self._changes:
                self._since = time.monotonic()
            for key, value in changes:
                self._changes[rec.decode_key(key)] = value

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ship what is left (bounded by ``timeout``), then let go of the engine."""
        self._stop.set()
        self._wake.set()
        self._thread.join(self.timeout + 2)
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    # -- status (journal.replication) -------------------------------------------

    @property
    def lag_entries(self) -> int:
        """Changes not on the engine yet: noted ones, and entries held in slots not shipped yet."""
        in_slots = len(self._unshipped_slot_ids())  # (takes the ledger's lock: never inside ours)
        with self._lock:
            sending = self._sending[0] if self._sending is not None else 0
            return len(self._changes) + sending + in_slots

    @property
    def lag_seconds(self) -> float:
        with self._lock:
            oldest = self._since if self._changes else None
            if self._sending is not None:
                oldest = self._sending[1] if oldest is None else min(oldest, self._sending[1])
        held = self._oldest_unshipped_slot()
        if held is not None:
            oldest = held if oldest is None else min(oldest, held)
        return 0.0 if oldest is None else max(0.0, time.monotonic() - oldest)

    # -- the shipping thread -----------------------------------------------------

    def _run(self) -> None:
        while True:
            stopping = self._stop.is_set()
            try:
                self._cycle(final=stopping)
            except JournalFencedError as e:
                self._fenced(str(e))
                return
            except ReplicationError as e:
                self._unreachable(str(e))
            except Exception as e:  # a bug must not kill shipping silently: log it, go on
                log.exception("zjournal: shipping journal %s failed", self.alias)
                self._unreachable(f"{type(e).__name__}: {e}")
            if stopping:
                return
            self._wake.wait(self.ship_interval)
            self._wake.clear()

    def wait_replicated(self, entry_id: int) -> None:
        """Return once ``entry_id`` is on the engine (durability="replicated"); ReplicationError after ``timeout``."""
        if self.durable_below > entry_id:
            return
        deadline = time.monotonic() + self.timeout
        with self._replicated:
            while self.durable_below <= entry_id:
                if self.state == "fenced":
                    raise JournalFencedError(self.last_error or f"journal {self.alias!r} was taken over")
                left = deadline - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    why = f" ({self.last_error})" if self.last_error else ""
                    raise ReplicationError(
                        f"journal {self.alias!r}: entry {entry_id} not replicated within {self.timeout:g} s{why}; "
                        "it is journaled here and did not move"
                    )
                self._wake.set()
                self._replicated.wait(min(left, 0.05))

    def _cycle(self, final: bool) -> None:
        if self._ledger.closed:
            return  # (close stops the shipper first: its last cycle ran with the journal open)
        with self._ledger.lock:
            mark = self._ledger.next_id  # every id below: noted, in a slot, or settled already
        engine = self._engine
        if engine is None:
            engine = self._engine = self._connect()
        if self._claim is not None:
            self.fence_seq, self.epoch = self._claim(engine)
            self._claim = None
        if self._snapshot_due:
            self._ship_snapshot(engine)
        self._ship_changes(engine, final)
        self.state = "shipping"
        self.last_error = None
        with self._replicated:
            self.durable_below = max(self.durable_below, mark)
            self._replicated.notify_all()

    def _ship_snapshot(self, engine: Engine) -> None:
        """Every live entry, in parts; the log below it is purged once the last part is in."""
        with self._lock:
            self._changes.clear()  # the snapshot reads the journal after this: it holds them all
        held_before = set(self._held_slots())
        live: list[wire.Op] = [[entry_id, value] for entry_id, value in self._ledger.scan_with_slots()]
        held = held_before | set(self._held_slots())  # settled in their slot later: no store write says so
        self._snapshot_number += 1
        parts = list(self._packed(live)) or [[]]
        first_seq = 0
        for index, ops in enumerate(parts):
            mark = (self._snapshot_number, index, index == len(parts) - 1)
            seq = self._send(engine, ops, mark)
            first_seq = first_seq or seq
        self._shipped = {op[0] for op in live}
        self._from_slots = held & self._shipped
        self._ops_since_snapshot = 0
        self._snapshot_due = False
        with contextlib.suppress(ReplicationError):
            engine.purge_log_before(self.alias, first_seq)  # best effort: the next snapshot purges too

    def _ship_changes(self, engine: Engine, final: bool) -> None:
        with self._lock:
            work, self._changes = self._changes, {}
            since = self._since
            self._sending = (len(work), since) if work else None
        held = self._held_slots()
        ops: list[wire.Op] = []
        newly_shipped: set[int] = set()
        removed: set[int] = set()
        for entry_id, value in work.items():
            if value is None:
                if entry_id in self._shipped:
                    ops.append([entry_id, None])
                    removed.add(entry_id)
            else:
                ops.append([entry_id, value])
                newly_shipped.add(entry_id)
        cutoff = time.time() - (0 if final or self.synchronous else self.ship_interval)
        for entry_id, (value, created) in held.items():
            if entry_id not in self._shipped and entry_id not in work and created <= cutoff:
                ops.append([entry_id, value])
                newly_shipped.add(entry_id)
                self._from_slots.add(entry_id)
        for entry_id in list(self._from_slots):
            if entry_id not in held and entry_id not in work and entry_id not in newly_shipped:
                self._from_slots.discard(entry_id)  # left its slot: settled, unless it was spilled (noted)
                if self._ledger.load_record(entry_id) is None:
                    ops.append([entry_id, None])
                    removed.add(entry_id)
        try:
            if ops:
                for part in self._packed(ops):
                    self._send(engine, part, None)
            elif time.monotonic() - self._last_shipped_at >= HEARTBEAT or final:
                self._send(engine, [], None)  # the owner's heartbeat, fenced like any batch
        except BaseException:
            self._put_back(work, since)
            raise
        finally:
            with self._lock:
                self._sending = None
        self._shipped |= newly_shipped
        self._shipped -= removed
        self._from_slots -= removed
        self._ops_since_snapshot += len(ops)
        if self._ops_since_snapshot > max(SNAPSHOT_MIN_OPS, 2 * len(self._shipped)):
            self._snapshot_due = True

    def _send(self, engine: Engine, ops: list[wire.Op], snapshot: tuple[int, int, bool] | None) -> int:
        self._number += 1
        payload = wire.encode_batch(self.epoch, self._number, ops, time.time(), snapshot)
        msg_id = f"{self.alias}:{self.epoch}:{self._number}"
        seq = engine.ship(self.alias, payload, self.fence_seq, msg_id, self.timeout)
        self.shipped_through = seq
        self.batches += 1
        self._last_shipped_at = time.monotonic()
        return seq

    def _packed(self, ops: list[wire.Op]) -> Iterator[list[wire.Op]]:
        """``ops`` in batches that fit one engine message."""
        limit = self._limit()
        part: list[wire.Op] = []
        size = 0
        for op in ops:
            grows = wire.op_size(op)
            if part and size + grows > limit:
                yield part
                part, size = [], 0
            part.append(op)
            size += grows
        if part:
            yield part

    def _limit(self) -> int:
        engine = self._engine
        payload = engine.max_payload if engine is not None else 1024 * 1024
        return max(64 * 1024, payload - wire.HEADROOM)

    def _put_back(self, work: dict[int, bytes | None], since: float) -> None:
        """A cycle's changes that did not ship: kept (and as old as they are), unless changed again meanwhile."""
        with self._lock:
            if work:
                self._since = min(since, self._since) if self._changes else since
            for entry_id, value in work.items():
                self._changes.setdefault(entry_id, value)

    def _held_slots(self) -> dict[int, tuple[bytes, float]]:
        """The entries the sockets' slots hold now: id -> (record, created)."""
        held, _ = self._ledger.slot_records()
        return {entry_id: (value, rec.decode_record(value)[2]) for entry_id, value in held}

    def _unshipped_slot_ids(self) -> list[int]:
        if self._ledger.closed:
            return []
        held, _ = self._ledger.slot_records()
        return [entry_id for entry_id, _ in held if entry_id not in self._shipped]

    def _oldest_unshipped_slot(self) -> float | None:
        """When the oldest slot-held entry not yet on the engine was written (monotonic clock), if any."""
        if self._ledger.closed:
            return None
        held = self._held_slots()
        created = [c for entry_id, (_, c) in held.items() if entry_id not in self._shipped]
        if not created:
            return None
        return time.monotonic() - max(0.0, time.time() - min(created))

    def _fenced(self, reason: str) -> None:
        with self._ledger.lock:
            self._ledger.fence(reason)  # first: whoever sees the state "fenced" finds appends refused
        self.last_error = reason
        self.state = "fenced"
        log.error("zjournal: %s; this journal takes no more appends or sends", reason)

    def _unreachable(self, reason: str) -> None:
        if self.state != "unreachable":
            log.warning("zjournal: journal %s is not shipping (%s); local traffic goes on", self.alias, reason)
        self.state = "unreachable"
        self.last_error = reason
        engine, self._engine = self._engine, None
        if engine is not None and not engine.connected:
            engine.close()
        elif engine is not None:
            self._engine = engine  # connected: a refused or timed-out batch, tried again next cycle
