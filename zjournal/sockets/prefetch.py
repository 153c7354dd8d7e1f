"""Prefetch (opt-in, ``Journal.wrap(..., prefetch=N)``): read what is queued, journal it in one write.

A mixin of :class:`zjournal.JournaledSocket`. A receiving socket reads up to
N messages already queued in libzmq, journals them in one store write with
the acks that are due, and hands them out one by one from ``SocketState.ahead``.
Pollers see the prefetched messages through ``zjournal.sockets.pollhook``. Since
in-flight slots the default path is faster for ``next`` receivers; this
batches the store writes of ``explicit`` ones.
"""

from __future__ import annotations

from typing import Any

import zmq

from zjournal import killpoints
from zjournal.errors import MessageTooLargeError, StoreError
from zjournal.journal.entry import DIRECTION_CODES, Direction, envelope_size_of
from zjournal.sockets import confirm_wire
from zjournal.sockets.frames import handed, handed_all
from zjournal.sockets.libzmq import NOBLOCK
from zjournal.sockets.policy import AckPolicy

_IN = DIRECTION_CODES[Direction.IN]
READ_AHEAD_BYTES = 4 << 20  # a read-ahead batch stops growing past this many bytes of messages


def _strip_headers(messages: list[list[bytes]], at: int) -> list[confirm_wire.Header | None] | None:
    """Take the confirm header off each message that has one (at frame ``at``: 1 after a ROUTER's
    routing id); None when none had (the common case)."""
    headers: list[confirm_wire.Header | None] | None = None
    prefix = confirm_wire.PREFIX
    for i, m in enumerate(messages):
        if len(m) > at and m[at].startswith(prefix):
            header = confirm_wire.take_header(m, at)
            if header is not None:
                if headers is None:
                    headers = [None] * len(messages)
                headers[i] = header
    return headers


class _KeptBatch:
    """A batch read ahead whose journaling failed: how the next recv (or the close) journals it."""

    __slots__ = ("headers", "messages")

    def __init__(self, messages: list[list[bytes]], headers: list[Any] | None) -> None:
        self.messages = messages
        self.headers = headers

    def __call__(self, sock: Any, _frames: Any, _settle: int, confirm: bool = True) -> bool:
        return sock._journal_read_ahead(self.messages, self.headers, confirm)


def _key(header: confirm_wire.Header | None) -> tuple[bytes, int, int] | None:
    return None if header is None else (header.origin, header.seq, header.floor)


class Prefetching:
    """The prefetch methods of a journaled socket (its state lives in ``self._s``)."""

    _s: Any
    _port: Any
    _jname: str
    _prefetch: int
    _router: bool
    _classifier: Any
    _in_policy: Any
    _confirm_all: Any  # JournaledSocket: tell confirm=True senders their messages are journaled
    _refuse: Any  # JournaledSocket: tell a confirm=True sender its message is too large for this journal
    _dropped_over_frame_limit: Any  # FrameLimit: a frame over MAXMSGSIZE (zjournal.sockets.frame_limit)
    _wait_resending: Any  # JournaledSocket: a blocking wait that resends (confirm DEALER, ROUTER, PAIR)

    def _fill(self, flags: int, track: bool, asked: bool = True) -> None:
        """Read up to ``prefetch`` queued messages and journal them, with the acks due, in one write.

        ``asked``: the application asks for its next message (else a poll
        looks): the one in hand is done.
        """
        state = self._s
        if state.settle_next and asked:
            state.deferred.append(state.settle_next)  # the app asks for the next one: the last is done
            state.settle_next = 0
        if state.too_large is not None:  # in its place, once what came before it was handed over
            error, state.too_large = state.too_large, None
            raise error
        raw_recv = zmq.Socket.recv
        try:
            first = raw_recv(self, flags | NOBLOCK, False, track)
        except zmq.Again:
            if state.deferred or state.handed:
                if killpoints.ARMED:
                    killpoints.reached("ack:before-write")
                self._write_acks()  # idle: the acks go now
            if flags & NOBLOCK:
                raise
            if state.confirm is not None:
                self._wait_resending(flags)
            first = raw_recv(self, flags, False, track)
        messages, received, too_large = self._read_ahead(first, track)
        if too_large is not None:
            if not messages:
                raise too_large
            state.too_large = too_large
        if not messages:
            return  # all over the socket's MAXMSGSIZE, dropped (the acks due ride with the next write)
        if killpoints.ARMED:
            killpoints.before_journaling_received(bool(state.deferred))
        headers = _strip_headers(messages, 1 if self._router else 0)
        try:
            self._journal_read_ahead(messages, headers, received=received)
        except StoreError:
            # Out of libzmq and not journaled: kept in hand, journaled by the next recv before anything
            # else is read (or pending at close), as a single message is (see Holding._keep_unjournaled).
            state.unjournaled = (None, 0, _KeptBatch(messages, headers))
            raise

    def _read_ahead_at_poll(self) -> bool:
        """A poll found messages queued: read them ahead now (resends held already dropped); whether any is left.

        (See ConfirmInbound._readable_after_resends. The message in hand is not done: the next recv says so.)
        """
        state = self._s
        try:
            self._fill(NOBLOCK, False, asked=False)
        except zmq.Again:
            return False  # nothing queued after all
        except MessageTooLargeError as e:
            state.too_large = e  # the next recv raises it
        except StoreError:
            return True  # kept in hand (state.unjournaled): the next recv journals it
        return bool(state.ahead) or state.too_large is not None  # (none: only resends held already came)

    def _read_ahead(
        self, first: zmq.Frame, track: bool
    ) -> tuple[list[list[bytes]], list[zmq.Frame], MessageTooLargeError | None]:
        """The messages queued from ``first`` on, up to ``prefetch`` (or :data:`READ_AHEAD_BYTES`), with the
        first frame each came in (its connection's properties, for copy=False hand-overs).

        A message too large for the journal ends the batch: not among the
        messages, its error in third place (journaling the batch with it
        would refuse them all, and they are out of libzmq already).
        """
        raw_recv = zmq.Socket.recv
        limit = self._port.max_message_size
        messages: list[list[bytes]] = []
        received: list[zmq.Frame] = []
        size = 0
        got = first
        while True:
            message = self._rest_of(got, track)
            message_size = sum(len(f) for f in message)
            if message_size > limit:
                error = self._too_large(message, limit)
                if error is not None:
                    return messages, received, error
            if self._s.frame_limit is None or not self._over_frame_limit_read_ahead(message):
                messages.append(message)
                received.append(got)
                size += message_size
            if len(messages) >= self._prefetch or size >= READ_AHEAD_BYTES:
                return messages, received, None
            try:
                got = raw_recv(self, NOBLOCK, False, track)
            except zmq.Again:
                return messages, received, None

    def _over_frame_limit_read_ahead(self, message: list[bytes]) -> bool:
        """Whether a message read ahead has a frame over the socket's MAXMSGSIZE, its header off (then dropped)."""
        body = list(message)
        header = confirm_wire.take_header(body, 1 if self._router else 0)
        return self._dropped_over_frame_limit(body, header)

    def _too_large(self, message: list[bytes], limit: int) -> MessageTooLargeError | None:
        """The error of a message read ahead that the journal cannot take, None if it fits without its
        confirm header. A confirm sender is told (refused: it makes the message a dead letter)."""
        body = list(message)
        header = confirm_wire.take_header(body, 1 if self._router else 0)
        size = sum(len(f) for f in body)
        if size <= limit:
            return None
        error = MessageTooLargeError(size, limit)
        if header is not None:
            self._refuse(header.endpoint, header.origin, header.seq, error)
        return error

    def _write_acks(self) -> None:
        """Write the acks and hand-overs waiting for the next write (StoreError: they keep waiting)."""
        state = self._s
        done = state.deferred
        self._port.log_many(self._jname, _IN, [], settle=done, delivered=self._uncounted(done))
        state.deferred, state.handed = [], []

    def _journal_read_ahead(
        self,
        messages: list[list[bytes]],
        headers: list[Any] | None,
        confirm: bool = True,
        received: list[zmq.Frame] | None = None,
    ) -> bool:
        """Journal messages read ahead, with the acks due, in one write, and queue them for the application.

        Returns False: nothing is handed over here (for ``_journal_unjournaled``).
        ``confirm``: tell confirm senders (not at close: they resend, and are recognised).
        ``received``: the first frame each message came in (None: kept from an earlier read).
        """
        state = self._s
        if received is None:
            received = [None] * len(messages)
        port = self._port
        done = state.deferred
        # Handed over since the last write and still pending (``explicit``): this write counts them.
        delivered = self._uncounted(done)
        if len(messages) == 1 and headers is not None and headers[0] is not None and self._fits_the_slot(done):
            return self._journal_one_in_the_slot(messages[0], headers[0], done, confirm, received[0])
        track = self._in_policy is AckPolicy.NEXT
        classifier = self._classifier
        if classifier is None and headers is None:  # the common case: everything journaled, nothing dropped
            sized = [(m, envelope_size_of(m) if self._router else 0) for m in messages]
            ids = port.log_many(self._jname, _IN, sized, settle=done, track=track, delivered=delivered)
            state.deferred, state.handed = [], []
            state.ahead.extend(zip(ids, messages, received, strict=True))
            state.ahead_first = ids[0]
            return False
        # A confirm sender's message is always journaled (its sender classified it); the others as classified.
        body = (lambda m: m[1:]) if self._router else (lambda m: m)
        durable = [
            i
            for i, m in enumerate(messages)
            if (headers is not None and headers[i] is not None) or classifier is None or classifier(body(m))
        ]
        sized = [(messages[i], envelope_size_of(messages[i]) if self._router else 0) for i in durable]
        keys = () if headers is None else [_key(headers[i]) for i in durable]
        journaled = port.log_many(self._jname, _IN, sized, settle=done, track=track, delivered=delivered, keys=keys)
        state.deferred, state.handed = [], []
        id_of = dict(zip(durable, journaled, strict=True))
        state.ahead_first = next((i for i in journaled if i), 0)
        for i, m in enumerate(messages):
            entry_id = id_of.get(i)
            if entry_id is None:
                port.count_ephemeral(self._jname)
                state.ahead.append((0, m, received[i]))
            elif entry_id:
                state.ahead.append((entry_id, m, received[i]))
            # else: a resend this journal holds already, dropped (and confirmed again below)
        if headers is not None and confirm:
            self._confirm_all([h for h in headers if h is not None])
        return False

    def _fits_the_slot(self, done: list[int]) -> bool:
        """Whether a lone confirm message may go to the inbound slot (``next``; the slot holds at most
        the message it acks)."""
        slots = self._s.slots
        if slots is None or self._in_policy is not AckPolicy.NEXT or self._router:
            return False
        held = slots.inbound.entry_id
        return not held or held in done

    def _journal_one_in_the_slot(
        self, message: list[bytes], header: confirm_wire.Header, done: list[int], confirm: bool, received: Any
    ) -> bool:
        """One confirm message at a time (a quiet stream): the slot and its key ring, no store write.

        As fast as a plain message's path: the store write of a batch costs a
        lone message most of its latency. Acks of entries in the store (the
        batch before) are written first, once, before the slot's region is
        used again.
        """
        state = self._s
        slots = state.slots
        assert slots is not None
        held = slots.inbound.entry_id
        stored = [i for i in done if i != held]
        if stored or state.handed:
            self._port.log_many(self._jname, _IN, [], settle=stored)
            state.handed = []
        entry_id = self._port.log_held(slots.inbound, message, held, 0, slots, header)
        state.deferred = []
        state.ahead_first = -1  # journaled with its attempt (as a slot's message is): nothing to count
        if entry_id:
            state.ahead.append((entry_id, message, received))
        if confirm:
            self._confirm_all([header], later=True)  # held, batched with the next ones (ConfirmReturn.hold)
        return False

    def _hand_over(self) -> list[bytes]:
        """The next prefetched message for the application; the previous one is done.

        Its first frame as received (its connection's properties) goes to ``serving_from``.
        """
        state = self._s
        entry_id, frames, state.serving_from = state.ahead.popleft()
        if entry_id and state.ahead_first >= 0:  # read ahead with attempts 0: this hand-over is counted
            slots = state.slots
            if slots is not None and state.ahead_first and not slots.inbound.entry_id:
                self._port.handed(slots, state.ahead_first, entry_id, self._in_policy is AckPolicy.NEXT)
                state.handed.append(entry_id)
            else:
                self._port.deliver_many([entry_id])
        if state.settle_next:
            state.deferred.append(state.settle_next)
        state.settle_next = entry_id if self._in_policy is AckPolicy.NEXT else 0
        state.last_id = entry_id  # (0: ephemeral)
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
            while not state.ahead:  # (a batch of resends held already leaves nothing to hand over)
                self._fill(flags, track)
            frames = self._hand_over()
        return frames if copy else handed_all(frames, state.serving_from)

    def _recv_frame_prefetched(self, flags: int, copy: bool, track: bool) -> Any:
        state = self._s
        if state.serving is None:
            while not state.ahead:
                self._fill(flags, track)
            frames = self._hand_over()
            if len(frames) > 1:
                state.serving = frames[1:]
            frame = frames[0]
        else:
            frame = state.serving.pop(0)
            if not state.serving:
                state.serving = None
        return frame if copy else handed(frame, state.serving is not None, state.serving_from)
