"""Durability modes: how far a journaled message is from surviving a crash."""

from __future__ import annotations

import enum

from zjournal.errors import InvalidArgumentError


class Durability(enum.StrEnum):
    """What a write must have reached before the message moves on.

    ``process``: the write-ahead log, not fsynced (survives kill -9 of the process);
    ``interval``: the log, fsynced from a background thread at least every
    ``fsync_interval`` ms (power loss costs at most that window);
    ``always``: fsynced before every message moves (survives power loss);
    ``none``: no log at all (memtables only): a crash loses recent messages.
    """

    PROCESS = "process"
    INTERVAL = "interval"
    ALWAYS = "always"
    NONE = "none"

    @classmethod
    def parse(cls, value: str | Durability) -> Durability:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise InvalidArgumentError(f"unknown durability {value!r}: expected one of {names}") from None
