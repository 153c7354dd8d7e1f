"""The journal layer: entries, their states and where they live, over a store.

- ``core``: :class:`Journal`, the public face, and :func:`open`;
- ``ledger``: the journal's state and the primitives every change goes through (``opening``: its
  opening and metadata, ``slotkeeping``: its slot files at rest, ``blobkeeping``: its blob files);
- ``port``: the socket port, the one interface of the layer above (sockets, the device;
  ``confirm_port``: its paths of end-to-end confirms);
- ``entry``: entry records and their encoding; ``inflight``: the sockets' in-flight slot files;
  ``outbox``: confirm senders' rings of unconfirmed messages; ``mapped_file``: creating either, and
  the descriptor kept beside its mapping; ``overflow``: the spare file a
  received message goes to when the disk is full; ``seen``: the dedup keys of confirm messages;
- ``counters``, ``durability``, ``admin`` (purge, import, replay records), ``maintenance``.

May import: ``zjournal.store``, ``zjournal.errors``, ``zjournal.plugins``. Never
``zjournal.sockets`` or anything above it: ``Journal.wrap`` and its kin hand
over to the socket layer through ``port.register_socket_layer``.
"""

from zjournal.journal.core import DEFAULT_MAX_MESSAGE_SIZE, Journal, open  # noqa: A004 - the public name

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "Journal", "open"]
