"""Payload decoders: turn a frame's bytes into something a person can read.

``zjournal inspect --decode NAME`` uses them; ``auto`` picks the first that
parses, in the order json, text, msgpack, hex.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable

import msgpack

from zjournal.errors import InvalidArgumentError

Decoder = Callable[[bytes], str]

_PRINTABLE = set(string.printable.encode())


class NotDecodable(ValueError):
    """The decoder does not apply to these bytes."""


def decode_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotDecodable("not UTF-8 text") from e
    if any(ch in text for ch in "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0e\x0f\x7f"):
        raise NotDecodable("control characters: not text")
    return text


def decode_json(data: bytes) -> str:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise NotDecodable("not JSON") from e
    if not isinstance(value, (dict, list)):
        raise NotDecodable("a bare JSON scalar: shown as text")
    return json.dumps(value, indent=2, ensure_ascii=False)


def decode_msgpack(data: bytes) -> str:
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types
        raise NotDecodable("not msgpack") from e
    if not isinstance(value, (dict, list)):
        raise NotDecodable("a bare msgpack scalar")
    return json.dumps(value, indent=2, ensure_ascii=False, default=repr)


def decode_hex(data: bytes) -> str:
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        shown = "".join(chr(b) if b in _PRINTABLE and b >= 0x20 else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<47}  {shown}")
    return "\n".join(lines) or "(empty)"


DECODERS: dict[str, Decoder] = {
    "json": decode_json,
    "text": decode_text,
    "msgpack": decode_msgpack,
    "hex": decode_hex,
}


def decode(data: bytes, how: str = "auto") -> tuple[str, str]:
    """``(decoder used, text)`` for one frame."""
    if how == "auto":
        for name, decoder in DECODERS.items():
            try:
                return name, decoder(data)
            except NotDecodable:
                continue
        raise AssertionError("hex decodes anything")
    decoder = DECODERS.get(how)
    if decoder is None:
        raise InvalidArgumentError(f"unknown decoder {how!r}: expected auto, {', '.join(DECODERS)}")
    try:
        return how, decoder(data)
    except NotDecodable as e:
        return "hex", f"({how}: {e})\n{decode_hex(data)}"


def preview(frames: list[bytes], width: int = 40) -> str:
    """A one-line glimpse of a message body."""
    parts = []
    for frame in frames:
        try:
            parts.append(decode_text(frame))
        except NotDecodable:
            parts.append(frame[:16].hex() + ("…" if len(frame) > 16 else ""))
    text = " | ".join(parts).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
