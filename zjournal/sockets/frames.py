"""Frames a journaled socket makes for ``copy=False`` receives: they answer as libzmq's would.

Most frames a journaled socket hands over with ``copy=False`` are the ones
libzmq received. Some it has to make: a confirm sender's message with its
header taken off, a message read whole (a ROUTER's, a REP's request, one
behind a confirm header) and then given out frame by frame, a message held in
Python or redelivered from the journal. Besides its bytes, pyzmq code reads
two things off a received frame, and a made frame tells both:

- ``frame.more``: whether parts of the message follow (code that loops on it
  would otherwise cut a message into several);
- the connection's properties, ``frame.get("Peer-Address")``, ``"User-Id"``
  (a CURVE peer's, set by the ZAP handler), ``"Socket-Type"`` and any ZMTP
  metadata the peer set: those of the frame the message came in.

A message redelivered from the journal came over no connection now: its
frames have no properties, and ``get`` of one raises pyzmq's ZMQError
(EINVAL), as on a frame the application made itself.
"""

from __future__ import annotations

from typing import Any

import zmq

_OWN_PROPERTIES = ("routing_id", "group")  # properties of the message itself (draft sockets), not the connection's


class HandedFrame(zmq.Frame):
    """A frame a journaled socket made, with the ``more`` flag and connection properties of the part it stands for."""

    __slots__ = ("_received",)

    def get(self, option: Any) -> Any:
        received = self._received
        if received is not None and isinstance(option, (str, bytes)) and option not in _OWN_PROPERTIES:
            return received.get(option)
        if option == zmq.MORE:
            return int(self.more)
        return super().get(option)


def handed(data: bytes, more: bool = False, received: zmq.Frame | None = None) -> zmq.Frame:
    """A frame of ``data`` saying ``more``, with the properties of ``received`` (None: a message from the journal)."""
    frame = HandedFrame(data)
    # (object.__setattr__: pyzmq's own setattr takes unknown names for socket options)
    object.__setattr__(frame, "more", more)
    object.__setattr__(frame, "_received", received)
    return frame


def handed_all(frames: list[bytes], received: zmq.Frame | None = None) -> list[zmq.Frame]:
    """A whole message's frames, as :func:`handed` makes them: ``more`` on every one but the last."""
    last = len(frames) - 1
    return [handed(frame, index < last, received) for index, frame in enumerate(frames)]
