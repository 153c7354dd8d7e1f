"""libzmq's constants as plain ints, and its own calls below pyzmq's Python layer, for the socket modules.

pyzmq's constants are enums (their arithmetic and comparisons are slow on
the hot path), and pyzmq's Python-level ``send``/``recv``/``get`` add work
zjournal does not need (routing ids and groups, option enums). The socket
modules import these names as module globals: one load each where used.
"""

from __future__ import annotations

import zmq

RCVMORE = int(zmq.RCVMORE)
SNDMORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)
POLLOUT = int(zmq.POLLOUT)
RCVTIMEO = int(zmq.RCVTIMEO)

# A socket that resends from the application's calls (a confirm DEALER/ROUTER/PAIR, a journaled REQ) cuts
# every wait for a message into ticks this long and resends what is due between them: blocking receives,
# polls, an event loop's timer (zjournal.sockets.loop_resends), a greenlet's wait (zjournal.sockets.green).
RESEND_TICK_MS = 20

base_send = zmq.backend.Socket.send
base_recv = zmq.backend.Socket.recv
base_get = zmq.backend.Socket.get
