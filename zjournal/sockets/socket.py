"""Journaled sockets: real ``zmq.Socket`` objects that journal every whole message.

A :class:`JournaledSocket` shadows the libzmq handle of the socket it wraps,
so ``isinstance(sock, zmq.Socket)`` holds and ``zmq.Poller`` polls the right
socket. pyzmq routes every ``send_*`` through :meth:`send` and every
``recv_*`` through :meth:`recv` (multipart calls loop over frames), so those
two, plus the multipart fast paths and ``recv_into``, are all that is
overridden. Frames are collected until the last one of a message: an outbound
message is journaled before its last frame is handed to libzmq (libzmq moves
nothing of a multipart message before its last frame), an inbound one when
its last frame is read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import zmq

from zjournal import killpoints
from zjournal.errors import InvalidArgumentError, MessageTooLargeError, StoreError
from zjournal.journal.core import DEFAULT_RESEND_AFTER, port_of
from zjournal.journal.port import SocketPort
from zjournal.sockets import confirm_wire, pollhook
from zjournal.sockets.acking import Acking
from zjournal.sockets.closing import Closing
from zjournal.sockets.confirm import confirm_sender, sender_of, wait_seconds
from zjournal.sockets.confirm_inbound import ConfirmInbound
from zjournal.sockets.frame_limit import FrameLimit
from zjournal.sockets.frames import handed, handed_all
from zjournal.sockets.held import Holding
from zjournal.sockets.inbound import Inbound
from zjournal.sockets.libzmq import (
    NOBLOCK,
    POLLIN,
    RCVMORE,
    RESEND_TICK_MS,
    base_get,
    base_recv,
)
from zjournal.sockets.options import Options
from zjournal.sockets.policy import AckPolicy, Classifier, compile_classifier, resolve_ack
from zjournal.sockets.prefetch import Prefetching
from zjournal.sockets.redelivering import Redelivering
from zjournal.sockets.redelivery import (
    LocalRedelivery,
    SubRedelivery,
    redelivery_for,
)
from zjournal.sockets.replying import Replying
from zjournal.sockets.requesters import RouterRequests
from zjournal.sockets.requests import (
    AnsweredToNobody,
    check_resend_after,
    origin_of,
)
from zjournal.sockets.sending import Sending
from zjournal.sockets.state import SocketState

if TYPE_CHECKING:
    from zjournal.journal import Journal


_HEADER_MAGIC = confirm_wire.HEADER_MAGIC  # the first frame of a confirm=True sender's messages
_MERGED_MAGIC = confirm_wire.MERGED_MAGIC  # ... or its only frame, the header in front
_CONFIRM_PREFIX = confirm_wire.PREFIX  # what both start with
_ORIGIN_END, _SEQ_FLOOR_END = confirm_wire.ORIGIN_END, confirm_wire.SEQ_FLOOR_END  # a merged frame's fixed parts
_unpack_seq_floor = confirm_wire.unpack_seq_floor
_libzmq_poll = zmq.backend.zmq_poll  # libzmq's own poll (zmq.Poller goes through zjournal.sockets.pollhook)


def _frames_of(frames: list[bytes], parts: list[zmq.Frame]) -> list[zmq.Frame]:
    """recv_multipart(copy=False)'s answer: the frames received (``parts``), a confirm header taken off.

    ``frames`` are the bytes of ``parts`` (``Frame.bytes`` is made once and
    kept), less a header frame, wherever it was (after a ROUTER's routing id,
    say), or with a merged frame replaced by its message (a slice: a new Frame).
    """
    if len(frames) == len(parts) and all(frame is part.bytes for frame, part in zip(frames, parts, strict=True)):
        return parts
    received = {id(part.bytes): part for part in parts}
    last = len(frames) - 1
    return [received.get(id(frame)) or handed(frame, index < last, parts[0]) for index, frame in enumerate(frames)]


class JournaledSocket(
    Closing,
    Replying,
    ConfirmInbound,
    FrameLimit,
    Redelivering,
    Prefetching,
    Holding,
    Inbound,
    Acking,
    Options,
    Sending,
    zmq.Socket,
):
    """A ``zmq.Socket`` whose messages are journaled (see :meth:`zjournal.Journal.wrap`).

    Beyond pyzmq's API it offers :attr:`last_id`, :meth:`ack`, :meth:`nack`,
    :meth:`receiving` and :attr:`journal_name` (and :attr:`last_attempts`,
    :attr:`resent`, :attr:`resends_recognised`, and :meth:`wait_confirmed`
    for ``confirm=True`` senders).
    """

    # Declared on the class: pyzmq turns unknown instance attributes into socket options.
    _journal: Journal = None  # type: ignore[assignment]
    _port: SocketPort = None  # type: ignore[assignment]  # the journal's message path (zjournal.journal.port)
    _jname: str = ""
    _origin: zmq.Socket | None = None
    _in_policy: AckPolicy | None = None
    _out_policy: AckPolicy | None = None
    _classifier: Classifier = None
    _handler: Any = None  # a plugin's ack policy (zjournal.plugins.AckHandler)
    _prefetch: int = 0  # read and journal up to this many queued messages at once (opt-in)
    _max_attempts: int | None = None
    _router: bool = False  # inbound messages carry the sender's routing id first
    _is_rep: bool = False
    _is_pull: bool = False  # (closed without a linger: zjournal.sockets.closing)
    _confirm_pause: Callable[[float], Any] | None = None  # how wait_confirmed waits, if not in libzmq (zmq.green)
    # Everything that changes per message lives in a plain object: setting an
    # attribute on a pyzmq socket goes through its (slow) option-aware __setattr__.
    _s: SocketState = None  # type: ignore[assignment]

    # -- construction ------------------------------------------------------

    def _setup(
        self,
        journal: Journal,
        origin: zmq.Socket,
        name: str,
        ack: str | AckPolicy | None,
        classify: Any,
        max_attempts: int | None,
        prefetch: int = 0,
        confirm: bool = False,
        confirm_timeout: float | None = None,
        resend_after: float | None = DEFAULT_RESEND_AFTER,
    ) -> None:
        socket_type = self.type
        self._s = SocketState()
        self._journal = journal
        self._port = port = port_of(journal)
        self._origin = origin
        self._jname = name
        self._in_policy, self._out_policy, self._handler = resolve_ack(socket_type, ack)
        self._classifier = compile_classifier(classify)
        self._max_attempts = journal.max_attempts if max_attempts is None else max_attempts
        self._router = socket_type == zmq.ROUTER
        self._is_rep = socket_type == zmq.REP
        self._is_pull = socket_type == zmq.PULL
        if prefetch:
            if not isinstance(prefetch, int) or prefetch < 0:
                raise InvalidArgumentError(f"prefetch must be a count >= 0, not {prefetch!r}")
            if self._in_policy not in (AckPolicy.NEXT, AckPolicy.EXPLICIT) or self._handler is not None:
                raise InvalidArgumentError("prefetch is for sockets that receive with the 'next' or 'explicit' policy")
            self._prefetch = prefetch
        if self._in_policy is not None and journal.count(name=name, state="pending", direction="in"):
            self._s.redelivery = redelivery_for(self, socket_type)
            if isinstance(self._s.redelivery, LocalRedelivery):
                self._s.local = self._s.redelivery
            self._s.redelivery.refill()
        if confirm:
            self._s.confirm = confirm_sender(self, port, name, confirm_timeout, self._max_attempts)
            self._out_policy = AckPolicy.EXPLICIT  # acked by the receiver's confirmation, not by a send
        elif confirm_timeout is not None:
            raise InvalidArgumentError("confirm_timeout is for sockets wrapped with confirm=True")
        if socket_type == zmq.REQ:
            self._setup_requests(port, name, check_resend_after(resend_after))
        elif self._is_rep:
            self._s.replies = AnsweredToNobody()
        elif self._router and self._in_policy is not None:
            self._s.routed = RouterRequests()
        if self._in_policy is not None or self._out_policy not in (None, AckPolicy.EXPLICIT):
            # (a socket that only sends, each message pending until acked or confirmed, never holds one in a
            # slot: no file, and no descriptors, for it; a confirm sender's messages wait in its outbox)
            self._s.slots = port.open_slots(name)
        if self._loosens_frames():
            limit = zmq.Socket.get(self, zmq.MAXMSGSIZE)
            if limit >= 0:  # set before it was wrapped: from now on (libzmq: for endpoints bound or connected later)
                self._limit_frames(limit)
        self._update_fast_paths()

    def _update_fast_paths(self) -> None:
        """Pick the fast send and recv for the common case, or switch them off.

        Fast: journaled in the socket's slot, no classifier, no plugin ack
        policy; sends with the ``sent`` policy; receives with ``next``, not a
        ROUTER, no redelivery under way and no prefetch.
        """
        state = self._s
        slots = state.slots
        plain = slots is not None and self._classifier is None and self._handler is None
        state.fast_out = slots.outbound if plain and self._out_policy is AckPolicy.SENT else None
        confirm = state.confirm
        state.fast_confirm = confirm if confirm is not None and self._classifier is None and not self._router else None
        state.fast_in = (
            slots.inbound
            if plain
            and self._in_policy is AckPolicy.NEXT
            and not self._router
            and not self._prefetch
            and state.redelivery is None
            and state.unjournaled is None
            and not state.returned
            and state.frame_limit is None  # (the limit is held on the general path: zjournal.sockets.frame_limit)
            and (state.confirm is None or state.confirm.resends_in_thread)  # waits resend (see _wait_resending)
            else None
        )

    @property
    def journal(self) -> Journal:
        """The journal this socket writes to."""
        return self._journal

    @property
    def journal_name(self) -> str:
        """The stream name this socket journals under."""
        return self._jname

    @property
    def last_id(self) -> int:
        """Id of the last message this socket sent or received (0: none yet, or that message was ephemeral)."""
        return self._s.last_id

    @property
    def resends_recognised(self) -> int:
        """A REP or ROUTER: resends of journaled REQs' requests answered without handing them over again."""
        state = self._s
        if state.routed is not None:
            return state.routed.not_handed
        return 0 if state.replies is None else state.replies.answered

    @property
    def resent(self) -> int:
        """A REQ: how often it sent a request again because no reply came (0 for other types)."""
        requests = self._s.requests
        return 0 if requests is None else requests.resent

    @property
    def last_attempts(self) -> int:
        """How often the message :attr:`last_id` names was handed over, read right after receiving it.

        1 the first time; more when it comes again (after a crash, a nack, or
        a redelivery) — RabbitMQ's ``redelivered``, JetStream's
        ``num_delivered``. In a one-to-one pipeline of ``confirm=True`` peers
        a message with ``last_attempts == 1`` was never handed to an
        application before. 0 before any message.
        """
        state = self._s
        entry_id, attempts = state.redelivered
        if not state.last_id:
            return 0
        return attempts if entry_id == state.last_id else 1

    def wait_confirmed(self, timeout: float | None = None) -> bool:
        """Wait until receiving journals confirmed every message this socket sent (``confirm=True``).

        Takes in confirmations and resends what is due meanwhile. True when
        nothing is left unconfirmed and no message became a dead letter
        (``max_attempts``) since the last call; False when ``timeout`` seconds
        passed first (None: no limit) or a message became a dead letter —
        RabbitMQ's ``waitForConfirms``, JetStream's ``publish_async_completed``.
        Whatever is unconfirmed stays pending and is resent, either way.
        """
        return sender_of(self, self._s).wait_confirmed(wait_seconds(timeout), self._confirm_pause)

    # -- receiving ---------------------------------------------------------

    def _recv_first(self, flags: int, track: bool) -> tuple[zmq.Frame, int]:
        """Receive the first frame of the next message; the app asking for it acks the previous one.

        Returns the frame and the id to fold into the new message's append.
        When nothing is waiting the previous one is settled at once, so an
        idle socket does not show it pending; while messages flow, the
        non-blocking attempt succeeds and the ack rides along for free.
        Frames come as ``zmq.Frame``: ``frame.more`` costs far less than
        ``getsockopt(RCVMORE)``.
        """
        state = self._s
        settle = state.settle_next
        if state.peeked is not None:  # a poll read it (_readable_after_resends)
            got, state.peeked = state.peeked, None
            return got, settle
        if self._is_rep:
            got = zmq.Socket.recv(self, flags, False, track)
            state.rx_origin = origin_of(got)  # a journaled REQ's, to recognise its resends
            return got, 0  # (a REP's request is settled by its reply, never by the next recv)
        if not settle:
            if state.confirm is not None:
                self._wait_resending(flags)
            return zmq.Socket.recv(self, flags, False, track), 0
        try:
            return zmq.Socket.recv(self, flags | NOBLOCK, False, track), settle
        except zmq.Again:
            state.settle_next = 0
            if killpoints.ARMED:
                killpoints.reached("ack:before-write")
            self._port.settle(settle, self._s.slots)
            if state.confirm_return is not None:
                state.confirm_return.soon()  # (nothing queued: confirmations held go sooner)
            if flags & NOBLOCK:
                raise
        if state.confirm is not None:
            self._wait_resending(flags)
        return zmq.Socket.recv(self, flags, False, track), 0

    def _wait_resending(self, flags: int) -> None:
        """Before a blocking receive on a confirm DEALER, ROUTER or PAIR: wait in ticks, resending what is due.

        Their resends come from the application's thread (see
        ConfirmSender.resends_in_thread), so a sender waiting for replies
        still resends what nobody confirmed. Keeps ``RCVTIMEO``: raises
        ``zmq.Again`` when it runs out, as libzmq would.
        """
        confirm = self._s.confirm
        if confirm is None or confirm.resends_in_thread or flags & NOBLOCK:
            return
        timeout = zmq.Socket.get(self, zmq.RCVTIMEO)
        deadline = None if timeout < 0 else time.monotonic() + timeout / 1000
        while True:
            wait = RESEND_TICK_MS
            if deadline is not None:
                wait = max(0, min(wait, int((deadline - time.monotonic()) * 1000)))
            if _libzmq_poll([(self, POLLIN)], wait):
                return
            confirm.resend_due_here()
            if deadline is not None and time.monotonic() >= deadline:
                raise zmq.Again()

    def recv(self, flags: int = 0, copy: bool = True, track: bool = False) -> Any:
        state = self._s
        slot = state.fast_in
        if slot is not None and state.rx is None and state.serving is None:
            # The common case, inlined (this is the hottest code of the project).
            # While messages flow the previous message's ack rides with this one.
            settle = state.settle_next
            got = state.peeked
            if got is not None:  # a poll read it (_readable_after_resends)
                state.peeked = None
            elif settle:
                try:
                    if state.merged_next and copy:
                        data = base_recv(self, flags | NOBLOCK, True, False)
                    else:
                        got = base_recv(self, flags | NOBLOCK, False, track)
                except zmq.Again:
                    got, settle = self._recv_first(flags, track)  # idle: the ack goes now, then we wait
            else:
                got = base_recv(self, flags, False, track)
            if got is None:
                last = state.last_sender
                # Copied, without its more flag (a zmq.Frame costs more): the last message was a merged frame,
                # and the next one is expected from the same sender, or another one heard before (senders
                # taking turns). A sender merges only a message of one frame (confirm_wire), so its merged
                # frame is a whole message; anything else asks libzmq.
                known = (
                    last.end and data.startswith(last.front) and data.startswith(last.back, _SEQ_FLOOR_END)
                ) or last.switch(data)
                more = False
                if not known:
                    state.merged_next = False
                    more = base_get(self, RCVMORE)
            else:
                data = got.bytes
                more = got.more
                known = False
            if more:  # frame by frame: journaled when the last one is read
                if data.startswith(_HEADER_MAGIC):
                    first = zmq.Frame(data) if got is None else got
                    return self._recv_confirmed_frame(first, settle, flags, copy, track, more=True)
                state.settle_next = 0
                state.rx = [data]
                state.rx_settle = settle
                state.rx_redelivered = 0
            elif data.startswith(_CONFIRM_PREFIX):  # a confirm sender's message in one frame (or one like it)
                # LastSender.parse, inlined: the sender heard last is compared, not parsed; another is learnt.
                last = state.last_sender
                if (
                    known
                    or (last.end and data.startswith(last.front) and data.startswith(last.back, _SEQ_FLOOR_END))
                    or last.switch(data)
                    or last.learn(data)
                ):
                    seq, floor = _unpack_seq_floor(data, _ORIGIN_END)
                else:
                    seq = floor = 0
                if not seq or floor > seq or killpoints.ARMED:  # not a header after all, or a test's kill point
                    state.merged_next = False
                    return self._recv_merged(got, data, settle, flags, copy, track)
                state.merged_next = True
                # Journaled in the slot with its dedup key, its confirmation held (_journal_confirmed_frame).
                body = data[last.end :]
                origin = last.origin
                try:
                    entry_id = state.last_id = state.settle_next = self._port.log_keyed(
                        state.slots, body, settle, origin, seq, floor
                    )
                except MessageTooLargeError as e:
                    self._refuse(last.endpoint, origin, seq, e)
                    raise
                (state.confirm_return or self._new_confirm_return()).hold(last.endpoint, origin, seq)  # a resend too
                if not entry_id:
                    return self._recv_after_resend(flags, copy, track)  # held already: the next one instead
                return body if copy else handed(body, False, got)
            elif killpoints.ARMED:
                self._received_held(slot, [data], settle)
            else:
                try:
                    state.settle_next = state.last_id = self._port.log_held(slot, [data], settle)
                except StoreError:
                    self._keep_unjournaled([data], settle, JournaledSocket._journal_new)
                    raise
            return data if copy else got
        if self._in_policy is None:  # a REQ's reply: acks the request, not journaled
            return self._recv_reply(flags, lambda: super(JournaledSocket, self).recv(flags, copy, track))
        self._check_rep_turn()
        if state.rx is None and state.serving is None:
            if state.returned:
                return self._serve_whole(self._take_returned(), copy)
            if state.unjournaled is not None:
                frames = self._journal_unjournaled()
                if frames is not None:
                    return self._serve_whole(frames, copy)
        local = state.local
        if local is not None and (local.current is not None or (state.rx is None and local.has_message())):
            return self._recv_local(copy)
        if state.serving is not None and not self._prefetch:  # the rest of a message read whole
            frame = state.serving.pop(0)
            if not state.serving:
                state.serving = None
            return frame if copy else handed(frame, state.serving is not None, state.serving_from)
        if self._prefetch and state.rx is None and state.redelivery is None:
            return self._recv_frame_prefetched(flags, copy, track)
        if state.rx is None:  # the first frame of a message
            state.rx_redelivered = 0
            if isinstance(state.redelivery, SubRedelivery):
                self._settle_now()
                frames = self._recv_sub_redelivering(flags, track)
                self._inbound(frames, 0)
                if len(frames) > 1:
                    state.serving = frames[1:]
                    state.serving_from = None
                return frames[0] if copy else handed(frames[0], len(frames) > 1)
            if state.redelivery is not None and local is None:
                self._settle_now()
                frame = self._recv_redelivering(flags, copy, track, whole=False)[0]
                if not state.rx_redelivered:
                    first = frame if copy else frame.bytes
                    if first.startswith(_CONFIRM_PREFIX):  # a confirm sender's: read whole, its header off
                        more = bool(zmq.Socket.get(self, RCVMORE))
                        if first.startswith(_HEADER_MAGIC if more else _MERGED_MAGIC):
                            received = frame if not copy else zmq.Frame(first)
                            return self._recv_confirmed_frame(received, 0, flags, copy, track, more=more)
                state.rx_settle = 0
                state.rx = []
                state.rx.append(frame if copy else frame.bytes)
                if not zmq.Socket.get(self, RCVMORE):
                    self._complete_rx()
                return frame
            got, settle = self._recv_first(flags, track)  # may raise: nothing started
            if state.routed is not None:
                state.rx_origin = state.routed.origin_of(got)
            # A ROUTER's message is read whole at once: its confirm header, if any, follows the routing id.
            # So is a journaled REQ's request to a REP: it may be a resend answered already.
            if (
                (got.more and (self._router or got.bytes.startswith(_HEADER_MAGIC)))
                or state.rx_origin is not None
                or state.frame_limit is not None  # (a message over it is dropped whole: zjournal.sockets.frame_limit)
                or (not got.more and got.bytes.startswith(_MERGED_MAGIC))
            ):
                return self._recv_confirmed_frame(got, settle, flags, copy, track)
            state.rx_settle = settle
            state.rx = []
        else:
            got = zmq.Socket.recv(self, flags, False, track)
        data = got.bytes
        state.rx.append(data)
        if not got.more:
            self._complete_rx()
        return data if copy else got

    def _rest_of(self, first: zmq.Frame, track: bool) -> list[bytes]:
        """The whole message whose first frame is ``first`` (the rest is already there: atomic)."""
        frames = [first.bytes]
        got = first
        while got.more:
            got = zmq.Socket.recv(self, 0, False, track)
            frames.append(got.bytes)
        return frames

    def _complete_rx(self) -> None:
        state = self._s
        frames = state.rx
        state.rx = None
        assert frames is not None
        self._inbound(frames, state.rx_settle)
        state.rx_settle = 0

    def recv_multipart(self, flags: int = 0, copy: bool = True, track: bool = False) -> list[Any]:
        state = self._s
        slot = state.fast_in
        if slot is not None and state.rx is None and state.serving is None:
            if state.merged_next and copy:
                # A confirm sender's stream of one-frame messages: recv's inline path reads and journals it
                # without a zmq.Frame or a parse of the header. (A message of several frames comes frame by frame.)
                parts = [self.recv(flags)]
                while state.rx is not None or state.serving is not None:
                    parts.append(self.recv(flags))
                return parts
            # recv's first-frame logic, inlined here too on purpose: a call is ~5% of this path.
            settle = state.settle_next
            if state.peeked is not None:  # a poll read it (_readable_after_resends)
                got, state.peeked = state.peeked, None
            elif settle:
                try:
                    got = base_recv(self, flags | NOBLOCK, False, track)
                except zmq.Again:
                    got, settle = self._recv_first(flags, track)
            else:
                got = base_recv(self, flags, False, track)
            frames = [got.bytes]
            parts = [got]
            while got.more:
                got = base_recv(self, flags, False, track)
                frames.append(got.bytes)
                parts.append(got)
            if self._received_held(slot, frames, settle):
                return frames if copy else _frames_of(frames, parts)
            return self._recv_multipart_live(flags, copy, track)  # that was a resend held already
        if self._in_policy is not None:
            self._check_rep_turn()
            if state.rx is None and state.serving is None:
                frames = None
                if state.returned:
                    frames = self._take_returned()
                elif state.unjournaled is not None:
                    frames = self._journal_unjournaled()
                if frames is not None:
                    return frames if copy else handed_all(frames)
        if self._s.rx is not None or self._in_policy is None or self._s.local is not None:
            return super().recv_multipart(flags, copy, track)
        if isinstance(self._s.redelivery, SubRedelivery):
            self._settle_now()
            self._s.rx_redelivered = 0
            frames = self._recv_sub_redelivering(flags, track)
            self._inbound(frames, 0)
            return frames if copy else handed_all(frames)
        if self._s.redelivery is not None:
            self._settle_now()
            while True:
                self._s.rx_redelivered = 0
                parts = self._recv_redelivering(flags, copy, track, whole=True)
                frames = parts if copy else [p.bytes for p in parts]
                if self._inbound(frames, 0):
                    return frames if copy else _frames_of(frames, parts)
                if self._s.redelivery is None:  # a resend held already was dropped; redelivery is over
                    return self._recv_multipart_live(flags, copy, track)
        if self._prefetch:
            return self._recv_prefetched(flags, copy, track)
        return self._recv_multipart_live(flags, copy, track)

    def _recv_multipart_live(self, flags: int, copy: bool, track: bool) -> list[Any]:
        """Read and journal the next whole message; resends this journal holds already are skipped."""
        raw_recv = zmq.Socket.recv
        routed = self._s.routed
        while True:
            got, settle = self._recv_first(flags, track)
            if routed is not None:
                self._s.rx_origin = routed.origin_of(got)  # a journaled REQ's, to recognise its resends
            frames = [got.bytes]
            parts = [got]
            while got.more:
                got = raw_recv(self, flags, False, track)
                frames.append(got.bytes)
                parts.append(got)
            if self._inbound(frames, settle):
                return frames if copy else _frames_of(frames, parts)

    def recv_into(self, buffer: Any, /, *, nbytes: int = 0, flags: int = 0) -> int:
        if self._in_policy is None:  # a REQ's reply: acks the request, not journaled
            return self._recv_reply(
                flags, lambda: super(JournaledSocket, self).recv_into(buffer, nbytes=nbytes, flags=flags)
            )
        self._check_rep_turn()
        # Through recv(), then copied: the journal needs the whole frame (libzmq would truncate it to
        # the buffer), and a confirm sender's header must come off before the application sees anything.
        return self._recv_into_from_python(buffer, nbytes, flags)

    def __repr__(self) -> str:
        return journaled_repr(self, self._jname)


def journaled_repr(sock: Any, journal_name: str) -> str:
    """pyzmq's repr of the application's own socket class, saying that it is journaled and under which name.

    Code (and tests) that read a socket's repr see what pyzmq shows them;
    a log still tells a journaled socket from a plain one.
    """
    app_class = next(c for c in type(sock).__mro__ if c.__module__.partition(".")[0] != "zjournal")
    shown = app_class.__dict__.get("_repr_cls") or f"{app_class.__module__}.{app_class.__name__}"
    closed = " closed" if sock._closed else ""
    return f"<{shown}(zmq.{sock._type_name}) at {hex(id(sock))} journaled name={journal_name!r}{closed}>"


# zmq.Poller and zmq.select see what journaled sockets hold in Python (zjournal.sockets.pollhook).
pollhook.install(JournaledSocket)
