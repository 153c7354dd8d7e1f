"""A journaled ROUTER serving REQ clients: their resends recognised, each reply sent where it is awaited.

A journaled REQ names itself in the handshake (its origin, see
zjournal.sockets.requests) and resends a request when its connection closed
or no reply came in time: on a new connection (a new routing id) or on the
same one with a new ``REQ_CORRELATE`` request id. A ROUTER application knows
nothing of that; it answers the routing id the request came with. So a
journaled ROUTER keeps, for each request of a journaled REQ that it handed
over and that is not answered yet, the request's key (origin, digest of the
body) and the routing id the application will answer:

* A copy of a request in hand (the same key) is not handed over again; its
  envelope is noted, and when the application answers the original, the
  reply also goes out under the copy's envelope (the original's routing id
  may be gone, its request id is stale). Sending both is harmless: libzmq
  drops a message to a routing id that is gone, and a correlating REQ drops
  a reply with an older request id.
* A request redelivered after a restart reaches the application through the
  redelivery peer (its routing id, ``peer_id``, is the same for all of them),
  and its requester's pipe is gone. Its reply can be pinned on it only while
  it is the one request in hand through that peer and every earlier one was
  a journaled REQ's (one reply each); then the reply is kept, bounded
  (:class:`AnsweredToNobody`), for the resend that follows, or goes to a copy
  that came meanwhile. Otherwise a copy is handed over again (at least once).
* A copy that arrives while its redelivered original is still queued is the
  one handed over (its requester is alive); the queued original is settled
  when it comes up (:meth:`RouterRequests.came_live`).

A copy of a request whose reply went to a live requester is a new request to
the ROUTER (it cannot tell one from the other) and is handled again.
"""

from __future__ import annotations

import collections

import zmq

from zjournal.journal.entry import Entry, envelope_size_of
from zjournal.sockets.requests import AnsweredToNobody, digest_of, origin_of, split_origin

IN_HAND = 4096  # requests in hand remembered at most; the oldest are forgotten (a copy is then handled again)
_ORIGINS = 65536  # routing ids whose origin is remembered at most

Key = tuple[bytes, bytes]  # (the requester's origin, digest of the request's body)


class InHand:
    """A journaled REQ's request handed to the application and not answered yet."""

    __slots__ = ("also_to", "entry_id", "key", "latest", "through_peer")

    def __init__(self, entry_id: int, key: Key, through_peer: bool) -> None:
        self.entry_id = entry_id
        self.key = key
        self.through_peer = through_peer
        self.latest: list[bytes] | None = None  # the envelope of the latest copy, if one came
        self.also_to: list[bytes] | None = None  # set at the reply: the same reply under that envelope


class RouterRequests:
    """What a journaled ROUTER knows of its journaled REQ clients' requests."""

    def __init__(self) -> None:
        self._origins: dict[bytes, bytes | None] = {}  # libzmq-made routing id -> its connection's origin
        self._live: collections.OrderedDict[bytes, InHand] = collections.OrderedDict()  # by routing id
        self._by_key: dict[Key, InHand] = {}
        self._through_peer: collections.deque[InHand | None] = collections.deque()  # in the order handed
        self._peer_sure = True  # every reply through the peer so far was pinned on its one request
        self.peer_id: bytes | None = None  # the redelivery peer's routing id
        self._to_nobody = AnsweredToNobody()
        self.in_hand = False  # anything to look for in the application's sends
        self.recognised = 0  # copies not handed over (in hand, or settled when their original came up)
        self.handed_again = 0  # copies handed over again: their original's reply could not be pinned

    def origin_of(self, first: zmq.Frame) -> bytes | None:
        """The origin of the connection a message came by (``first``: its routing-id frame)."""
        rid = first.bytes
        if rid[:1] != b"\x00":
            return origin_of(first)  # a routing id the peer chose: another peer may take it over
        origins = self._origins
        if rid in origins:  # libzmq's own ids are never reused by a socket
            return origins[rid]
        if len(origins) >= _ORIGINS:
            origins.clear()
        origin = origins[rid] = origin_of(first)
        return origin

    @property
    def not_handed(self) -> int:
        """Copies the application never saw: recognised, or answered from a kept reply."""
        return self.recognised + self._to_nobody.answered

    @property
    def any_in_hand(self) -> bool:
        """Whether any journaled REQ's request is in hand (else nothing is a copy)."""
        return bool(self._by_key)

    @staticmethod
    def key_of(origin: bytes, frames: list[bytes], size: int) -> Key:
        return (origin, digest_of(frames[size:]))

    def copy_in_hand(self, key: Key, envelope: list[bytes]) -> bool:
        """Whether a request with ``key`` is in hand; if so its reply goes to ``envelope`` too."""
        request = self._by_key.get(key) if self._by_key else None
        if request is None:
            return False
        if request.through_peer and not self._pinnable():
            self.handed_again += 1
            return False
        request.latest = envelope
        self.recognised += 1
        return True

    def answered_to_nobody(self, key: Key) -> list[bytes] | None:
        """The reply kept for this request (its original was answered to nobody), once."""
        return self._to_nobody.take_keyed(key)

    def handed(self, entry_id: int, key: Key, rid: bytes) -> None:
        """A live request of a journaled REQ goes to the application, which answers ``rid``."""
        earlier = self._live.pop(rid, None)
        if earlier is not None:
            self._drop_key(earlier)  # its REQ moved on: it sends one request at a time per connection
        request = InHand(entry_id, key, through_peer=False)
        self._live[rid] = request
        self._by_key[key] = request
        if len(self._live) > IN_HAND:
            self._drop_key(self._live.popitem(last=False)[1])
        self.in_hand = True

    def redelivered(self, entry: Entry, peer_id: bytes) -> None:
        """A redelivered request went to the application through the redelivery peer."""
        self.peer_id = peer_id
        origin, frames, size = split_origin(entry.frames, entry.envelope_size)
        request = None
        if origin is not None:
            request = InHand(entry.id, self.key_of(origin, frames, size), through_peer=True)
            self._by_key.setdefault(request.key, request)
        else:
            self._peer_sure = False  # not a REQ's: it may get any number of replies
        self._through_peer.append(request)
        if len(self._through_peer) > IN_HAND:
            self._peer_sure = False
            self._drop_key(self._through_peer.popleft())
        self.in_hand = True

    def came_live(self, entry: Entry) -> bool:
        """Whether a redelivered request's copy came live already (and went to the application instead)."""
        origin, frames, size = split_origin(entry.frames, entry.envelope_size)
        if origin is None or not self._by_key:
            return False
        request = self._by_key.get(self.key_of(origin, frames, size))
        if request is None or request.through_peer:
            return False
        self.recognised += 1
        return True

    def answer(self, frames: list[bytes]) -> InHand | None:
        """The application sends ``frames``: the request in hand it answers, if it is one we know."""
        rid = frames[0]
        if rid == self.peer_id and self._through_peer:
            pinned = self._pinnable()
            if len(self._through_peer) > 1:
                self._peer_sure = False  # which one this answers, only the application knows
            request = self._through_peer.popleft()
            if not self._through_peer:
                self._peer_sure = True  # every one answered: from here on it is one at a time again
            if request is None:
                self._update_in_hand()
                return None
            self._drop_key(request)
            if pinned:
                body = frames[envelope_size_of(frames) :]
                if request.latest is not None:
                    request.also_to = [*request.latest, *body]
                else:
                    self._to_nobody.keep_keyed(request.key, body)
            self._update_in_hand()
            return request
        request = self._live.pop(rid, None)
        if request is None:
            return None
        self._drop_key(request)
        if request.latest is not None:
            request.also_to = [*request.latest, *frames[envelope_size_of(frames) :]]
        self._update_in_hand()
        return request

    def _pinnable(self) -> bool:
        return self._peer_sure and len(self._through_peer) == 1

    def _drop_key(self, request: InHand | None) -> None:
        if request is not None and self._by_key.get(request.key) is request:
            del self._by_key[request.key]

    def _update_in_hand(self) -> None:
        self.in_hand = bool(self._live or self._through_peer)
