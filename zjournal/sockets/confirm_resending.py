"""Sending a confirm sender's unconfirmed entries again.

A mixin of :class:`zjournal.sockets.confirm.ConfirmSender`. An entry not
confirmed within ``confirm_timeout`` seconds goes out again, oldest first, a
thousand at most per look, each resend doubling the wait for the next (see
:data:`BACKOFF_LEVELS`), under the origin of the run that first sent it:
from the background thread (a PUSH) or the application's own calls (a DEALER,
ROUTER or PAIR, which also receive). An earlier run's unconfirmed entries go
before anything new. Each resend counts an attempt; at ``max_attempts`` the
entry becomes a dead letter instead.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

import zmq

from zjournal.errors import InvalidTransitionError, StoreError, UnknownEntryError
from zjournal.journal.port import SocketPort
from zjournal.sockets import confirm_wire as wire
from zjournal.sockets.confirm_thread import TICK
from zjournal.sockets.libzmq import NOBLOCK, SNDMORE
from zjournal.sockets.routing import still_names_its_peer

log = logging.getLogger("zjournal")

_MERGE_LIMIT = wire.MERGE_LIMIT
# A resend that found the socket's queue full (its peers gone or slow) is tried again this much later, not
# at every tick: a producer whose consumer is down cost ~1.5 % of a core per socket, looking every 5 ms.
_RESEND_RETRY = 0.1
# Entries max_attempts made dead letters, remembered (the newest) for a confirmation that comes after all.
_EXPIRED_KEPT = 65_536
_COUNT_EVERY = 256  # a backlog's resends are counted (a store write) every this many
# An entry sent again k times waits confirm_timeout x 2**k before the next (k at most BACKOFF_LEVELS - 1: 32x),
# as TCP backs off its retransmissions: a ROUTER whose peer went (it drops what it cannot route, so nothing
# pauses its resends) with 20,000 unconfirmed, confirm_timeout 1, took half a core for ever without it.
BACKOFF_LEVELS = 6
# ... but never longer than this (seconds), unless confirm_timeout is: a receiver forgets a sender not heard
# from for a day (zjournal.journal.seen.IDLE_FORGET), and a live sender's resends must come well before.
BACKOFF_CAP = 300.0


class Resending:
    """A confirm sender's resends (see the module docstring)."""

    hold: Any
    resent: bool
    _shadow: zmq.Socket
    _port: Any
    _name: str
    _router: bool
    _endpoint: bytes
    _timeout: float
    _max_attempts: int | None
    _mutex: Any
    _stop: Any
    _sent_at: dict[int, float]
    _order: Any
    _unconfirmed: dict[int, float]
    _levels: list[Any]
    _ids: Any
    _backlog: Any
    _expired: dict[int, tuple[float, int]]
    _dead_letters: int
    _waits: int
    _warn_if_unconfirmed: bool
    _started: float
    _resend_checked: float
    _resend_paused_until: float
    _heard_at: float
    _overtaken_before: float
    _run_first: int
    _earlier_firsts: list[int]
    _earlier_origins: list[bytes]
    _stream_origin: bytes
    origin: bytes
    floor: Any
    _first_sent: Any

    def _origin_of(self, entry_id: int) -> bytes:
        """The origin ``entry_id`` first went out with: its run's, or the stream's for one older than runs."""
        if entry_id >= self._run_first:
            return self.origin
        run = bisect.bisect_right(self._earlier_firsts, entry_id) - 1
        return self._earlier_origins[run] if run >= 0 else self._stream_origin

    @staticmethod
    def _still_routable(port: SocketPort, entry_id: int) -> bool:
        """Whether an earlier run's entry of this ROUTER names its peer still (zjournal.sockets.routing)."""
        entry = port.load(entry_id)
        return entry is not None and still_names_its_peer(port.first_id_this_open(), entry_id, entry.envelope)

    def _send_backlog(self, noblock: int) -> None:
        """An earlier run's unconfirmed messages go first, in order (lock held)."""
        resent: list[int] = []
        try:
            while self._backlog:
                self._resend(self._backlog[0], noblock, resent, 0)
                self._backlog.popleft()
                if len(resent) >= _COUNT_EVERY:
                    self._count_attempts(resent)
        finally:
            self._count_attempts(resent)

    def _count_attempts(self, resent: list[int]) -> None:
        """Count the send of each entry ``resent`` names as an attempt, in one store write; empties it.

        After the sends, not before: a resend that found the queue full
        counts nothing. A process killed before the write leaves those sends
        uncounted (at most :data:`_COUNT_EVERY`): ``max_attempts`` then
        allows them again. One write per resend made a restarted producer's
        backlog go at 90 µs a message (2026-12-07).
        """
        if resent:
            ids = resent[:]
            resent.clear()
            self._port.resent(ids)

    def _send_frames(self, sock: zmq.Socket, frames: list[bytes], header: bytes, flags: int) -> None:
        """``frames`` behind ``header`` (after the routing id, on a ROUTER), lock held."""
        send = zmq.Socket.send
        rest = frames
        if self._router:
            send(sock, frames[0], SNDMORE | flags)  # a ROUTER drops a message whose peer is gone
            rest = frames[1:]
        send(sock, header, SNDMORE | flags)
        for frame in rest[:-1]:
            send(sock, frame, SNDMORE | flags)
        send(sock, rest[-1], flags)

    def resend_due_here(self, now: float | None = None) -> None:
        """Resend what is due, from the application's thread (sockets whose resends are not the thread's)."""
        self._resend_checked = time.monotonic() if now is None else now
        try:
            self._resend_due()
        except zmq.Again:
            pass
        except StoreError as e:  # the entries stay pending, tried again at the next look
            log.warning("journal socket %r: resend failed, tried again later: %s", self._name, e)

    def _resend_due(self, in_thread: bool = False) -> None:
        """Send again, oldest first, what waited ``confirm_timeout`` and may be lost (not merely queued).

        While receivers confirm (something within the last ``confirm_timeout``),
        an entry is sent again only once a message sent after it was
        confirmed: ZeroMQ hands a connection's messages over in order, so it
        was lost with a receiver that went, or waits at one that is stuck.
        An entry behind the last one confirmed is only queued at a receiver
        slower than the timeout, and a copy would double its load (a
        journaled PULL fed by four senders, 10,000 queued each, at 6,500
        msg/s: 59,030 copies dropped for 100,000 messages; 2026-12-07). When
        nothing is confirmed for ``confirm_timeout``, whatever waited that
        long goes again, as TCP's retransmission timer does; and as TCP, each
        resend doubles the wait before the next (:data:`BACKOFF_LEVELS`).
        The entries sent again wait in a queue per number of resends, each in
        the order of their last send: a look reads the fronts only.
        """
        now = time.monotonic()
        if now < self._resend_paused_until:
            return
        timeout = self._timeout
        # Sent at or after this time: not due while confirmations come (see above)
        late_from = self._overtaken_before if now - self._heard_at < timeout else now
        due: list[tuple[int, float, int]] = []  # (entry id, when last sent, its level)
        with self._mutex:
            unconfirmed = self._unconfirmed
            for level, wait, waiting in self._waiting_again():
                for entry_id, sent in waiting:  # oldest send first
                    if now - sent < wait or sent >= late_from or len(due) >= 1000:
                        break
                    if unconfirmed.get(entry_id) == sent:
                        due.append((entry_id, sent, level))
            # Then those sent once, oldest first (their ids' order). Indexed, not iterated: the
            # application's thread may append meanwhile.
            order, sent_at = self._order, self._sent_at
            self._first_sent()
            at = 0
            while at < len(order) and len(due) < 1000:
                entry_id = order[at]
                at += 1
                sent = sent_at.get(entry_id)
                if sent is None:
                    continue  # confirmed, or sent again (in _unconfirmed)
                if now - sent < timeout or sent >= late_from:
                    break
                due.append((entry_id, sent, 0))
        due.sort()  # oldest message first
        resent: list[int] = []
        try:
            for entry_id, sent, level in due:
                # (a short wait, not a try: an application polling the socket in a loop holds the lock most of
                # the time, and a try alone would almost never get it; from the application's thread: a try)
                if self._stop.is_set():
                    return
                if not self.hold.try_enter(TICK if in_thread else 0):
                    return  # the application is using the socket: later
                try:
                    if not self._last_sent_at(entry_id, sent):
                        continue  # sent again meanwhile (the application's send of the backlog), or confirmed
                    if self._backlog and self._backlog[0] == entry_id:
                        self._backlog.popleft()
                    self._resend(entry_id, NOBLOCK, resent, level)
                except zmq.Again:
                    self._resend_paused_until = time.monotonic() + _RESEND_RETRY
                    return  # the peers are full or gone: later
                finally:
                    self.hold.__exit__()
        finally:
            self._count_attempts(resent)

    def _waiting_again(self) -> Iterator[tuple[int, float, collections.deque[tuple[int, float]]]]:
        """Each level's queue (mutex held), what left it at its front dropped: level, its wait, queue."""
        unconfirmed = self._unconfirmed
        longest = max(self._timeout, BACKOFF_CAP)
        for level, waiting in enumerate(self._levels):
            while waiting and unconfirmed.get(waiting[0][0]) != waiting[0][1]:
                waiting.popleft()  # confirmed, or sent again since (then in the next level)
            yield level, min(self._timeout * (1 << level), longest), waiting

    def _next_due(self) -> float | None:
        """When the first entry sent again is due again (monotonic; mutex held), or None: none is."""
        fronts = [waiting[0][1] + wait for _level, wait, waiting in self._waiting_again() if waiting]
        return min(fronts, default=None)

    def _last_sent_at(self, entry_id: int, sent: float) -> bool:
        """Whether ``entry_id`` is unconfirmed and was last sent at ``sent`` (monotonic), not since."""
        with self._mutex:
            last = self._unconfirmed.get(entry_id)
            if last is None:
                last = self._sent_at.get(entry_id)
        return last == sent

    def _resend(self, entry_id: int, flags: int, resent: list[int], level: int) -> None:
        """Send an unconfirmed entry again (lock held), its id added to ``resent`` (for :meth:`_count_attempts`).

        ``level``: the resends it had (at most the last level); it waits in
        the next one. Past ``max_attempts`` it goes dead instead.
        """
        entry = self._port.load(entry_id)
        if entry is None or entry.state.value != "pending":
            self._forget(entry_id)
            return
        limit = self._max_attempts
        if limit is not None and entry.attempts >= limit:
            with contextlib.suppress(UnknownEntryError, InvalidTransitionError):  # unless confirmed meanwhile
                self._port.attempt(entry_id, limit)  # a dead letter now, its reason recorded
                with self._mutex:
                    self._dead_letters += 1
                    sent = self._unconfirmed.get(entry_id) or self._sent_at.get(entry_id) or time.monotonic()
                    self._expired[entry_id] = (sent, self._waits)
                    if len(self._expired) > _EXPIRED_KEPT:
                        del self._expired[next(iter(self._expired))]
            self._forget(entry_id)
            return
        sock = self._shadow  # (not the socket: see ConfirmSender.__init__)
        if sock._closed:
            raise zmq.ContextTerminated()  # the socket is gone: its entries stay pending, for the next wrap
        frames, floor, origin = entry.frames, self.floor(entry_id), self._origin_of(entry_id)
        if len(frames) == 1 and len(frames[0]) <= _MERGE_LIMIT and not self._router:
            zmq.Socket.send(sock, wire.encode_merged(origin, entry_id, floor, self._endpoint, frames[0]), flags)
        else:
            self._send_frames(sock, frames, wire.encode_header(origin, entry_id, floor, self._endpoint), flags)
        self.resent = True
        if self._warn_if_unconfirmed and time.monotonic() - self._started >= 2 * self._timeout:
            self._warn_if_unconfirmed = False  # (said once)
            log.warning(
                "journal socket %r: nothing it sent was confirmed in %.3g s, and it sends messages again: "
                "is its receiver running, and journaled? A plain pyzmq receiver never confirms (and sees a header, "
                "b'ZJC1...' or b'ZJC2...'), nor does a zjournal older than this one's confirm channel (2026-12-06)",
                self._name,
                time.monotonic() - self._started,
            )
        resent.append(entry_id)  # (confirmed meanwhile: not counted, and gone from the maps below already)
        now = time.monotonic()
        with self._mutex:
            if self._sent_at.pop(entry_id, None) is not None:  # sent again for the first time
                self._ids.append(entry_id)  # (ascending: resends go oldest first, each after those before)
            elif self._unconfirmed.pop(entry_id, None) is None:
                return  # confirmed meanwhile
            self._unconfirmed[entry_id] = now  # (at the end: sent last)
            self._levels[min(level + 1, BACKOFF_LEVELS - 1)].append((entry_id, now))

    def _forget(self, entry_id: int) -> None:
        """``entry_id`` waits for no confirmation any more (settled or dead meanwhile)."""
        with self._mutex:
            self._sent_at.pop(entry_id, None)
            self._unconfirmed.pop(entry_id, None)
