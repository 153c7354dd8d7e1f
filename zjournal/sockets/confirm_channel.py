"""Who hears a sender's confirmations: the confirm channel's sockets and their CURVE handshake.

A receiver sends confirmations to the endpoint named in a message's header
(zjournal.sockets.confirm_wire). That address can outlive its sender. After
a kill -9 the port or path is free, libzmq keeps reconnecting to it, and
whatever program binds it next would receive confirm messages it never
asked for. So the channel runs CURVE with a server key derived from the
sender's stream (an origin's first bytes: zjournal.sockets.confirm_wire,
the same for every run of a sender, so one intake hears the confirmations
of its earlier runs' messages too). A receiver's confirm socket completes
its handshake only with the intake of that stream. Anyone else gets nothing: a plain ZeroMQ
socket, another sender's intake, or a program that is not ZeroMQ at all.
libzmq drops the connection at the handshake, and the sender resends what
was not confirmed.

The key is an identity check, not a secret: anyone who saw a message can
derive it. Encrypting confirmations is not the point; they say only "these
sequences are journaled".

The intake lives in a context of zjournal's own. A ZAP handler in the
application's context (``zmq.auth``) would be asked about every CURVE
handshake there, and would refuse these.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading

import zmq
from zmq.utils import z85

from zjournal.errors import InvalidArgumentError
from zjournal.sockets.confirm_wire import stream_of

_KEY_PERSON = b"zjournal-confirm"  # (blake2b's personalisation: these keys are derived for nothing else)

_context_lock = threading.Lock()
# (pid, context): a forked child makes its own (pyzmq never destroys a parent's context in a child)
_context: tuple[int, zmq.Context] | None = None


def require_curve() -> None:
    """Raise :class:`InvalidArgumentError` where libzmq was built without CURVE (the channel needs it)."""
    if not zmq.has("curve"):
        raise InvalidArgumentError("confirm=True needs libzmq with CURVE support (zmq.has('curve') is False)")


@functools.lru_cache(maxsize=1024)
def _server_keys(stream: bytes) -> tuple[bytes, bytes]:
    """``(public, secret)``, Z85, of the intake of a sender's ``stream``."""
    secret = z85.encode(hashlib.blake2b(stream, digest_size=32, person=_KEY_PERSON).digest())
    return zmq.curve_public(secret), secret


def _intake_context() -> zmq.Context:
    """zjournal's own context for intakes (one per process, made at first use)."""
    global _context
    with _context_lock:
        if _context is None or _context[0] != os.getpid():
            _context = (os.getpid(), zmq.Context(1))
        return _context[1]


@functools.cache
def _return_keys() -> tuple[bytes, bytes]:
    """The CURVE client keypair of confirm sockets (any will do: intakes check only the server key)."""
    return zmq.curve_keypair()


def open_intake(origin: bytes, bind_to: str) -> zmq.Socket:
    """A PULL bound to ``bind_to`` that only receivers of ``origin``'s stream can reach (linger 0)."""
    require_curve()
    public, secret = _server_keys(stream_of(origin))
    intake = _intake_context().socket(zmq.PULL, socket_class=zmq.Socket)
    intake.linger = 0
    intake.rcvhwm = 100_000  # confirm messages waiting between two looks (each names many ids)
    intake.curve_server = True
    intake.curve_publickey = public
    intake.curve_secretkey = secret
    try:
        intake.bind(bind_to)
    except zmq.ZMQError:
        intake.close(0)
        raise
    return intake


def open_return(ctx: zmq.Context, origin: bytes, endpoint: str) -> zmq.Socket:
    """A PUSH in ``ctx`` connected to the intake of ``origin``'s stream at ``endpoint``; it delivers to nothing else.

    Made outside ``ctx``'s list of sockets: a thread of zjournal's sends on
    it, so ``ctx.destroy()`` in the application's thread must not close it
    under that thread. Its owner closes it (before the context's ``term``
    can end, as with the application's own sockets).
    """
    public, secret = _return_keys()
    out = zmq.Socket(ctx, zmq.PUSH)
    out.linger = 0
    out.curve_serverkey = _server_keys(stream_of(origin))[0]
    out.curve_publickey = public
    out.curve_secretkey = secret
    # A sender that is gone is retried ever more slowly, not every 100 ms for as long as the socket lives.
    out.reconnect_ivl_max = 5000
    out.connect(endpoint)  # a wire-checked tcp or ipc address
    return out
