"""Entries, their states and their on-disk record format.

A record is a msgpack array with fixed positions (no field names on disk: they
cost bytes and packing time on the hot path). ``SCHEMA_VERSION`` changes
whenever the positions or their meaning change.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from zjournal.errors import InvalidArgumentError, InvalidFramesError
from zjournal.journal.blobs import BlobFiles, references

SCHEMA_VERSION = 1


class State(enum.StrEnum):
    """Where an entry is in its life: compares equal to its plain string."""

    PENDING = "pending"
    ACKED = "acked"
    DEAD = "dead"


class Direction(enum.StrEnum):
    """``in``: received by the application; ``out``: sent by it."""

    IN = "in"
    OUT = "out"


# Small ints on disk; the enums above are what users see.
STATE_CODES: dict[State, int] = {State.PENDING: 0, State.ACKED: 1, State.DEAD: 2}
STATES_BY_CODE: tuple[State, ...] = (State.PENDING, State.ACKED, State.DEAD)
DIRECTION_CODES: dict[Direction, int] = {Direction.IN: 0, Direction.OUT: 1}
DIRECTIONS_BY_CODE: tuple[Direction, ...] = (Direction.IN, Direction.OUT)

PENDING, ACKED, DEAD = 0, 1, 2


@dataclass(slots=True)
class Entry:
    """One whole ZeroMQ message and its delivery bookkeeping.

    ``frames`` holds every frame, the routing envelope included; the first
    ``envelope_size`` of them are the envelope (ROUTER identities and the empty
    delimiter), available apart as :attr:`envelope` and :attr:`body`.

    ``attempts`` counts hand-overs to the application; ``close_returns`` how
    many of them ended with a clean close that left the message pending (a
    REP's unanswered request, a message back from a cancelled asyncio recv, a
    journal closed under its sockets: it came back, as an unacked delivery
    does in RabbitMQ or JetStream). ``max_attempts`` counts only the others:
    a clean restart is not a failure of the message.
    """

    id: int
    name: str
    direction: Direction
    frames: list[bytes]
    state: State
    attempts: int
    created: float
    updated: float = 0.0
    reason: str = ""
    envelope_size: int = 0
    close_returns: int = 0
    size: int = field(init=False)

    def __post_init__(self) -> None:
        self.size = sum(len(f) for f in self.frames)

    @property
    def envelope(self) -> list[bytes]:
        return self.frames[: self.envelope_size]

    @property
    def body(self) -> list[bytes]:
        return self.frames[self.envelope_size :]


# Record positions: [state, attempts, created, name, direction, frames, updated, reason, envelope_size]
# and, only when nonzero (most records never have it), close_returns at 9.
_packer = msgpack.Packer(use_bin_type=True)
_KEY = struct.Struct(">Q")


def encode_key(entry_id: int) -> bytes:
    """Big-endian ids sort in id order, which is arrival order."""
    return _KEY.pack(entry_id)


def decode_key(key: bytes) -> int:
    return _KEY.unpack(key)[0]


def encode_record(
    state: int,
    attempts: int,
    created: float,
    name: str,
    direction: int,
    frames: list[bytes],
    updated: float = 0.0,
    reason: str = "",
    envelope_size: int = 0,
    close_returns: int = 0,
) -> bytes:
    if frames and len(frames[-1]) > _LARGE_FRAME:
        return _encode_large(
            state, attempts, created, name, direction, frames, updated, reason, envelope_size, close_returns
        )
    if close_returns:
        return _packer.pack(
            [state, attempts, created, name, direction, frames, updated, reason, envelope_size, close_returns]
        )
    return _packer.pack([state, attempts, created, name, direction, frames, updated, reason, envelope_size])


def close_returns(r: list) -> int:
    """How many hand-overs of a decoded record ended with a clean close (position 9, absent when 0)."""
    return r[9] if len(r) > 9 else 0


def counted_attempts(r: list) -> int:
    """The hand-overs of a decoded record that ``max_attempts`` counts (those a clean close did not end)."""
    return r[1] - r[9] if len(r) > 9 else r[1]


_LARGE_FRAME = 1 << 20
_BIN8, _BIN16, _BIN32 = struct.Struct(">BB"), struct.Struct(">BH"), struct.Struct(">BI")


def _encode_large(
    state: int,
    attempts: int,
    created: float,
    name: str,
    direction: int,
    frames: list[bytes],
    updated: float,
    reason: str,
    envelope_size: int,
    close_returns: int,
) -> bytes:
    """The same msgpack record, joined from pieces that refer to the frames.

    The shared packer would copy a large message twice (into its buffer,
    then out of it) and keep a buffer that large for the rest of the
    process; a join copies it once.
    """
    pack = _packer.pack
    header = _packer.pack_array_header(10 if close_returns else 9)
    pieces = [header, pack(state), pack(attempts), pack(created), pack(name), pack(direction)]
    pieces.append(_packer.pack_array_header(len(frames)))
    for frame in frames:
        n = len(frame)  # msgpack's bin 8, bin 16 and bin 32 headers
        header = _BIN8.pack(0xC4, n) if n < 0x100 else _BIN16.pack(0xC5, n) if n < 0x10000 else _BIN32.pack(0xC6, n)
        pieces += (header, frame)
    pieces += [pack(updated), pack(reason), pack(envelope_size)]
    if close_returns:
        pieces.append(pack(close_returns))
    return b"".join(pieces)


def decode_record(raw: bytes) -> list:
    """The record as a mutable list in the positions of :func:`encode_record`."""
    return msgpack.unpackb(raw, raw=False, use_list=True)


def entry_from_record(entry_id: int, rec: list, blobs: BlobFiles | None = None) -> Entry:
    """The entry a record describes; ``blobs``: where the frames it keeps in blob files are read from."""
    frames = rec[5]
    if blobs is not None and references(frames):
        frames = blobs.resolve(frames)
    return Entry(
        id=entry_id,
        name=rec[3],
        direction=DIRECTIONS_BY_CODE[rec[4]],
        frames=frames,
        state=STATES_BY_CODE[rec[0]],
        attempts=rec[1],
        created=rec[2],
        updated=rec[6],
        reason=rec[7],
        envelope_size=rec[8],
        close_returns=rec[9] if len(rec) > 9 else 0,
    )


def as_frames(frames: Sequence[Any]) -> list[bytes]:
    """Whole message as a list of bytes; one clear error for anything else."""
    if isinstance(frames, (bytes, bytearray, memoryview, str)):
        raise InvalidFramesError(
            f"frames must be a sequence of bytes-like frames (a list), not a single {type(frames).__name__}"
        )
    try:
        items = list(frames)
    except TypeError:
        raise InvalidFramesError(
            f"frames must be a sequence of bytes-like frames, not {type(frames).__name__}"
        ) from None
    if not items:
        raise InvalidFramesError("a message needs at least one frame")
    out: list[bytes] = []
    for index, frame in enumerate(items):
        if type(frame) is bytes:
            out.append(frame)
            continue
        if isinstance(frame, str):
            raise InvalidFramesError(f"frame {index} is a str: encode it to bytes first")
        try:
            out.append(memoryview(frame).tobytes())
        except TypeError:
            raise InvalidFramesError(f"frame {index} is a {type(frame).__name__}, not bytes-like") from None
    return out


def envelope_size_of(frames: list[bytes]) -> int:
    """A ROUTER message's envelope: the routing ids up to and including the empty delimiter (or just the id)."""
    for index, frame in enumerate(frames[:8]):
        if index and not frame:
            return index + 1
    return 1


def parse_state(value: str | State | None) -> int | None:
    """The state code for a user-given state name, None for 'any'."""
    if value is None:
        return None
    try:
        return STATE_CODES[State(value.lower() if isinstance(value, str) else value)]
    except ValueError:
        names = ", ".join(s.value for s in State)
        raise InvalidArgumentError(f"unknown state {value!r}: expected one of {names}") from None


def parse_direction(value: str | Direction | None) -> int | None:
    """The direction code for a user-given direction, None for 'any'."""
    if value is None:
        return None
    try:
        return DIRECTION_CODES[Direction(value.lower() if isinstance(value, str) else value)]
    except ValueError:
        raise InvalidArgumentError(f"unknown direction {value!r}: expected 'in' or 'out'") from None
