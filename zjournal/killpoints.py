"""Kill points: make the process kill itself (SIGKILL) at a named point, for crash tests.

``ZJOURNAL_KILL_POINT=NAME`` kills the process the first time it reaches
``NAME``; ``NAME:N`` the N-th time. Read once at import; when unset, each point
costs one module-level boolean test. The points:

======================  =====================================================
``send:after-journal``  an outbound message is journaled, not yet handed to ZeroMQ
``recv:before-journal`` an inbound message was read from ZeroMQ, not yet journaled
``ack:before-write``    the application is done with a message, its ack not yet written
``device:after-journal`` the queue device journaled requests, not yet forwarded
``device:before-ack``   the device passed replies back, their requests not yet acked
``replay:after-send``   ``zjournal replay`` handed a chunk to ZeroMQ, not yet marked done
======================  =====================================================
"""

from __future__ import annotations

import os
import signal
import sys

POINTS = (
    "send:after-journal",
    "recv:before-journal",
    "ack:before-write",
    "device:after-journal",
    "device:before-ack",
    "replay:after-send",
)


def _parse(value: str | None) -> tuple[str, int] | None:
    """The armed point; a value naming no point arms nothing and says so on stderr (it must never stop a program)."""
    if not value:
        return None
    head, _, tail = value.rpartition(":")
    name, count = (head, int(tail)) if tail.isdigit() and int(tail) > 0 else (value, 1)
    if name not in POINTS:
        shown = value.encode("unicode_escape").decode("ascii")[:80]
        sys.stderr.write(f"zjournal: ignoring ZJOURNAL_KILL_POINT={shown}: not one of {', '.join(POINTS)} [:N]\n")
        return None
    return name, count


_target = _parse(os.environ.get("ZJOURNAL_KILL_POINT"))
ARMED = _target is not None
_seen = 0


def reached(name: str) -> None:
    """Kill this process with SIGKILL if ``name`` is the armed point and its count is reached."""
    global _seen
    if _target is None or name != _target[0]:
        return
    _seen += 1
    if _seen >= _target[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def before_journaling_received(acks: bool) -> None:
    """A received message is about to be journaled, with the ack of the one before folded in if ``acks``:
    one write, so both windows are reached at once."""
    if acks:
        reached("ack:before-write")
    reached("recv:before-journal")
