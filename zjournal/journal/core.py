"""The journal: a durable record of messages and their acknowledgement state.

:class:`Journal` is the public face of the journal layer. Its state and the
primitives every change goes through are its :class:`~zjournal.journal
.ledger.Ledger`; the path of messages for sockets is its
:class:`~zjournal.journal.port.SocketPort`; ``admin`` holds the operators'
operations and ``maintenance`` the background thread. Counters are kept in
memory (rebuilt by one scan at open) so that :meth:`Journal.count` never scans.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from zjournal.errors import InvalidArgumentError, InvalidTransitionError, UnknownEntryError, ZJournalError
from zjournal.journal import admin, inflight
from zjournal.journal import entry as rec
from zjournal.journal.counters import Counters
from zjournal.journal.durability import Durability
from zjournal.journal.entry import Direction, Entry, State
from zjournal.journal.ledger import MAX_ID, Ledger, is_an_id, log
from zjournal.journal.maintenance import Maintainer
from zjournal.journal.opening import META_CREATED, META_DURABILITY, META_SCHEMA, META_SEQ
from zjournal.journal.port import SocketPort
from zjournal.store import forking
from zjournal.store.base import Store
from zjournal.store.memory import MemoryStore
from zjournal.store.rocks import RocksStore
from zjournal.store.secondary import SecondaryRocksStore

# Larger messages are refused with MessageTooLargeError (RocksDB handles values
# up to 4 GiB, but a journal write holds the whole message in memory twice).
DEFAULT_MAX_MESSAGE_SIZE = 256 * 1024 * 1024
DEFAULT_RESEND_AFTER = 10.0  # seconds a journaled REQ waits for a reply before it sends the request again


def _check_confirm_endpoint(endpoint: str | None) -> None:
    if endpoint is not None and not (isinstance(endpoint, str) and endpoint.startswith(("tcp://", "ipc://"))):
        raise InvalidArgumentError(f"confirm_endpoint is a tcp:// or ipc:// address that peers reach, not {endpoint!r}")


def _check_settings(retention: float, max_attempts: int | None, fsync_interval: float) -> None:
    if retention < 0:
        raise InvalidArgumentError(f"retention must be >= 0 seconds, not {retention}")
    if max_attempts is not None and max_attempts < 1:
        raise InvalidArgumentError(f"max_attempts must be >= 1 or None, not {max_attempts}")
    if fsync_interval <= 0:
        raise InvalidArgumentError(f"fsync_interval must be > 0 ms, not {fsync_interval}")


# -- the hand-over to the socket layer (the journal never imports it) -----


class SocketLayer(Protocol):
    """What ``Journal.wrap/socket/context/replay`` hand over to (implemented by ``zjournal.sockets``)."""

    def wrap(self, journal: Journal, sock: Any, name: str | None, **options: Any) -> Any: ...

    def context(self, journal: Journal, ctx: Any, **options: Any) -> Any: ...

    def replay(self, journal: Journal, name: str, into: Any, older_than: float | None) -> int: ...


_socket_layer: SocketLayer | None = None


def register_socket_layer(layer: SocketLayer) -> None:
    """Called once by ``zjournal.sockets`` when it is imported."""
    global _socket_layer
    _socket_layer = layer


def socket_layer() -> SocketLayer:
    if _socket_layer is None:  # only if zjournal.journal was loaded without the zjournal package
        raise ZJournalError("no socket layer: import zjournal (it registers zjournal.sockets)")
    return _socket_layer


class ReplicationLayer(Protocol):
    """What ``open(..., replicate=)`` hands over to (implemented by ``zjournal.replication``)."""

    def attach(self, journal: Journal, url: str, alias: str | None, **options: Any) -> Any:
        """Start shipping ``journal`` to the engine at ``url``; returns its status (``journal.replication``)."""

    def engine_payload_limit(self, url: str, timeout: float) -> int:
        """The largest message the engine at ``url`` takes (its ``max_payload``)."""


_replication_layer: ReplicationLayer | None = None


def register_replication_layer(layer: ReplicationLayer) -> None:
    """Called once by ``zjournal.replication`` when it is imported."""
    global _replication_layer
    _replication_layer = layer


def replication_layer() -> ReplicationLayer:
    if _replication_layer is None:
        raise ZJournalError("no replication layer: import zjournal (it registers zjournal.replication)")
    return _replication_layer


def port_of(journal: Journal) -> SocketPort:
    """The port of ``journal`` (one per journal)."""
    return journal._port


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
        slots_read_first: list[tuple[int, bytes]] | None = None,
        confirm_endpoint: str | None = None,
    ) -> None:
        _check_settings(retention, max_attempts, fsync_interval)
        _check_confirm_endpoint(confirm_endpoint)
        ledger = Ledger(
            store if store is not None else MemoryStore(),
            durability=Durability.parse(durability),
            retention=float(retention),
            max_attempts=max_attempts,
            fsync_interval=float(fsync_interval),
            max_message_size=max_message_size,
            path=path,
            read_only=read_only,
        )
        ledger.confirm_endpoint = confirm_endpoint
        self._ledger = ledger
        self._port = SocketPort(ledger)  # zjournal.journal.port.port_of hands it to the socket layer
        #: what opening had to drop to recover a damaged journal (``open(..., recover=True)``)
        self.recovered: list[str] = []
        try:
            ledger.load(slots_read_first)
        except BaseException:
            ledger.store.close()
            raise
        if plugins and not read_only:
            self._attach_observers()
        self._maintainer: Maintainer | None = None
        self._replication: Any = None  # the shipper's status, when opened with replicate= (zjournal.replication)
        if not read_only and (ledger.durability is Durability.INTERVAL or ledger.retention > 0):
            self._maintainer = Maintainer(ledger, self.expire)
        forking.track(self)
        if ledger.durability is Durability.NONE and not read_only:
            log.warning("journal %s: durability 'none' keeps no write-ahead log; a crash loses messages", path)

    # -- settings (fixed when the journal opens) ---------------------------

    @property
    def path(self) -> str | None:
        return self._ledger.path

    @property
    def read_only(self) -> bool:
        return self._ledger.read_only

    @property
    def durability(self) -> Durability:
        return self._ledger.durability

    @property
    def retention(self) -> float:
        return self._ledger.retention

    @property
    def max_attempts(self) -> int | None:
        return self._ledger.max_attempts

    @property
    def fsync_interval(self) -> float:
        return self._ledger.fsync_interval

    @property
    def max_message_size(self) -> int:
        return self._ledger.max_message_size

    # For tests and probes that look inside (the store under the journal, its floor, its counters).
    @property
    def _store(self) -> Store:
        return self._ledger.store

    @property
    def _floor(self) -> int:
        return self._ledger.floor

    @property
    def _counts(self) -> Counters:
        """The counters; a view whose journal changed since its last count counts first (see :meth:`refresh`)."""
        ledger = self._ledger
        if ledger.rare.counts_stale:
            with ledger.lock:
                if ledger.rare.counts_stale:
                    ledger.count_entries()
        return ledger.counts

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
            self._ledger.observers.append(observer)

    def add_observer(self, observer: Any) -> None:
        """Tell ``observer`` about appends, acks, dead letters and redeliveries (see zjournal.plugins)."""
        observers = self._ledger.observers
        if observer in observers:
            return
        attach = getattr(observer, "attach", None)
        if attach is not None and attach(self) is False:
            return
        observers.append(observer)

    def _created_by(self, tool: str | None = None) -> str | None:
        """The tool that made this journal for itself, if one said so; with ``tool``: say so now (the demo)."""
        return self._ledger.created_by(tool)

    # -- writing -----------------------------------------------------------

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
        ledger = self._ledger
        ledger.check_open()
        dcode = rec.parse_direction(direction)
        if dcode is None:
            raise InvalidArgumentError("direction is required: 'in' or 'out'")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentError(f"name must be a non-empty str, not {name!r}")
        data = rec.as_frames(frames)
        if not 0 <= envelope_size <= len(data):
            raise InvalidArgumentError(f"envelope_size {envelope_size} does not fit a {len(data)}-frame message")
        data, blob_names = ledger.checked(data)
        value = rec.encode_record(rec.PENDING, attempts, time.time(), name, dcode, data, 0.0, "", envelope_size)
        try:
            with ledger.lock:
                ledger.check_open()
                batch = ledger.batch()
                entry_id = ledger.put_new_entry(batch, value, blob_names)
                ledger.commit(batch, [((name, dcode, rec.PENDING), 1)])
                if blob_names:
                    ledger.blobs_committed(entry_id, blob_names)
                if ledger.observers:
                    ledger.emit("on_append", name, dcode, 1)
        except BaseException:
            if blob_names:
                ledger.discard_blobs_unless_owned(blob_names)
            raise
        return entry_id

    def ack(self, entry_id: int) -> bool:
        """Mark an entry done; with no retention it is deleted at once.

        Acking is idempotent: an entry acked (and removed) before returns False.
        A dead entry may be acked (an operator resolved it). Returns True when
        the entry changed.

        Raises:
            UnknownEntryError: no entry with this id was ever journaled.
        """
        ledger = self._ledger
        ledger.check_open()
        with ledger.lock:
            ledger.check_open()
            if ledger.settle_held(entry_id):
                return True
            try:
                r = ledger.require_record(entry_id, "ack")
            except UnknownEntryError:
                if 0 < entry_id < ledger.next_id:
                    return False
                raise
            ledger.inflight.pop(entry_id, None)
            if r[0] == rec.ACKED:
                return False
            ledger.acknowledge(entry_id, r)
            return True

    def nack(self, entry_id: int) -> None:
        """Put an entry back to pending, for redelivery.

        A dead entry is revived with its attempts reset, so that it gets a full
        ``max_attempts`` again. An acked entry cannot be nacked.
        """
        ledger = self._ledger
        ledger.check_open()
        with ledger.lock:
            ledger.check_open()
            r = ledger.require_record(entry_id, "nack")
            ledger.inflight.pop(entry_id, None)
            if r[0] == rec.ACKED:
                raise InvalidTransitionError(entry_id, State.ACKED, "nack")
            if r[0] == rec.DEAD:
                del r[9:]  # (close_returns: none of a fresh count's attempts were ended by a close)
                r[1] = 0
                r[7] = ""
            ledger.rewrite(entry_id, r, rec.PENDING)

    def dead(self, entry_id: int, reason: str = "") -> None:
        """Give up on an entry: it stays in the journal as a dead letter."""
        ledger = self._ledger
        ledger.check_open()
        with ledger.lock:
            ledger.check_open()
            ledger.dead(entry_id, reason)

    def attempt(self, entry_id: int, max_attempts: int | None = None) -> Entry:
        """Record one more delivery of a pending entry, before handing it over.

        When the entry has already been delivered ``max_attempts`` times (the
        argument, else the journal's; hand-overs a clean close ended are not
        counted, see Entry.close_returns), it goes ``dead`` instead; the
        returned entry's ``state`` says which happened.
        """
        ledger = self._ledger
        ledger.check_open()
        limit = ledger.max_attempts if max_attempts is None else max_attempts
        with ledger.lock:
            ledger.check_open()
            return ledger.attempt(entry_id, limit)

    # -- reading -----------------------------------------------------------

    def get(self, entry_id: int) -> Entry | None:
        """The entry with this id, or None when there is none (or it was removed)."""
        self._ledger.check_open()
        if not is_an_id(entry_id):
            return None  # -1, 2**64: no entry ever had such an id
        r = self._ledger.load_record(entry_id)
        return None if r is None else rec.entry_from_record(entry_id, r, self._ledger.rare.blobs)

    def entries(
        self,
        *,
        name: str | None = None,
        state: str | State | None = None,
        direction: str | Direction | None = None,
        after: int = 0,
    ) -> Iterator[Entry]:
        """Entries matching every filter given, oldest first.

        ``after``: only entries with a higher id; the read starts there (a
        follower that saw up to id N asks for ``after=N``: the cost is what is
        new, not the whole journal). The iteration reads a consistent
        snapshot taken at its start.
        """
        self._ledger.check_open()
        scode = rec.parse_state(state)
        dcode = rec.parse_direction(direction)
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise InvalidArgumentError(f"after is an entry id (an int >= 0), not {after!r}")
        if after >= MAX_ID:
            return iter(())
        return self._ledger.select(name, scode, dcode, after)

    def pending_attempts(self, name: str | None = None) -> dict[int, int]:
        """How many pending entries (of ``name``, or all) have each number of attempts, fewest first.

        A scan of every entry, as :meth:`entries`, but without building them
        (``zjournal inspect`` shows it: a million entries took 2.3 s as entries).
        """
        self._ledger.check_open()
        tally: collections.Counter[int] = collections.Counter(
            r[1] for _id, r in self._ledger.select_records(name, rec.PENDING, None)
        )
        return dict(sorted(tally.items()))

    def oldest_pending(self) -> Entry | None:
        """The oldest pending entry (lowest id), or None when nothing is pending.

        Cheap however many dead letters or retained acked entries precede it:
        what was seen not to be pending is skipped from then on (a metrics
        scrape asks this every few seconds).
        """
        ledger = self._ledger
        ledger.check_open()
        rare = ledger.rare
        lowered = rare.pending_floor_lowered
        held, unissued = ledger.slot_records()
        lowest_held = held[0][0] if held else None
        start = max(rare.pending_floor, ledger.floor)
        found: Entry | None = None
        first_pending = None
        for key, value in ledger.store.scan("entries", rec.encode_key(start)):
            entry_id = rec.decode_key(key)
            if lowest_held is not None and entry_id > lowest_held:
                break  # the slot's entry is older than any pending entry further on
            r = rec.decode_record(value)
            if r[0] == rec.PENDING:
                first_pending = entry_id
                found = rec.entry_from_record(entry_id, r, rare.blobs)
                break
        if held and (found is None or held[0][0] < found.id):
            found = rec.entry_from_record(held[0][0], rec.decode_record(held[0][1]))  # (slots hold no blobs)
        if not ledger.read_only:
            # Below the first pending id of the store's snapshot, the lowest held one and the
            # first id not yet handed out, nothing was pending (see Ledger.scan_with_slots).
            bound = min(x for x in (first_pending, lowest_held, unissued) if x is not None)
            with ledger.lock:
                if lowered == rare.pending_floor_lowered:  # no entry turned pending below it meanwhile
                    rare.pending_floor = max(rare.pending_floor, bound)
        return found

    def count(
        self,
        *,
        name: str | None = None,
        state: str | State | None = None,
        direction: str | Direction | None = None,
    ) -> int:
        """How many entries match every filter given, from counters (no scan)."""
        self._ledger.check_open()
        scode = rec.parse_state(state)
        dcode = rec.parse_direction(direction)
        return self._counts.count(name, dcode, scode)

    def count_ephemeral(self, name: str | None = None) -> int:
        """How many ephemeral messages passed (never written to disk) since the journal opened."""
        ephemeral = self._ledger.ephemeral
        if name is not None:
            return ephemeral.get(name, 0)
        return sum(ephemeral.values())

    def names(self) -> list[str]:
        """The names (streams) that have entries, sorted."""
        self._ledger.check_open()
        return self._counts.names()

    def size_on_disk(self) -> int:
        self._ledger.check_open()
        return self._ledger.store.size_on_disk()

    def refresh(self) -> None:
        """Read-only journals: catch up with what the journal's owner wrote since opening.

        Nothing is counted here: the next count asked for (:meth:`count`,
        :meth:`names`) counts again if the journal changed since the last one.
        """
        ledger = self._ledger
        ledger.check_open()
        refresh = getattr(ledger.store, "refresh", None)
        if refresh is None:
            return
        with ledger.lock:  # a view's slot records come from files: no lock taken below
            slots = None if ledger.path is None else list(inflight.read_records(ledger.path))  # slots first
            refresh()
            ledger.reserved = ledger.rare.reserved_on_disk = ledger.meta_int(META_SEQ, 1)
            if slots is not None:
                ledger.load_slot_records(slots)
            # Counting scans every entry (a second per million): only when a count is asked for (not for
            # `inspect --follow`, which lists what is new), and not again when nothing changed since the
            # last count (a scrape of a stuck backlog).
            store_version = getattr(ledger.store, "version", None)
            version = None if store_version is None else store_version()
            if version is not None:
                version = (version, ledger.slot_view, ledger.rare.handover_view)
            rare = ledger.rare
            if version is None or version != rare.view_version:
                rare.view_version = version
                ledger.count_later()

    def info(self) -> dict[str, Any]:
        """What the journal says about itself: schema, recorded durability, creation time, size, confirms.

        ``confirm``: the confirm=True senders this journal received from
        (``senders``), the deduplication keys it keeps for them (``dedup_keys``)
        and the resends it dropped as duplicates, ever (``duplicates_dropped``);
        for its own confirm=True sockets since it was opened, the entries
        confirmed (``confirmed``) and the seconds from a send to its
        confirmation, in all and at most (``latency_seconds_sum``,
        ``latency_seconds_max``).
        """
        ledger = self._ledger
        ledger.check_open()
        return {
            "path": ledger.path,
            "schema": ledger.meta(META_SCHEMA),
            "durability": ledger.meta(META_DURABILITY),
            "created": ledger.meta(META_CREATED),
            "size_on_disk": ledger.store.size_on_disk(),
            "confirm": self._confirm_info(),
        }

    def _confirm_info(self) -> dict[str, Any]:
        """What this journal knows of confirm=True senders (see :meth:`info`)."""
        origins = self._ledger.seen.origins()
        count, total, worst = self._ledger.rare.confirm_latency
        return {
            "senders": self._ledger.seen.senders(),
            "dedup_keys": sum(kept for _floor, kept in origins.values()),
            "duplicates_dropped": self._ledger.seen.dropped,
            "confirmed": int(count),
            "latency_seconds_sum": total,
            "latency_seconds_max": worst,
        }

    # -- maintenance -------------------------------------------------------

    def sync(self) -> None:
        """fsync everything written so far (whatever the durability mode), the sockets' slot files too."""
        ledger = self._ledger
        ledger.check_open()
        ledger.store.sync()
        with ledger.lock:
            for slots in ledger.slot_files:
                slots.sync()

    def expire(self, now: float | None = None) -> int:
        """Remove acked entries older than the retention period; returns how many."""
        ledger = self._ledger
        ledger.check_open()
        if ledger.retention <= 0:
            return 0
        cutoff = (time.time() if now is None else now) - ledger.retention
        doomed = []
        for entry_id, value in ledger.scan_with_slots():  # (in id order: the order they were appended)
            r = rec.decode_record(value)
            if r[2] > cutoff:
                # Appended after the cutoff, so acked after it, and so is what came after: the scan ends
                # here, not at the journal's end (every entry kept, read at every sweep, was 1.3 s per
                # sweep for 500,000; 2026-12-07). An entry appended with an earlier time (restore keeps
                # its) goes at a later sweep: later than due, never earlier.
                break
            if r[0] == rec.ACKED and r[6] <= cutoff:
                doomed.append((entry_id, r[3], r[4]))
        if not doomed:
            return 0
        with ledger.lock:
            ledger.check_open()
            batch = ledger.batch()
            changes = [((name, dcode, rec.ACKED), -1) for _id, name, dcode in doomed]
            for entry_id, _name, _direction in doomed:
                batch.delete("entries", rec.encode_key(entry_id))
            ledger.commit(batch, changes)
        return len(doomed)

    def compact(self) -> None:
        """Reclaim the space of removed entries now rather than when RocksDB decides."""
        self._ledger.check_open()
        self._ledger.store.compact()

    # -- operations for people and tools (zjournal.journal.admin) ----------

    def purge(self, state: str | State, before: float | None = None) -> int:
        """Delete every ``acked`` or ``dead`` entry (last changed before ``before``, epoch s); returns how many."""
        return admin.purge(self._ledger, state, before)

    def restore(self, entries: Iterable[Entry], *, once: str | None = None) -> list[int]:
        """Append entries (e.g. from ``zjournal export``) with their state and attempts, under new ids.

        All or nothing: an entry no journal could have written (a time that is
        not one, negative attempts, an envelope larger than the message, no
        name) refuses the whole batch with InvalidArgumentError. ``once``: a
        key for this batch (``zjournal import`` uses a digest of the file);
        a second restore under the same key raises AlreadyRestoredError and
        adds nothing, so the same export is not imported twice by mistake.
        """
        return admin.restore(self._ledger, entries, once)

    def record_replay(
        self, entry_ids: Sequence[int], *, endpoint: str, socket_type: str, run: float | None = None
    ) -> int:
        """Mark entries done after ``zjournal replay`` handed them to ZeroMQ, and log the replay.

        One batch: the entries are acked (deleted, or kept ``acked`` with the
        replay as their reason under a retention period) and a replay record is
        added to the journal's metadata. ``run`` (the replay's start time) makes
        the chunks of one replay one record, its counts added up. Returns how
        many entries changed.
        """
        return admin.record_replay(self._ledger, entry_ids, endpoint=endpoint, socket_type=socket_type, run=run)

    def replays(self) -> list[dict[str, Any]]:
        """The replays recorded in this journal, oldest first."""
        return admin.replays(self._ledger)

    # -- sockets (zjournal.sockets: the journal hands over, it does not import them) --

    def wrap(
        self,
        sock: Any,
        name: str | None = None,
        *,
        ack: str | None = None,
        classify: Any = None,
        max_attempts: int | None = None,
        prefetch: int = 0,
        confirm: bool = False,
        confirm_timeout: float | None = None,
        resend_after: float | None = DEFAULT_RESEND_AFTER,
    ) -> Any:
        """Journal every message of an existing pyzmq socket.

        Returns a :class:`zjournal.JournaledSocket` (a real ``zmq.Socket``
        sharing the handle of ``sock``; an asyncio socket gives an asyncio
        one). Pending inbound entries of ``name`` are redelivered through it
        first. Wrap before you bind or connect.

        ``prefetch=N`` (opt-in, receiving sockets with the next or explicit
        policy) reads up to N messages already queued in the socket and
        journals them, with the acks due, in one write, then hands them out one
        by one: fewer store writes for ``explicit`` receivers (with ``next``
        the default in-flight slot is faster). Pollers see the prefetched
        messages; acks of ``next`` ride with the next write, so up to N handled
        messages can come back after a crash.

        ``confirm=True`` (a PUSH): each outbound entry stays pending until the
        receiving journal confirms it journaled the message, and is sent again
        after ``confirm_timeout`` seconds (default 5) until then, each resend
        doubling the wait for the next (up to 32x, or 5 minutes), also after a
        restart (zjournal.sockets.confirm). Receivers need no option.

        ``resend_after`` (a REQ; default 10 s, None: never): a request with no
        reply is sent again at once when the connection that carried it
        closes, and after ``resend_after`` seconds while it stays up; requests
        an earlier REQ of ``name`` left pending are sent again too, their
        replies going to nobody. A journaled REP recognises such a resend
        (zjournal.sockets.requests).
        """
        self._ledger.check_open()
        return socket_layer().wrap(
            self,
            sock,
            name,
            ack=ack,
            classify=classify,
            max_attempts=max_attempts,
            prefetch=prefetch,
            confirm=confirm,
            confirm_timeout=confirm_timeout,
            resend_after=resend_after,
        )

    def socket(self, ctx: Any, socket_type: int, name: str | None = None, **options: Any) -> Any:
        """Create a socket of ``ctx`` and wrap it (the options of :meth:`wrap`)."""
        self._ledger.check_open()
        return self.wrap(ctx.socket(socket_type), name, **options)

    def context(self, ctx: Any = None, **options: Any) -> Any:
        """A context whose ``socket()`` returns journaled sockets (default names, these options)."""
        self._ledger.check_open()
        return socket_layer().context(self, ctx, **options)

    def replay(self, name: str, *, into: Any, older_than: float | None = None) -> int:
        """Send the pending outbound entries of ``name`` again through ``into``; returns how many.

        Through a journaled socket each resend counts as an attempt and is
        acked by that socket's policy; through a plain socket the entry is
        acked once ZeroMQ accepted it. A REQ socket takes one request at a time.
        ``older_than`` (seconds) resends only entries unchanged for that long:
        called periodically with ``ack="explicit"``, it is a redelivery timeout
        for messages whose confirmation never came.
        """
        self._ledger.check_open()
        return socket_layer().replay(self, name, into, older_than)

    # -- closing -----------------------------------------------------------

    def abandon(self, parent: int) -> None:
        """In a forked child: the parent's journal is never used, written or closed here (zjournal.store.forking)."""
        self._ledger.abandon(parent)

    @property
    def closed(self) -> bool:
        return self._ledger.closed

    @property
    def replication(self) -> Any:
        """How shipping to the engine goes (``open(..., replicate=)``): state, lag, epoch; None if not replicated."""
        return self._replication

    def close(self) -> None:
        """Make everything durable and release the journal; idempotent.

        Sockets still open keep what the application holds pending (the last
        message handed over under ``next``, a REP's unanswered request): it
        comes back to whoever wraps their names next.
        """
        self._close(clean=sys.exc_info()[1] is None)

    def _close(self, clean: bool) -> None:
        ledger = self._ledger
        if ledger.closed:
            return
        for sock in list(ledger.sockets.values()):
            if not sock.closed:
                sock._settle_deferred()  # what ZeroMQ already took is done
                sock._return_in_hand(clean)  # what the application holds stays pending
        if self._maintainer is not None:
            self._maintainer.stop()
        if self._replication is not None:
            self._replication.stop()  # ships what is left (bounded wait), then lets go of the engine
        with ledger.lock:
            if ledger.closed:
                return
            ledger.close()

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close(clean=exc[1] is None)

    def __repr__(self) -> str:
        where = self.path or "(memory)"
        status = "closed" if self.closed else f"{self.count(state=State.PENDING)} pending"
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
    confirm_endpoint: str | None = None,
    replicate: str | None = None,
    replicate_as: str | None = None,
    reclaim: bool = False,
    ship_interval: float = 0.05,
    replicate_timeout: float = 5.0,
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

    ``confirm_endpoint``: the address that sockets wrapped with ``confirm=True``
    bind for confirmations from their receivers, for receivers on other hosts
    (``"tcp://10.1.2.3:7001"``; a port may be ``*``). By default each binds a
    free port on 127.0.0.1: receivers on this host need nothing.

    ``replicate="nats://h1:4222,nats://h2:4222"``: ship the journal's changes
    to NATS JetStream, as the journal ``replicate_as`` (default: the
    directory's name), so that ``zjournal takeover`` can carry its pending
    entries on elsewhere if this host dies. Shipping runs beside the local
    write-ahead path every ``ship_interval`` seconds and never holds it up;
    ``replicate_timeout`` bounds the engine calls of ``open`` and ``close``.
    A journal another process took over is refused with JournalFencedError,
    unless ``reclaim=True``. With ``replicate=`` and no ``max_message_size``,
    the limit becomes what the engine takes in one message.
    ``durability="replicated"`` (with ``replicate=``): the ``process`` mode
    locally, and a message moves only once the engine's quorum has its entry
    (ReplicationError after ``replicate_timeout``: journaled here, not moved).
    """
    path = os.fspath(path)
    synchronous = isinstance(durability, str) and durability.strip().lower() == "replicated"
    if synchronous:
        if replicate is None or read_only:
            raise InvalidArgumentError("durability='replicated' needs replicate= (the engine it waits for)")
        durability = Durability.PROCESS  # locally: the process mode's write-ahead path, then the engine's quorum
    mode = Durability.parse(durability)
    if replicate is not None and not read_only and max_message_size == DEFAULT_MAX_MESSAGE_SIZE:
        max_message_size = replication_layer().engine_payload_limit(replicate, replicate_timeout)
    _check_settings(retention, max_attempts, fsync_interval)
    _check_confirm_endpoint(confirm_endpoint)
    # A view reads the owner's slot files before its store catches up (see Ledger.load_slot_records).
    slots = list(inflight.read_records(path)) if read_only else None
    store: Store = (
        SecondaryRocksStore(path, sentinel=("meta", META_SCHEMA))
        if read_only
        else RocksStore(path, wal=mode is not Durability.NONE, recover=recover)
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
        slots_read_first=slots,
        confirm_endpoint=confirm_endpoint,
    )
    journal.recovered = list(getattr(store, "recovered", []))
    if journal.recovered:
        log.warning("journal %s was recovered: %s", path, "; ".join(journal.recovered))
    if replicate is not None:
        if read_only:
            journal.close()
            raise InvalidArgumentError("a read-only view cannot replicate: open the journal itself with replicate=")
        # Entries are shipped as their records: a record must hold its frames, not name a local blob file.
        journal._ledger.rare.blob_writes = False
        try:
            journal._replication = replication_layer().attach(
                journal,
                replicate,
                replicate_as,
                reclaim=reclaim,
                ship_interval=ship_interval,
                timeout=replicate_timeout,
                synchronous=synchronous,
            )
        except BaseException:
            journal.close()
            raise
    return journal
