"""The one exception root of zjournal and its subclasses.

Every error zjournal raises on purpose derives from :class:`ZJournalError`, so
``except zjournal.ZJournalError`` catches them all. Subclasses carry their
context as attributes (``path``, ``entry_id`` …) and some also derive from the
matching builtin (``TypeError``, ``ValueError``) so code written against plain
pyzmq still catches what it used to.
"""

from __future__ import annotations

import time


class ZJournalError(Exception):
    """Root of every error zjournal raises on purpose."""


class JournalOpenError(ZJournalError):
    """A journal could not be opened; nothing on disk was changed."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class NotAJournalError(JournalOpenError):
    """The path exists but holds something other than a zjournal journal."""


class JournalLockedError(JournalOpenError):
    """The journal is held open by another process, or already by this one."""


class IncompatibleJournalError(JournalOpenError):
    """The journal was written with a schema version this release cannot read."""

    def __init__(self, message: str, *, path: str, found: int, supported: int) -> None:
        super().__init__(message, path=path)
        self.found = found
        self.supported = supported


class JournalClosedError(ZJournalError):
    """An operation was attempted on a journal that is already closed."""


class JournalForkedError(JournalClosedError):
    """This process is a child forked from the one that opened the journal: only that one may use it."""

    def __init__(self, message: str, *, path: str | None, owner: int) -> None:
        super().__init__(message)
        self.path = path
        self.owner = owner


class InvalidFramesError(ZJournalError, TypeError):
    """A message to journal was not a non-empty sequence of bytes-like frames."""


class InvalidArgumentError(ZJournalError, ValueError):
    """An argument has a value zjournal does not accept (unknown state, mode …)."""


class AlreadyRestoredError(InvalidArgumentError):
    """``Journal.restore(..., once=KEY)``: entries under that key were restored into this journal before."""

    def __init__(self, key: str, at: float, first: int, last: int) -> None:
        when = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(at))
        self.key, self.at, self.first, self.last = key, at, first, last
        self.earlier = f"at {when}" + (f", ids {first}..{last}" if first else "")
        super().__init__(f"{key} was restored into this journal before ({self.earlier})")


class UnknownEntryError(ZJournalError, KeyError):
    """No entry with this id is in the journal."""

    def __init__(self, entry_id: int, detail: str = "") -> None:
        message = f"no entry {entry_id} in the journal" + (f" ({detail})" if detail else "")
        super().__init__(message)
        self.entry_id = entry_id

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class InvalidTransitionError(ZJournalError):
    """The entry's current state does not allow the requested change."""

    def __init__(self, entry_id: int, state: str, action: str) -> None:
        super().__init__(f"entry {entry_id} is {state}: cannot {action} it")
        self.entry_id = entry_id
        self.state = state
        self.action = action


class StoreError(ZJournalError):
    """The storage engine failed (disk full, I/O error, corruption …).

    The write that raised did not happen: nothing was journaled by it.
    """


class ReadOnlyJournalError(ZJournalError):
    """A change was attempted on a journal opened read-only (``zjournal.open(..., read_only=True)``)."""


class JournalCorruptError(StoreError):
    """The journal's files are damaged; ``file`` names the damaged one when RocksDB said which.

    Nothing was opened. ``zjournal.open(path, recover=True)`` (or ``zjournal
    recover PATH``) opens it keeping everything written before the damage.
    """

    def __init__(self, message: str, *, path: str, file: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.file = file


class MessageTooLargeError(ZJournalError, ValueError):
    """A message is larger than the journal's ``max_message_size``; it was not journaled (nor sent)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size:,} bytes is larger than the journal's max_message_size ({limit:,} bytes)")
        self.size = size
        self.limit = limit


class ReplicationError(ZJournalError):
    """The replication engine (NATS JetStream) could not be reached or refused a request.

    Local journaling goes on when shipping fails (``open(..., replicate=)``);
    this is raised by calls that need the engine itself: opening a replicated
    journal, ``takeover``, ``inspect --from``.
    """


class JournalFencedError(ReplicationError):
    """Another process took this journal over (``zjournal takeover``): this one may not append or send.

    Raised by every append and send once the engine refused a shipped batch
    for a newer fence, and by ``open(..., replicate=)`` when the engine's fence
    is newer than this journal's (``reclaim=True`` takes it back).
    """
