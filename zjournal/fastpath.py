"""The journal's fast path for sockets and the queue device, and its socket factory methods.

A mixin of :class:`zjournal.Journal`: these methods use the journal's lock,
store, counters and ``_inflight`` map directly, because they run once per
message and every call saved counts. Public code uses ``append``/``ack``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zjournal import entry as rec
from zjournal import inflight
from zjournal.entry import Entry
from zjournal.inflight import fits_slot

_now = time.time
_RING_MASK = inflight.RING_MASK  # a module global: one load on the hot path

if TYPE_CHECKING:
    from zjournal.counters import CounterKey
    from zjournal.inflight import Slot, SlotFile


class SocketSupport:
    """Journal methods for code that moves messages (see the module docstring)."""

    def _log_held(self, slot: Slot, frames: list[bytes], settle: int = 0, envelope_size: int = 0) -> int:
        """Append one message into a socket's in-flight slot, settling ``settle`` (see zjournal.inflight).

        The hot path of the sockets in ``process`` and ``interval`` mode: no
        store write at all when the slot held ``settle`` (the overwrite is its
        ack). What the slot held and is still pending goes to the store first.
        A record too large for a slot takes :meth:`_log` instead.
        """
        if len(frames) > 1 or len(frames[0]) > self._unchecked_size:  # a small single frame skips the checks
            self._check_size(frames)
            if not fits_slot(frames):
                return self._log(slot.name, slot.dcode, frames, settle=settle, envelope_size=envelope_size)
        created = _now()
        lock = self._lock
        lock.acquire()  # not `with`: half the cost, and this runs once per message
        try:
            if self._closed or self._background_error is not None:
                self._check_open()
            entry_id = self._next_id
            if entry_id >= self._reserved:
                self._reserve_ids()  # a meta write once per block of ids, before anything else changes
            held = slot.entry_id
            observers = self._observers
            if held and held == settle:
                # The overwrite below is the ack of what the slot held. Same
                # stream, one out and one in: the pending counter stays put.
                if observers:
                    self._emit("on_ack", slot.name, slot.dcode, 1)
            else:
                if held:
                    self._spill(slot)  # still pending (kept, or awaiting a reply): it must outlive the slot
                if settle and not self._settle_held(settle):
                    self._settle_stored(settle)
                self._counts.add(slot.counter_key, 1)
            self._next_id = entry_id + 1
            slot.write(entry_id, frames, created, envelope_size)  # interval mode: the maintainer sees the new id
            self._slot_ring[entry_id & _RING_MASK] = slot  # journal.ack(id) and get(id) find it (see _holding)
            if observers:
                self._emit("on_append", slot.name, slot.dcode, 1)
        finally:
            lock.release()
        return entry_id

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
        if len(frames) > 1 or len(frames[0]) > self._unchecked_size:  # a small single frame skips the sum
            self._check_size(frames)
        value = rec.encode_record(rec.PENDING, attempts, time.time(), name, dcode, frames, 0.0, "", envelope_size)
        with self._lock:
            if self._closed or self._background_error is not None:
                self._check_open()
            if settle and self._settle_held(settle):
                settle = 0
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
        track: bool = True,
        attempts: int = 0,
    ) -> list[int]:
        """Append many messages ``(frames, envelope_size)`` and settle many entries in one batch.

        For code that owns its loop (the queue device, prefetch): one write
        for everything that was waiting. ``attempts``: 0 for messages not yet
        handed to anyone (recorded by :meth:`_deliver_many` when they are).
        """
        for frames, _size in messages:
            if len(frames) > 1 or len(frames[0]) > self._unchecked_size:  # small single frames cannot be too large
                self._check_size(frames)
        now = time.time()
        encode, pending = rec.encode_record, rec.PENDING
        values = [encode(pending, attempts, now, name, dcode, frames, 0.0, "", size) for frames, size in messages]
        key = rec.encode_key
        with self._lock:
            self._check_open()
            if self._slot_files:
                settle = [entry_id for entry_id in settle if not self._settle_held(entry_id)]
            batch = self._batch()
            changes: list[tuple[CounterKey, int]] = []
            if self.retention > 0:
                settled = [i for i in dict.fromkeys(settle) if self._settle_into(batch, i, changes)]
            else:
                settled = self._settle_many_into(batch, settle, changes)
            ids = []
            for value in values:
                entry_id = self._next_id
                if entry_id < self._reserved:
                    self._next_id = entry_id + 1
                else:
                    self._new_id(batch)
                batch.put("entries", key(entry_id), value)
                ids.append(entry_id)
            # The batch holds copies: a large message is not held a third time during the write.
            values.clear()
            value = b""
            if ids:
                changes.append(((name, dcode, rec.PENDING), len(ids)))
            if len(batch):
                self._commit(batch, changes)
            inflight = self._inflight
            acked_streams = [inflight.pop(entry_id) for entry_id in settled]
            if track:
                for entry_id in ids:
                    inflight[entry_id] = (name, dcode)
            if self._observers:
                if ids:
                    self._emit("on_append", name, dcode, len(ids))
                for stream_name, stream_dcode in acked_streams:
                    self._emit("on_ack", stream_name, stream_dcode, 1)
        return ids

    def _settle_many_into(self, batch: Any, settle: Sequence[int], changes: list[tuple[CounterKey, int]]) -> list[int]:
        """Deletes for many in-flight entries (no retention), one counter change per stream."""
        inflight, key = self._inflight, rec.encode_key
        settled: list[int] = []
        per_stream: dict[tuple[str, int], int] = {}
        for entry_id in dict.fromkeys(settle):
            known = inflight.get(entry_id)
            if known is None:
                continue  # no longer ours (acked, nacked or killed meanwhile)
            batch.delete("entries", key(entry_id))
            per_stream[known] = per_stream.get(known, 0) + 1
            settled.append(entry_id)
        for (name, dcode), n in per_stream.items():
            changes.append(((name, dcode, rec.PENDING), -n))
        return settled

    def _settle_into(self, batch: Any, entry_id: int, changes: list[tuple[CounterKey, int]]) -> bool:
        """Add the ack of an in-flight entry to ``batch``; False if it is no longer ours."""
        known = self._inflight.get(entry_id)
        if known is None:
            return False
        name, dcode = known
        if self.retention > 0:
            r = self._load_for_update(entry_id)
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

    def _settle(self, entry_id: int, slots: SlotFile | None = None) -> None:
        """Ack an in-flight entry on its own (when there is nothing to fold it into).

        ``slots``: the settling socket's slot file, which holds the entry if any slot does.
        """
        with self._lock:
            if self._closed or self._settle_held(entry_id, slots):
                return
            self._settle_stored(entry_id)

    def _settle_stored(self, entry_id: int) -> None:
        """Ack an in-flight entry that is in the store, in a write of its own (lock held)."""
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
            if self._closed:
                return
            slot = self._find(entry_id)[0] if self._slot_files else None
            if slot is not None:
                slot.clear()
                self._counts.add(slot.counter_key, -1)
                return
            known = self._inflight.pop(entry_id, None)
            if known is None:
                return
            batch = self._batch()
            batch.delete("entries", rec.encode_key(entry_id))
            self._commit(batch, [((known[0], known[1], rec.PENDING), -1)])

    def _deliver(self, entry_id: int, track: bool = True) -> Entry | None:
        """Record the handover of a redelivered entry (attempts + 1); None if it is no longer pending."""
        with self._lock:
            self._check_open()
            r = self._load_for_update(entry_id)
            if r is None or r[0] != rec.PENDING:
                return None
            r[1] += 1
            self._rewrite(entry_id, r, rec.PENDING)
            if track:
                self._inflight[entry_id] = (r[3], r[4])
            if self._observers:
                self._emit("on_redelivery", r[3], r[4], entry_id, r[1])
            return rec.entry_from_record(entry_id, r)

    def _deliver_many(self, entry_ids: Sequence[int]) -> None:
        """Record the first hand-over (attempts + 1) of entries journaled before anyone got them, in one write."""
        with self._lock:
            self._check_open()
            batch = self._batch()
            now = time.time()
            for entry_id in entry_ids:
                r = self._load_for_update(entry_id)
                if r is None or r[0] != rec.PENDING:
                    continue
                r[1] += 1
                r[6] = now
                batch.put("entries", rec.encode_key(entry_id), rec.encode_record(*r))
            if len(batch):
                self._commit(batch, [])

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
        prefetch: int = 0,
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
        """
        from zjournal.wrapping import wrap_socket

        self._check_open()
        return wrap_socket(self, sock, name, ack=ack, classify=classify, max_attempts=max_attempts, prefetch=prefetch)

    def socket(self, ctx: Any, socket_type: int, name: str | None = None, **options: Any) -> Any:
        """Create a socket of ``ctx`` and wrap it (the options of :meth:`wrap`)."""
        self._check_open()
        return self.wrap(ctx.socket(socket_type), name, **options)

    def context(self, ctx: Any = None, **options: Any) -> Any:
        """A context whose ``socket()`` returns journaled sockets (default names, these options)."""
        from zjournal.wrapping import JournaledContext

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
        from zjournal.wrapping import replay_outbound

        self._check_open()
        return replay_outbound(self, name, into, older_than)
