"""A standby: watch a replicated journal's stream, take it over once its owner has gone quiet.

The owner ships a batch at least every second (a heartbeat when nothing
changes), so a stream whose last sequence has not moved for ``after``
seconds has no live owner. The standby measures that on its own monotonic
clock (no clock of another host is compared with it), then takes over from
the owner it saw (``expected_epoch``): if another standby won the race, it
goes on watching the new owner.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from zjournal.errors import InvalidArgumentError, ReplicationError
from zjournal.replication import wire
from zjournal.replication.engine import Engine, FenceLost
from zjournal.replication.remote import takeover

log = logging.getLogger("zjournal")

MIN_AFTER = 2.0  # seconds: the owner's heartbeat is every second; a standby must give it more than one


def standby(
    url: str,
    alias: str,
    path: str,
    after: float,
    *,
    poll: float = 0.25,
    timeout: float = 5.0,
    should_stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any] | None:
    """Wait until the owner of ``alias`` has been quiet ``after`` seconds, then take it over into ``path``.

    Returns what :func:`takeover` returns, or None when ``should_stop()`` said so first.
    """
    wire.check_alias(alias)
    if isinstance(after, bool) or not isinstance(after, (int, float)) or not MIN_AFTER <= after <= 86_400:
        raise InvalidArgumentError(f"after must be {MIN_AFTER:g} to 86400 seconds (heartbeats are 1 s), not {after!r}")
    engine = Engine(url, timeout)
    try:
        seen, quiet_since = None, time.monotonic()
        while not should_stop():
            info = engine.stream_info(alias)
            if info is None:
                raise ReplicationError(f"no journal {alias!r} in the engine at {url}")
            last = info.state.last_seq
            if last != seen:
                seen, quiet_since = last, time.monotonic()
            elif time.monotonic() - quiet_since >= after:
                found = engine.last_fence(alias)
                epoch = found[1].epoch if found is not None else 0
                try:
                    return takeover(url, alias, path, timeout=timeout, expected_epoch=epoch)
                except FenceLost as e:
                    log.warning("zjournal: standby for %s: %s; watching the new owner", alias, e)
                    seen = None
            time.sleep(poll)
        return None
    finally:
        engine.close()
