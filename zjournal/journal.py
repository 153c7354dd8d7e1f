"""The journal: entries, their states, counters, ids and retention.

Every state change is one atomic batch on the store, so a crash between any
two calls leaves a journal that is consistent with the last call that
returned. Counters are kept in memory (rebuilt by one scan at open) so that
:meth:`Journal.count` never scans.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgpack

from zjournal import entry as rec
from zjournal.durability import Durability
from zjournal.entry import Direction, Entry, State
from zjournal.errors import (
    IncompatibleJournalError,
    InvalidArgumentError,
    InvalidFramesError,
    InvalidTransitionError,
    JournalClosedError,
    MessageTooLargeError,
    NotAJournalError,
    StoreError,
    UnknownEntryError,
)
from zjournal.store.base import Store
from zjournal.store.memory import MemoryStore
from zjournal.store.rocks import RocksStore
from zjournal.store.secondary import SecondaryRocksStore

log = logging.getLogger("zjournal")

_META_SCHEMA = b"schema"
_META_SEQ = b"seq"  # ids below this value may have been handed out
_META_FLOOR = b"floor"  # no live entry has an id below this value
_META_DURABILITY = b"durability"
_META_CREATED = b"created"
_META_REPLAY = b"replay:"  # + 8-byte time in microseconds: one record per zjournal replay

# Ids are reserved on disk in blocks, so a restart never reuses one without a
# meta write on every append.
_ID_BLOCK = 4096

# Larger messages are refused with MessageTooLargeError (RocksDB handles values
# up to 4 GiB, but a journal write holds the whole message in memory twice).
DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024

CounterKey = tuple[str, int, int]  # (name, direction code, state code)


def _as_frames(frames: Sequence[Any]) -> list[bytes]:
    """Whole message as a list of bytes; one clear error for anything else."""
    if isinstance(frames, (bytes, bytearray, memoryview, str)):
        raise InvalidFramesError(
            f"frames must be a sequence of bytes-like frames (a list), not a single {type(frames).__name__}"
        )
    try:
        items = list(frames)
    except TypeError:
        raise InvalidFramesError(
            f"frames must be a sequence of bytes-like frames, not {type(frames).__name__}"
        ) from None
    if not items:
        raise InvalidFramesError("a message needs at least one frame")
    out: list[bytes] = []
    for index, frame in enumerate(items):
        if type(frame) is bytes:
            out.append(frame)
            continue
        if isinstance(frame, str):
            raise InvalidFramesError(f"frame {index} is a str: encode it to bytes first")
        try:
            out.append(memoryview(frame).tobytes())
        except TypeError:
            raise InvalidFramesError(f"frame {index} is a {type(frame).__name__}, not bytes-like") from None
    return out


def _check_settings(retention: float, max_attempts: int | None, fsync_interval: float) -> None:
    if retention < 0:
        raise InvalidArgumentError(f"retention must be >= 0 seconds, not {retention}")
    if max_attempts is not None and max_attempts < 1:
        raise InvalidArgumentError(f"max_attempts must be >= 1 or None, not {max_attempts}")
    if fsync_interval <= 0:
        raise InvalidArgumentError(f"fsync_interval must be > 0 ms, not {fsync_interval}")


class Journal:
    """A durable record of messages and their acknowledgement state.

    Use :func:`zjournal.open` for a journal on disk; ``Journal()`` alone is a
    journal in memory (nothing survives the process). A journal is a context
    manager; :meth:`close` is idempotent. It is safe to share between threads.

    Args:
        store: the store to sit on (default: a new :class:`MemoryStore`).
        durability: ``process`` (default), ``interval``, ``always`` or ``none``.
        retention: seconds to keep acked entries for audit; 0 deletes them at once.
        max_attempts: deliveries allowed before an entry goes ``dead``; None: no limit.
        fsync_interval: milliseconds between fsyncs in ``interval`` mode.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        durability: str | Durability = Durability.PROCESS,
        retention: float = 0.0,
        max_attempts: int | None = None,
        fsync_interval: float = 10.0,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        path: str | None = None,
        read_only: bool = False,
        plugins: bool = True,
    ) -> None:
        _check_settings(retention, max_attempts, fsync_interval)
        self.read_only = read_only
        #: what opening had to drop to recover a damaged journal (``open(..., recover=True)``)
        self.recovered: list[str] = []
        self.durability = Durability.parse(durability)
        self.retention = float(retention)
        self.max_attempts = max_attempts
        self.fsync_interval = float(fsync_interval)
        self.max_message_size = max_message_size
        self.path = path
        self._store: Store = store if store is not None else MemoryStore()
        self._lock = threading.Lock()
        self._closed = False
        self._sync_each_write = self.durability is Durability.ALWAYS
        self._dirty = False  # written since the last background fsync
        self._background_error: BaseException | None = None
        self._counts: dict[CounterKey, int] = {}
        # Entries that a socket appended and will settle itself (next/sent/reply
        # policies): id -> (name, direction code). Public ack/nack/dead take an
        # id out, so a socket never settles an entry somebody else changed.
        self._inflight: dict[int, tuple[str, int]] = {}
        self._ephemeral: dict[str, int] = {}
        self._sockets: dict[str, Any] = {}  # name -> live JournaledSocket
        self._observers: list[Any] = []
        self._batch = self._store.batch
        try:
            self._load()
        except BaseException:
            self._store.close()
            raise
        if plugins and not read_only:
            self._attach_observers()
        self._stop = threading.Event()
        self._maintainer: threading.Thread | None = None
        if not read_only and (self.durability is Durability.INTERVAL or self.retention > 0):
            self._maintainer = threading.Thread(target=self._maintain, name="zjournal-maintainer", daemon=True)
            self._maintainer.start()
        if self.durability is Durability.NONE and not read_only:
            log.warning("journal %s: durability 'none' keeps no write-ahead log; a crash loses messages", path)

    # -- observers (plugins) -----------------------------------------------

    def _attach_observers(self) -> None:
        from zjournal.plugins import load

        for observer in load().observers():
            try:
                attach = getattr(observer, "attach", None)
                if attach is not None and attach(self) is False:
                    continue  # the observer declined this journal (e.g. not switched on)
            except Exception as e:  # a broken observer must not stop the journal
                log.warning("zjournal observer %r failed to attach and is skipped: %s", observer, e)
                continue
            self._observers.append(observer)

    def add_observer(self, observer: Any) -> None:
        """Tell ``observer`` about appends, acks, dead letters and redeliveries (see zjournal.plugins)."""
        if observer in self._observers:
            return
        attach = getattr(observer, "attach", None)
        if attach is not None and attach(self) is False:
            return
        self._observers.append(observer)

    def _emit(self, event: str, name: str, dcode: int, *args: Any) -> None:
        direction = rec.DIRECTIONS_BY_CODE[dcode].value
        for observer in self._observers:
            method = getattr(observer, event, None)
            if method is None:
                continue
            try:
                method(name, direction, *args)
            except Exception as e:  # observers report; they never break the journal
                log.warning("zjournal observer %r failed in %s: %s", observer, event, e)

    # -- opening ---------------------------------------------------------

    def _load(self) -> None:
        """Check the schema, then rebuild counters and the id sequence in one scan."""
        store = self._store
        raw_schema = store.get("meta", _META_SCHEMA)
        if raw_schema is None:
            if self.read_only:
                raise NotAJournalError(f"{self.path} has no zjournal schema: not a journal", path=str(self.path))
            if next(iter(store.scan("entries")), None) is not None:
                raise NotAJournalError(f"{self.path} has entries but no zjournal schema", path=str(self.path))
            self._initialise()
        else:
            found = msgpack.unpackb(raw_schema)
            if found != rec.SCHEMA_VERSION:
                raise IncompatibleJournalError(
                    f"journal {self.path} has schema version {found}; this zjournal reads version {rec.SCHEMA_VERSION}",
                    path=str(self.path),
                    found=found,
                    supported=rec.SCHEMA_VERSION,
                )
        self._reserved = self._meta_int(_META_SEQ, 1)
        self._floor = self._meta_int(_META_FLOOR, 1)
        self._count_entries()
        if self.read_only:
            return
        batch = store.batch()
        batch.put("meta", _META_DURABILITY, msgpack.packb(self.durability.value))
        store.write(batch, sync=True)

    def _count_entries(self) -> None:
        """Rebuild the counters, the id sequence and the floor in one scan."""
        store = self._store
        last_id = 0
        first_id = None
        counts: dict[CounterKey, int] = {}
        for key, value in store.scan("entries", rec.encode_key(self._floor)):
            entry_id = rec.decode_key(key)
            if first_id is None:
                first_id = entry_id
            last_id = entry_id
            r = rec.decode_record(value)
            ck = (r[3], r[4], r[0])
            counts[ck] = counts.get(ck, 0) + 1
        self._counts = counts
        self._next_id = max(self._reserved, last_id + 1)
        self._floor = first_id if first_id is not None else self._next_id

    def _initialise(self) -> None:
        batch = self._store.batch()
        batch.put("meta", _META_SCHEMA, msgpack.packb(rec.SCHEMA_VERSION))
        batch.put("meta", _META_CREATED, msgpack.packb(time.time()))
        batch.put("meta", _META_SEQ, msgpack.packb(1))
        self._store.write(batch, sync=True)

    def _meta_int(self, key: bytes, default: int) -> int:
        raw = self._store.get("meta", key)
        return default if raw is None else int(msgpack.unpackb(raw))

    # -- writing -----------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise JournalClosedError(f"journal {self.path or '(memory)'} is closed")
        if self._background_error is not None:
            err, self._background_error = self._background_error, None
            raise StoreError(f"journal {self.path}: background fsync failed: {err}") from err

    def _commit(self, batch: Any, changes: list[tuple[CounterKey, int]]) -> None:
        """Write ``batch`` atomically, then apply the counter changes it made.

        Must be called with the lock held. Counters change only after the write
        returned, so a failed write leaves them telling the truth.
        """
        self._store.write(batch, sync=self._sync_each_write)
        counts = self._counts
        for ck, delta in changes:
            counts[ck] = counts.get(ck, 0) + delta
        self._dirty = True

    def _new_id(self, batch: Any) -> int:
        """The next id; reserves the next block in ``batch`` when one runs out."""
        entry_id = self._next_id
        if entry_id >= self._reserved:
            self._reserved = entry_id + _ID_BLOCK
            batch.put("meta", _META_SEQ, msgpack.packb(self._reserved))
        self._next_id = entry_id + 1
        return entry_id

    def append(
        self,
        name: str,
        frames: Sequence[Any],
        *,
        direction: str | Direction,
        attempts: int = 0,
        envelope_size: int = 0,
    ) -> int:
        """Journal one whole message as a pending entry and return its id.

        Args:
            name: the stream (usually the wrapped socket's name).
            frames: every frame of the message, bytes-like.
            direction: ``"in"`` (received) or ``"out"`` (sent).
            attempts: deliveries already made (a socket that hands the message
                over right away passes 1).
            envelope_size: how many leading frames are the routing envelope.

        Raises:
            InvalidFramesError: frames is not a non-empty sequence of bytes-like.
            JournalClosedError: the journal is closed.
            StoreError: the store failed; nothing was journaled.
        """
        self._check_open()
        dcode = rec.parse_direction(direction)
        if dcode is None:
            raise InvalidArgumentError("direction is required: 'in' or 'out'")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"name must be a non-empty str, not {name!r}")
        data = _as_frames(frames)
        self._check_size(data)
        if not 0 <= envelope_size <= len(data):
            raise InvalidArgumentError(f"envelope_size {envelope_size} does not fit a {len(data)}-frame message")
        value = rec.encode_record(rec.PENDING, attempts, time.time(), name, dcode, data, 0.0, "", envelope_size)
        with self._lock:
            self._check_open()
            batch = self._batch()
            entry_id = self._new_id(batch)
            batch.put("entries", rec.encode_key(entry_id), value)
            self._commit(batch, [((name, dcode, rec.PENDING), 1)])
            if self._observers:
                self._emit("on_append", name, dcode, 1)
        return entry_id

    def _check_size(self, frames: list[bytes]) -> None:
        size = sum(len(f) for f in frames)
        if size > self.max_message_size:
            raise MessageTooLargeError(size, self.max_message_size)

    def _load_record(self, entry_id: int) -> list | None:
        raw = self._store.get("entries", rec.encode_key(entry_id))
        return None if raw is None else rec.decode_record(raw)

    def _require_record(self, entry_id: int, action: str) -> list:
        if not isinstance(entry_id, int) or isinstance(entry_id, bool):
            raise InvalidArgumentError(f"an entry id is an int, not {entry_id!r}")
        r = self._load_record(entry_id)
        if r is None:
            gone = 0 < entry_id < self._next_id
            raise UnknownEntryError(entry_id, "already acked and removed" if gone else f"cannot {action} it")
        return r

    def _rewrite(self, entry_id: int, r: list, new_state: int) -> None:
        """Store record ``r`` (already changed by the caller) and move its counter."""
        old_key = (r[3], r[4], r[0])
        r[0] = new_state
        r[6] = time.time()
        batch = self._batch()
        batch.put("entries", rec.encode_key(entry_id), rec.encode_record(*r))
        self._commit(batch, [(old_key, -1), ((r[3], r[4], new_state), 1)])

    def _remove(self, entry_id: int, r: list) -> None:
        batch = self._batch()
        batch.delete("entries", rec.encode_key(entry_id))
        self._commit(batch, [((r[3], r[4], r[0]), -1)])

    def ack(self, entry_id: int) -> bool:
        """Mark an entry done; with no retention it is deleted at once.

        Acking is idempotent: an entry acked (and removed) before returns False.
        A dead entry may be acked (an operator resolved it). Returns True when
        the entry changed.

        Raises:
            UnknownEntryError: no entry with this id was ever journaled.
        """
        self._check_open()
        with self._lock:
            self._check_open()
            try:
                r = self._require_record(entry_id, "ack")
            except UnknownEntryError:
                if 0 < entry_id < self._next_id:
                    return False
                raise
            self._inflight.pop(entry_id, None)
            if r[0] == rec.ACKED:
                return False
            if self.retention > 0:
                self._rewrite(entry_id, r, rec.ACKED)
            else:
                self._remove(entry_id, r)
            if self._observers:
                self._emit("on_ack", r[3], r[4], 1)
            return True

    def nack(self, entry_id: int) -> None:
        """Put an entry back to pending, for redelivery.

        A dead entry is revived with its attempts reset, so that it gets a full
        ``max_attempts`` again. An acked entry cannot be nacked.
        """
        self._check_open()
        with self._lock:
            self._check_open()
            r = self._require_record(entry_id, "nack")
            self._inflight.pop(entry_id, None)
            if r[0] == rec.ACKED:
                raise InvalidTransitionError(entry_id, State.ACKED, "nack")
            if r[0] == rec.DEAD:
                r[1] = 0
                r[7] = ""
            self._rewrite(entry_id, r, rec.PENDING)

    def dead(self, entry_id: int, reason: str = "") -> None:
        """Give up on an entry: it stays in the journal as a dead letter."""
        self._check_open()
        with self._lock:
            self._check_open()
            r = self._require_record(entry_id, "mark dead")
            self._inflight.pop(entry_id, None)
            if r[0] == rec.ACKED:
                raise InvalidTransitionError(entry_id, State.ACKED, "mark dead")
            r[7] = str(reason)
            self._rewrite(entry_id, r, rec.DEAD)
            if self._observers:
                self._emit("on_dead", r[3], r[4], entry_id, r[7])

    def attempt(self, entry_id: int, max_attempts: int | None = None) -> Entry:
        """Record one more delivery of a pending entry, before handing it over.

        When the entry has already been delivered ``max_attempts`` times (the
        argument, else the journal's), it goes ``dead`` instead; the returned
        entry's ``state`` says which happened.
        """
        self._check_open()
        limit = self.max_attempts if max_attempts is None else max_attempts
        with self._lock:
            self._check_open()
            r = self._require_record(entry_id, "deliver")
            if r[0] != rec.PENDING:
                raise InvalidTransitionError(entry_id, rec.STATES_BY_CODE[r[0]], "deliver")
            if limit is not None and r[1] >= limit:
                r[7] = f"delivered {r[1]} times (max_attempts={limit})"
                self._rewrite(entry_id, r, rec.DEAD)
                if self._observers:
                    self._emit("on_dead", r[3], r[4], entry_id, r[7])
            else:
                r[1] += 1
                self._rewrite(entry_id, r, rec.PENDING)
                if self._observers:
                    self._emit("on_redelivery", r[3], r[4], entry_id, r[1])
            return rec.entry_from_record(entry_id, r)

    # -- the socket fast path ------------------------------------------------

    def _log(
        self,
        name: str,
        dcode: int,
        frames: list[bytes],
        *,
        settle: int = 0,
        track: bool = True,
        attempts: int = 1,
        envelope_size: int = 0,
    ) -> int:
        """Append one message and settle (ack) an earlier one in the same batch.

        The hot path of the sockets: one write instead of two, and no read of
        the settled entry (its name and direction are known from ``_inflight``).
        ``frames`` must already be a list of bytes.
        """
        if len(frames) > 1 or len(frames[0]) > 65536:  # the common small message skips the sum
            self._check_size(frames)
        value = rec.encode_record(rec.PENDING, attempts, time.time(), name, dcode, frames, 0.0, "", envelope_size)
        with self._lock:
            if self._closed or self._background_error is not None:
                self._check_open()
            batch = self._batch()
            changes: list[tuple[CounterKey, int]] = [((name, dcode, rec.PENDING), 1)]
            settled = self._settle_into(batch, settle, changes) if settle else False
            entry_id = self._next_id
            if entry_id < self._reserved:
                self._next_id = entry_id + 1
            else:
                self._new_id(batch)
            batch.put("entries", rec.encode_key(entry_id), value)
            self._commit(batch, changes)
            if settled:
                known = self._inflight.pop(settle)
            if track:
                self._inflight[entry_id] = (name, dcode)
            if self._observers:
                self._emit("on_append", name, dcode, 1)
                if settled:
                    self._emit("on_ack", known[0], known[1], 1)
        return entry_id

    def _log_many(
        self,
        name: str,
        dcode: int,
        messages: list[tuple[list[bytes], int]],
        settle: Sequence[int] = (),
    ) -> list[int]:
        """Append many messages ``(frames, envelope_size)`` and settle many entries in one batch.

        For code that owns its loop (the queue device): one write for
        everything that was waiting.
        """
        for frames, _size in messages:
            self._check_size(frames)
        now = time.time()
        values = [
            rec.encode_record(rec.PENDING, 1, now, name, dcode, frames, 0.0, "", envelope_size)
            for frames, envelope_size in messages
        ]
        with self._lock:
            self._check_open()
            batch = self._batch()
            changes: list[tuple[CounterKey, int]] = []
            settled = [i for i in dict.fromkeys(settle) if self._settle_into(batch, i, changes)]
            ids = []
            for value in values:
                entry_id = self._new_id(batch)
                batch.put("entries", rec.encode_key(entry_id), value)
                ids.append(entry_id)
            if ids:
                changes.append(((name, dcode, rec.PENDING), len(ids)))
            if len(batch):
                self._commit(batch, changes)
            inflight = self._inflight
            acked_streams = [inflight.pop(entry_id) for entry_id in settled]
            for entry_id in ids:
                inflight[entry_id] = (name, dcode)
            if self._observers:
                if ids:
                    self._emit("on_append", name, dcode, len(ids))
                for stream_name, stream_dcode in acked_streams:
                    self._emit("on_ack", stream_name, stream_dcode, 1)
        return ids

    def _settle_into(self, batch: Any, entry_id: int, changes: list[tuple[CounterKey, int]]) -> bool:
        """Add the ack of an in-flight entry to ``batch``; False if it is no longer ours."""
        known = self._inflight.get(entry_id)
        if known is None:
            return False
        name, dcode = known
        if self.retention > 0:
            r = self._load_record(entry_id)
            if r is None or r[0] != rec.PENDING:
                return False
            r[0] = rec.ACKED
            r[6] = time.time()
            batch.put("entries", rec.encode_key(entry_id), rec.encode_record(*r))
            changes.append(((name, dcode, rec.ACKED), 1))
        else:
            batch.delete("entries", rec.encode_key(entry_id))
        changes.append(((name, dcode, rec.PENDING), -1))
        return True

    def _settle(self, entry_id: int) -> None:
        """Ack an in-flight entry on its own (when there is nothing to fold it into)."""
        with self._lock:
            if self._closed:
                return
            batch = self._batch()
            changes: list[tuple[CounterKey, int]] = []
            if self._settle_into(batch, entry_id, changes):
                self._commit(batch, changes)
                name, dcode = self._inflight.pop(entry_id)
                if self._observers:
                    self._emit("on_ack", name, dcode, 1)

    def _unlog(self, entry_id: int) -> None:
        """Take back an entry whose message never moved (the send failed)."""
        with self._lock:
            known = self._inflight.pop(entry_id, None)
            if known is None or self._closed:
                return
            batch = self._batch()
            batch.delete("entries", rec.encode_key(entry_id))
            self._commit(batch, [((known[0], known[1], rec.PENDING), -1)])

    def _deliver(self, entry_id: int, track: bool = True) -> Entry | None:
        """Record the handover of a redelivered entry (attempts + 1); None if it is no longer pending."""
        with self._lock:
            self._check_open()
            r = self._load_record(entry_id)
            if r is None or r[0] != rec.PENDING:
                return None
            r[1] += 1
            self._rewrite(entry_id, r, rec.PENDING)
            if track:
                self._inflight[entry_id] = (r[3], r[4])
            if self._observers:
                self._emit("on_redelivery", r[3], r[4], entry_id, r[1])
            return rec.entry_from_record(entry_id, r)

    def _redeliverable(self, name: str, dcode: int, after: int, limit: int, max_attempts: int | None) -> list[Entry]:
        """Up to ``limit`` pending entries of a stream with ids above ``after``, oldest first.

        Entries already delivered ``max_attempts`` times go dead here instead.
        """
        found: list[Entry] = []
        start = rec.encode_key(max(after + 1, self._floor))
        for key, value in self._store.scan("entries", start):
            r = rec.decode_record(value)
            if r[0] != rec.PENDING or r[3] != name or r[4] != dcode:
                continue
            entry_id = rec.decode_key(key)
            if entry_id in self._inflight:
                continue  # delivered in this process already and not settled
            if max_attempts is not None and r[1] >= max_attempts:
                self.attempt(entry_id, max_attempts)  # goes dead, with the reason recorded
                continue
            found.append(rec.entry_from_record(entry_id, r))
            if len(found) >= limit:
                break
        return found

    def _count_ephemeral(self, name: str) -> None:
        self._ephemeral[name] = self._ephemeral.get(name, 0) + 1

    def count_ephemeral(self, name: str | None = None) -> int:
        """How many ephemeral messages passed (never written to disk) since the journal opened."""
        if name is not None:
            return self._ephemeral.get(name, 0)
        return sum(self._ephemeral.values())

    # -- sockets -------------------------------------------------------------

    def wrap(
        self,
        sock: Any,
        name: str | None = None,
        *,
        ack: str | None = None,
        classify: Any = None,
        max_attempts: int | None = None,
    ) -> Any:
        """Journal every message of an existing pyzmq socket.

        Returns a :class:`zjournal.JournaledSocket` (a real ``zmq.Socket``
        sharing the handle of ``sock``; an asyncio socket gives an asyncio
        one). Pending inbound entries of ``name`` are redelivered through it
        first. Wrap before you bind or connect.
        """
        from zjournal.socket import wrap_socket

        self._check_open()
        return wrap_socket(self, sock, name, ack=ack, classify=classify, max_attempts=max_attempts)

    def socket(self, ctx: Any, socket_type: int, name: str | None = None, **options: Any) -> Any:
        """Create a socket of ``ctx`` and wrap it (the options of :meth:`wrap`)."""
        self._check_open()
        return self.wrap(ctx.socket(socket_type), name, **options)

    def context(self, ctx: Any = None, **options: Any) -> Any:
        """A context whose ``socket()`` returns journaled sockets (default names, these options)."""
        from zjournal.socket import JournaledContext

        self._check_open()
        return JournaledContext(self, ctx, **options)

    def replay(self, name: str, *, into: Any, older_than: float | None = None) -> int:
        """Send the pending outbound entries of ``name`` again through ``into``; returns how many.

        Through a journaled socket each resend counts as an attempt and is
        acked by that socket's policy; through a plain socket the entry is
        acked once ZeroMQ accepted it. A REQ socket takes one request at a time.
        ``older_than`` (seconds) resends only entries unchanged for that long:
        called periodically with ``ack="explicit"``, it is a redelivery timeout
        for messages whose confirmation never came.
        """
        from zjournal.socket import replay_outbound

        self._check_open()
        return replay_outbound(self, name, into, older_than)

    # -- reading -----------------------------------------------------------

    def get(self, entry_id: int) -> Entry | None:
        """The entry with this id, or None when there is none (or it was removed)."""
        self._check_open()
        r = self._load_record(entry_id)
        return None if r is None else rec.entry_from_record(entry_id, r)

    def entries(
        self,
        *,
        name: str | None = None,
        state: str | State | None = None,
        direction: str | Direction | None = None,
    ) -> Iterator[Entry]:
        """Entries matching every filter given, oldest first.

        The iteration reads a consistent snapshot taken at its start.
        """
        self._check_open()
        scode = rec.parse_state(state)
        dcode = rec.parse_direction(direction)
        return self._iter_entries(name, scode, dcode)

    def _iter_entries(self, name: str | None, scode: int | None, dcode: int | None) -> Iterator[Entry]:
        first = True
        for key, value in self._store.scan("entries", rec.encode_key(self._floor)):
            entry_id = rec.decode_key(key)
            if first:
                # The first live id of a snapshot only grows: skip the tombstones below it next time.
                self._floor = max(self._floor, entry_id)
                first = False
            r = rec.decode_record(value)
            if (scode is None or r[0] == scode) and (dcode is None or r[4] == dcode) and (name is None or r[3] == name):
                yield rec.entry_from_record(entry_id, r)

    def count(
        self,
        *,
        name: str | None = None,
        state: str | State | None = None,
        direction: str | Direction | None = None,
    ) -> int:
        """How many entries match every filter given, from counters (no scan)."""
        self._check_open()
        scode = rec.parse_state(state)
        dcode = rec.parse_direction(direction)
        total = 0
        for (n, d, s), value in list(self._counts.items()):
            if (name is None or n == name) and (dcode is None or d == dcode) and (scode is None or s == scode):
                total += value
        return total

    def names(self) -> list[str]:
        """The names (streams) that have entries, sorted."""
        self._check_open()
        return sorted({n for (n, _d, _s), value in list(self._counts.items()) if value > 0})

    def size_on_disk(self) -> int:
        self._check_open()
        return self._store.size_on_disk()

    def refresh(self) -> None:
        """Read-only journals: catch up with what the journal's owner wrote since opening."""
        self._check_open()
        refresh = getattr(self._store, "refresh", None)
        if refresh is None:
            return
        with self._lock:
            refresh()
            self._reserved = self._meta_int(_META_SEQ, 1)
            self._count_entries()

    def info(self) -> dict[str, Any]:
        """What the journal says about itself: schema, recorded durability, creation time, size."""
        self._check_open()

        def meta(key: bytes) -> Any:
            raw = self._store.get("meta", key)
            return None if raw is None else msgpack.unpackb(raw)

        return {
            "path": self.path,
            "schema": meta(_META_SCHEMA),
            "durability": meta(_META_DURABILITY),
            "created": meta(_META_CREATED),
            "size_on_disk": self._store.size_on_disk(),
        }

    # -- operations (the CLI's) ------------------------------------------------

    def purge(self, state: str | State, before: float | None = None) -> int:
        """Delete every ``acked`` or ``dead`` entry (last changed before ``before``, epoch s); returns how many."""
        self._check_open()
        scode = rec.parse_state(state)
        if scode not in (rec.ACKED, rec.DEAD):
            raise InvalidArgumentError("purge removes 'acked' or 'dead' entries only: pending ones are not done")
        doomed = [
            (e.id, e.name, rec.DIRECTION_CODES[e.direction])
            for e in self._iter_entries(None, scode, None)
            if before is None or (e.updated or e.created) < before
        ]
        with self._lock:
            self._check_open()
            for start in range(0, len(doomed), 10_000):
                batch = self._batch()
                changes: list[tuple[CounterKey, int]] = []
                for entry_id, name, dcode in doomed[start : start + 10_000]:
                    batch.delete("entries", rec.encode_key(entry_id))
                    changes.append(((name, dcode, scode), -1))
                self._commit(batch, changes)
        return len(doomed)

    def restore(self, entries: Iterable[Entry]) -> list[int]:
        """Append entries (e.g. from ``zjournal export``) with their state and attempts, under new ids."""
        self._check_open()
        ids: list[int] = []
        with self._lock:
            self._check_open()
            batch = self._batch()
            changes: list[tuple[CounterKey, int]] = []
            for e in entries:
                dcode = rec.parse_direction(e.direction)
                scode = rec.parse_state(e.state)
                if dcode is None or scode is None:
                    raise InvalidArgumentError("a restored entry needs a direction and a state")
                frames = _as_frames(e.frames)
                value = rec.encode_record(
                    scode, e.attempts, e.created, e.name, dcode, frames, e.updated, e.reason, e.envelope_size
                )
                entry_id = self._new_id(batch)
                batch.put("entries", rec.encode_key(entry_id), value)
                changes.append(((e.name, dcode, scode), 1))
                ids.append(entry_id)
            self._commit(batch, changes)
        return ids

    def record_replay(self, entry_ids: Sequence[int], *, endpoint: str, socket_type: str) -> int:
        """Mark entries done after ``zjournal replay`` handed them to ZeroMQ, and log the replay.

        One batch: the entries are acked (deleted, or kept ``acked`` with the
        replay as their reason under a retention period) and a replay record is
        added to the journal's metadata. Returns how many entries changed.
        """
        self._check_open()
        now = time.time()
        reason = f"replayed to {endpoint} ({socket_type})"
        with self._lock:
            self._check_open()
            batch = self._batch()
            changes: list[tuple[CounterKey, int]] = []
            done = 0
            for entry_id in entry_ids:
                r = self._load_record(entry_id)
                if r is None or r[0] == rec.ACKED:
                    continue
                self._inflight.pop(entry_id, None)
                changes.append(((r[3], r[4], r[0]), -1))
                if self.retention > 0:
                    r[0], r[6], r[7] = rec.ACKED, now, reason
                    batch.put("entries", rec.encode_key(entry_id), rec.encode_record(*r))
                    changes.append(((r[3], r[4], rec.ACKED), 1))
                else:
                    batch.delete("entries", rec.encode_key(entry_id))
                done += 1
            record = {"at": now, "endpoint": endpoint, "socket_type": socket_type, "count": done}
            if entry_ids:
                record.update(first_id=min(entry_ids), last_id=max(entry_ids))
            batch.put("meta", _META_REPLAY + rec.encode_key(int(now * 1e6)), msgpack.packb(record))
            self._commit(batch, changes)
        return done

    def replays(self) -> list[dict[str, Any]]:
        """The replays recorded in this journal, oldest first."""
        self._check_open()
        found = []
        for key, value in self._store.scan("meta", _META_REPLAY):
            if not key.startswith(_META_REPLAY):
                break
            found.append(msgpack.unpackb(value))
        return found

    # -- maintenance -------------------------------------------------------

    def sync(self) -> None:
        """fsync everything written so far (whatever the durability mode)."""
        self._check_open()
        self._store.sync()

    def expire(self, now: float | None = None) -> int:
        """Remove acked entries older than the retention period; returns how many."""
        self._check_open()
        if self.retention <= 0:
            return 0
        cutoff = (time.time() if now is None else now) - self.retention
        doomed = [(e.id, e.name, e.direction) for e in self._iter_entries(None, rec.ACKED, None) if e.updated <= cutoff]
        if not doomed:
            return 0
        with self._lock:
            self._check_open()
            batch = self._batch()
            changes: list[tuple[CounterKey, int]] = []
            for entry_id, name, direction in doomed:
                batch.delete("entries", rec.encode_key(entry_id))
                changes.append(((name, rec.DIRECTION_CODES[direction], rec.ACKED), -1))
            self._commit(batch, changes)
        return len(doomed)

    def compact(self) -> None:
        """Reclaim the space of removed entries now rather than when RocksDB decides."""
        self._check_open()
        self._store.compact()

    def _maintain(self) -> None:
        """Background fsync (interval mode) and retention sweeps."""
        interval = self.durability is Durability.INTERVAL
        period = self.fsync_interval / 1000.0 if interval else 1.0
        sweep_every = min(max(self.retention / 2, 0.05), 60.0)
        if self.retention > 0:
            period = min(period, sweep_every)
        next_sweep = time.monotonic() + sweep_every
        while not self._stop.wait(period):
            try:
                if interval and self._dirty:
                    self._dirty = False
                    self._store.sync()
                if self.retention > 0 and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + sweep_every
                    self.expire()
            except JournalClosedError:
                return
            except BaseException as e:  # surfaced by the next call on the journal
                self._background_error = e
                log.error("journal %s: background maintenance failed: %s", self.path, e)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Make everything durable and release the journal; idempotent."""
        if self._closed:
            return
        for sock in list(self._sockets.values()):
            if not sock.closed:
                sock._settle_deferred(inbound=False)  # what ZeroMQ already took is done
        if self._maintainer is not None:
            self._stop.set()
            self._maintainer.join()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            failure: StoreError | None = None
            if not self.read_only:
                try:
                    batch = self._batch()
                    batch.put("meta", _META_FLOOR, msgpack.packb(self._floor))
                    # A clean close knows exactly which ids were handed out.
                    batch.put("meta", _META_SEQ, msgpack.packb(self._next_id))
                    self._store.write(batch, sync=self.durability is not Durability.NONE)
                except StoreError as e:  # the journal is still released; opening it again recovers
                    failure = e
            try:
                self._store.close()
            except StoreError as e:
                failure = failure or e
            if failure is not None:
                raise failure

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path or "(memory)"
        status = "closed" if self._closed else f"{self.count(state=State.PENDING)} pending"
        return f"<zjournal.Journal {where} durability={self.durability.value} {status}>"


def open(  # noqa: A001 - the public name the issues ask for
    path: str,
    *,
    durability: str | Durability = Durability.PROCESS,
    retention: float = 0.0,
    max_attempts: int | None = None,
    fsync_interval: float = 10.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    read_only: bool = False,
    plugins: bool = True,
    recover: bool = False,
) -> Journal:
    """Open (or create) the journal in directory ``path``.

    One process at a time may hold a journal open; others get
    :class:`JournalLockedError`. See :class:`Journal` for the arguments.

    ``read_only=True`` opens a view that never writes to the directory and
    works while another process holds the journal open (a RocksDB secondary
    instance); :meth:`Journal.refresh` catches up with the owner's writes.
    ``plugins=False`` attaches no plugin observers.

    A journal whose files are damaged is refused with
    :class:`JournalCorruptError` naming the file (a torn last record, as power
    loss leaves, is dropped silently). ``recover=True`` opens it anyway, keeping
    everything written before the damage; ``journal.recovered`` then says what
    was dropped.
    """
    path = os.fspath(path)
    mode = Durability.parse(durability)
    _check_settings(retention, max_attempts, fsync_interval)
    store: Store = (
        SecondaryRocksStore(path) if read_only else RocksStore(path, wal=mode is not Durability.NONE, recover=recover)
    )
    journal = Journal(
        store,
        durability=mode,
        retention=retention,
        max_attempts=max_attempts,
        fsync_interval=fsync_interval,
        max_message_size=max_message_size,
        path=path,
        read_only=read_only,
        plugins=plugins,
    )
    journal.recovered = list(getattr(store, "recovered", []))
    if journal.recovered:
        log.warning("journal %s was recovered: %s", path, "; ".join(journal.recovered))
    return journal
