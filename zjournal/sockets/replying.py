"""Request and reply on journaled sockets: a REQ's resends, a REP's and a ROUTER's answers to them.

A mixin of :class:`zjournal.JournaledSocket` (its state lives in ``self._s``).
A journaled REQ resends its request until the reply comes
(zjournal.sockets.requests) and carries its origin, so that a journaled REP
or ROUTER recognises a resend: a copy of the request in hand is not handed
over twice, and the resend of one answered to nobody (its requester's pipe
was gone) gets the kept reply without the application. A reply acks its
request (the ``reply`` policy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from zjournal.errors import StoreError
from zjournal.journal.entry import DIRECTION_CODES, Direction
from zjournal.sockets.libzmq import EVENTS, NOBLOCK, POLLIN, RCVMORE, SNDMORE, base_get, base_recv, base_send
from zjournal.sockets.policy import AckPolicy
from zjournal.sockets.redelivery import as_bytes
from zjournal.sockets.requests import (
    EarlierRequests,
    RequestResends,
    announce_origin,
    carries_request_id,
    origin_in,
    origin_of,
)

if TYPE_CHECKING:
    from zjournal.journal.port import SocketPort
    from zjournal.sockets.requesters import InHand, RouterRequests

_OUT = DIRECTION_CODES[Direction.OUT]


def send_frames(sock: zmq.Socket, frames: list[bytes]) -> None:
    """libzmq's send of a whole message, not journaled (an answer zjournal gives for the application)."""
    for frame in frames[:-1]:
        base_send(sock, frame, SNDMORE)
    base_send(sock, frames[-1], 0)


class Replying:
    """The request/reply methods of a journaled socket (its state lives in ``self._s``)."""

    _s: Any
    _port: Any
    _max_attempts: int | None
    _in_policy: Any
    _out_policy: Any
    context: Any
    _inbound: Any  # JournaledSocket: journal a received message (the general path)
    _rest_of: Any
    _update_fast_paths: Any

    def _send_reply(
        self, data: Any, flags: int, copy: bool, track: bool, routing_id: int | None, group: str | None
    ) -> Any:
        """A REP's reply (a frame of it): not journaled, but it acks the request; copies queued get it too."""
        state = self._s
        if state.answering_python:
            return self._reply_to_nobody(data, flags, copy, track)
        if state.rep_held and not state.reply_parts:
            raise zmq.ZMQError(zmq.EFSM)  # a request read ahead waits for the application first
        answering = state.answering
        if answering is not None:
            state.reply_parts.append(as_bytes(data))
        result = zmq.Socket.send(self, data, flags, copy, track, routing_id, group)  # type: ignore[arg-type]
        if not flags & SNDMORE:
            if state.awaiting_reply:
                self._settle_reply()
            if answering is not None:
                reply, state.reply_parts = state.reply_parts, []
                state.answering = None
                self._answer_queued_copies(answering, reply)
        return result

    def _setup_requests(self, port: SocketPort, name: str, resend_after: float | None) -> None:
        """A REQ: resends of its requests, its origin in every handshake, and what an earlier REQ left."""
        origin = port.secret(f"request-origin:{name}")
        announce_origin(self, origin)
        self._s.requests = RequestResends(self, port, resend_after, self._max_attempts)
        if resend_after is None:
            return  # no resends: what is pending waits for journal.replay / zjournal replay
        earlier = port.pending_ids(name, _OUT)
        if earlier:
            for entry_id in earlier:
                port.adopt(entry_id, name, _OUT)  # settled by their replies (replay leaves them alone)
            self._s.earlier = EarlierRequests(self.context, port, earlier, origin, resend_after, self._max_attempts)

    def _answering(self, routed: RouterRequests, frames: list[bytes]) -> InHand | None:
        """A ROUTER's reply to a journaled REQ's request in hand: that request is settled now, before it moves.

        (Not at the next recv, as the ``next`` policy would: a kill in between
        would redeliver a request whose requester has its reply.)
        """
        answered = routed.answer(frames)
        if answered is not None and self._s.settle_next == answered.entry_id:
            self._s.settle_next = 0
            self._port.settle(answered.entry_id, self._s.slots)
        return answered

    def _recv_reply(self, flags: int, receive: Callable[[], Any]) -> Any:
        """A frame of a REQ's reply: waits resending what is due first; the whole reply acks the request."""
        state = self._s
        requests = state.requests
        if requests is not None and requests.outstanding and not requests.mid_reply:
            requests.wait(flags)
        got = receive()
        if base_get(self, RCVMORE):
            if requests is not None:
                requests.mid_reply = True
            return got
        if state.awaiting_reply:
            self._settle_reply()
        if requests is not None:
            requests.replied()
        return got

    def _check_rep_turn(self) -> None:
        """A REP answering a request served from Python must reply before it receives again (libzmq's EFSM)."""
        state = self._s
        if state.answering_python and state.rx is None:
            raise zmq.ZMQError(zmq.EFSM)

    def _copy_of_request(self, key: tuple[bytes, bytes], frames: list[bytes], envelope_size: int) -> bool:
        """A ROUTER: whether this journaled REQ's request is a copy of one in hand, or answered from a kept reply.

        Neither is journaled or handed over; the previous message's ack
        (``settle_next``) waits for the next append.
        """
        routed = self._s.routed
        assert routed is not None
        if routed.copy_in_hand(key, frames[:envelope_size]):
            return True
        reply = routed.answered_to_nobody(key) if carries_request_id(frames[:envelope_size]) else None
        if reply is None:
            return False
        send_frames(self, [*frames[:envelope_size], *reply])
        return True

    def _answer_queued_copies(self, answered: tuple[bytes, list[bytes]], reply: list[bytes]) -> None:
        """A REP replied to a journaled REQ's request: copies of it queued already get this reply too.

        A copy goes out beside the original when the REQ's connection broke
        with the original still in its pipe (libzmq sends it on the new
        connection) and the REQ resent it. What is queued the moment the reply
        left was sent before anyone could have had that reply, so a request
        from the same origin with the same body then is that copy. Anything
        else read here is journaled and held for the application's next recv.
        """
        state = self._s
        origin, body = answered
        while base_get(self, EVENTS) & POLLIN:
            first = base_recv(self, NOBLOCK, False, False)
            frames = self._rest_of(first, False)
            from_origin = origin_of(first)
            if from_origin == origin and frames == body:
                send_frames(self, reply)
                if state.replies is not None:
                    state.replies.answered += 1
                continue
            state.rx_origin = from_origin
            try:
                handed = self._inbound(frames, 0)  # (a resend answered from the cache: False, read on)
            except StoreError:
                state.rep_held = True  # kept unjournaled: the next recv journals and hands it over
                return
            if handed:
                state.returned.append((state.last_id, frames))
                state.rep_held = True
                self._update_fast_paths()
                return

    def _answered_already(self, origin: bytes, frames: list[bytes]) -> bool:
        """A REP: the resend of a request it answered to nobody gets that reply now, without the application."""
        replies = self._s.replies
        reply = None if replies is None else replies.take(origin, frames)
        if reply is None:
            return False
        send_frames(self, reply)  # libzmq's REP owes this request a reply: this is it
        return True

    def _settle_reply(self) -> None:
        entry_id = self._s.awaiting_reply
        self._s.awaiting_reply = 0
        if self._out_policy is not AckPolicy.EXPLICIT and self._in_policy is not AckPolicy.EXPLICIT:
            self._port.settle(entry_id, self._s.slots)
            requests = self._s.requests
            if requests is not None and requests.gave_up:
                # A REQ's request that max_attempts made a dead letter was answered after all: no dead letter.
                self._port.ack_dead([entry_id])

    def _reply_to_nobody(self, data: Any, flags: int, copy: bool, track: bool) -> Any:
        """A REP's reply to a request served from Python: it acks the request, and is kept for its resend.

        The requester's pipe is gone; a journaled REQ sends the request again
        (zjournal.sockets.requests), and gets this reply then.
        """
        state = self._s
        state.reply_parts.append(as_bytes(data))  # pyzmq's TypeError for what is not bytes-like
        if not flags & SNDMORE:
            reply, state.reply_parts = state.reply_parts, []
            state.answering_python = False
            if state.awaiting_reply:
                self._keep_reply(state.awaiting_reply, reply)
                self._settle_reply()
        return None if copy and not track else zmq.MessageTracker()

    def _keep_reply(self, entry_id: int, reply: list[bytes]) -> None:
        entry = self._port.load(entry_id)
        origin = None if entry is None else origin_in(entry)
        if origin is not None and self._s.replies is not None:
            self._s.replies.keep(origin, entry.frames[entry.envelope_size :], reply)
