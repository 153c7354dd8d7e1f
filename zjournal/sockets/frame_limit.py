"""A journaled receiver's ``MAXMSGSIZE`` holds for the application's frames, not for zjournal's header.

libzmq's ``MAXMSGSIZE`` limits each frame a socket receives: a peer that
sends a larger one is disconnected, and the frame never arrives. A
``confirm=True`` sender merges its header (up to
:data:`~zjournal.sockets.confirm_wire.MAX_HEADER_BYTES`) into a one-frame
message, so a frame within the application's limit could be refused for
zjournal's bytes, and so would every resend of it. A journaled socket that
may receive such frames (PULL, DEALER, ROUTER, PAIR) therefore gives libzmq
that much more, reports the application's own limit when asked, and holds
the frames it receives to that limit itself: a message with a larger frame,
header off, is dropped as libzmq would have dropped it, and a confirm
sender is told (refused: it makes the message a dead letter, rather than
sending it again for ever). A frame larger than libzmq's own limit can only
have come over inproc, which libzmq does not check: it is handed over, as
libzmq would.

A socket with such a limit takes the general receive path (the inline one
has no room for the check): the common case of every other socket pays
nothing for it.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from zjournal.sockets import confirm_wire

log = logging.getLogger("zjournal")

# The socket types a confirm sender's merged frame may reach (a REP, say, never gets one: see the README).
LOOSENED_TYPES = frozenset((zmq.PULL, zmq.DEALER, zmq.ROUTER, zmq.PAIR))
_LIBZMQ_MAX = 2**63 - 1


def libzmq_limit(limit: int) -> int:
    """libzmq's MAXMSGSIZE for an application's ``limit`` (< 0: none)."""
    return limit if limit < 0 else min(limit + confirm_wire.MAX_HEADER_BYTES, _LIBZMQ_MAX)


class FrameLimit:
    """The MAXMSGSIZE methods of a journaled socket (its state lives in ``self._s``)."""

    _s: Any
    _jname: str
    _update_fast_paths: Any
    _new_confirm_return: Any
    _in_policy: Any
    type: int

    def _loosens_frames(self) -> bool:
        """Whether this socket's MAXMSGSIZE allows for a confirm sender's header (a journaled receiver of a
        type its merged frames reach)."""
        return self._s is not None and self.type in LOOSENED_TYPES and self._in_policy is not None

    def _limit_frames(self, limit: int) -> None:
        """Set MAXMSGSIZE: ``limit`` for the application's frames, a header more for libzmq (see above)."""
        zmq.Socket.set(self, zmq.MAXMSGSIZE, libzmq_limit(limit))
        self._s.frame_limit = limit if limit >= 0 else None
        self._update_fast_paths()

    def _frame_limit_option(self) -> int:
        """MAXMSGSIZE as the application set it."""
        limit = self._s.frame_limit
        return -1 if limit is None else limit

    def _dropped_over_frame_limit(self, frames: list[bytes], header: confirm_wire.Header | None) -> bool:
        """Whether a message received (its confirm ``header``, if any, taken off) has a frame over the limit:
        then it is dropped, and its confirm sender refused."""
        limit = self._s.frame_limit
        if limit is None:
            return False
        largest = max(len(frame) for frame in frames)
        if largest <= limit or largest > libzmq_limit(limit):
            return False  # (larger than libzmq's limit: it came over inproc, where libzmq checks nothing)
        reason = f"a frame of {largest:,} bytes is larger than the receiving socket's MAXMSGSIZE ({limit:,} bytes)"
        if header is not None:
            back = self._s.confirm_return or self._new_confirm_return()
            back.refuse(header.endpoint, header.origin, header.seq, reason)
        if not self._s.warned_frame_limit:
            self._s.warned_frame_limit = True  # (once per socket: libzmq itself says nothing)
            log.warning("journal socket %r dropped a message, as libzmq would have: %s", self._jname, reason)
        return True
