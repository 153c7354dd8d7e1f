"""zjournal: a message journal for ZeroMQ services.

Every message a wrapped socket moves is written, with its acknowledgement
state, to an embedded RocksDB before it moves; whatever was never
acknowledged comes back after a crash or a stop.
"""

from zjournal.aio import AsyncJournaledSocket
from zjournal.device import Queue, QueueStats, StopReport, stop_on_signals
from zjournal.durability import Durability
from zjournal.entry import SCHEMA_VERSION, Direction, Entry, State
from zjournal.errors import (
    IncompatibleJournalError,
    InvalidArgumentError,
    InvalidFramesError,
    InvalidTransitionError,
    JournalClosedError,
    JournalCorruptError,
    JournalForkedError,
    JournalLockedError,
    JournalOpenError,
    MessageTooLargeError,
    NotAJournalError,
    StoreError,
    UnknownEntryError,
    ZJournalError,
)
from zjournal.journal import Journal, open
from zjournal.plugins import AckHandler, Plugin
from zjournal.policy import AckPolicy, MessageClass
from zjournal.socket import JournaledSocket
from zjournal.store import Batch, MemoryStore, RocksStore, Store
from zjournal.wrapping import JournaledContext

__version__ = "0.1.0"

__all__ = [
    "SCHEMA_VERSION",
    "AckHandler",
    "AckPolicy",
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
    "RocksStore",
    "State",
    "StopReport",
    "Store",
    "StoreError",
    "UnknownEntryError",
    "ZJournalError",
    "__version__",
    "open",
    "stop_on_signals",
]
