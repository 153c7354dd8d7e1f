"""Showing payloads to people: the decoders come from plugins (see zjournal.plugins).

``auto`` tries json, text and msgpack first, then any other plugin decoder,
and falls back to a hex dump, which is always available.
"""

from __future__ import annotations

import re
import string

from zjournal.errors import InvalidArgumentError

AUTO_FIRST = ("json", "text", "msgpack")
_SHOWN = set(string.printable.encode()) - set(b"\t\n\r\x0b\x0c")
# Shown escaped, wherever text from a journal or a peer reaches a terminal: C0 controls but tab
# and newline (ESC starts the sequences that clear screens, set titles, make links), DEL, C1
# controls, and the characters that reorder or hide text (bidirectional overrides, separators).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, newlines: bool = False) -> str:
    """``text`` with every terminal control escaped (``\\x1b``); newlines too unless ``newlines``."""
    text = _UNSAFE.sub(_escaped, text)
    return text if newlines else text.replace("\n", "\\n")


class NotDecodable(ValueError):
    """A decoder does not apply to these bytes."""


def hex_dump(data: bytes) -> str:
    """Offsets, hex and printable characters, 16 bytes a line."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset : offset + 16]
        shown = "".join(chr(b) if b in _SHOWN else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<47}  {shown}")
    return "\n".join(lines) or "(empty)"


def available() -> dict:
    """Decoder name -> function, from the loaded plugins (hex always)."""
    from zjournal.plugins import load

    decoders = load().decoders()
    decoders.setdefault("hex", hex_dump)
    return decoders


def decode(data: bytes, how: str = "auto") -> tuple[str, str]:
    """``(decoder used, text)`` for one frame; the text never holds a terminal control (see printable)."""
    used, text = _decode(data, how)
    return used, printable(text, newlines=True)


def _decode(data: bytes, how: str) -> tuple[str, str]:
    decoders = available()
    if how == "auto":
        order = [n for n in AUTO_FIRST if n in decoders]
        order += sorted(n for n in decoders if n not in AUTO_FIRST and n != "hex")
        for name in order:
            try:
                return name, decoders[name](data)
            except NotDecodable:
                continue
            except Exception:  # a broken plugin decoder: try the next one
                continue
        return "hex", hex_dump(data)
    decoder = decoders.get(how)
    if decoder is None:
        raise InvalidArgumentError(f"unknown decoder {how!r}: expected auto, {', '.join(sorted(decoders))}")
    try:
        return how, decoder(data)
    except Exception as e:
        return "hex", f"({how}: {e})\n{hex_dump(data)}"


def preview(frames: list[bytes], width: int = 40, how: str = "auto") -> str:
    """A one-line glimpse of a message body (``how``: a decoder's name; auto shows text, else hex)."""
    parts = []
    for frame in frames:
        if how == "hex":
            parts.append(frame[: width // 2].hex() + ("…" if len(frame) > width // 2 else ""))
            continue
        if how != "auto":
            parts.append(" ".join(decode(frame, how)[1].split()))  # on one line
            continue
        try:
            text = frame.decode("utf-8")
            if not text.isprintable():
                raise ValueError
            parts.append(text)
        except ValueError:
            parts.append(frame[:16].hex() + ("…" if len(frame) > 16 else ""))
    text = " | ".join(parts)
    return text if len(text) <= width else text[: width - 1] + "…"
