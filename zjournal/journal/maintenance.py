"""The maintainer: a journal's background thread for ``interval`` fsyncs and retention sweeps."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from zjournal import exiting
from zjournal.errors import JournalClosedError, StoreError
from zjournal.journal.durability import Durability
from zjournal.journal.ledger import Ledger, log


class Maintainer:
    """Runs while its journal is open (only for ``interval`` durability or a retention period).

    A failure is kept in ``ledger.background_error``: the next call on the
    journal raises it, so a failed fsync is never silent.
    """

    def __init__(self, ledger: Ledger, expire: Callable[[], int]) -> None:
        self._ledger = ledger
        self._expire = expire
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zjournal-maintainer", daemon=True)
        self._thread.start()
        exiting.stop_at_exit(self)

    def stop(self) -> None:
        """Stop and wait for the thread (before the journal closes its store)."""
        self._stop.set()
        self._thread.join()

    def stop_thread(self, wait: float) -> None:
        """At interpreter exit (zjournal.exiting): no more background fsyncs; the journal stays open."""
        self._stop.set()
        self._thread.join(wait)

    def _run(self) -> None:
        ledger = self._ledger
        interval = ledger.durability is Durability.INTERVAL
        period = ledger.fsync_interval / 1000.0 if interval else 1.0
        sweep_every = min(max(ledger.retention / 2, 0.05), 60.0)
        if ledger.retention > 0:
            period = min(period, sweep_every)
        next_sweep = time.monotonic() + sweep_every
        while not self._stop.wait(period):
            try:
                if interval:
                    # (after a failed write, a full disk say, the store is opened again by the next write: until
                    # then there is nothing to sync, and an fsync of a database in that state only fails)
                    if ledger.dirty and not ledger.store_failed:
                        ledger.dirty = False
                        unsynced = len(ledger.rare.blobs_unsynced)  # (deleted by writes this fsync covers)
                        try:
                            ledger.store.sync()
                        except StoreError:
                            if not ledger.store_failed:
                                raise
                            ledger.dirty = True  # a write failed meanwhile: synced once the store is open again
                        else:
                            if unsynced:
                                ledger.release_synced_blobs(unsynced)
                    for slots in list(ledger.slot_files):
                        slots.sync_if_changed()
                if ledger.retention > 0 and time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + sweep_every
                    self._expire()
            except JournalClosedError:
                return
            except BaseException as e:  # surfaced by the next call on the journal
                ledger.background_error = e
                log.error("journal %s: background maintenance failed: %s", ledger.path, e)
