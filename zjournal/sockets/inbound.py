"""Journaling a whole inbound message that the fast paths of ``recv`` did not take.

A mixin of :class:`zjournal.JournaledSocket` (its state lives in ``self._s``).
:meth:`Inbound._inbound` is where every other received message is journaled
(or its redelivery recorded): a confirm sender's header comes off (its resend
dropped when this journal holds it: zjournal.sockets.confirm_inbound), a
journaled REQ's request is recognised and kept with its origin
(zjournal.sockets.requests), the classifier drops what need not be kept, and
the ack policy decides what settles the entry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zjournal import killpoints
from zjournal.errors import StoreError
from zjournal.journal.entry import DIRECTION_CODES, Direction, envelope_size_of
from zjournal.sockets import confirm_wire
from zjournal.sockets.policy import AckPolicy
from zjournal.sockets.redelivery import InprocRedelivery
from zjournal.sockets.requesters import RouterRequests
from zjournal.sockets.requests import origin_frame, with_origin

if TYPE_CHECKING:
    from zjournal.journal.inflight import Slot

_IN = DIRECTION_CODES[Direction.IN]
_CONFIRM_PREFIX = confirm_wire.PREFIX  # what a confirm sender's header frame or merged frame starts with
_take_header = confirm_wire.take_header


class Inbound:
    """The general path of a received message into the journal (see the module docstring)."""

    _s: Any
    _port: Any
    _jname: str
    _router: bool
    _classifier: Any
    _in_policy: Any
    _handler: Any
    _confirmed_in_the_slot: Any
    _keep_unjournaled: Any
    _inbound_confirmed: Any
    _dropped_over_frame_limit: Any
    _redelivered: Any
    _retire_redelivery: Any
    _copy_of_request: Any
    _answered_already: Any

    def _settle_now(self) -> None:
        settle = self._s.settle_next
        if settle:
            if killpoints.ARMED:
                killpoints.reached("ack:before-write")
            self._s.settle_next = 0
            self._port.settle(settle, self._s.slots)

    def _received_held(self, slot: Slot, frames: list[bytes], settle: int) -> bool:
        """Journal a whole inbound message of the fast paths in the socket's slot (False: a dropped resend)."""
        if frames[0].startswith(_CONFIRM_PREFIX):
            return self._confirmed_in_the_slot(frames, settle, self._s)
        state = self._s
        state.settle_next = 0
        if killpoints.ARMED:
            killpoints.before_journaling_received(bool(settle))
        try:
            state.settle_next = state.last_id = self._port.log_held(slot, frames, settle)
        except StoreError:
            self._keep_unjournaled(frames, settle, Inbound._journal_new)
            raise
        return True

    def _journal_new(self, frames: list[bytes], settle: int) -> bool:
        self._s.rx_redelivered = 0
        self._inbound(frames, settle)
        return True

    def _inbound(self, frames: list[bytes], settle: int) -> bool:
        """A whole inbound message was read: journal it (or record its redelivery).

        False: it was a resend this journal already holds (confirm=True senders),
        dropped; the application gets the next message instead. A confirm header
        is taken off ``frames`` in place: the caller hands over what is left.
        """
        if killpoints.ARMED:
            killpoints.before_journaling_received(bool(settle))
        port = self._port
        if self._s.rx_redelivered:
            if settle:
                port.settle(settle, self._s.slots)
            if self._s.rx_redelivered > 0:  # -1: a held ephemeral message, nothing to record
                self._redelivered(self._s.rx_redelivered, requester_gone=self._router)
            self._s.rx_redelivered = 0
            redelivery = self._s.redelivery
            if redelivery is not None:
                if isinstance(redelivery, InprocRedelivery):
                    redelivery.drain_replies()
                redelivery.refill()
                if self._s.behind and not redelivery.active:
                    self._retire_redelivery()  # the held live messages come next, from Python
            return True
        at = 1 if self._router else 0  # a ROUTER's messages start with the sender's routing id
        if len(frames) > at and frames[at].startswith(_CONFIRM_PREFIX):
            header = _take_header(frames, at)
            if header is not None:
                self._s.rx_origin = None  # (a confirm sender is no REQ)
                return self._inbound_confirmed(frames, settle, header)
        if self._s.frame_limit is not None and self._dropped_over_frame_limit(frames, None):
            self._s.rx_origin = None
            return False  # (the ack of the message before waits for the next one's write)
        stored = frames
        envelope_size = envelope_size_of(frames) if self._router else 0
        origin = self._s.rx_origin
        key = None
        if origin is not None and self._router:  # a ROUTER's request from a journaled REQ
            self._s.rx_origin = None
            key = RouterRequests.key_of(origin, frames, envelope_size)
            if self._copy_of_request(key, frames, envelope_size):
                return False
            stored, envelope_size = with_origin(origin, frames, envelope_size)
        elif origin is not None:  # a REP's request from a journaled REQ
            self._s.rx_origin = None
            if self._answered_already(origin, frames):
                return False
            stored = [origin_frame(origin), *frames]  # journaled with it: its resend is recognised after a restart
            envelope_size = 1
            self._s.answering = (origin, frames)
        classifier = self._classifier
        if classifier is not None and not classifier(frames[1:] if self._router else frames):
            port.count_ephemeral(self._jname)
            if settle:
                port.settle(settle, self._s.slots)
            self._s.settle_next = self._s.last_id = 0
            return True
        policy = self._in_policy
        try:
            if self._s.slots is not None and policy is not AckPolicy.EXPLICIT and self._handler is None:
                entry_id = port.log_held(self._s.slots.inbound, stored, settle, envelope_size)
            else:
                entry_id = port.log(
                    self._jname,
                    _IN,
                    stored,
                    settle=settle,
                    track=policy is not AckPolicy.EXPLICIT,
                    envelope_size=envelope_size,
                )
        except StoreError:
            self._keep_unjournaled(frames, settle, Inbound._journal_new)
            raise
        self._s.last_id = entry_id
        if policy is AckPolicy.NEXT:
            self._s.settle_next = entry_id
        elif policy is AckPolicy.REPLY:
            self._s.awaiting_reply = entry_id
        else:
            self._s.settle_next = 0
        if key is not None and self._s.routed is not None:
            self._s.routed.handed(entry_id, key, frames[0])
        if self._handler is not None:
            self._handler.on_inbound(self, entry_id, frames)
        return True
