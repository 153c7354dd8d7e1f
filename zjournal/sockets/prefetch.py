"""Prefetch (opt-in, ``Journal.wrap(..., prefetch=N)``): read what is queued, journal it in one write.

A mixin of :class:`zjournal.JournaledSocket`. A receiving socket reads up to
N messages already queued in libzmq, journals them in one store write with
the acks that are due, and hands them out one by one from ``_State.ahead``.
Pollers see the prefetched messages through ``zjournal.sockets.pollhook``. Since
in-flight slots the default path is faster for ``next`` receivers; this
batches the store writes of ``explicit`` ones.
"""

from __future__ import annotations

from typing import Any

import zmq

from zjournal import killpoints
from zjournal.journal.entry import DIRECTION_CODES, Direction, envelope_size_of
from zjournal.sockets import confirm_wire
from zjournal.sockets.policy import AckPolicy

_IN = DIRECTION_CODES[Direction.IN]
_NOBLOCK = int(zmq.NOBLOCK)


class Prefetching:
    """The prefetch methods of a journaled socket (its state lives in ``self._s``)."""

    _s: Any
    _port: Any
    _jname: str
    _prefetch: int
    _router: bool
    _classifier: Any
    _in_policy: Any
    _confirm_received: Any  # JournaledSocket: tell a confirm=True sender its message is journaled

    def _fill(self, flags: int, track: bool) -> None:
        """Read up to ``prefetch`` queued messages and journal them, with the acks due, in one write."""
        state = self._s
        port = self._port
        done = state.deferred
        if state.settle_next:
            done.append(state.settle_next)  # the app asks for the next one: the last is done
        state.deferred, state.settle_next = [], 0
        # Handed over since the last write and still pending (``explicit``): this write counts them.
        delivered = self._uncounted(done)
        raw_recv = zmq.Socket.recv
        try:
            first = raw_recv(self, flags | _NOBLOCK, False, track)
        except zmq.Again:
            if done or delivered:
                if killpoints.ARMED:
                    killpoints.reached("ack:before-write")
                port.log_many(self._jname, _IN, [], settle=done, delivered=delivered)  # idle: the acks go now
                done, delivered = [], []
                state.handed = []
            if flags & _NOBLOCK:
                raise
            first = raw_recv(self, flags, False, track)
        messages = [self._rest_of(first, track)]
        while len(messages) < self._prefetch:
            try:
                got = raw_recv(self, _NOBLOCK, False, track)
            except zmq.Again:
                break
            messages.append(self._rest_of(got, track))
        if killpoints.ARMED:
            if done:
                killpoints.reached("ack:before-write")
            killpoints.reached("recv:before-journal")
        classifier = self._classifier
        track = self._in_policy is AckPolicy.NEXT
        if any(len(m) > 1 and m[0].startswith(confirm_wire.HEADER_MAGIC) for m in messages):
            self._fill_one_by_one(messages, done, delivered, track)
            return
        if classifier is None:
            sized = [(m, envelope_size_of(m) if self._router else 0) for m in messages]
            ids = port.log_many(self._jname, _IN, sized, settle=done, track=track, delivered=delivered)
            state.handed = []
            state.ahead.extend(zip(ids, messages, strict=True))
            state.ahead_first = ids[0]
            return
        body = (lambda m: m[1:]) if self._router else (lambda m: m)
        durable = [m for m in messages if classifier(body(m))]
        sized = [(m, envelope_size_of(m) if self._router else 0) for m in durable]
        journaled = port.log_many(self._jname, _IN, sized, settle=done, track=track, delivered=delivered)
        state.handed = []
        state.ahead_first = journaled[0] if journaled else 0
        ids = iter(journaled)
        kept = {id(m) for m in durable}
        for m in messages:
            if id(m) in kept:
                state.ahead.append((next(ids), m))
            else:
                port.count_ephemeral(self._jname)
                state.ahead.append((0, m))

    def _fill_one_by_one(self, messages: list[list[bytes]], done: list[int], delivered: list[int], track: bool) -> None:
        """Journal read-ahead messages one write each, because some came from a confirm=True sender.

        Those lose their header, are dropped when this journal holds them already
        (a resend), and are confirmed; the others are journaled as usual, in order.
        """
        port = self._port
        self._s.ahead_first = 0  # hand-overs are counted one write each here (see _hand_over)
        if done or delivered:
            port.log_many(self._jname, _IN, [], settle=done, delivered=delivered)
        self._s.handed = []
        classifier = self._classifier
        for m in messages:
            header = confirm_wire.parse_header(m[0]) if len(m) > 1 else None
            if header is not None:
                del m[0]
                entry_id = port.log_confirmed(
                    self._jname, _IN, m, header.origin, header.seq, header.floor, track=track, attempts=0
                )
                self._confirm_received(header)
                if entry_id:
                    self._s.ahead.append((entry_id, m))
            elif classifier is not None and not classifier(m[1:] if self._router else m):
                port.count_ephemeral(self._jname)
                self._s.ahead.append((0, m))
            else:
                size = envelope_size_of(m) if self._router else 0
                entry_id = port.log(self._jname, _IN, m, track=track, attempts=0, envelope_size=size)
                self._s.ahead.append((entry_id, m))

    def _hand_over(self) -> list[bytes]:
        """The next prefetched message for the application; the previous one is done."""
        state = self._s
        entry_id, frames = state.ahead.popleft()
        if entry_id:  # read ahead with attempts 0: this is its hand-over, to be counted
            slots = state.slots
            if slots is not None and state.ahead_first and not slots.inbound.entry_id:
                self._port.handed(slots, state.ahead_first, entry_id, self._in_policy is AckPolicy.NEXT)
                state.handed.append(entry_id)
            else:
                self._port.deliver_many([entry_id])
        if state.settle_next:
            state.deferred.append(state.settle_next)
        state.settle_next = entry_id if self._in_policy is AckPolicy.NEXT else 0
        if entry_id:
            state.last_id = entry_id
        return frames

    def _uncounted(self, settled: list[int]) -> list[int]:
        """Entries handed over whose hand-over no write has counted yet, but those being ``settled``."""
        handed = self._s.handed
        if not handed:
            return []
        gone = set(settled)
        return [i for i in handed if i not in gone]

    def _recv_prefetched(self, flags: int, copy: bool, track: bool) -> list[Any]:
        state = self._s
        if state.serving is not None:  # the rest of a message begun with recv()
            frames, state.serving = state.serving, None
        else:
            if not state.ahead:
                self._fill(flags, track)
            frames = self._hand_over()
        return frames if copy else [zmq.Frame(f) for f in frames]

    def _recv_frame_prefetched(self, flags: int, copy: bool, track: bool) -> Any:
        state = self._s
        if state.serving is None:
            if not state.ahead:
                self._fill(flags, track)
            frames = self._hand_over()
            if len(frames) > 1:
                state.serving = frames[1:]
            frame = frames[0]
        else:
            frame = state.serving.pop(0)
            if not state.serving:
                state.serving = None
        return frame if copy else zmq.Frame(frame)
