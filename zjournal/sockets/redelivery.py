"""Redelivery: pending inbound entries reach the application again through its own socket.

Two ways, chosen by socket type:

* ``InprocRedelivery`` (PULL, ROUTER, and DEALER wrapped before it was
  bound or connected): a private peer of the
  complementary type is bound on a private ``inproc://`` endpoint and the
  wrapped socket is connected to it. Pending entries are re-injected through
  that peer, so libzmq delivers them by the normal path: ``zmq.Poller``,
  ``zmq.select``, ``recv_multipart`` and frame-by-frame reads all see them.
  A re-injected message is recognised on receipt by a *tag* that only this
  socket knows (a 16-byte random token): a first frame the socket strips
  before the application sees it (PULL, DEALER), or the peer's routing id
  (ROUTER, where the application needs it to reply).
* ``SubRedelivery`` (SUB): a private XPUB, once the subscriptions arrived;
  recognised by content, in order.
* ``LocalRedelivery`` (REP, PAIR, a DEALER already connected, anything else):
  another peer would change where the socket's own sends go (PAIR takes one
  peer), or, for a REP, a live request read first would have to be answered
  before any other could be read; so the messages are served from Python
  before live traffic (a REP's reply to one never reaches libzmq).
  ``sock.poll()`` and ``EVENTS`` see them, and ``zmq.Poller``/``zmq.select``
  through ``zjournal.sockets.pollhook``.

A DEALER load-balances its sends over its peers, so before it gets a private
peer the pipe to that peer is filled up (see ``_plug_dealer``): its own
messages then all go to its real peers.

Entries are fetched from the journal in windows, so memory does not grow with
the number of pending entries.
"""

from __future__ import annotations

import abc
import collections
import contextlib
import os
import struct
from typing import TYPE_CHECKING, Any, Protocol

import zmq

from zjournal.journal.entry import DIRECTION_CODES, Direction, Entry
from zjournal.sockets.requests import split_origin

if TYPE_CHECKING:
    from zjournal.journal.port import SocketPort


class Redelivering(Protocol):
    """The socket a redelivery serves: a ``zmq.Socket`` that journals (zjournal.sockets.socket.JournaledSocket)."""

    _port: SocketPort
    _jname: str
    _max_attempts: int | None
    context: zmq.Context


WINDOW = 256  # entries re-injected ahead of the application at most
_ID = struct.Struct(">Q")
_IN = DIRECTION_CODES[Direction.IN]


class Redelivery(abc.ABC):
    """Common bookkeeping: a cursor into the journal and the queue of ids in flight."""

    def __init__(self, sock: Redelivering) -> None:
        self.port = sock._port  # not the socket: a socket nobody holds must be collectable
        self.name = sock._jname
        self.max_attempts = sock._max_attempts
        self.cursor = 0  # highest entry id fetched from the journal so far
        self.queued: collections.deque[int] = collections.deque()
        self.exhausted = False

    def _fetch(self) -> list[Entry]:
        if self.exhausted:
            return []
        room = WINDOW - len(self.queued)
        if room <= WINDOW // 2 and self.queued:
            return []
        entries, more = self.port.redeliverable(self.name, _IN, self.cursor, room, self.max_attempts)
        if not more:
            self.exhausted = True
        if entries:
            self.cursor = entries[-1].id
        return entries

    @property
    def active(self) -> bool:
        return bool(self.queued) or not self.exhausted

    def refill(self) -> None:
        for entry in self._fetch():
            self.inject(entry)

    @abc.abstractmethod
    def inject(self, entry: Entry) -> None:
        """Queue one entry for delivery to the application."""

    def requeue(self, entry: Entry) -> None:
        """Deliver a nacked entry again (it is below the cursor, so fetch would miss it)."""
        self.inject(entry)

    def close(self) -> None:  # noqa: B027 - most ways hold nothing to release
        """Release what this redelivery holds (the private peer, if any)."""


class InprocRedelivery(Redelivery):
    """Re-injection through a private peer on a private inproc endpoint."""

    def __init__(self, sock: Redelivering, socket_type: int) -> None:
        super().__init__(sock)
        self.token = b"zj:" + os.urandom(13)  # never starts with a zero byte (reserved by libzmq)
        self.socket_type = socket_type
        peer_type = {zmq.PULL: zmq.PUSH, zmq.ROUTER: zmq.DEALER, zmq.DEALER: zmq.ROUTER}[socket_type]
        # Made by the context so that ctx.destroy() closes it too.
        self.peer: zmq.Socket = zmq.Context.socket(sock.context, peer_type, socket_class=zmq.Socket)
        self.peer.linger = 0
        self.peer.sndhwm = 0  # the window bounds what is queued, not the HWM
        if socket_type == zmq.ROUTER:
            self.peer.routing_id = self.token
        if socket_type == zmq.DEALER:
            self.peer.rcvhwm = 1
        self.endpoint = f"inproc://zjournal-redelivery-{self.token.hex()}"
        self.peer.bind(self.endpoint)
        zmq.Socket.connect(sock, self.endpoint)  # not through the wrapper's own connect
        self.dealer_id = b""
        if socket_type == zmq.DEALER:
            self._plug_dealer(sock)

    def _plug_dealer(self, sock: Redelivering) -> None:
        """Fill the DEALER's pipe *to* the private peer, which never reads it.

        A DEALER load-balances its sends over the pipes it can write to: with
        this one full, every message of the application goes to its real peers,
        while the redelivered ones still flow the other way. The filler is
        dropped when the peer goes.
        """
        zmq.Socket.send(sock, b"", zmq.NOBLOCK)
        self.dealer_id = self.peer.recv_multipart()[0]  # the ROUTER learns whom to send to
        for _ in range(10_000_000):
            try:
                zmq.Socket.send(sock, b"", zmq.NOBLOCK)
            except zmq.Again:
                return
        raise RuntimeError("the DEALER's send queue never filled")  # SNDHWM=0 is refused earlier

    def inject(self, entry: Entry) -> None:
        if self.socket_type == zmq.PULL:
            frames = [self.token + _ID.pack(entry.id), *entry.frames]
        elif self.socket_type == zmq.DEALER:
            frames = [self.dealer_id, self.token + _ID.pack(entry.id), *entry.frames]
        else:  # ROUTER: the peer's routing id replaces the original sender's (and a REQ's origin goes)
            _, frames, envelope_size = split_origin(entry.frames, entry.envelope_size)
            frames = frames[1:] if envelope_size else frames
        self.peer.send_multipart(frames)
        self.queued.append(entry.id)

    @property
    def reorders(self) -> bool:
        """PULL and DEALER: a live message read early can be sent behind the redelivered ones.

        (A ROUTER holds them in Python instead: it answers a live requester through its own pipe.)
        """
        return self.socket_type in (zmq.PULL, zmq.DEALER)

    def inject_live(self, entry_id: int, frames: list[bytes]) -> None:
        """Queue a live message behind the redelivered ones (entry 0: ephemeral, not journaled)."""
        head = [self.dealer_id] if self.socket_type == zmq.DEALER else []
        self.peer.send_multipart([*head, self.token + _ID.pack(entry_id), *frames])
        self.queued.append(entry_id)

    def recognise(self, first: bytes) -> int:
        """The entry id if ``first`` (a message's first frame) marks a re-injected message, else 0."""
        if self.socket_type == zmq.ROUTER:
            if first == self.token and self.queued:
                return self.queued.popleft()
            return 0
        if len(first) == len(self.token) + 8 and first.startswith(self.token):
            entry_id = _ID.unpack_from(first, len(self.token))[0]
            with contextlib.suppress(ValueError):
                self.queued.remove(entry_id)
            return entry_id or -1  # -1: a held ephemeral message, nothing to record
        return 0

    @property
    def strips_first_frame(self) -> bool:
        return self.socket_type != zmq.ROUTER

    def drain_replies(self) -> None:
        """Replies to re-injected requests come back to the peer: nobody waits for them."""
        if self.socket_type in (zmq.PULL, zmq.DEALER):
            return  # nothing comes back (and a DEALER's plug must stay full)
        while True:
            try:
                self.peer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return

    def close(self) -> None:
        if not self.peer.closed:
            self.peer.close(0)


class SubRedelivery(InprocRedelivery):
    """SUB: re-injection through a private XPUB, once the socket's subscriptions have reached it.

    A SUB filters on the first frame, so no tag can ride along: re-injected
    messages are recognised by their content, in order (the private pipe is
    FIFO). Pending entries that match none of the current subscriptions are
    not re-injected (they stay pending for a later run).
    """

    def __init__(self, sock: Redelivering) -> None:
        Redelivery.__init__(self, sock)
        self.socket_type = zmq.SUB
        self.token = b"zj:" + os.urandom(13)
        self.dealer_id = b""
        self.peer = zmq.Context.socket(sock.context, zmq.XPUB, socket_class=zmq.Socket)
        self.peer.linger = 0
        self.peer.sndhwm = 0
        self.endpoint = f"inproc://zjournal-redelivery-{self.token.hex()}"
        self.peer.bind(self.endpoint)
        zmq.Socket.connect(sock, self.endpoint)
        self.topics: set[bytes] = set()
        self.subscriptions: dict[bytes, int] = {}  # the application's, counted as libzmq's SUB counts them
        self.in_order: collections.deque[list[bytes]] = collections.deque()  # frames of what was injected

    def pump_subscriptions(self, wait_ms: int = 0) -> None:
        """Learn the SUB's subscriptions from what reached the XPUB."""
        while self.peer.poll(wait_ms):
            message = self.peer.recv()
            if message[:1] == b"\x01":
                self.topics.add(message[1:])
            elif message[:1] == b"\x00":
                self.topics.discard(message[1:])
            wait_ms = 0

    def subscribed(self, topic: bytes) -> None:
        """A new subscription: entries skipped so far may match it now, so fetch from the start again."""
        self.subscriptions[topic] = self.subscriptions.get(topic, 0) + 1
        self.cursor = 0
        self.exhausted = False

    def unsubscribed(self, topic: bytes) -> None:
        """The SUB dropped ``topic``: forget re-injected entries it will now filter out (they stay pending).

        libzmq's SUB filters what it receives by its own subscriptions (counted:
        subscribing twice takes two unsubscribes), so an entry re-injected while
        the topic was subscribed never arrives once the last one is gone.
        """
        left = self.subscriptions.get(topic, 1) - 1
        if left > 0:
            self.subscriptions[topic] = left
            return
        self.subscriptions.pop(topic, None)
        self.pump_subscriptions()
        self.topics.discard(topic)
        kept = [(i, f) for i, f in zip(self.queued, self.in_order, strict=True) if self._matches(f)]
        self.queued = collections.deque(i for i, _ in kept)
        self.in_order = collections.deque(f for _, f in kept)

    def _matches(self, frames: list[bytes]) -> bool:
        first = frames[0] if frames else b""
        return any(first.startswith(topic) for topic in self.topics)

    def refill(self) -> None:
        self.pump_subscriptions()
        if not self.topics:
            return  # nothing would get through: wait for a subscription
        queued = set(self.queued)
        for entry in self._fetch():
            if self._matches(entry.frames) and entry.id not in queued:
                self.inject(entry)

    def inject(self, entry: Entry) -> None:
        self.peer.send_multipart(entry.frames)
        self.queued.append(entry.id)
        self.in_order.append(entry.frames)

    @property
    def reorders(self) -> bool:
        return True

    def inject_live(self, entry_id: int, frames: list[bytes]) -> None:
        self.peer.send_multipart(frames)
        self.queued.append(entry_id)
        self.in_order.append(frames)

    def recognise_message(self, frames: list[bytes]) -> int:
        """The entry id if ``frames`` is the next re-injected message (-1: a held ephemeral one)."""
        if self.in_order and self.in_order[0] == frames:
            self.in_order.popleft()
            return self.queued.popleft() or -1
        return 0

    def drain_replies(self) -> None:
        self.pump_subscriptions()


class LocalRedelivery(Redelivery):
    """Messages served from Python, before live traffic."""

    def __init__(self, sock: Redelivering) -> None:
        super().__init__(sock)
        self.messages: collections.deque[tuple[int, list[bytes]]] = collections.deque()
        self.current: list[bytes] | None = None  # frames of the message being read frame by frame
        self.current_id = 0

    def inject(self, entry: Entry) -> None:
        # Without the envelope: a REP journals its requester's origin there (zjournal.sockets.requests).
        self.messages.append((entry.id, entry.frames[entry.envelope_size :]))
        self.queued.append(entry.id)

    def has_message(self) -> bool:
        if self.current:
            return True
        if not self.messages:
            self.refill()
        return bool(self.messages)

    def take(self) -> tuple[int, list[bytes]]:
        entry_id, frames = self.messages.popleft()
        self.queued.popleft()
        return entry_id, frames


def redelivery_for(sock: Redelivering, socket_type: int) -> Redelivery:
    if socket_type in (zmq.PULL, zmq.ROUTER):
        return InprocRedelivery(sock, socket_type)
    if socket_type == zmq.DEALER and _dealer_can_be_plugged(sock):
        return InprocRedelivery(sock, socket_type)
    if socket_type == zmq.SUB:
        return SubRedelivery(sock)
    return LocalRedelivery(sock)


def _dealer_can_be_plugged(sock: Redelivering) -> bool:
    """Only before the application bound or connected it (the filler must go to the private peer)
    and with a bounded send queue (there must be something to fill)."""
    return not zmq.Socket.get(sock, zmq.LAST_ENDPOINT) and zmq.Socket.get(sock, zmq.SNDHWM) > 0


def as_bytes(frame: Any) -> bytes:
    return frame if type(frame) is bytes else memoryview(frame).tobytes()
