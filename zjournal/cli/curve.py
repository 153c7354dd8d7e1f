"""CURVE keys for the endpoints `replay` and `device` reach, and telling a failed handshake apart."""

from __future__ import annotations

from dataclasses import dataclass

import zmq
import zmq.auth
from zmq.utils import z85

import zjournal

_HANDSHAKE_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


@dataclass(frozen=True)
class Keys:
    """A socket's CURVE keys: its own pair, and (for a client) the server's public key."""

    public: bytes
    secret: bytes
    server: bytes | None = None

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_publickey = self.public
        sock.curve_secretkey = self.secret
        if self.server is None:
            sock.curve_server = True
        else:
            sock.curve_serverkey = self.server


def _certificate(path: str) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise zjournal.InvalidArgumentError(f"cannot read the CURVE certificate {path}: {e}") from None
    if secret is None:
        raise zjournal.InvalidArgumentError(f"{path} holds a public key only: a secret key certificate is needed")
    return public, secret


def _public_key(text: str) -> bytes:
    key = text.strip().encode("ascii", "replace")
    try:
        ok = len(key) == 40 and len(z85.decode(key)) == 32
    except (ValueError, KeyError):
        ok = False
    if not ok:
        raise zjournal.InvalidArgumentError("--curve-server-key must be a Z85 public key (40 characters)")
    return key


def client_keys(server_key: str | None, secret_key_file: str | None) -> Keys | None:
    """Keys to reach a CURVE server; without a certificate of our own, a fresh pair (the server may allow any)."""
    if server_key is None:
        if secret_key_file is not None:
            raise zjournal.InvalidArgumentError("--curve-secret-key-file needs --curve-server-key")
        return None
    public, secret = _certificate(secret_key_file) if secret_key_file else zmq.curve_keypair()
    return Keys(public, secret, _public_key(server_key))


def server_keys(secret_key_file: str | None) -> Keys | None:
    return None if secret_key_file is None else Keys(*_certificate(secret_key_file))


def handshake_failed(monitor: zmq.Socket) -> bool:
    """Whether the monitored socket reported a failed security handshake (read without waiting)."""
    from zmq.utils.monitor import recv_monitor_message

    failed = False
    while monitor.poll(0):
        event = recv_monitor_message(monitor)
        failed |= bool(event["event"] & _HANDSHAKE_FAILED)
    return failed


def watch(sock: zmq.Socket) -> zmq.Socket:
    return sock.get_monitor_socket(_HANDSHAKE_FAILED)
