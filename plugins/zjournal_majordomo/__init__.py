"""First-party zjournal plugin: a Majordomo (MDP/0.2) worker ack policy.

A worked example of a third-party ack policy. A Majordomo worker talks to its
broker over a DEALER socket; a request arrives as
``[b"", b"MDPW02", 0x02 REQUEST, client address, b"", body…]`` and the worker
answers with ``[b"", b"MDPW02", 0x03 PARTIAL or 0x04 FINAL, client address, b"", body…]``.
With ``journal.wrap(sock, ack="majordomo")`` a request stays pending until the
FINAL reply to *its* client is sent — not when the next request arrives — so a
worker that dies mid-request gets it back after a restart. Heartbeats and other
commands are acknowledged at once.
"""

from __future__ import annotations

import collections
from typing import Any

from zjournal import Plugin

WORKER = b"MDPW02"
REQUEST, PARTIAL, FINAL = b"\x02", b"\x03", b"\x04"


def _command(frames: list[bytes]) -> tuple[bytes, bytes | None]:
    """(command, client address) of an MDP worker message, with or without the empty first frame."""
    if frames and frames[0] == b"":
        frames = frames[1:]
    if len(frames) < 2 or frames[0] != WORKER:
        return b"", None
    command = frames[1]
    client = frames[2] if command in (REQUEST, PARTIAL, FINAL) and len(frames) > 2 else None
    return command, client


class MajordomoWorkerAcks:
    """Per-socket state: requests waiting for their FINAL reply, by client address."""

    def __init__(self, socket_type: int) -> None:
        self.waiting: dict[bytes, collections.deque[int]] = collections.defaultdict(collections.deque)

    def on_inbound(self, sock: Any, entry_id: int, frames: list[bytes]) -> None:
        command, client = _command(frames)
        if command == REQUEST and client is not None:
            self.waiting[client].append(entry_id)
        else:
            sock.ack(entry_id)  # heartbeats, disconnects: nothing to redo after a crash

    def on_outbound(self, sock: Any, frames: list[bytes]) -> None:
        command, client = _command(frames)
        if command == FINAL and client is not None and self.waiting.get(client):
            sock.ack(self.waiting[client].popleft())
            if not self.waiting[client]:
                del self.waiting[client]


plugin = Plugin(
    name="majordomo",
    description="Majordomo (MDP/0.2) worker ack policy: a request is done when its FINAL reply is sent",
    ack_policies={"majordomo": MajordomoWorkerAcks},
)
