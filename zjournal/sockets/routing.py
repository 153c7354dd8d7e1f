"""Routing ids across runs: whether a journaled envelope still names the peer it came from.

libzmq makes up a ROUTER's routing ids (a zero byte, then a 32-bit counter)
and starts the counter from an unseeded ``rand()``: every process hands out
the same ids in the same order (``006b8b4567`` to its first peer, measured
with pyzmq 27). So an id journaled before the journal was opened, perhaps by
another process, may now name another peer, which would get a reply meant
for someone else. An id the peer chose (``ZMQ_ROUTING_ID``: never a zero byte
first) names that peer in any run.
"""

from __future__ import annotations


def made_by_libzmq(routing_id: bytes) -> bool:
    """Whether a ROUTER made this routing id up rather than its peer choosing it."""
    return routing_id[:1] == b"\x00"


def still_names_its_peer(first_id_this_open: int, entry_id: int, envelope: list[bytes]) -> bool:
    """Whether the routing id first in ``envelope`` (of entry ``entry_id``) names the peer it came from.

    ``first_id_this_open``: ``SocketPort.first_id_this_open()`` of the entry's journal.
    """
    return not (envelope and entry_id < first_id_this_open and made_by_libzmq(envelope[0]))


__all__ = ["made_by_libzmq", "still_names_its_peer"]
