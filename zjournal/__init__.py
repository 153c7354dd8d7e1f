"""zjournal: a message journal for ZeroMQ services.

Every message a wrapped socket moves is written, with its acknowledgement
state, to an embedded RocksDB before it moves; whatever was never
acknowledged comes back after a crash or a stop.
"""

import importlib
import sys
from types import ModuleType
from typing import Any

from zjournal.device import Queue, QueueStats, StopReport, stop_on_signals
from zjournal.errors import (
    AlreadyRestoredError,
    IncompatibleJournalError,
    InvalidArgumentError,
    InvalidFramesError,
    InvalidTransitionError,
    JournalClosedError,
    JournalCorruptError,
    JournalFencedError,
    JournalForkedError,
    JournalLockedError,
    JournalOpenError,
    MessageTooLargeError,
    NotAJournalError,
    ReadOnlyJournalError,
    ReplicationError,
    StoreError,
    UnknownEntryError,
    ZJournalError,
)
from zjournal.journal import Journal, open
from zjournal.journal.durability import Durability
from zjournal.journal.entry import SCHEMA_VERSION, Direction, Entry, State
from zjournal.plugins import AckHandler, Plugin
from zjournal.replication import materialise, remote_list, standby, takeover
from zjournal.sockets import AckPolicy, AsyncJournaledSocket, JournaledContext, JournaledSocket, MessageClass
from zjournal.store import Batch, MemoryStore, RocksStore, Store

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "AckHandler",
    "AckPolicy",
    "AlreadyRestoredError",
    "AsyncJournaledSocket",
    "Batch",
    "Direction",
    "Durability",
    "Entry",
    "IncompatibleJournalError",
    "InvalidArgumentError",
    "InvalidFramesError",
    "InvalidTransitionError",
    "Journal",
    "JournalClosedError",
    "JournalCorruptError",
    "JournalFencedError",
    "JournalForkedError",
    "JournalLockedError",
    "JournalOpenError",
    "JournaledContext",
    "JournaledSocket",
    "MemoryStore",
    "MessageClass",
    "MessageTooLargeError",
    "NotAJournalError",
    "Plugin",
    "Queue",
    "QueueStats",
    "ReadOnlyJournalError",
    "ReplicationError",
    "RocksStore",
    "State",
    "StopReport",
    "Store",
    "StoreError",
    "UnknownEntryError",
    "ZJournalError",
    "__version__",
    "materialise",
    "open",
    "remote_list",
    "standby",
    "stop_on_signals",
    "takeover",
]

# Where the modules of the flat layout went (the layers: README, "How it is built"). Code that
# imported them by their old names (``zjournal.socket.JournaledSocket``, ``from zjournal import
# inflight``) gets the module itself.
_MOVED = {
    "aio": "zjournal.sockets.aio",
    "counters": "zjournal.journal.counters",
    "durability": "zjournal.journal.durability",
    "entry": "zjournal.journal.entry",
    "inflight": "zjournal.journal.inflight",
    "policy": "zjournal.sockets.policy",
    "pollhook": "zjournal.sockets.pollhook",
    "prefetch": "zjournal.sockets.prefetch",
    "redelivery": "zjournal.sockets.redelivery",
    "socket": "zjournal.sockets.socket",
    "wrapping": "zjournal.sockets.wrapping",
}
for _old, _new in _MOVED.items():
    sys.modules[f"{__name__}.{_old}"] = importlib.import_module(_new)


def __getattr__(name: str) -> ModuleType | Any:
    if name in _MOVED:
        return sys.modules[_MOVED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
