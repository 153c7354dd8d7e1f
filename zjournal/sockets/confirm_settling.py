"""Taking in a confirm sender's confirmations, and settling the entries they name.

A mixin of :class:`zjournal.sockets.confirm.ConfirmSender`. Receivers'
confirm messages arrive on its intake socket (zjournal.sockets.confirm_channel).
Whichever thread reads them (the application's, every few sends; the
background thread, when the application is idle) queues the ids in
``_confirmed``; :meth:`Settling._settle_confirmed` acks them in the journal,
in one write per batch. A refusal makes its entries dead letters, and a
confirmation for an entry already dead at ``max_attempts`` acks it after all.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import zmq

from zjournal.errors import InvalidTransitionError, UnknownEntryError
from zjournal.journal.entry import DIRECTION_CODES, Direction
from zjournal.sockets import confirm_wire as wire
from zjournal.sockets.libzmq import NOBLOCK

log = logging.getLogger("zjournal")

_OUT = DIRECTION_CODES[Direction.OUT]


class Settling:
    """A confirm sender's intake of confirmations and their settling (see the module docstring)."""

    stream: bytes
    settled_hook: Any
    _port: Any
    _name: str
    _box: Any
    _intake: Any
    _intake_lock: Any
    _mutex: Any
    _confirmed: Any
    _sent_at: dict[int, float]
    _unconfirmed: dict[int, float]
    _expired: dict[int, tuple[float, int]]
    _settling: int
    _dead_letters: int
    _waits: int
    _warn_if_unconfirmed: bool
    _heard_at: float
    _overtaken_before: float
    _first_sent: Any

    def _take_confirms_now(self) -> None:
        """From the application's send, every few sends: take in and settle what came back.

        While the application sends, it does this rather than the thread: two
        threads passing the GIL back and forth at every confirmation cost the
        sender more than the work itself.
        """
        if self._intake_lock.acquire(blocking=False):
            try:
                self._take_confirms()
            except zmq.ZMQError:
                pass  # the context is closing: the thread ends, the entries stay pending
            finally:
                self._intake_lock.release()
        if self._confirmed:
            self._settle_confirmed()

    def _take_confirms(self) -> None:
        """Read the confirm messages waiting (intake lock held)."""
        confirmed: list[int] = []
        for _ in range(1000):
            try:
                frames = self._intake.recv_multipart(NOBLOCK)
            except zmq.Again:
                break
            got = wire.parse_confirms(frames)
            if got is None:
                refusal = wire.parse_refusal(frames)
                if refusal is not None and refusal[0].startswith(self.stream):
                    self._warn_if_unconfirmed = False
                    self._confirmed.append((refusal[1], refusal[2]))  # (settled as dead letters: _settle_confirmed)
                continue
            if not got[0].startswith(self.stream):
                continue  # not a confirm message of this socket's (any run of its stream): nothing is acked by it
            confirmed += got[1]
        if confirmed:
            self._warn_if_unconfirmed = False
            self._confirmed.append(confirmed)

    def _settle_confirmed(self) -> None:
        """Ack what the receivers confirmed (from either thread: each list is taken by one)."""
        mine: list[int] = []
        sent_at: list[float] = []  # when each was last sent: its confirmation's round trip is from then
        refused: list[tuple[list[int], str]] = []
        late: list[int] = []  # dead letters at max_attempts, confirmed after all
        confirmed = self._confirmed
        with self._mutex:
            take, take_resent = self._sent_at.pop, self._unconfirmed.pop
            while confirmed:
                try:
                    ids = confirmed.popleft()
                except IndexError:
                    break
                if ids.__class__ is tuple:  # a refusal: (ids, reason)
                    ids, reason = ids
                    ids = [i for i in ids if take(i, None) is not None or take_resent(i, None) is not None]
                    refused.append((ids, reason))
                    self._settling += len(ids)
                    continue
                times = [take(i, None) for i in ids]
                if None in times:  # sent again, or confirmed twice (a resend), or settled meanwhile
                    times = [take_resent(i, None) if t is None else t for i, t in zip(ids, times, strict=True)]
                    if self._expired:
                        late += [i for i, t in zip(ids, times, strict=True) if t is None and i in self._expired]
                    ids = [i for i, t in zip(ids, times, strict=True) if t is not None]
                    times = [t for t in times if t is not None]
                mine += ids
                sent_at += times
            self._first_sent()  # (the confirmed ids leave _order's front)
            self._settling += len(mine)
        if mine:
            now = self._heard_at = time.monotonic()
            newest = max(sent_at)
            if newest > self._overtaken_before:
                self._overtaken_before = newest
            try:
                self._port.settle_many(self._name, _OUT, mine, self._box)
            finally:
                with self._mutex:
                    self._settling -= len(mine)
            self._port.confirmed(len(mine), now * len(mine) - sum(sent_at), now - min(sent_at))
        if refused:
            self._settle_refused(refused)
        if late:
            self._settle_late(late)
        if mine or refused or late:
            hook = self.settled_hook
            if hook is not None:
                hook()

    def _settle_late(self, late: list[int]) -> None:
        """Ack dead letters a receiver confirmed after all: the message reached its journal (it was queued
        longer than ``max_attempts`` sends took), so it is no dead letter, and a replay would send it twice."""
        late = list(dict.fromkeys(late))  # (confirmed twice in one go: its original and a resend)
        acked = self._port.ack_dead(late)
        with self._mutex:
            gone = [self._expired.pop(entry_id, (0.0, -1)) for entry_id in late]
            gone = [sent_wait for entry_id, sent_wait in zip(late, gone, strict=True) if entry_id in acked]
            sent_at = [sent for sent, _wait in gone]
            # Those no wait told of yet leave the count (a wait that was told of the others said so already).
            self._dead_letters -= sum(1 for _sent, wait in gone if wait == self._waits)
        if acked:
            now = self._heard_at = time.monotonic()
            self._port.confirmed(len(acked), now * len(acked) - sum(sent_at), now - min(sent_at))
            log.info(
                "journal socket %r: %d dead letter(s) confirmed by a receiver after all (they waited in its queue "
                "longer than max_attempts sends took): acked",
                self._name,
                len(acked),
            )

    def _settle_refused(self, refused: list[tuple[list[int], str]]) -> None:
        """Make what receivers refused dead letters, with their reason (the ids are out of the maps already)."""
        self._heard_at = time.monotonic()  # (a receiver answers: it is there)
        for ids, reason in refused:
            dead = 0
            try:
                for entry_id in ids:
                    with contextlib.suppress(UnknownEntryError, InvalidTransitionError):  # settled meanwhile
                        self._port.dead(entry_id, f"refused by the receiving journal: {reason}")
                        dead += 1
            finally:
                with self._mutex:
                    self._settling -= len(ids)
                    self._dead_letters += dead
            if dead:
                log.warning(
                    "journal socket %r: %d message(s) refused by a receiver, now dead letters: %s",
                    self._name,
                    dead,
                    reason,
                )
