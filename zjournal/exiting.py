"""zjournal's background threads stop when the interpreter exits, before Python freezes them.

At exit Python runs the ``atexit`` callbacks, then stops every daemon thread
where it stands (a thread that next wants the GIL never gets it), then
collects what is left: a journaled socket the program never closed is closed
then, by its ``__del__``. A daemon thread frozen while it held a lock (a
confirm flusher between two sends, a journal's fsync thread inside an
msync) made that close wait for ever: a program that ended without closing a
``confirm=True`` socket hung at exit about one run in three.

So each object that runs a thread registers here, and an ``atexit`` callback
stops the threads while they can still finish (registered after pyzmq's
import, it runs before pyzmq's own). Their objects stay usable: what a thread
did in the background, their ``close()`` then does in the closing thread.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import weakref
from typing import Protocol

STOP_WAIT = 2.0  # seconds each thread gets to finish at exit (a thread that takes longer is left as it is)


class Background(Protocol):
    def stop_thread(self, wait: float) -> None:
        """Stop the background thread and wait for it ``wait`` seconds at most; the object stays usable."""


_running: weakref.WeakSet[Background] = weakref.WeakSet()
_lock = threading.Lock()


def stop_at_exit(owner: Background) -> None:
    """Stop ``owner``'s thread when the interpreter exits (held weakly: a collected owner is forgotten)."""
    with _lock:
        _running.add(owner)


def stop_all() -> None:
    """Stop every registered thread (what the ``atexit`` callback does)."""
    with _lock:
        owners = list(_running)
        _running.clear()
    for owner in owners:
        with contextlib.suppress(Exception):  # (one that fails must not keep the others running)
            owner.stop_thread(STOP_WAIT)


atexit.register(stop_all)
