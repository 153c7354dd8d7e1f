"""Messages a journaled socket holds in Python, and what it tells a poll about them.

A mixin of :class:`zjournal.JournaledSocket` (its state lives in ``self._s``).
Some messages are out of libzmq but not yet the application's: one whose
journaling raised ``StoreError`` (kept for the next ``recv``, so nothing read
is lost), one handed out that never reached the application (given back:
an asyncio ``recv`` cancelled as it arrived), a redelivered one served frame
by frame from Python. The next receive serves them before anything libzmq
holds, and ``poll``, ``zmq.Poller`` and ``EVENTS`` report them readable
(:meth:`Holding._python_events`; zjournal.sockets.pollhook).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zjournal.errors import StoreError
from zjournal.sockets.frames import handed
from zjournal.sockets.libzmq import POLLIN, POLLOUT
from zjournal.sockets.policy import AckPolicy


class Holding:
    """The methods of a journaled socket for messages held in Python (its state lives in ``self._s``)."""

    _s: Any
    _closed: bool
    _is_rep: bool
    _in_policy: Any
    _prefetch: int
    _redelivered: Any
    _retire_redelivery: Any
    _settle_now: Any
    _update_fast_paths: Any
    recv: Any

    def _keep_unjournaled(
        self, frames: list[bytes], settle: int, journal_it: Callable[[Any, list[bytes], int], bool]
    ) -> None:
        """Journaling a message read from libzmq raised StoreError: keep it for the next recv.

        The message is out of libzmq already, so dropping it would lose it; the
        next recv journals it (``journal_it(self, frames, settle)``, which says whether
        to hand it over then) before anything else is read.
        """
        state = self._s
        state.settle_next = 0
        state.unjournaled = (frames, settle, journal_it)
        self._update_fast_paths()

    def _journal_unjournaled(self) -> list[bytes] | None:
        """Journal the message a StoreError left in hand (raises StoreError again while the store fails).

        Returns its frames when it is for the application now, None when it was queued behind others.
        """
        state = self._s
        assert state.unjournaled is not None
        frames, settle, journal_it = state.unjournaled
        state.unjournaled = None
        try:
            handed = journal_it(self, frames, settle)
        except StoreError:
            if state.unjournaled is None:
                state.unjournaled = (frames, settle, journal_it)
            raise
        finally:
            self._update_fast_paths()
        return frames if handed else None

    def _give_back(self, entry_id: int, frames: list[bytes]) -> bool:
        """A message this socket handed out never reached the application: hand it over again next.

        Only while it is still unsettled (``next``: the entry the next recv
        would ack; ``explicit``: pending until acked) or ephemeral (entry 0).
        False when it cannot come back this way (it stays pending in the journal).
        """
        state = self._s
        if self._closed or state is None or self._is_rep:
            return False
        if entry_id:
            if self._in_policy is AckPolicy.NEXT:
                if state.settle_next != entry_id:
                    return False
                state.settle_next = 0
            elif self._in_policy is not AckPolicy.EXPLICIT:
                return False
        state.returned.append((entry_id, frames))
        self._update_fast_paths()
        return True

    def _take_returned(self) -> list[bytes]:
        """The next message handed over again under its own entry (not journaled again).

        A negative id is a nacked live request: its hand-over counts as a delivery.
        """
        state = self._s
        entry_id, frames = state.returned.popleft()
        state.rep_held = False
        self._settle_now()
        if entry_id < 0:
            self._redelivered(-entry_id)
        else:
            state.last_id = entry_id  # (0: ephemeral)
            if entry_id and self._in_policy is AckPolicy.NEXT:
                state.settle_next = state.came_back = entry_id
        if not state.returned:
            self._update_fast_paths()
        return frames

    def _serve_whole(self, frames: list[bytes], copy: bool) -> Any:
        """Give out the first frame of a message held in Python; recv() gives the rest."""
        if len(frames) > 1:
            self._s.serving = frames[1:]
            self._s.serving_from = None
        return frames[0] if copy else handed(frames[0], len(frames) > 1)

    def _recv_into_from_python(self, buffer: Any, nbytes: int, flags: int) -> int:
        """recv_into of a frame that :meth:`recv` gives: copied into the buffer, truncated as libzmq does."""
        if nbytes < 0:
            raise ValueError(f"{nbytes=} must be non-negative")
        view = memoryview(buffer)
        if view.readonly or not view.contiguous:
            raise BufferError("recv_into needs a writable, contiguous buffer")  # as pyzmq's
        view = view.cast("B")
        if nbytes > len(view):
            raise ValueError(f"{nbytes=} too big for memoryview of {len(view)}B")
        frame = self.recv(flags, copy=True)
        room = nbytes or len(view)
        n = min(room, len(frame))
        view[:n] = frame[:n]
        return len(frame)

    def _recv_local(self, copy: bool) -> Any:
        """Serve a redelivered message from Python, frame by frame."""
        local = self._s.local
        assert local is not None
        if local.current is None:
            self._settle_now()
            local.current_id, frames = local.take()
            local.current = list(frames)
        data = local.current.pop(0)
        if not local.current:
            local.current = None
            if self._is_rep:
                self._s.answering_python = True
            self._redelivered(local.current_id, requester_gone=self._is_rep)
            local.refill()
            if not local.active:
                self._retire_redelivery()
        return data if copy else handed(data, local.current is not None)

    def _holds_message(self) -> bool:
        """Whether a message is waiting in Python (redelivered from Python, prefetched, or half read)."""
        state = self._s
        if state is None:
            return False
        if state.ahead or state.serving or state.returned or state.unjournaled is not None:
            return True
        if state.peeked is not None or state.too_large is not None:
            return True
        local = state.local
        return local is not None and local.has_message()

    def _python_events(self, flags: int) -> int:
        """Events libzmq cannot see: a message held in Python (POLLIN), a REP reply that goes nowhere (POLLOUT)."""
        state = self._s
        if state is None:
            return 0
        if state.answering_python:
            return flags & POLLOUT  # libzmq's REP never saw the request: only the reply is possible
        return POLLIN if flags & POLLIN and self._holds_message() else 0
