"""What a replicated journal puts in its JetStream stream: packed batches of entry changes, and fences.

One stream per journal, named after its alias (``ZJ_<alias>``), with two
subjects:

* ``zj.<alias>.log``: batches. A batch is one msgpack map: the wire version,
  the shipper's fence epoch, its number, and ``ops``, a list of
  ``[entry id, record]`` (the journal's own msgpack record, unchanged) or
  ``[entry id, None]`` (the entry is gone: acked, purged). A batch may be
  part of a *snapshot* (``snap``: ``[snapshot number, part, last]``): the
  whole live state of the journal, after which what came before it is
  superseded (and purged).
* ``zj.<alias>.fence``: who owns the journal. Taking it over appends a fence
  record with compare-and-set on this subject's last sequence; every batch is
  published expecting that sequence, so an old owner's batch is refused.

What comes back from the engine is read as hostile input: anything that is
not a well-formed batch or fence raises ReplicationError, naming what is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import msgpack

from zjournal.errors import InvalidArgumentError, ReplicationError

WIRE_VERSION = 1
_ALIAS = re.compile(r"[A-Za-z0-9_-]{1,64}")
HEADROOM = 4096  # bytes of a message kept for the batch's own framing and the headers

Op = list  # [entry id, record bytes] or [entry id, None]


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias):
        raise InvalidArgumentError(f"a replicated journal's name is 1 to 64 letters, digits, '_' or '-', not {alias!r}")
    return alias


def stream_of(alias: str) -> str:
    return f"ZJ_{alias}"


def log_subject(alias: str) -> str:
    return f"zj.{alias}.log"


def fence_subject(alias: str) -> str:
    return f"zj.{alias}.fence"


def alias_of_stream(stream: str) -> str | None:
    """The journal alias a stream name belongs to (None: not a zjournal stream)."""
    if stream.startswith("ZJ_") and _ALIAS.fullmatch(stream[3:]):
        return stream[3:]
    return None


@dataclass
class Batch:
    epoch: int
    number: int
    ops: list[Op]
    snapshot: tuple[int, int, bool] | None  # (snapshot number, part, last part)
    at: float  # when the shipper sent it (its heartbeat)


def encode_batch(
    epoch: int, number: int, ops: list[Op], at: float, snapshot: tuple[int, int, bool] | None = None
) -> bytes:
    return msgpack.packb(
        {"v": WIRE_VERSION, "epoch": epoch, "n": number, "ops": ops, "snap": snapshot, "at": at}, use_bin_type=True
    )


def op_size(op: Op) -> int:
    """About what ``op`` adds to a packed batch (its record, the id and the framing)."""
    return (len(op[1]) if op[1] is not None else 0) + 16


def decode_batch(data: bytes, where: str) -> Batch:
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as e:  # a damaged or foreign message: msgpack raises several kinds
        raise ReplicationError(f"{where}: not a zjournal batch ({e})") from None
    if not isinstance(raw, dict) or raw.get("v") != WIRE_VERSION:
        raise ReplicationError(f"{where}: not a zjournal batch of wire version {WIRE_VERSION}")
    epoch, number, ops, snap, at = raw.get("epoch"), raw.get("n"), raw.get("ops"), raw.get("snap"), raw.get("at")
    if not _is_int(epoch) or not _is_int(number) or not isinstance(ops, list) or not isinstance(at, (int, float)):
        raise ReplicationError(f"{where}: a batch with a damaged header")
    for op in ops:
        if not (isinstance(op, list) and len(op) == 2 and _is_int(op[0]) and (op[1] is None or type(op[1]) is bytes)):
            raise ReplicationError(f"{where}: a batch with a damaged change ({_short(op)})")
    snapshot = None
    if snap is not None:
        if not (isinstance(snap, list) and len(snap) == 3 and _is_int(snap[0]) and _is_int(snap[1])):
            raise ReplicationError(f"{where}: a batch with a damaged snapshot mark")
        snapshot = (snap[0], snap[1], bool(snap[2]))
    return Batch(epoch, number, ops, snapshot, float(at))


@dataclass
class Fence:
    epoch: int
    owner: str  # host:pid of the process that owns the journal from this fence on
    path: str
    at: float


def encode_fence(fence: Fence) -> bytes:
    return msgpack.packb(
        {"v": WIRE_VERSION, "epoch": fence.epoch, "owner": fence.owner, "path": fence.path, "at": fence.at}
    )


def decode_fence(data: bytes, where: str) -> Fence:
    try:
        raw = msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise ReplicationError(f"{where}: not a zjournal fence ({e})") from None
    if not isinstance(raw, dict) or raw.get("v") != WIRE_VERSION or not _is_int(raw.get("epoch")):
        raise ReplicationError(f"{where}: not a zjournal fence of wire version {WIRE_VERSION}")
    owner, path, at = raw.get("owner"), raw.get("path"), raw.get("at")
    if not isinstance(owner, str) or not isinstance(path, str) or not isinstance(at, (int, float)):
        raise ReplicationError(f"{where}: a damaged fence record")
    return Fence(raw["epoch"], owner, path, float(at))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
