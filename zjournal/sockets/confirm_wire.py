"""The wire format of end-to-end confirms (``confirm=True``): what journaled peers add to messages.

A sending socket with ``confirm=True`` puts one *header frame* before the
application's frames::

    b"ZJC1" | origin (16 bytes) | sequence (u64) | floor (u64) | confirm endpoint (UTF-8)

``origin`` names the sender: its first 8 bytes the *stream* (its journal and
socket name, the same across restarts), the last 8 the *run* (new each time
the socket is wrapped; a resend keeps the run that first sent the message:
zjournal.journal.seen). ``sequence`` is the message's entry id there, ``floor`` the lowest
sequence the sender still waits a confirmation for (the receiver forgets
what is below: zjournal.journal.seen), and the endpoint is where the
receiver sends confirmations (a tcp or ipc address the sender bound; never
inproc, which skips the handshake that keeps confirmations from strangers:
zjournal.sockets.confirm_channel).

A journaled receiver removes the header before the application sees the
message, journals the message, and sends back *confirm messages* in batches,
two frames::

    b"ZJK1" | origin (16 bytes)        sequences (u64 each, big-endian, concatenated)

A message the receiving journal will never take (larger than its
``max_message_size``) is *refused* instead, three frames, at once: the
sender makes it a dead letter with the reason, rather than resend it for
ever (RabbitMQ's ``basic.nack`` to a publisher)::

    b"ZJN1" | origin (16 bytes)        sequences        reason (UTF-8, at most 512 bytes)

A message of one frame of at most :data:`MERGE_LIMIT` bytes goes as one
frame instead, the header in front (*merged*): a frame fewer to send and to
receive, which is most of what confirms cost per message::

    b"ZJC2" | origin | sequence | floor | endpoint length (u16) | endpoint | the application's frame

A merged frame is always a whole message: a receiver that read one from a
sender takes the next frame that starts as that sender's did (magic, origin,
endpoint) as a whole message too, without asking libzmq for its more flag
(a peer that sends a copy of such a frame before more frames has its own
message split in two, nobody else's).

A frame that starts with a magic but is not a well-formed header (another
length, an endpoint that is not an address) is not a header: the message is
handed over exactly as it came. All integers are big-endian.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from zjournal.journal import seen

HEADER_MAGIC = b"ZJC1"
MERGED_MAGIC = b"ZJC2"
PREFIX = b"ZJC"  # what both forms start with: one look on the receiving hot path
MERGE_LIMIT = 16 * 1024  # one-frame messages up to this size go merged (larger: copying costs more than a frame)
CONFIRM_MAGIC = b"ZJK1"
REFUSAL_MAGIC = b"ZJN1"
MAX_REASON_BYTES = 512
ORIGIN_SIZE = seen.ORIGIN_SIZE
STREAM_SIZE = seen.STREAM_SIZE  # an origin's stream: the same across a sender's restarts (the rest: its run)
stream_of = seen.stream_of
MAX_ENDPOINT_BYTES = 256  # longer "endpoints" are not headers
MAX_CONFIRMS = 65536  # sequences per confirm message at most
_SENDERS_KEPT = 64  # senders a receiving socket compares frames with before it parses one (LastSender)

_FIXED = struct.Struct(">4s16sQQ")
_SEQ = struct.Struct(">Q")
_SCHEMES = ("tcp://", "ipc://")


class Header(NamedTuple):
    origin: bytes
    seq: int
    floor: int
    endpoint: str


def encode_header(origin: bytes, seq: int, floor: int, endpoint: bytes) -> bytes:
    """The header frame; ``endpoint`` already UTF-8 (the sender encodes it once)."""
    return _FIXED.pack(HEADER_MAGIC, origin, seq, floor) + endpoint


def is_address(endpoint: str) -> bool:
    """A tcp or ipc address a receiver may connect to (nothing else is ever connected)."""
    return endpoint.startswith(_SCHEMES) and endpoint.isprintable() and len(endpoint) > len("ipc://")


def parse_header(frame: bytes) -> Header | None:
    """The header in ``frame``, or None when it is not one (then the frame is the application's)."""
    # (Once per message received: module constants, and the endpoint checked once per sender.)
    endpoint = _endpoints.get(frame[_FIXED_SIZE:])  # a sender names the same endpoint in every message
    if endpoint is None:
        if len(frame) <= _FIXED_SIZE:
            return None
        endpoint = _checked_endpoint(frame[_FIXED_SIZE:])
        if endpoint is None:
            return None
    elif len(frame) <= _FIXED_SIZE:
        return None
    magic, origin, seq, floor = _unpack_fixed(frame)
    if magic != HEADER_MAGIC or seq == 0 or floor > seq:
        return None
    return _new_tuple(Header, (origin, seq, floor, endpoint))


def _checked_endpoint(raw: bytes) -> str | None:
    """``raw`` as an endpoint a receiver may connect to (remembered), or None."""
    if not 0 < len(raw) <= MAX_ENDPOINT_BYTES:
        return None
    try:
        endpoint = raw.decode()
    except UnicodeDecodeError:
        return None
    if not is_address(endpoint):
        return None
    if len(_endpoints) < _MAX_KNOWN_ENDPOINTS:
        _endpoints[raw] = endpoint
    return endpoint


def encode_merged(origin: bytes, seq: int, floor: int, endpoint: bytes, data: bytes) -> bytes:
    """A one-frame message with its header in front (``endpoint`` already UTF-8)."""
    return _MERGED.pack(MERGED_MAGIC, origin, seq, floor, len(endpoint)) + endpoint + data


def merged_packer(origin: bytes, endpoint: bytes) -> tuple[Callable[..., bytes], bytes, bytes]:
    """For one sender's merged frames: ``(pack, front, back)``, such that
    ``pack(front, seq, floor, back) + data == encode_merged(origin, seq, floor, endpoint, data)``.

    One struct call per message: the parts that never change are packed once.
    """
    front = MERGED_MAGIC + origin
    back = len(endpoint).to_bytes(2, "big") + endpoint  # (the u16 endpoint length, then the endpoint)
    return struct.Struct(f">{len(front)}sQQ{len(back)}s").pack, front, back


def parse_merged(frame: bytes) -> tuple[bytes, int, int, str, bytes] | None:
    """``(origin, seq, floor, endpoint, the application's frame)`` of a merged frame, or None when it is not one."""
    if len(frame) < _MERGED_SIZE:
        return None
    magic, origin, seq, floor, size = _unpack_merged(frame)
    end = _MERGED_SIZE + size
    if magic != MERGED_MAGIC or seq == 0 or floor > seq or len(frame) < end:
        return None
    raw = frame[_MERGED_SIZE:end]
    endpoint = _endpoints.get(raw)
    if endpoint is None:
        endpoint = _checked_endpoint(raw)
        if endpoint is None:
            return None
    return origin, seq, floor, endpoint, frame[end:]


class LastSender:
    """The sender of the last merged frame a receiving socket read: its next frames are compared, not parsed.

    A sender's merged frames differ only in sequence and floor: its magic
    and origin (``front``), its endpoint length and endpoint (``back``) are
    compared with two ``startswith``, not parsed and looked up again. The
    senders heard before are kept too (:meth:`switch`, up to
    :data:`_SENDERS_KEPT`): when several take turns, a frame of another one
    costs a lookup, not a parse. ``JournaledSocket.recv`` does :meth:`parse`
    inline (the hottest code of the project); :meth:`parse` is the reference
    its tests hold it to.
    """

    __slots__ = ("back", "end", "endpoint", "front", "heard", "origin")

    def __init__(self) -> None:
        self.front = self.back = b""
        self.origin = b""
        self.endpoint = ""
        self.end = 0  # where the application's frame starts (0: no sender yet)
        self.heard: dict[bytes, tuple[bytes, bytes, str, int]] = {}  # front -> back, origin, endpoint, end

    def learn(self, frame: bytes) -> bool:
        """Parse ``frame`` in full; when it is a merged frame its sender becomes the last one (else nothing changes)."""
        merged = parse_merged(frame)
        if merged is None:
            return False
        self.origin, self.endpoint = merged[0], merged[3]
        self.end = end = len(frame) - len(merged[4])
        self.front, self.back = frame[:ORIGIN_END], frame[SEQ_FLOOR_END:end]
        heard = self.heard
        if len(heard) >= _SENDERS_KEPT:
            heard.clear()  # (senders come and go: their runs change at each restart)
        heard[self.front] = (self.back, self.origin, self.endpoint, end)
        return True

    def switch(self, frame: bytes) -> bool:
        """Whether ``frame`` is a merged frame of a sender heard before (then it is the last one): no parse."""
        front = frame[:ORIGIN_END]
        sender = self.heard.get(front)
        if sender is None or not frame.startswith(sender[0], SEQ_FLOOR_END):
            return False
        self.front = front
        self.back, self.origin, self.endpoint, self.end = sender
        return True

    def parse(self, frame: bytes) -> tuple[bytes, int, int, str, bytes] | None:
        """What :func:`parse_merged` answers for ``frame``, compared with the last sender's first."""
        known = self.end and frame.startswith(self.front) and frame.startswith(self.back, SEQ_FLOOR_END)
        if not known and not self.switch(frame) and not self.learn(frame):
            return None
        seq, floor = unpack_seq_floor(frame, ORIGIN_END)  # (startswith(back) at SEQ_FLOOR_END: long enough)
        if seq == 0 or floor > seq:
            return None
        return self.origin, seq, floor, self.endpoint, frame[self.end :]


def take_header(frames: list[bytes], at: int = 0) -> Header | None:
    """Take the confirm header of the message in ``frames`` off (in place), the header frame at ``at``.

    Either form: a header frame before the application's frames, or a merged
    frame (replaced by the application's frame). None, and ``frames``
    unchanged, when the message carries no well-formed header.
    """
    if len(frames) <= at:
        return None
    first = frames[at]
    if len(frames) > at + 1:
        if not first.startswith(HEADER_MAGIC):
            return None
        header = parse_header(first)
        if header is not None:
            del frames[at]
        return header
    if not first.startswith(MERGED_MAGIC):
        return None
    merged = parse_merged(first)
    if merged is None:
        return None
    frames[at] = merged[4]
    return _new_tuple(Header, merged[:4])


_unpack_fixed = _FIXED.unpack_from
_FIXED_SIZE = _FIXED.size
_new_tuple = tuple.__new__  # a Header without the Python-level __new__ of a NamedTuple
pack_fixed = _FIXED.pack  # magic, origin, sequence, floor: a header without its endpoint
_MERGED = struct.Struct(">4s16sQQH")
_MERGED_SIZE = _MERGED.size
# The most a header adds to a message (merged, with the longest endpoint; a header frame adds less): a
# receiver that limits frames (libzmq's MAXMSGSIZE) allows this much more for a confirm sender's frame.
MAX_HEADER_BYTES = _MERGED_SIZE + MAX_ENDPOINT_BYTES
_unpack_merged = _MERGED.unpack_from
ORIGIN_END = len(MERGED_MAGIC) + ORIGIN_SIZE  # where a merged frame's sequence starts
SEQ_FLOOR_END = ORIGIN_END + 16  # ... and where its endpoint length starts
unpack_seq_floor = struct.Struct(">QQ").unpack_from  # a merged frame's sequence and floor, from ORIGIN_END
_endpoints: dict[bytes, str] = {}  # endpoints seen in headers, already checked
_MAX_KNOWN_ENDPOINTS = 4096


def encode_confirms(origin: bytes, seqs: list[int]) -> list[bytes]:
    """One confirm message for up to :data:`MAX_CONFIRMS` sequences of ``origin``."""
    return [CONFIRM_MAGIC + origin, struct.pack(f">{len(seqs)}Q", *seqs)]


def parse_confirms(frames: list[bytes]) -> tuple[bytes, list[int]] | None:
    """``(origin, sequences)`` of a confirm message, or None for anything else (a refusal included)."""
    if len(frames) != 2:
        return None
    return _origin_and_seqs(CONFIRM_MAGIC, frames[0], frames[1])


def encode_refusal(origin: bytes, seqs: list[int], reason: str) -> list[bytes]:
    """A refusal of up to :data:`MAX_CONFIRMS` sequences of ``origin``, and why (cut to :data:`MAX_REASON_BYTES`)."""
    why = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore").encode()  # (not cut inside a character)
    return [REFUSAL_MAGIC + origin, struct.pack(f">{len(seqs)}Q", *seqs), why]


def parse_refusal(frames: list[bytes]) -> tuple[bytes, list[int], str] | None:
    """``(origin, sequences, reason)`` of a refusal, or None for anything else.

    The reason comes from a peer and ends up in dead letters that ``zjournal
    inspect`` prints: only its printable characters are kept.
    """
    if len(frames) != 3 or len(frames[2]) > MAX_REASON_BYTES:
        return None
    got = _origin_and_seqs(REFUSAL_MAGIC, frames[0], frames[1])
    if got is None:
        return None
    reason = "".join(c for c in frames[2].decode(errors="replace") if c.isprintable())
    return got[0], got[1], reason


def _origin_and_seqs(magic: bytes, head: bytes, body: bytes) -> tuple[bytes, list[int]] | None:
    if len(head) != len(magic) + ORIGIN_SIZE or not head.startswith(magic):
        return None
    if not body or len(body) % _SEQ.size or len(body) > MAX_CONFIRMS * _SEQ.size:
        return None
    return head[len(magic) :], list(struct.unpack(f">{len(body) // _SEQ.size}Q", body))
