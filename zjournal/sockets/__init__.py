"""The socket layer: journaled pyzmq sockets, over the journal.

- ``socket``: :class:`JournaledSocket`, a real ``zmq.Socket`` that journals every whole message,
  ``sending`` its sends, ``state`` what it changes per message, ``closing`` how it ends,
  ``replying`` its request/reply part;
- ``aio``: the asyncio (and tornado) variant; ``pollhook``: pollers see what sockets hold in Python;
- ``wrapping``: ``Journal.wrap``/``context``/``replay`` (checks, names, contexts); ``copies``: socket classes;
- ``policy``: ack policies and classifiers; ``redelivery``: pending entries back through a socket,
  ``redelivering``: a socket's receiving while they come;
- ``prefetch``: reading ahead in batches; ``frames``: the ``zmq.Frame`` objects zjournal hands out;
- ``confirm``: end-to-end confirms (``confirm=True``), ``confirm_wire`` their wire format,
  ``confirm_inbound`` the receiving side of them, ``confirm_return`` the confirmations it sends back,
  ``confirm_channel`` the CURVE-checked sockets they go on;
  ``routing``: whether a ROUTER's journaled routing id still names its peer;
- ``requests``: a journaled REQ resends, a REP recognises the resend; ``requesters``: the same for a ROUTER.

May import: ``zjournal.journal`` (its public API and ``journal.port``, the message
path), ``zjournal.errors``, ``zjournal.plugins``, ``zjournal.killpoints``. Importing
this package registers it with the journal (``Journal.wrap`` hands over to it).
"""

from zjournal.journal.core import register_socket_layer
from zjournal.sockets.aio import AsyncJournaledSocket
from zjournal.sockets.policy import AckPolicy, MessageClass
from zjournal.sockets.socket import JournaledSocket
from zjournal.sockets.wrapping import JournaledContext, Layer

register_socket_layer(Layer)

__all__ = ["AckPolicy", "AsyncJournaledSocket", "JournaledContext", "JournaledSocket", "MessageClass"]
