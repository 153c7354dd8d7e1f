"""Tags that tie a worker's reply to its request, and cannot be forged or confused.

A request goes to the backend behind one frame, ``zjq:`` + its entry id +
a MAC of that id keyed with a secret drawn at random for the device (kept
in its journal, so that a worker's reply to a delivery made before a
restart still answers its request after it). A worker echoes the frame
with its reply; the device accepts a reply only when the MAC is right (a
peer cannot make up a tag for a request it never saw) *and* the reply's
routing envelope is the journaled request's own (a worker answering A with
B's tag acks nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import struct

PREFIX = b"zjq:"
_ID = struct.Struct(">Q")
_MAC_SIZE = 8
TAG_SIZE = len(PREFIX) + _ID.size + _MAC_SIZE


class Tags:
    """Issues and checks the correlation frames of one device run."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hashlib.blake2b(key=key, digest_size=_MAC_SIZE)  # copied per tag: keying costs 4x more

    def _mac(self, packed_id: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(packed_id)
        return mac.digest()

    def issue(self, request_id: int) -> bytes:
        packed = _ID.pack(request_id)
        return PREFIX + packed + self._mac(packed)

    def read(self, frame: bytes) -> int | None:
        """The request id a tag stands for; None when this device did not issue it."""
        if len(frame) != TAG_SIZE or not frame.startswith(PREFIX):
            return None
        packed = frame[len(PREFIX) : len(PREFIX) + _ID.size]
        if not hmac.compare_digest(frame[len(PREFIX) + _ID.size :], self._mac(packed)):
            return None
        return _ID.unpack(packed)[0]


def looks_like_a_tag(frame: bytes) -> bool:
    """The shape of a tag, whoever issued it (to tell a bad tag from none at all)."""
    return frame.startswith(PREFIX)


def envelope_size(frames: list[bytes]) -> int:
    """The routing envelope of a ROUTER message: ids up to and including the empty delimiter."""
    for index, frame in enumerate(frames[:16]):
        if index and not frame:
            return index + 1
    return 1
