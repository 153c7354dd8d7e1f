"""Acknowledgement on a journaled socket: ``ack``, ``nack``, ``receiving``.

A mixin of :class:`zjournal.JournaledSocket` (its state lives in ``self._s``).
An entry acked or nacked by the application is one the socket no longer
settles itself (``_forget``); a nacked inbound entry comes again through the
socket: a live request as it came (its requester waits for the reply), any
other through a redelivery (zjournal.sockets.redelivery).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from zjournal.journal.entry import Direction
from zjournal.sockets.redelivery import LocalRedelivery, Redelivery, redelivery_for
from zjournal.sockets.requests import split_origin


class Acking:
    """``ack``, ``nack`` and ``receiving`` of a journaled socket (see the module docstring)."""

    _s: Any
    _journal: Any
    _port: Any
    _jname: str
    _router: bool
    _is_rep: bool
    type: int
    recv_multipart: Any
    _update_fast_paths: Any

    def ack(self, id: int | None = None) -> bool:  # noqa: A002 - the public name
        """Acknowledge an entry (default: :attr:`last_id`)."""
        entry_id = self._s.last_id if id is None else id
        self._forget(entry_id)
        return self._journal.ack(entry_id)

    def nack(self, id: int | None = None) -> None:  # noqa: A002
        """Put an entry back to pending; an inbound one is delivered again through this socket."""
        state = self._s
        entry_id = state.last_id if id is None else id
        # A request whose requester is alive (not one redelivered from an earlier run: see from_python).
        live_request = (self._router or self._is_rep) and entry_id not in state.from_python
        if self._is_rep and state.answering_python and entry_id == state.awaiting_reply:
            state.answering_python = False  # given back: the REP no longer owes it a reply
        self._forget(entry_id)
        self._journal.nack(entry_id)
        entry = self._journal.get(entry_id)
        if entry is None or entry.direction != Direction.IN or entry.name != self._jname:
            return
        if live_request:
            # Its requester is alive and waiting: deliver it again as it came, so the reply
            # reaches that requester (a ROUTER through its routing id, a REP through libzmq,
            # which still owes that requester the reply).
            frames = (
                entry.frames[entry.envelope_size :]
                if self._is_rep
                else split_origin(entry.frames, entry.envelope_size)[1]
            )
            state.returned.append((-entry_id, frames))
            self._update_fast_paths()
        else:
            self._ensure_redelivery().requeue(entry)

    @contextlib.contextmanager
    def receiving(self, flags: int = 0) -> Iterator[list[bytes]]:
        """Receive one message; ack it when the block exits cleanly, leave it pending if it raises."""
        frames = self.recv_multipart(flags)
        entry_id = self._s.last_id
        try:
            yield frames
        except BaseException:
            self._forget(entry_id)
            self._port.forget(entry_id)  # stays pending until a restart
            raise
        self.ack(entry_id)

    def _forget(self, entry_id: int) -> None:
        """This socket will not settle ``entry_id`` itself any more."""
        if self._s.settle_next == entry_id:
            self._s.settle_next = 0
        if self._s.settle_sent == entry_id:
            self._s.settle_sent = 0
        if self._s.awaiting_reply == entry_id:
            self._s.awaiting_reply = 0

    def _ensure_redelivery(self) -> Redelivery:
        if self._s.redelivery is None:
            self._s.redelivery = redelivery_for(self, self.type)
            self._s.redelivery.exhausted = True  # nothing older to fetch: only requeued entries
            if isinstance(self._s.redelivery, LocalRedelivery):
                self._s.local = self._s.redelivery
            self._update_fast_paths()
        return self._s.redelivery
