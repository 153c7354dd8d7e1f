"""REQ clients' resends at the queue device: recognised while their request is pending, answered once.

A journaled REQ names itself in the handshake (its origin, see
zjournal.sockets.requests) and sends a request again when its connection to
the device closed or no reply came in time. The device journals the origin
with each request (a frame before the client's envelope) and keeps, for the
requests still pending, which origin and body they came with: a request from
the same origin with the same body is that request again. It gets no second
entry and no second forward; the reply goes to where the latest copy came
from (a reconnected client has a new routing id, a correlated resend a new
request id). A reply that reached nobody (the client's connection was gone:
ROUTER_MANDATORY says so, or the request came in an earlier run, whose
routing ids name other peers now) is kept for the resend that follows.
"""

from __future__ import annotations

from zjournal.sockets.requests import AnsweredToNobody, digest_of


class ClientResends:
    """The device's view of its REQ clients' requests: what is pending by (origin, body), where replies go."""

    def __init__(self) -> None:
        self._pending: dict[tuple[bytes, bytes], int] = {}  # (origin, digest of the body) -> entry id
        self._key_of: dict[int, tuple[bytes, bytes]] = {}
        self._reply_to: dict[int, list[bytes]] = {}  # entry -> the envelope of its latest copy
        self._to_nobody = AnsweredToNobody()
        self.recognised = 0  # copies of pending requests that got no entry and no forward
        self.answered_again = 0  # copies answered with a reply that had reached nobody

    def journaled(self, entry_id: int, origin: bytes, body: list[bytes]) -> None:
        key = (origin, digest_of(body))
        self._pending[key] = entry_id
        self._key_of[entry_id] = key

    def copy_of_pending(self, origin: bytes, body: list[bytes], envelope: list[bytes]) -> bool:
        """Whether this request is one pending already; if so its reply goes to ``envelope`` now."""
        entry_id = self._pending.get((origin, digest_of(body))) if self._pending else None
        if entry_id is None:
            return False
        self._reply_to[entry_id] = envelope
        self.recognised += 1
        return True

    def reply_for_copy(self, origin: bytes, body: list[bytes]) -> list[bytes] | None:
        """The reply to this request if it was answered already and that reply reached nobody."""
        reply = self._to_nobody.take(origin, body)
        if reply is not None:
            self.answered_again += 1
        return reply

    def envelope_for(self, entry_id: int) -> list[bytes] | None:
        """Where the reply to ``entry_id`` goes instead of its journaled envelope (a copy came later)."""
        return self._reply_to.get(entry_id)

    def reached_nobody(self, entry_id: int, reply: list[bytes]) -> None:
        """The reply to ``entry_id`` (its body) found no client: kept for the copy its client sends."""
        key = self._key_of.get(entry_id)
        if key is not None:
            self._to_nobody.keep_keyed(key, reply)

    def done(self, entry_id: int) -> None:
        """``entry_id`` is answered or dead: a copy of it from now on is a new request (or a cached answer)."""
        key = self._key_of.pop(entry_id, None)
        if key is not None and self._pending.get(key) == entry_id:
            del self._pending[key]
        self._reply_to.pop(entry_id, None)
