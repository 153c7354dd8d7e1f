"""What a queue device tells its operator: counters, the stop report, and a log that cannot flood."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

log = logging.getLogger("zjournal.device")

# Why a message was dropped (the keys of QueueStats.causes).
REQUEST_TOO_LARGE = "request too large"
REQUEST_WITHOUT_BODY = "request without body"
REPLY_WITHOUT_TAG = "reply without the device's tag"
REPLY_UNKNOWN_TAG = "reply with a tag this device did not issue"
REPLY_WRONG_ENVELOPE = "reply whose envelope is not its request's (passed on, acks nothing)"
REPLY_EMPTY = "reply without body"

_REQUEST_CAUSES = (REQUEST_TOO_LARGE, REQUEST_WITHOUT_BODY)


@dataclass
class StopReport:
    """What :meth:`Queue.stop` found: the answer to "what was left, and where is it?"."""

    drained: int = 0  # replies passed back while draining
    pending: list[int] = field(default_factory=list)  # ids still pending in the journal
    dropped: int = 0  # ephemeral requests dropped (unanswered at shutdown)
    timed_out: bool = False  # the drain timeout ran out with requests in flight
    unjournaled: int = 0  # requests the store never took (a full disk until the end): never accepted

    def __str__(self) -> str:
        text = f"drained {self.drained}, pending {len(self.pending)}, dropped {self.dropped} ephemeral"
        if self.unjournaled:
            text += f", {self.unjournaled} never journaled (the store refused them: their clients get no reply)"
        return text


@dataclass
class QueueStats:
    requests: int = 0  # durable requests journaled
    ephemeral: int = 0  # ephemeral requests passed without touching disk
    replies: int = 0  # replies passed back to the frontend
    redelivered: int = 0  # pending requests sent to the backend again (after a restart, or overdue)
    duplicates: int = 0  # replies for requests answered before (at-least-once at work)
    dead: int = 0  # requests given up after max_attempts
    late: int = 0  # replies to requests that had gone dead meanwhile: passed on, and the entry acked
    malformed: int = 0  # backend messages dropped (see causes)
    rejected: int = 0  # client messages dropped (see causes)
    causes: dict[str, int] = field(default_factory=dict)  # dropped messages by cause
    store_errors: int = 0  # writes the store refused (a full disk); the device retries them
    last_store_error: str = ""  # the latest of them, in the store's words
    unjournaled: int = 0  # requests waiting in the device's memory for the store to take writes again
    confirmed: int = 0  # requests of confirm=True clients confirmed once journaled
    resends_dropped: int = 0  # resends of confirm=True clients the device had journaled already
    resends_recognised: int = 0  # REQ clients' copies of requests pending here: no second entry or forward
    resends_answered: int = 0  # REQ clients' copies of requests whose reply had reached nobody: answered


class DropLog:
    """Counts dropped messages by cause and logs each cause at most once per ``every`` seconds."""

    def __init__(self, stats: QueueStats, every: float = 10.0) -> None:
        self._stats = stats
        self._every = every
        self._last_logged: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def dropped(self, cause: str, detail: str = "") -> None:
        stats = self._stats
        stats.causes[cause] = stats.causes.get(cause, 0) + 1
        if cause in _REQUEST_CAUSES:
            stats.rejected += 1
        else:
            stats.malformed += 1
        now = time.monotonic()
        if now - self._last_logged.get(cause, -self._every) < self._every:
            self._unlogged[cause] = self._unlogged.get(cause, 0) + 1
            return
        self._last_logged[cause] = now
        since = self._unlogged.pop(cause, 0)
        more = f" ({since} more since the last report)" if since else ""
        log.warning("dropped a %s%s%s", cause, f": {detail}" if detail else "", more)


class StoreErrorLog:
    """Records the store's refusals in the stats and logs them at most once per ``every`` seconds."""

    def __init__(self, stats: QueueStats, every: float = 10.0) -> None:
        self._stats = stats
        self._every = every
        self._last_logged = -every
        self.failing = False  # the last write failed: intake waits until one succeeds

    def failed(self, error: BaseException, what: str) -> None:
        stats = self._stats
        stats.store_errors += 1
        stats.last_store_error = str(error)
        self.failing = True
        now = time.monotonic()
        if now - self._last_logged >= self._every:
            self._last_logged = now
            log.error("the journal refused a write (%s); retrying: %s", what, error)

    def recovered(self) -> None:
        if self.failing:
            self.failing = False
            log.warning("the journal takes writes again")
