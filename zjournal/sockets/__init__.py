"""The socket layer: journaled pyzmq sockets, over the journal.

- ``socket``: :class:`JournaledSocket`, a real ``zmq.Socket`` that journals every whole message, and
  its receives; its mixins: ``sending`` its sends, ``inbound`` the general path of a received message
  into the journal, ``acking`` ``ack``/``nack``/``receiving``, ``options`` options, endpoints and
  polls, ``held`` messages held in Python, ``frame_limit`` ``MAXMSGSIZE`` held to the application's
  frames, ``closing`` how it ends (``deferred_close``: a collected one that cannot close where the
  collection found it), ``replying`` its request/reply part; ``state`` what it changes per
  message; ``libzmq`` pyzmq's calls below the wrapper;
- ``aio``: the asyncio (and tornado) variant; ``green``: the zmq.green one; ``pollhook``: pollers see
  what sockets hold in Python; ``loop_resends``: an event loop's timer resends for a socket waited on there;
- ``wrapping``: ``Journal.wrap``/``context``/``replay`` (checks, names, contexts); ``copies``: socket classes;
- ``policy``: ack policies and classifiers; ``redelivery``: pending entries back through a socket,
  ``redelivering``: a socket's receiving while they come;
- ``prefetch``: reading ahead in batches; ``frames``: the ``zmq.Frame`` objects zjournal hands out;
- ``confirm``: end-to-end confirms (``confirm=True``), the sender and its sends; ``confirm_settling``
  its intake of confirmations, ``confirm_resending`` its resends, ``confirm_thread`` its background
  thread, ``application_hold`` the lock its resends and the application's calls share;
  ``confirm_wire`` their wire format, ``confirm_inbound`` the receiving side of them,
  ``confirm_return`` the confirmations it sends back, ``confirm_channel`` the CURVE-checked sockets
  they go on; ``routing``: whether a ROUTER's journaled routing id still names its peer;
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
