"""The receiving side of end-to-end confirms: a confirm sender's message journaled, its header off, confirmed.

A mixin of :class:`zjournal.JournaledSocket` (its state lives in ``self._s``).
Every journaled receiving socket understands a ``confirm=True`` sender's
header (zjournal.sockets.confirm_wire) without an option: the header comes
off before the application sees anything, the message is journaled with its
dedup key (a resend this journal holds is dropped), and its confirmation is
held by the socket's :class:`~zjournal.sockets.confirm_return.ConfirmReturn`, to go
back in a batch. The commonest case, one frame into a free slot, is inlined
in ``JournaledSocket.recv``; what is here is everything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import zmq

from zjournal import killpoints
from zjournal.errors import MessageTooLargeError, StoreError
from zjournal.journal.entry import DIRECTION_CODES, Direction, envelope_size_of
from zjournal.sockets import confirm_wire
from zjournal.sockets.confirm_return import ConfirmReturn
from zjournal.sockets.frames import handed
from zjournal.sockets.libzmq import NOBLOCK, base_recv
from zjournal.sockets.policy import AckPolicy

if TYPE_CHECKING:
    from zjournal.journal.inflight import SlotFile

_IN = DIRECTION_CODES[Direction.IN]
_parse_header = confirm_wire.parse_header
_take_header = confirm_wire.take_header
CONFIRM_READ_AHEAD = 256  # messages a receiver of a confirm sender reads ahead and journals in one write


class ConfirmInbound:
    """The confirm-receiving methods of a journaled socket (its state lives in ``self._s``)."""

    _s: Any
    _port: Any
    _jname: str
    _prefetch: int
    _router: bool
    _is_rep: bool
    _in_policy: Any
    _handler: Any
    context: Any
    _inbound: Any  # JournaledSocket: journal a received message (the general path)
    _received_held: Any
    _recv_multipart_live: Any
    _update_fast_paths: Any
    _holds_message: Any
    _read_ahead_at_poll: Any  # Prefetching
    recv: Any

    def _recv_confirmed_frame(
        self, first: zmq.Frame, settle: int, flags: int, copy: bool, track: bool, more: bool = False
    ) -> Any:
        """recv() met a confirm header: read the whole message, journal it, give out its first frame.

        ``more``: ``first`` is a copy of the frame read (its ``more`` flag lost), the rest is queued.
        """
        state = self._s
        frames = [first.bytes]
        if more or first.more:
            got = base_recv(self, 0, False, track)
            body = got.bytes
            if not got.more and state.fast_in is not None and not killpoints.ARMED:
                # The common case, the header and one frame: into the slot, in one call.
                header = _parse_header(frames[0])
                if header is not None:
                    if self._journal_confirmed_frame(state, body, settle, *header):
                        return body if copy else got
                    return self._recv_after_resend(flags, copy, track)
            frames.append(body)
            while got.more:
                got = base_recv(self, 0, False, track)
                frames.append(got.bytes)
        if state.fast_in is not None:
            journaled = self._confirmed_in_the_slot(frames, settle, state)
        else:
            journaled = self._inbound(frames, settle)
        if not journaled:
            return self._recv_after_resend(flags, copy, track)
        if len(frames) > 1:
            state.serving = frames[1:]
            state.serving_from = first
        return frames[0] if copy else handed(frames[0], len(frames) > 1, first)

    def _recv_merged(self, got: zmq.Frame, data: bytes, settle: int, flags: int, copy: bool, track: bool) -> Any:
        """recv()'s one frame that starts as a merged frame does but is not one (or a test's kill point is armed)."""
        frames = [data]
        if not self._received_held(self._s.fast_in, frames, settle):
            return self._recv_after_resend(flags, copy, track)
        body = frames[0]
        return body if copy else got if body is data else handed(body, False, got)

    def _readable_after_resends(self) -> bool:
        """libzmq has a message queued: whether one is left for the application once the resends this
        journal holds already are dropped (for zjournal.sockets.pollhook).

        A poll must not report a socket readable for a resend the
        application never sees: a blocking ``recv`` after it would wait for
        the next message. So the poll reads the next message: a resend held
        already is dropped (counted, confirmed again) and the one after it
        read; another is kept whole for the next ``recv``, which journals it
        as it would have (``state.peeked``; one of several frames is held as
        an unjournaled one is). A socket that reads ahead reads ahead now.
        Others (a REP, a message half read, a redelivery under way) are
        reported as libzmq sees them.
        """
        state = self._s
        if state.fast_in is None or state.rx is not None or state.serving is not None or state.peeked is not None:
            return self._readable_off_the_fast_path()
        while True:
            try:
                got = base_recv(self, NOBLOCK, False, False)
            except zmq.Again:
                return False  # only resends held already were queued
            if not got.more:  # the common case: one frame, merged with its header if a confirm sender's
                data = got.bytes
                last = state.last_sender
                if not data.startswith(confirm_wire.PREFIX) or not (
                    (
                        last.end
                        and data.startswith(last.front)
                        and data.startswith(last.back, confirm_wire.SEQ_FLOOR_END)
                    )
                    or last.switch(data)
                    or last.learn(data)
                ):
                    state.peeked = got  # not a confirm sender's
                    return True
                seq = confirm_wire.unpack_seq_floor(data, confirm_wire.ORIGIN_END)[0]
                if not self._dropped_if_held(last.endpoint, last.origin, seq):
                    state.peeked = got
                    return True
                continue
            if self._kept_whole(got):
                return True

    def _readable_off_the_fast_path(self) -> bool:
        """:meth:`_readable_after_resends` of a socket off the inline fast path (a ROUTER, say).

        Its next message is read whole, as above; a socket that holds a
        message or reads ahead, a REP, a message half read or a redelivery
        under way is reported as is.
        """
        state = self._s
        if self._holds_message():
            return True
        if (
            state.rx is not None
            or state.serving is not None
            or state.redelivery is not None
            or state.local is not None
            or self._is_rep
        ):
            return True
        if self._prefetch:
            return self._read_ahead_at_poll()
        while True:
            try:
                got = base_recv(self, NOBLOCK, False, False)
            except zmq.Again:
                return False  # only resends held already were queued
            if self._kept_whole(got):
                return True

    def _kept_whole(self, got: zmq.Frame) -> bool:
        """A poll read ``got``: the rest of its message read, dropped if a resend held already, else kept.

        Kept as an unjournaled message is, for the next ``recv`` to journal
        as it would have (:meth:`_journal_peeked`).
        """
        state = self._s
        first = got
        frames = [got.bytes]
        while got.more:  # (the rest is there: a message is queued whole)
            got = base_recv(self, 0, False, False)
            frames.append(got.bytes)
        at = 1 if self._router else 0  # (after a ROUTER's routing id)
        header = None
        if len(frames) > at and frames[at].startswith(confirm_wire.PREFIX):
            header = _take_header(frames, at)  # (off now: the recv journals it without parsing it again)
            if header is not None and self._dropped_if_held(header.endpoint, header.origin, header.seq):
                return False
        if state.frame_limit is not None and self._dropped_over_frame_limit(frames, header):
            return False
        if header is not None:
            state.peeked_header = header
        if header is None and state.routed is not None:
            state.rx_origin = state.routed.origin_of(first)  # a journaled REQ's, as _recv_multipart_live reads it
        state.unjournaled = (frames, 0, ConfirmInbound._journal_peeked)
        if state.fast_in is not None:
            self._update_fast_paths()  # (off: the next recv takes what is kept)
        return True

    def _dropped_if_held(self, endpoint: str, origin: bytes, seq: int) -> bool:
        """Whether the journal holds ``(origin, seq)`` already: then its resend is dropped, counted, confirmed again."""
        if not self._port.holds(origin, seq):
            return False
        self._port.drop_resend()
        (self._s.confirm_return or self._new_confirm_return()).hold(endpoint, origin, seq)
        return True

    def _journal_peeked(self, frames: list[bytes], _settle: int) -> bool:
        """A message a poll read whole (:meth:`_kept_whole`): journaled by the recv that takes it, which acks the
        one before."""
        state = self._s
        settle, state.settle_next = state.settle_next, 0
        state.rx_redelivered = 0  # (a live message: JournaledSocket._journal_new)
        header = state.peeked_header
        if header is None:
            return self._inbound(frames, settle)
        state.peeked_header = None
        if killpoints.ARMED:
            killpoints.before_journaling_received(bool(settle))
        try:
            return self._inbound_confirmed(frames, settle, header)
        except StoreError:
            state.peeked_header = header  # (its frames are kept for the next recv: _journal_unjournaled)
            raise

    def _recv_after_resend(self, flags: int, copy: bool, track: bool) -> Any:
        """recv() read a resend this journal holds already (dropped): the next message instead."""
        state = self._s
        if state.redelivery is not None or state.local is not None:
            return self.recv(flags, copy, track)
        frames = self._recv_multipart_live(flags, copy, track)
        if len(frames) > 1:
            # (copy=False: frames as received, or made by _frames_of, each with its more flag and properties)
            state.serving = frames[1:] if copy else [frame.bytes for frame in frames[1:]]
            state.serving_from = None if copy else frames[0]
        return frames[0]

    def _hold_confirmed_behind(self, frames: list[bytes], header: confirm_wire.Header) -> None:
        """A confirm sender's live message during redelivery: journaled (unless held already), confirmed."""
        try:
            self._port.log_confirmed(
                self._jname, _IN, frames, header.origin, header.seq, header.floor, track=False, attempts=0
            )
        except MessageTooLargeError as e:
            self._refuse(header.endpoint, header.origin, header.seq, e)
            raise
        self._confirm_received(header)

    def _refuse(self, endpoint: str, origin: bytes, seq: int, error: MessageTooLargeError) -> None:
        """A confirm sender's message this journal will never take: its sender is told, and stops sending it.

        (It makes it a dead letter with ``error``'s text, as a RabbitMQ
        publisher gets a ``basic.nack``. Resent, it would be refused again
        every ``confirm_timeout``, an error in the application's ``recv`` each time.)
        """
        (self._s.confirm_return or self._new_confirm_return()).refuse(endpoint, origin, seq, str(error))

    def _confirm_received(self, header: confirm_wire.Header) -> None:
        """Tell the sender of a confirm=True message that this journal holds it (soon, batched)."""
        self._confirm_all([header], later=True)

    def _confirm_all(self, headers: list[confirm_wire.Header], later: bool = False) -> None:
        """Tell the senders of these journaled confirm=True messages: one confirm message per sender.

        ``later``: held, batched with the next ones (see ConfirmReturn.confirm_many).
        """
        back = self._s.confirm_return or self._new_confirm_return()
        if len(headers) == 1:
            header = headers[0]
            back.confirm_many(header.endpoint, header.origin, [header.seq], later)
        else:
            by_sender: dict[tuple[str, bytes], list[int]] = {}
            for header in headers:
                by_sender.setdefault((header.endpoint, header.origin), []).append(header.seq)
            for (endpoint, origin), seqs in by_sender.items():
                back.confirm_many(endpoint, origin, seqs)
        if not self._prefetch and self._can_read_ahead():
            # A confirm sender streams to an ``explicit`` socket (whose entries the slot cannot hold):
            # from now on read what is queued and journal it, dedup keys included, one write per batch
            # (prefetch), not one write per message.
            self._prefetch = CONFIRM_READ_AHEAD
            self._update_fast_paths()

    def _can_read_ahead(self) -> bool:
        """Whether reading ahead keeps this socket's behaviour (as ``prefetch=`` would) and is cheaper."""
        return (
            self._in_policy is AckPolicy.EXPLICIT  # (``next`` takes the slot: as fast, and no store write at all)
            and not self._is_rep
            and not self._router
            and self._s.slots is not None  # hand-overs recorded in the slot file, not one write each
        )

    def _confirmed_in_the_slot(self, frames: list[bytes], settle: int, state: Any) -> bool:
        """The fast paths' message that starts with a confirm header: journaled in the slot (False: a dropped resend).

        As fast as a plain message: no store write. The slot's overwrite acks
        the message before, the dedup key goes to the slot file's key ring
        (the store takes a ring's keys in one write), and the confirmation is
        held, to go back with others (ConfirmReturn.hold).
        """
        slots = state.slots
        held = slots.inbound.entry_id
        if (held and held != settle) or killpoints.ARMED:
            return self._inbound(frames, settle)  # the slot is taken: the general path
        if len(frames) == 1:  # a merged frame (recv_multipart's common case): its sender compared, not parsed
            merged = state.last_sender.parse(frames[0])
            if merged is not None:
                origin, seq, floor, endpoint, frames[0] = merged
                state.merged_next = True  # (recv_multipart takes recv's path for the next ones)
                return self._journal_confirmed_frame(state, frames[0], settle, origin, seq, floor, endpoint) != 0
        header = _take_header(frames)
        if header is None:
            return self._inbound(frames, settle)  # not a header after all
        return self._journal_confirmed_in_the_slot(slots, frames, settle, header, state)

    def _journal_confirmed_in_the_slot(
        self,
        slots: SlotFile,
        frames: list[bytes],
        settle: int,
        header: confirm_wire.Header,
        state: Any,
        envelope_size: int = 0,
    ) -> bool:
        """A confirm sender's message, its header off, into the free (or settled) inbound slot; False: a resend.

        ``envelope_size``: a ROUTER's (its routing id first, for replay and redelivery).
        """
        if len(frames) == 1:
            return self._journal_confirmed_frame(state, frames[0], settle, *header) != 0
        try:
            entry_id = self._port.log_held(slots.inbound, frames, settle, envelope_size, slots, header)
        except MessageTooLargeError as e:
            self._refuse(header.endpoint, header.origin, header.seq, e)
            raise
        self._hold_confirmation(state, header)
        state.last_id = state.settle_next = entry_id
        return entry_id != 0

    def _journal_confirmed_frame(
        self, state: Any, data: bytes, settle: int, origin: bytes, seq: int, floor: int, endpoint: str
    ) -> int:
        """A confirm sender's one-frame message, its header off, into the slot (SocketPort.log_keyed); 0: a resend."""
        try:
            entry_id = state.last_id = state.settle_next = self._port.log_keyed(
                state.slots, data, settle, origin, seq, floor
            )
        except MessageTooLargeError as e:
            self._refuse(endpoint, origin, seq, e)
            raise
        (state.confirm_return or self._new_confirm_return()).hold(endpoint, origin, seq)  # a resend: confirmed again
        return entry_id

    def _hold_confirmation(self, state: Any, header: confirm_wire.Header) -> None:
        (state.confirm_return or self._new_confirm_return()).hold(header.endpoint, header.origin, header.seq)

    def _new_confirm_return(self) -> ConfirmReturn:
        """This socket's ConfirmReturn, made at its first confirm message."""
        back = self._s.confirm_return = ConfirmReturn(self._port, self.context)
        return back

    def _inbound_confirmed(self, frames: list[bytes], settle: int, header: confirm_wire.Header) -> bool:
        """A message of a confirm=True sender, its header off: journal it unless held already, confirm it.

        In the socket's slot with its key in the key ring when the slot is free
        (``next``); else in the store with its dedup key, in one write. A store
        error leaves it unconfirmed: its sender sends it again.
        """
        state = self._s
        if state.frame_limit is not None and self._dropped_over_frame_limit(frames, header):
            return False  # (the ack of the message before waits for the next one's write)
        policy = self._in_policy
        slots = state.slots
        if (
            slots is not None
            and policy is AckPolicy.NEXT
            and self._handler is None
            and not killpoints.ARMED
            and slots.inbound.entry_id in (0, settle)
        ):  # the slot, as on the fast paths (a ROUTER, or a DEALER that sends with confirm=True, say)
            envelope_size = envelope_size_of(frames) if self._router else 0
            return self._journal_confirmed_in_the_slot(slots, frames, settle, header, state, envelope_size)
        try:
            entry_id = self._port.log_confirmed(
                self._jname,
                _IN,
                frames,
                header.origin,
                header.seq,
                header.floor,
                settle=settle,
                track=policy is not AckPolicy.EXPLICIT,
                envelope_size=envelope_size_of(frames) if self._router else 0,
            )
        except MessageTooLargeError as e:
            self._refuse(header.endpoint, header.origin, header.seq, e)
            raise
        self._confirm_received(header)  # a resend is confirmed again
        if not entry_id:
            state.settle_next = 0
            return False
        state.last_id = entry_id
        if policy is AckPolicy.NEXT:
            state.settle_next = entry_id
        elif policy is AckPolicy.REPLY:
            state.awaiting_reply = entry_id
        else:
            state.settle_next = 0
        if self._handler is not None:
            self._handler.on_inbound(self, entry_id, frames)
        return True
