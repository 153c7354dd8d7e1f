"""Replication: journals that survive the loss of a host (journal shipping to NATS JetStream).

It sits beside the socket layer, on the journal: it may import
``zjournal.journal`` (the public API and its ledger's documented interface),
``zjournal.store`` and ``zjournal.errors``; the journal never imports it, and
hands ``open(..., replicate=)`` over through ``register_replication_layer``.

- ``wire``: what goes into the stream (packed batches, fences);
- ``engine``: NATS JetStream through nats-py, on a loop of its own;
- ``shipper``: asynchronous shipping of a journal's changes;
- ``remote``: reading the engine's copy back, takeover, listing;
- ``standby``: taking over by itself once the owner went quiet.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from zjournal.errors import JournalFencedError, ReplicationError
from zjournal.journal.core import Journal, register_replication_layer
from zjournal.replication import wire
from zjournal.replication.engine import Engine
from zjournal.replication.remote import META_REPLICATION, claim, materialise, remote_list, takeover
from zjournal.replication.shipper import RecordingStore, Shipper
from zjournal.replication.standby import standby

log = logging.getLogger("zjournal")

NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024


def _alias_from(journal: Journal, alias: str | None) -> str:
    if alias is not None:
        return wire.check_alias(alias)
    base = os.path.basename(os.path.normpath(journal.path or "")) or "journal"
    cleaned = "".join(c if c.isalnum() or c in "_-" else "_" for c in base)[:64]
    return wire.check_alias(cleaned or "journal")


def _claim(journal: Journal, alias: str, reclaim: bool, engine: Engine) -> tuple[int, int]:
    """Make this journal the owner of ``alias`` at the engine, or say who is: (fence sequence, epoch)."""
    ledger = journal._ledger
    engine.ensure_stream(alias)
    found = engine.last_fence(alias)
    mine = ledger.meta(META_REPLICATION)
    if found is None:
        fence_seq, epoch = claim(engine, alias, 0, None, os.path.abspath(journal.path or ""))
    elif isinstance(mine, dict) and mine.get("alias") == alias and mine.get("fence_seq") == found[0]:
        fence_seq, epoch = found[0], found[1].epoch
    elif reclaim:
        fence_seq, epoch = claim(engine, alias, found[0], found[1], os.path.abspath(journal.path or ""))
    else:
        fence = found[1]
        raise JournalFencedError(
            f"journal {alias!r} belongs to {fence.owner} ({fence.path}, epoch {fence.epoch}), not to "
            f"{journal.path}: open it with reclaim=True to take it back once that owner is gone"
        )
    with ledger.lock:
        ledger.set_meta(META_REPLICATION, {"alias": alias, "epoch": epoch, "fence_seq": fence_seq})
    return fence_seq, epoch


class _Layer:
    """What ``zjournal.open(..., replicate=)`` hands over to (zjournal.journal.core.ReplicationLayer)."""

    def __init__(self) -> None:
        self._spare: dict[str, Engine] = {}  # a connection opened to learn max_payload, for attach to use

    def engine_payload_limit(self, url: str, timeout: float) -> int:
        try:
            engine = Engine(url, timeout)
        except ReplicationError as e:
            log.warning("zjournal: %s; messages are limited to NATS's default payload meanwhile", e)
            return NATS_DEFAULT_MAX_PAYLOAD - wire.HEADROOM
        old = self._spare.pop(url, None)
        if old is not None:
            old.close()
        self._spare[url] = engine
        return engine.max_payload - wire.HEADROOM

    def attach(self, journal: Journal, url: str, alias: str | None, **options: Any) -> Shipper:
        alias = _alias_from(journal, alias)
        reclaim = bool(options.get("reclaim", False))
        ship_interval = float(options.get("ship_interval", 0.05))
        timeout = float(options.get("timeout", 5.0))
        synchronous = bool(options.get("synchronous", False))
        engine = self._spare.pop(url, None)
        if engine is None:
            try:
                engine = Engine(url, timeout)
            except ReplicationError as e:
                log.warning("zjournal: journal %s: %s; it ships once the engine answers", alias, e)
        if engine is not None and journal.max_message_size > engine.max_payload - wire.HEADROOM:
            engine.close()
            raise ReplicationError(
                f"max_message_size {journal.max_message_size:,} is more than the engine takes in one message "
                f"({engine.max_payload - wire.HEADROOM:,} bytes): a replicated journal ships each entry whole"
            )
        mine = journal._ledger.meta(META_REPLICATION)
        fence = (0, 0)
        later = None
        if engine is not None:
            try:
                fence = _claim(journal, alias, reclaim, engine)
            except JournalFencedError:
                engine.close()
                raise
            except ReplicationError as e:  # reached, but not answering (an election, say): claim later
                log.warning("zjournal: journal %s: %s; it ships once the engine answers", alias, e)
                engine.close()
                engine = None
        if engine is None:
            if isinstance(mine, dict) and mine.get("alias") == alias:
                fence = (int(mine.get("fence_seq", 0)), int(mine.get("epoch", 0)))

            def later(engine: Engine) -> tuple[int, int]:
                return _claim(journal, alias, reclaim, engine)

        shipper = Shipper(
            journal,
            connect=lambda: Engine(url, timeout),
            engine=engine,
            alias=alias,
            claim=later,
            fence=fence,
            ship_interval=ship_interval,
            timeout=timeout,
            synchronous=synchronous,
        )
        ledger = journal._ledger
        with ledger.lock:
            ledger.store = RecordingStore(ledger.store, shipper.note)
            if synchronous:
                ledger.barrier = shipper.wait_replicated
        shipper.start()
        return shipper


register_replication_layer(_Layer())

__all__ = ["Engine", "Shipper", "materialise", "remote_list", "standby", "takeover"]
