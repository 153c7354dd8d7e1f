"""What a journaled socket changes per message, in one plain object.

pyzmq turns an unknown attribute set on a socket into a socket option (a
slow, option-aware ``__setattr__``), so a :class:`zjournal.JournaledSocket`
keeps everything that changes while messages flow here, in ``sock._s``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zjournal.sockets import confirm_wire

if TYPE_CHECKING:
    import zmq

    from zjournal.errors import MessageTooLargeError
    from zjournal.journal.inflight import Slot, SlotFile
    from zjournal.sockets.confirm import ConfirmSender
    from zjournal.sockets.confirm_return import ConfirmReturn
    from zjournal.sockets.loop_resends import LoopResends
    from zjournal.sockets.redelivery import LocalRedelivery, Redelivery
    from zjournal.sockets.requesters import RouterRequests
    from zjournal.sockets.requests import AnsweredToNobody, EarlierRequests, RequestResends


class SocketState:
    """The per-message state of a journaled socket."""

    __slots__ = (
        "ahead",
        "ahead_first",
        "answering",
        "answering_python",
        "awaiting_reply",
        "behind",
        "came_back",
        "confirm",
        "confirm_return",
        "deferred",
        "earlier",
        "fast_confirm",
        "fast_in",
        "fast_out",
        "frame_limit",
        "from_python",
        "handed",
        "last_id",
        "last_sender",
        "local",
        "loop_resends",
        "merged_next",
        "peeked",
        "peeked_header",
        "redelivered",
        "redelivery",
        "rep_held",
        "replies",
        "reply_parts",
        "requests",
        "returned",
        "routed",
        "rx",
        "rx_origin",
        "rx_redelivered",
        "rx_settle",
        "serving",
        "serving_from",
        "settle_next",
        "settle_sent",
        "slots",
        "too_large",
        "tx",
        "tx_parts",
        "unjournaled",
        "warned_frame_limit",
    )

    def __init__(self) -> None:
        self.settle_next = 0  # inbound entry acked when the next message is asked for
        self.settle_sent = 0  # outbound entry acked at the next append (ZeroMQ took it)
        self.awaiting_reply = 0  # REQ: request acked by its reply; REP: request acked by our reply
        # REP: the request in hand was served from Python (redelivered: its requester is gone), so
        # libzmq's REP never saw it and the reply must not reach libzmq either.
        self.answering_python = False
        self.last_id = 0
        self.rx: list[bytes] | None = None  # frames of the inbound message being read frame by frame
        self.rx_redelivered = 0  # entry id of the inbound message being read, if re-injected
        self.rx_settle = 0  # entry to settle with the message being read frame by frame
        self.tx: list[bytes] | None = None  # frames of the outbound message being sent frame by frame
        # ... and what to hand libzmq for each, with its flags: kept until the last frame is journaled
        self.tx_parts: list[tuple[Any, int]] = []
        # An inbound message read from libzmq whose journaling raised StoreError: (frames, entry to
        # settle, how to journal it again). Kept, and journaled and handed over by the next recv.
        # (None for the frames: a batch read ahead, see Prefetching._fill.)
        self.unjournaled: tuple[list[bytes] | None, int, Callable[[Any, Any, int], bool]] | None = None
        # Messages read and journaled that never reached the application (an asyncio recv cancelled
        # with its result set): (entry id, frames), handed over again first, as they are.
        self.returned: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        self.came_back = 0  # the last of those handed over again (a clean close does not ack it)
        # ROUTER/REP: the last ids handed over by redelivery from an earlier run (their requester is gone)
        self.from_python: collections.deque[int] = collections.deque(maxlen=64)
        self.redelivery: Redelivery | None = None
        self.redelivered = (0, 0)  # (entry id, attempts) of the last entry handed over again (see last_attempts)
        self.local: LocalRedelivery | None = None  # the same object, when it serves from Python
        # prefetch: messages read ahead and journaled, waiting to be handed over (entry id 0: ephemeral)
        # (and the first frame each came in, for copy=False hand-overs: zjournal.sockets.frames)
        self.ahead: collections.deque[tuple[int, list[bytes], zmq.Frame | None]] = collections.deque()
        self.deferred: list[int] = []  # handed over and done, their acks to ride with the next write
        # A message read ahead too large to journal: it ended its batch, and recv raises this in its place.
        self.too_large: MessageTooLargeError | None = None
        # Handed over since the last write, counted in the slot file only (see SocketPort.handed), and
        # the first entry of the batch read ahead (0: hand-overs are written one by one).
        self.handed: list[int] = []
        self.ahead_first = 0
        # ROUTER: live messages that overtook redelivered ones, handed over after them (entry id 0: ephemeral)
        self.behind: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        self.serving: list[bytes] | None = None  # frames still to give out by frame-by-frame recv()
        self.serving_from: zmq.Frame | None = None  # ... the frame their message came in (None: from the journal)
        self.slots: SlotFile | None = None  # in-flight slots (zjournal.journal.inflight), when the journal uses them
        # The slot of the common case, when it applies (see _update_fast_paths): None sends everything the long way.
        self.fast_in: Slot | None = None
        self.fast_out: Slot | None = None
        self.fast_confirm: ConfirmSender | None = None  # confirm=True, when its common case applies
        self.confirm: ConfirmSender | None = None  # confirm=True: sends wait for the receiver's confirmation
        self.confirm_return: ConfirmReturn | None = None  # confirmations of what this socket received
        self.last_sender = confirm_wire.LastSender()  # whose merged frame was read last (recv: header off)
        self.merged_next = False  # the last message was a merged frame: recv copies the next, no zmq.Frame
        # MAXMSGSIZE as the application set it (None: none); libzmq's is a header more (zjournal.sockets.frame_limit)
        self.frame_limit: int | None = None
        self.warned_frame_limit = False
        # A whole one-frame message a poll read from libzmq to see that it is not a resend held already
        # (zjournal.sockets.pollhook): the next recv takes it instead of reading libzmq. Out of libzmq and
        # not journaled yet, it is as durable as it was in libzmq's queue.
        self.peeked: zmq.Frame | None = None
        # The confirm header a poll took off a message of several frames it read (kept as state.unjournaled).
        self.peeked_header: confirm_wire.Header | None = None
        # REQ: the request awaiting its reply, and its resends; the requests an earlier REQ of the
        # name left pending, sent from a DEALER of their own (zjournal.sockets.requests).
        self.requests: RequestResends | None = None
        # The event loop's timer that resends for a sync socket waited on in a loop (zjournal.sockets.loop_resends);
        # None: none yet, False: not needed (nothing resends from the application's calls, or aio does it).
        self.loop_resends: LoopResends | bool | None = None
        self.earlier: EarlierRequests | None = None
        # REP: the requester's origin of the message being read (None: a plain REQ, or inproc), and
        # replies to requests served from Python, for their resends; the reply being sent to nobody.
        self.rx_origin: bytes | None = None
        self.replies: AnsweredToNobody | None = None
        self.reply_parts: list[bytes] = []
        # REP: (origin, body) of the journaled REQ's request the application is answering, and whether
        # a request read ahead after a reply waits in Python (libzmq's REP owes it the next reply).
        self.answering: tuple[bytes, list[bytes]] | None = None
        self.rep_held = False
        # ROUTER: its journaled REQ clients' requests in hand, to recognise their resends
        self.routed: RouterRequests | None = None
