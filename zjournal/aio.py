"""Journaled ``zmq.asyncio`` sockets.

pyzmq's asyncio socket does its I/O through a synchronous *shadow* socket
(``_shadow_sock``) with NOBLOCK, when libzmq says it is ready. Here that
shadow is a :class:`~zjournal.socket.JournaledSocket`, so every message an
asyncio coroutine sends or receives goes through the same journaling code as
the synchronous API, and the futures, pollers and event-loop integration stay
pyzmq's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import zmq
import zmq.asyncio

from zjournal.socket import JournaledSocket

if TYPE_CHECKING:
    from zjournal.journal import Journal


class AsyncJournaledSocket(zmq.asyncio.Socket):
    """An asyncio ``zmq.Socket`` whose messages are journaled; awaitable like pyzmq's."""

    _shadow_sock: JournaledSocket

    @classmethod
    def wrap(
        cls,
        journal: Journal,
        sock: zmq.asyncio.Socket,
        name: str,
        ack: str | None,
        classify: Any,
        max_attempts: int | None,
        prefetch: int = 0,
    ) -> AsyncJournaledSocket:
        inner = JournaledSocket.shadow(sock)
        try:
            inner._setup(journal, sock, name, ack, classify, max_attempts, prefetch)
        except BaseException:
            inner._closed = True
            raise
        wrapped = cls(_from_socket=inner)
        wrapped.context = sock.context
        return wrapped

    @property
    def journal(self) -> Journal:
        return self._shadow_sock.journal

    @property
    def journal_name(self) -> str:
        return self._shadow_sock.journal_name

    @property
    def last_id(self) -> int:
        return self._shadow_sock.last_id

    def ack(self, id: int | None = None) -> bool:  # noqa: A002
        return self._shadow_sock.ack(id)

    def nack(self, id: int | None = None) -> None:  # noqa: A002
        self._shadow_sock.nack(id)

    @contextlib.asynccontextmanager
    async def receiving(self, flags: int = 0) -> AsyncIterator[list[bytes]]:
        """``async with sock.receiving() as frames``: acked on a clean exit, pending if it raises."""
        frames = await self.recv_multipart(flags)
        entry_id = self.last_id
        try:
            yield frames
        except BaseException:
            self._shadow_sock._forget(entry_id)
            self.journal._inflight.pop(entry_id, None)
            raise
        self.ack(entry_id)

    def _settle_deferred(self, inbound: bool = True) -> None:
        self._shadow_sock._settle_deferred(inbound)

    def close(self, linger: int | None = None) -> None:
        if self._closed:
            return
        if self._fd is not None:
            for event in [*(self._recv_futures or ()), *(self._send_futures or ())]:
                if not event.future.done():
                    with contextlib.suppress(RuntimeError):
                        event.future.cancel()
            self._clear_io_state()
        journal = self.journal
        self._shadow_sock.close(linger)  # settles, then closes the handle through its owner
        if journal is not None and journal._sockets.get(self.journal_name) is self:
            del journal._sockets[self.journal_name]
        self._closed = True

    def __repr__(self) -> str:
        closed = " closed" if self._closed else ""
        return f"<zjournal.AsyncJournaledSocket(zmq.{self._type_name}) name={self.journal_name!r}{closed}>"
