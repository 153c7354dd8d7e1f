"""Making journaled sockets (``Journal.wrap``, ``Journal.context``) and resending outbound entries.

The bodies of :meth:`zjournal.Journal.wrap`, :meth:`~zjournal.Journal.context`
and :meth:`~zjournal.Journal.replay`: the checks a socket passes before it is
journaled, default names, and the replay of pending outbound entries through
a socket.
"""

from __future__ import annotations

import itertools
import time
import weakref
from typing import TYPE_CHECKING, Any

import zmq
from zmq._future import _AsyncSocket

from zjournal.errors import InvalidArgumentError, JournalClosedError
from zjournal.journal.core import DEFAULT_RESEND_AFTER, port_of
from zjournal.sockets.aio import AsyncJournaledSocket
from zjournal.sockets.copies import journaled_copy
from zjournal.sockets.libzmq import SNDMORE
from zjournal.sockets.policy import AckPolicy
from zjournal.sockets.routing import still_names_its_peer
from zjournal.sockets.socket import JournaledSocket

if TYPE_CHECKING:
    from zjournal.journal import Journal


def _default_name(journal: Journal, socket_type: int) -> str:
    base = zmq.SocketType(socket_type).name.lower()
    for n in itertools.count(1):
        name = base if n == 1 else f"{base}-{n}"
        if port_of(journal).attached(name) is None:
            return name
    raise AssertionError("unreachable")


def wrap_socket(
    journal: Journal,
    sock: Any,
    name: str | None,
    *,
    ack: str | None,
    classify: Any,
    max_attempts: int | None,
    prefetch: int = 0,
    confirm: bool = False,
    confirm_timeout: float | None = None,
    resend_after: float | None = DEFAULT_RESEND_AFTER,
) -> Any:
    """The body of :meth:`Journal.wrap`."""
    if not isinstance(sock, zmq.Socket):
        raise InvalidArgumentError(f"wrap() takes a zmq.Socket, not {type(sock).__name__}")
    if sock.closed:
        raise InvalidArgumentError("cannot wrap a closed socket")
    already = sock if isinstance(sock, JournaledSocket) else _journaled_handles.get(sock.underlying)
    if already is not None and not already.closed:
        raise InvalidArgumentError(f"socket is already journaled as {already.journal_name!r}")
    if max_attempts is not None and max_attempts < 1:
        raise InvalidArgumentError(f"max_attempts must be >= 1 or None, not {max_attempts}")
    if name is None:
        name = _default_name(journal, sock.type)
    elif not isinstance(name, str) or not name:
        raise InvalidArgumentError(f"name must be a non-empty str, not {name!r}")
    port = port_of(journal)
    live = port.attached(name)
    if live is not None and not live.closed:
        raise InvalidArgumentError(f"a live socket is already journaled as {name!r} in this journal")
    if isinstance(sock, _AsyncSocket):  # zmq.asyncio, zmq.eventloop.future (tornado), or a subclass
        wrapped: Any = AsyncJournaledSocket.wrap(
            journal, sock, name, ack, classify, max_attempts, prefetch, confirm, confirm_timeout, resend_after
        )
    else:
        wrapped = journaled_copy(sock)
        try:
            wrapped._setup(
                journal, sock, name, ack, classify, max_attempts, prefetch, confirm, confirm_timeout, resend_after
            )
        except BaseException:
            wrapped._closed = True  # the handle stays with ``sock``
            raise
    port.attach(name, wrapped)
    _journaled_handles[sock.underlying] = wrapped
    _stand_in_for(sock, wrapped)
    return wrapped


# libzmq handle -> the journaled socket made of it (weakly: a socket nobody holds is closed and forgotten)
_journaled_handles: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()


def _stand_in_for(sock: zmq.Socket, wrapped: Any) -> None:
    """The context closes the journaled socket, not the one it wraps (``ctx.destroy()`` settles first)."""
    ctx = sock.context
    if isinstance(ctx, zmq.Context):
        ctx._rm_socket(sock)
        ctx._add_socket(wrapped)


# Sockets that send nothing a confirm could cover (a REQ's requests and a REP's replies have their own pattern).
_RECEIVE_ONLY = frozenset({zmq.PULL, zmq.SUB, zmq.XSUB, zmq.REQ, zmq.REP})


class JournaledContext:
    """A context whose ``socket()`` returns journaled sockets; everything else is the context's."""

    def __init__(self, journal: Journal, ctx: zmq.Context | None = None, **options: Any) -> None:
        self._journal = journal
        self._ctx = ctx if ctx is not None else zmq.Context.instance()
        self._options = options

    def socket(self, socket_type: int, name: str | None = None, **options: Any) -> Any:
        chosen = {**self._options, **options}
        if socket_type in _RECEIVE_ONLY and "confirm" not in options:
            # confirm=True for the context is for its sending sockets; receivers understand confirms as they are
            chosen.pop("confirm", None)
            chosen.pop("confirm_timeout", None)
        return self._journal.wrap(self._ctx.socket(socket_type), name, **chosen)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._ctx, attr)

    def __enter__(self) -> JournaledContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.term()


def _send_raw(sock: zmq.Socket, frames: list[bytes]) -> None:
    """Send a whole message without the journaling overrides of a JournaledSocket."""
    raw_send = zmq.Socket.send  # pyzmq's own send: it does not call back into the subclass
    for frame in frames[:-1]:
        raw_send(sock, frame, SNDMORE)
    raw_send(sock, frames[-1])


def replay_outbound(journal: Journal, name: str, into: Any, older_than: float | None = None) -> int:
    """The body of :meth:`Journal.replay`."""
    if not isinstance(into, zmq.Socket):
        raise InvalidArgumentError(f"replay(into=...) takes a zmq.Socket, not {type(into).__name__}")
    if journal.closed:
        raise JournalClosedError("journal is closed")
    if not journal.count(name=name, state="pending", direction="out"):
        return 0  # (the counters say so: no scan of every entry, as a recipe calling this every second would)
    port = port_of(journal)
    sent = 0
    target = (
        into._shadow_sock if hasattr(into, "_shadow_sock") and isinstance(into._shadow_sock, JournaledSocket) else into
    )
    cutoff = None if older_than is None else time.time() - older_than
    routed = into.type == zmq.ROUTER
    first_id_this_open = port.first_id_this_open()
    for entry in list(journal.entries(name=name, state="pending", direction="out")):
        if cutoff is not None and (entry.updated or entry.created) > cutoff:
            continue
        if routed and not still_names_its_peer(first_id_this_open, entry.id, entry.envelope):
            continue  # its routing id may name another peer now: it stays pending (zjournal.sockets.routing)
        if isinstance(target, JournaledSocket) and target._s.confirm is not None:
            if entry.name == target._jname and target._journal is journal:
                continue  # a confirm sender's own unconfirmed entries: it resends them itself
            # Through the confirm path: a new entry there, pending until the receiver confirms it;
            # the replayed one is acked once that entry is journaled (custody moved, nothing in between).
            target.send_multipart(entry.frames)
            journal.ack(entry.id)
        elif isinstance(target, JournaledSocket):
            earlier = target._s.earlier if target._journal is journal and entry.name == target._jname else None
            if port.in_flight(entry.id) and (earlier is None or not earlier.take(entry.id)):
                continue  # this process sent it and is waiting for its ack
            if target._s.requests is not None:
                target._s.requests.check_turn()  # a REQ takes one request at a time (EFSM, as libzmq's)
            delivered = port.deliver(entry.id, track=target._out_policy is not AckPolicy.EXPLICIT, frames=entry.frames)
            if delivered is None:
                continue
            _send_raw(target, entry.frames)  # not through target.send: the entry exists already
            target._s.last_id = entry.id
            target._sent(entry.id)
            if target._s.requests is not None:
                target._s.requests.sent(entry.frames, entry.id)  # a REQ now owes a reply: resent if none comes
        else:
            into.send_multipart(entry.frames)
            journal.ack(entry.id)
        sent += 1
        if into.type == zmq.REQ:
            break  # a REQ takes one request at a time
    return sent


class Layer:
    """What ``Journal.wrap``, ``context`` and ``replay`` hand over to (zjournal.journal.port.SocketLayer)."""

    @staticmethod
    def wrap(journal: Journal, sock: Any, name: str | None, **options: Any) -> Any:
        return wrap_socket(journal, sock, name, **options)

    @staticmethod
    def context(journal: Journal, ctx: Any, **options: Any) -> Any:
        return JournaledContext(journal, ctx, **options)

    @staticmethod
    def replay(journal: Journal, name: str, into: Any, older_than: float | None) -> int:
        return replay_outbound(journal, name, into, older_than)
