"""Closing a collected socket where the collection could not: from a thread of zjournal's own, at once.

pyzmq closes a socket that is garbage collected, and so does zjournal, after
settling what the socket settles itself (zjournal.sockets.closing). That
close takes the journal's lock. A collection runs wherever Python allocates,
also inside one of the journal's own calls that holds that lock (an
``append``, a ``recv`` journaling its message, the maintainer's fsync): a
socket the application dropped inside a reference cycle, collected there,
would wait for a lock its own thread holds, for ever. So a socket collected
in a thread that may hold it (a thread of zjournal's, or one in which the
journal's lock stays taken) is handed to a closer thread instead, which
closes it as the collection would have, right away; meanwhile it stays
open, and ``ctx.term()`` waits for it as for any open socket.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from typing import Any

from zjournal import exiting

THREAD_PREFIX = "zjournal-"  # every thread of zjournal's is named so
CLOSER_NAME = "zjournal-closer"
# How long a collection waits for the journal's lock before it takes the lock to be its own thread's:
# a lock held by another thread is let go within a write (an fsync, in "always" mode).
LOCK_WAIT = 0.05


def must_defer(lock_is_free_within: Any) -> bool:
    """Whether a socket collected in this thread must be closed by the closer (``lock_is_free_within(seconds)``)."""
    if threading.current_thread().name.startswith(THREAD_PREFIX):
        return True  # (its locks: a slot file's, the journal's, the socket's own confirm thread)
    return not lock_is_free_within(LOCK_WAIT)


class _Closer:
    """The closer thread and the sockets waiting for it (one per process, started at first use)."""

    def __init__(self) -> None:
        self._pending: collections.deque[Any] = collections.deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._starting = threading.RLock()  # (re-entered if a socket is collected while the thread starts)

    def later(self, sock: Any) -> None:
        """Close ``sock`` (a journaled socket being collected: this keeps it alive until then) from the closer."""
        self._pending.append(sock)
        if self._thread is None or self._pid != os.getpid():  # (a forked child starts its own)
            with self._starting:
                if self._thread is None or self._pid != os.getpid():
                    self._pid = os.getpid()
                    self._stop = False
                    thread = threading.Thread(target=self._run, name=CLOSER_NAME, daemon=True)
                    try:
                        thread.start()
                    except RuntimeError:  # the interpreter is shutting down: it stays open, its entries pending
                        self._pending.clear()
                        return
                    self._thread = thread
        self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait()
            self._wake.clear()
            self.close_pending()

    def close_pending(self) -> None:
        """Close every socket waiting (what a collection in here defers joins the queue, closed in turn)."""
        pending = self._pending
        while pending:
            sock = pending.popleft()
            with contextlib.suppress(Exception):  # (as a collection's close: what fails stays pending in the journal)
                sock._close(None, clean=True)
            del sock

    def stop_thread(self, wait: float) -> None:
        """At interpreter exit: close what waits, then stop (zjournal.exiting)."""
        self._stop = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(wait)


_closer = _Closer()
later = _closer.later
exiting.stop_at_exit(_closer)  # (now, not at first use: a collection may run while exiting's own lock is held)
