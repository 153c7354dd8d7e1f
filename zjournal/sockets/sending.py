"""Sending on a journaled socket: every whole outbound message journaled before it moves.

A mixin of :class:`zjournal.JournaledSocket` (its state lives in ``self._s``).
pyzmq routes every ``send_*`` through :meth:`Sending.send`; frames sent with
SNDMORE are kept in Python until the last one, and the whole message is
journaled before its first frame reaches libzmq (libzmq moves nothing of a
multipart message before its last frame). ``confirm=True`` sockets hand the
message to their :class:`zjournal.sockets.confirm.ConfirmSender`; the common
cases (one bytes frame, blocking) are inlined in :meth:`Sending.send`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import zmq

from zjournal import killpoints
from zjournal.journal.entry import DIRECTION_CODES, Direction
from zjournal.sockets.libzmq import EVENTS, NOBLOCK, POLLOUT, SNDMORE, base_send
from zjournal.sockets.policy import AckPolicy
from zjournal.sockets.redelivery import as_bytes
from zjournal.sockets.replying import send_frames

if TYPE_CHECKING:
    from zjournal.journal.inflight import Slot

_OUT = DIRECTION_CODES[Direction.OUT]


class Sending:
    """The sending methods of a journaled socket (its state lives in ``self._s``)."""

    _s: Any
    _port: Any
    _jname: str
    _router: bool
    _out_policy: Any
    _handler: Any
    _classifier: Any
    _answering: Any
    _send_reply: Any
    _resend_hold: Any

    def send(
        self,
        data: Any,
        flags: int = 0,
        copy: bool = True,
        track: bool = False,
        routing_id: int | None = None,
        group: str | None = None,
    ) -> Any:
        state = self._s
        # The common cases, inlined (a call here costs ~15%): one whole bytes frame, blocking.
        if not flags and type(data) is bytes and state.tx is None and routing_id is None and group is None:
            slot = state.fast_out
            if slot is not None:  # acked once ZeroMQ took it (_send_held does the same for send_multipart)
                settle = state.settle_sent
                state.settle_sent = 0
                entry_id = self._port.log_held(slot, [data], settle, int(self._router))
                state.last_id = entry_id
                if killpoints.ARMED:
                    killpoints.reached("send:after-journal")
                try:
                    result = base_send(self, data, 0, copy, track)
                except BaseException:
                    self._port.unlog(entry_id)
                    raise
                state.settle_sent = entry_id
                return result
            confirm = state.fast_confirm
            if confirm is not None and copy and not track:  # confirm=True: pending until a receiver confirms
                confirm.send_bytes(self, data)
                state.last_id = confirm.last_sent
                return None
        policy = self._out_policy
        if policy is None:  # a REP's reply: not journaled, but it acks the request
            return self._send_reply(data, flags, copy, track, routing_id, group)
        if flags & SNDMORE and routing_id is None and group is None:
            return self._send_more(data, flags, copy, track)
        try:
            frame = as_bytes(data)
        except TypeError:
            frame = None
        if frame is None:
            self._s.tx = None
            self._s.tx_parts = []
            return super().send(data, flags, copy, track, routing_id, group)  # pyzmq's own error
        frames = self._s.tx
        if frames is None:
            return self._send_whole(
                [frame], flags, lambda: zmq.Socket.send(self, data, flags, copy, track, routing_id, group)
            )
        frames.append(frame)
        parts = self._s.tx_parts
        self._s.tx = None
        self._s.tx_parts = []

        def move() -> Any:
            raw_send = zmq.Socket.send
            for part, part_flags in parts:
                raw_send(self, part, part_flags, copy, track)
            return raw_send(self, data, flags, copy, track, routing_id, group)

        return self._send_whole(frames, flags, move)

    def _send_more(self, data: Any, flags: int, copy: bool, track: bool) -> Any:
        """A frame sent with SNDMORE: kept in Python until the last one, so that a message refused
        then (too large, disk full) reaches no peer, in part or whole, and the socket stays usable."""
        try:
            frame = as_bytes(data)
        except TypeError:
            frame = None
        if frame is None:
            return super().send(data, flags, copy, track)  # pyzmq's own TypeError
        state = self._s
        if state.tx is None:
            if state.requests is not None:
                state.requests.check_turn()
            # libzmq decides at the first frame whether a message can be queued: so does this.
            if flags & NOBLOCK:
                with self._resend_hold() or contextlib.nullcontext():  # (a confirm PUSH's thread may be sending)
                    writable = zmq.Socket.get(self, EVENTS) & POLLOUT
                if not writable:
                    raise zmq.Again()
            state.tx = []
            state.tx_parts = []
        if copy and not track and not isinstance(data, zmq.Frame):
            part, result = frame, None
        else:  # the caller gets this frame's tracker now, as from pyzmq
            part = data if isinstance(data, zmq.Frame) else zmq.Frame(data, track=track, copy=copy)
            result = part.tracker if track else None
        state.tx.append(frame)
        state.tx_parts.append((part, flags))
        return result

    def send_multipart(
        self, msg_parts: Sequence[Any], flags: int = 0, copy: bool = True, track: bool = False, **kwargs: Any
    ) -> Any:
        state = self._s
        if self._out_policy is None or kwargs or state.tx is not None:
            return super().send_multipart(msg_parts, flags, copy, track, **kwargs)
        parts = list(msg_parts)
        slot = state.fast_out
        if slot is not None and not flags and parts and all(type(p) is bytes for p in parts):
            return self._send_held(slot, parts, copy, track)
        confirm = state.fast_confirm
        if confirm is not None and len(parts) == 1 and not flags and type(parts[0]) is bytes and copy and not track:
            confirm.send_bytes(self, parts[0])  # one frame: as send() sends it (merged with its header)
            state.last_id = confirm.last_sent
            return None
        try:
            frames = [as_bytes(p) for p in parts]
        except TypeError:
            frames = None
        if not frames:  # pyzmq's own error (raised outside the except: not chained onto ours)
            return super().send_multipart(parts, flags, copy, track)

        def move() -> Any:
            raw_send = zmq.Socket.send
            for part in parts[:-1]:
                raw_send(self, part, SNDMORE | flags, copy, track)
            return raw_send(self, parts[-1], flags, copy, track)

        return self._send_whole(frames, flags, move)

    def _send_held(self, slot: Slot, frames: list[bytes], copy: bool, track: bool) -> Any:
        """send_multipart's common case: whole bytes frames, blocking, journaled in the slot, acked once sent."""
        state = self._s
        settle = state.settle_sent
        state.settle_sent = 0
        entry_id = state.last_id = self._port.log_held(slot, frames, settle, int(self._router))
        routed = state.routed
        answered = self._answering(routed, frames) if routed is not None and routed.in_hand else None
        if killpoints.ARMED:
            killpoints.reached("send:after-journal")
        try:
            for frame in frames[:-1]:
                base_send(self, frame, SNDMORE, copy, track)
            result = base_send(self, frames[-1], 0, copy, track)
        except BaseException:
            self._port.unlog(entry_id)
            raise
        state.settle_sent = entry_id
        if answered is not None and answered.also_to is not None:
            send_frames(self, answered.also_to)
        return result

    def _send_whole(self, frames: list[bytes], flags: int, move: Callable[[], Any]) -> Any:
        """Journal a whole outbound message, let ``move`` hand it to libzmq, then apply the ack policy.

        A message whose move fails leaves no entry behind.
        """
        confirm = self._s.confirm
        if confirm is not None:
            result = confirm.send(frames, flags, move, self._classifier)
            self._s.last_id = confirm.last_sent
            return result
        requests = self._s.requests
        if requests is not None:
            requests.check_turn()
        entry_id = self._journal_out(frames, flags)
        routed = self._s.routed
        answered = self._answering(routed, frames) if routed is not None and routed.in_hand else None
        if killpoints.ARMED:
            killpoints.reached("send:after-journal")
        try:
            result = move()
        except BaseException:
            if entry_id:
                self._port.unlog(entry_id)
            raise
        if answered is not None and answered.also_to is not None:
            send_frames(self, answered.also_to)
        if entry_id:
            self._sent(entry_id)
        if requests is not None:
            requests.sent(frames, entry_id)
        if self._handler is not None:
            self._handler.on_outbound(self, frames)
        return result

    def _journal_out(self, frames: list[bytes], flags: int) -> int:
        """Journal an outbound message before it moves; 0 when it is ephemeral."""
        if flags & NOBLOCK and not zmq.Socket.get(self, EVENTS) & POLLOUT:
            raise zmq.Again()  # would not be taken: journal nothing
        classifier = self._classifier
        if classifier is not None and not classifier(frames[1:] if self._router else frames):
            self._port.count_ephemeral(self._jname)
            self._s.last_id = 0  # (so that ack() and nack() never take an earlier entry for this message)
            return 0
        policy = self._out_policy
        state = self._s
        settle = state.settle_sent
        state.settle_sent = 0
        # Slots hold what this socket settles itself; a plugin's policy settles elsewhere: the store.
        if state.slots is not None and policy is not AckPolicy.EXPLICIT and self._handler is None:
            entry_id = self._port.log_held(state.slots.outbound, frames, settle, 1 if self._router else 0)
        else:
            entry_id = self._port.log(
                self._jname,
                _OUT,
                frames,
                settle=settle,
                track=policy is not AckPolicy.EXPLICIT,
                envelope_size=1 if self._router else 0,
            )
        state.last_id = entry_id
        return entry_id

    def _sent(self, entry_id: int) -> None:
        policy = self._out_policy
        if policy is AckPolicy.SENT:
            self._s.settle_sent = entry_id  # folded into the next append, or settled at close
        elif policy is AckPolicy.REPLY:
            self._s.awaiting_reply = entry_id
