"""The wire format of end-to-end confirms (``confirm=True``): what journaled peers add to messages.

A sending socket with ``confirm=True`` puts one *header frame* before the
application's frames::

    b"ZJC1" | origin (16 bytes) | sequence (u64) | floor (u64) | confirm endpoint (UTF-8)

``origin`` names the sender's journal and stream (the same across its
restarts), ``sequence`` is the message's entry id there, ``floor`` the lowest
sequence the sender still waits a confirmation for (the receiver forgets
what is below: zjournal.journal.seen), and the endpoint is where the
receiver sends confirmations (a tcp, ipc or inproc address the sender bound).

A journaled receiver removes the header before the application sees the
message, journals the message, and sends back *confirm messages* in batches,
two frames::

    b"ZJK1" | origin (16 bytes)        sequences (u64 each, big-endian, concatenated)

A frame that starts with the magic but is not a well-formed header (another
length, an endpoint that is not an address) is not a header: the message is
handed over exactly as it came. All integers are big-endian.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

HEADER_MAGIC = b"ZJC1"
CONFIRM_MAGIC = b"ZJK1"
ORIGIN_SIZE = 16
MAX_ENDPOINT_BYTES = 256  # longer "endpoints" are not headers
MAX_CONFIRMS = 65536  # sequences per confirm message at most

_FIXED = struct.Struct(">4s16sQQ")
_SEQ = struct.Struct(">Q")
_SCHEMES = ("tcp://", "ipc://", "inproc://")


class Header(NamedTuple):
    origin: bytes
    seq: int
    floor: int
    endpoint: str


def encode_header(origin: bytes, seq: int, floor: int, endpoint: bytes) -> bytes:
    """The header frame; ``endpoint`` already UTF-8 (the sender encodes it once)."""
    return _FIXED.pack(HEADER_MAGIC, origin, seq, floor) + endpoint


def is_address(endpoint: str) -> bool:
    """A tcp, ipc or inproc address a receiver may connect to (nothing else is ever connected)."""
    return endpoint.startswith(_SCHEMES) and endpoint.isprintable() and len(endpoint) > len("ipc://")


def parse_header(frame: bytes) -> Header | None:
    """The header in ``frame``, or None when it is not one (then the frame is the application's)."""
    # (Once per message received: module constants, and the endpoint checked once per sender.)
    endpoint = _endpoints.get(frame[_FIXED_SIZE:])  # a sender names the same endpoint in every message
    if endpoint is None:
        if not _FIXED_SIZE < len(frame) <= _FIXED_SIZE + MAX_ENDPOINT_BYTES:
            return None
        try:
            endpoint = frame[_FIXED_SIZE:].decode()
        except UnicodeDecodeError:
            return None
        if not is_address(endpoint):
            return None
        if len(_endpoints) < _MAX_KNOWN_ENDPOINTS:
            _endpoints[frame[_FIXED_SIZE:]] = endpoint
    elif len(frame) <= _FIXED_SIZE:
        return None
    magic, origin, seq, floor = _unpack_fixed(frame)
    if magic != HEADER_MAGIC or seq == 0 or floor > seq:
        return None
    return _new_tuple(Header, (origin, seq, floor, endpoint))


_unpack_fixed = _FIXED.unpack_from
_FIXED_SIZE = _FIXED.size
_new_tuple = tuple.__new__  # a Header without the Python-level __new__ of a NamedTuple
pack_fixed = _FIXED.pack  # magic, origin, sequence, floor: a header without its endpoint
_endpoints: dict[bytes, str] = {}  # endpoints seen in headers, already checked
_MAX_KNOWN_ENDPOINTS = 4096


def encode_confirms(origin: bytes, seqs: list[int]) -> list[bytes]:
    """One confirm message for up to :data:`MAX_CONFIRMS` sequences of ``origin``."""
    return [CONFIRM_MAGIC + origin, struct.pack(f">{len(seqs)}Q", *seqs)]


def parse_confirms(frames: list[bytes]) -> tuple[bytes, list[int]] | None:
    """``(origin, sequences)`` of a confirm message, or None for anything else (dropped by the sender)."""
    if len(frames) != 2:
        return None
    head, body = frames
    if len(head) != len(CONFIRM_MAGIC) + ORIGIN_SIZE or not head.startswith(CONFIRM_MAGIC):
        return None
    if not body or len(body) % _SEQ.size or len(body) > MAX_CONFIRMS * _SEQ.size:
        return None
    return head[len(CONFIRM_MAGIC) :], list(struct.unpack(f">{len(body) // _SEQ.size}Q", body))
