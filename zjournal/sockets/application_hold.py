"""The lock a confirm PUSH's resend thread and the application's calls take turns with on their socket.

libzmq lets one thread at a time use a socket. A confirm PUSH resends from a
thread of its own (zjournal.sockets.confirm), so the application's calls on
it that reach libzmq hold the same lock its sends and resends do.
"""

from __future__ import annotations

import threading


class ApplicationHold:
    """A resending PUSH's lock, held for one of the application's calls on its socket (``with``), or for a resend.

    The same thread may enter again without waiting on itself: pyzmq's
    ``bind`` reads an option inside, and a garbage collection in the resend
    thread, in the middle of a resend, may close the socket the application
    dropped (its close reads ``LINGER``). The application's sends take the
    bare lock (cheaper, and nothing re-enters them).
    """

    __slots__ = ("_depth", "_lock", "_owner")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._owner = 0  # the thread holding it through this object
        self._depth = 0

    def __enter__(self) -> None:
        me = threading.get_ident()
        if self._owner != me:
            self._lock.acquire()
            self._owner = me
        self._depth += 1

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        if not self._depth:
            self._owner = 0
            self._lock.release()

    def try_enter(self, timeout: float) -> bool:
        """Enter if the lock comes within ``timeout`` seconds (0: only if free now); leave with ``__exit__``."""
        me = threading.get_ident()
        if self._owner != me:
            if not (self._lock.acquire(timeout=timeout) if timeout > 0 else self._lock.acquire(blocking=False)):
                return False
            self._owner = me
        self._depth += 1
        return True
