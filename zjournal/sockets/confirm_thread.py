"""A confirm sender's background thread: confirmations taken in while the application is idle, and resends.

A mixin of :class:`zjournal.sockets.confirm.ConfirmSender`. While the
application sends, its sends take the confirmations in (two threads passing
the GIL back and forth at every confirmation cost more than the work), and
the thread only looks for resends due (a PUSH's) each time the application
may have stopped (:data:`_SETTLE_IDLE` after its last send). Once it has
(for that long: between two sends of a slow sender too), the thread waits on
the intake and takes them in itself, sleeping until a confirmation comes, a
resend is due or ``close`` wakes it (:class:`Wakeup`): an idle socket costs
no CPU, a slow one a wake or two per message.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Any

import zmq

from zjournal.errors import StoreError, ZJournalError

log = logging.getLogger("zjournal")

TICK = 0.005  # seconds between looks at confirmations and resends
_SETTLE_IDLE = 0.01  # seconds without a send after which the thread takes in confirmations, not the sends
# ... or fewer sends than this since the thread last looked: a slow sender's thread waits for its
# confirmations, not for the application to stop (a wake per message and one more, 2026-12-07).
_BURST = 16
# An idle sender's thread sleeps until a confirmation comes, a resend is due, or close() wakes it; at most
# this long (a safety net: never longer than confirm_timeout either, see ConfirmThread._idle_wait).
_IDLE_WAIT_MAX = 1.0
_ONE = (1).to_bytes(8, sys.byteorder)  # what an eventfd adds per write (a pipe takes it as one wake)


class Wakeup:
    """A descriptor one thread's poll waits on and any thread sets: an eventfd, one descriptor (a pipe elsewhere).

    A confirm sender has one: descriptors per socket are what a process with
    many sockets runs out of first (a ulimit of 1,024 is common).
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()  # (re-entered if a garbage collection in the thread closes the socket)
        if hasattr(os, "eventfd"):
            self.fileno = self._write_end = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:
            self.fileno, self._write_end = os.pipe()
            os.set_blocking(self._write_end, False)

    def set(self) -> None:
        with self._lock:
            if self._write_end >= 0:
                with contextlib.suppress(OSError):  # (full: a wake is waiting already)
                    os.write(self._write_end, _ONE)

    def clear(self) -> None:
        """Take the wakes given (after a poll found it readable)."""
        os.read(self.fileno, 64)  # (an eventfd's counter in one read; a pipe's wakes, several at once)

    def close(self) -> None:
        with self._lock:
            write_end, self._write_end = self._write_end, -1  # (first: a closed number may be reused at once)
            if write_end < 0:
                return
            os.close(self.fileno)
            if write_end != self.fileno:
                os.close(write_end)


class ConfirmThread:
    """A confirm sender's background thread (see the module docstring)."""

    resends_in_thread: bool
    settled_hook: Any
    _name: str
    _timeout: float
    _intake: Any
    _intake_lock: Any
    _mutex: Any
    _stop: threading.Event
    _thread: threading.Thread
    _wake: Wakeup
    _last_send: float
    _confirmed: Any
    _sent_at: dict[int, float]
    _resend_paused_until: float
    _first_sent: Any
    _next_due: Any
    _take_confirms: Any
    _settle_confirmed: Any
    _resend_due: Any

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._intake, zmq.POLLIN)
        poller.register(self._wake.fileno, zmq.POLLIN)
        looked_at = 0  # the application's sends counted when the thread last looked
        try:
            while not self._stop.is_set():
                sends = self._sends
                sending = sends - looked_at >= _BURST and time.monotonic() - self._last_send <= _SETTLE_IDLE
                looked_at = sends
                if self.settled_hook is not None or not sending:
                    # The application is not sending, or not many, or an event loop waits for confirmations
                    # (its thread cannot wait on the intake): they are taken and settled here. The
                    # thread sleeps until one comes, a resend is due or close() wakes it: an idle socket
                    # costs no CPU (a look every tick cost 2-3 % of a core per socket).
                    wait = self._idle_wait()
                    with self._intake_lock:
                        ready = dict(poller.poll(wait * 1000))
                        if self._intake in ready:
                            self._take_confirms()
                    if self._wake.fileno in ready:
                        self._wake.clear()
                    if self._confirmed:
                        self._settle_confirmed()
                else:  # its sends take them in (see _take_confirms_now): look again once it may have stopped
                    self._stop.wait(max(TICK, self._last_send + _SETTLE_IDLE - time.monotonic()))
                try:
                    if self.resends_in_thread:
                        self._resend_due(in_thread=True)
                except StoreError as e:  # the disk is full, say: the entries stay pending, tried again
                    log.warning("journal socket %r: resend failed, tried again later: %s", self._name, e)
                    self._stop.wait(self._timeout)
        except (zmq.ContextTerminated, ZJournalError):
            pass  # the context or the journal closed under the socket: the entries stay pending
        except zmq.ZMQError as e:
            if e.errno != zmq.ENOTSOCK:  # ENOTSOCK: the context was destroyed, closing the intake under us
                log.error("journal socket %r: confirmations stopped: %s", self._name, e)
        except Exception as e:  # the entries stay pending: the next wrap resends them
            log.error("journal socket %r: confirmations stopped: %s", self._name, e)
        finally:
            self._intake.close(0)
            self._wake.close()

    def _idle_wait(self) -> float:
        """How long the idle thread may sleep (seconds): until the oldest unconfirmed message is due.

        With nothing unconfirmed, ``confirm_timeout`` (at most
        :data:`_IDLE_WAIT_MAX`): a message sent during the sleep is due
        after it ends, so no resend is ever late by more than a tick. Also
        between the sends of a slow sender: its thread wakes for the
        confirmations, not every tick (until 2026-12-07 it looked every tick
        for 0.1 s after each send: 100 sockets sending 20 messages a second
        each took 43 % of a core in these threads).
        """
        now = time.monotonic()
        longest = min(self._timeout, _IDLE_WAIT_MAX)
        if not self.resends_in_thread:
            return longest  # its resends come from the application's calls
        with self._mutex:
            due = self._next_due()
            first = self._first_sent()
            if first is not None:
                sent = self._sent_at.get(first)
                if sent is not None and (due is None or sent + self._timeout < due):
                    due = sent + self._timeout
        if due is None:
            return longest
        due = max(due, self._resend_paused_until)
        return max(TICK, min(longest, due - now))

    def _wake_thread(self) -> None:
        """Wake the thread from an idle sleep (it stops if ``_stop`` is set)."""
        self._wake.set()

    def stop_thread(self, wait: float | None) -> None:
        """Stop the thread, waiting ``wait`` seconds at most (None: until it ends); :meth:`close` does the rest."""
        self._stop.set()
        self._wake_thread()
        if self._thread is not threading.current_thread():
            self._thread.join(wait)
