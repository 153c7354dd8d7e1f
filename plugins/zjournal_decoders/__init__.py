"""First-party zjournal plugins: the json, msgpack, text and hex payload decoders.

They are registered through the ``zjournal.plugins`` entry points exactly as a
third-party decoder would be, and are what ``zjournal inspect --decode`` uses.
"""

from __future__ import annotations

import json
import string

import msgpack

from zjournal import Plugin
from zjournal.decode import NotDecodable, hex_dump

# Not text: C0 controls but tab, newline, form feed and carriage return (ESC among them), DEL, C1 controls.
_CONTROL = (set(map(chr, range(0x20))) - set("\t\n\x0c\r")) | {"\x7f"} | set(map(chr, range(0x80, 0xA0)))
_PRINTABLE = set(string.printable)


def decode_text(data: bytes) -> str:
    """UTF-8 text without control characters."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NotDecodable("not UTF-8 text") from e
    if _CONTROL.intersection(text):
        raise NotDecodable("control characters: not text")
    return text


def decode_json(data: bytes) -> str:
    """A JSON object or array, pretty-printed (a bare scalar is left to the text decoder)."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise NotDecodable("not JSON") from e
    if not isinstance(value, (dict, list)):
        raise NotDecodable("a bare JSON scalar")
    return json.dumps(value, indent=2, ensure_ascii=False)


def decode_msgpack(data: bytes) -> str:
    """A msgpack map or array, shown as JSON (bytes as their repr)."""
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types
        raise NotDecodable("not msgpack") from e
    if not isinstance(value, (dict, list)):
        raise NotDecodable("a bare msgpack scalar")
    return json.dumps(value, indent=2, ensure_ascii=False, default=repr)


json_plugin = Plugin(name="json", description="JSON payload decoder", decoders={"json": decode_json})
text_plugin = Plugin(name="text", description="UTF-8 text payload decoder", decoders={"text": decode_text})
msgpack_plugin = Plugin(name="msgpack", description="msgpack payload decoder", decoders={"msgpack": decode_msgpack})
hex_plugin = Plugin(name="hex", description="hex dump of any payload", decoders={"hex": hex_dump})
