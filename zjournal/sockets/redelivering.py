"""Receiving while entries are redelivered: re-injected messages recognised, live ones kept behind them.

A mixin of :class:`zjournal.JournaledSocket` (its state lives in ``self._s``).
At startup a socket's pending inbound entries come back through a private
inproc peer (zjournal.sockets.redelivery) before anything new: the messages
read meanwhile are told apart (re-injected or live), and a live one that
overtook the redelivered ones is journaled to come after them. Once the
redelivery is over the socket goes back to its fast paths.
"""

from __future__ import annotations

import contextlib
from typing import Any

import zmq

from zjournal.errors import StoreError, ZJournalError
from zjournal.journal.entry import DIRECTION_CODES, Direction, envelope_size_of
from zjournal.sockets import confirm_wire
from zjournal.sockets.libzmq import RCVMORE
from zjournal.sockets.policy import AckPolicy
from zjournal.sockets.redelivery import InprocRedelivery, LocalRedelivery, SubRedelivery
from zjournal.sockets.requesters import RouterRequests
from zjournal.sockets.requests import with_origin

_IN = DIRECTION_CODES[Direction.IN]
_take_header = confirm_wire.take_header


class Redelivering:
    """The redelivery methods of a journaled socket (its state lives in ``self._s``)."""

    _s: Any
    _port: Any
    _jname: str
    _router: bool
    _in_policy: Any
    _handler: Any
    _classifier: Any
    _journal: Any
    _journal_new: Any
    _keep_unjournaled: Any
    _copy_of_request: Any
    _hold_confirmed_behind: Any
    _rest_of: Any
    _update_fast_paths: Any

    def _recv_redelivering(self, flags: int, copy: bool, track: bool, whole: bool) -> list[Any]:
        """Receive while re-injected entries are queued: recognise them, keep live ones behind them.

        Returns the whole message (``whole``) or just its first frame, with
        the tag frame stripped; sets ``_rx_redelivered`` for a re-injected one.
        """
        redelivery = self._s.redelivery
        assert isinstance(redelivery, InprocRedelivery)
        raw_recv = zmq.Socket.recv
        raw_get = zmq.Socket.get
        routed = self._s.routed
        if not redelivery.active:
            self._retire_redelivery()
            frame = raw_recv(self, flags, False, track)
            if routed is not None:
                self._s.rx_origin = routed.origin_of(frame)
            parts = [frame.bytes if copy else frame]
            while whole and raw_get(self, RCVMORE):
                parts.append(raw_recv(self, flags, copy, track))
            return parts
        while True:
            if routed is None:
                parts = [raw_recv(self, flags, copy, track)]
                entry_id = redelivery.recognise(parts[0] if copy else parts[0].bytes)
            else:  # a ROUTER: its routing-id frame carries the connection's metadata (a journaled REQ's origin)
                frame = raw_recv(self, flags, False, track)
                parts = [frame.bytes if copy else frame]
                entry_id = redelivery.recognise(frame.bytes)
                if entry_id and routed.any_in_hand and self._came_live(routed, entry_id):
                    while raw_get(self, RCVMORE):
                        raw_recv(self, flags, False, track)
                    continue
                if not entry_id:
                    self._s.rx_origin = routed.origin_of(frame)
            if entry_id:
                self._s.rx_redelivered = entry_id
                if redelivery.strips_first_frame:
                    parts = [raw_recv(self, flags, copy, track)]
                while whole and raw_get(self, RCVMORE):
                    parts.append(raw_recv(self, flags, copy, track))
                return parts
            if not redelivery.queued and not redelivery.exhausted:
                redelivery.refill()  # older entries may be waiting in the journal: they come first
            if self._router and redelivery.queued:
                # A live request overtook the redelivered ones. A ROUTER answers it through the
                # pipe its routing id names, so it can wait in Python behind them.
                while raw_get(self, RCVMORE):
                    parts.append(raw_recv(self, flags, copy, track))
                self._hold_in_python(parts if copy else [p.bytes for p in parts])
                continue
            if not (redelivery.reorders and redelivery.queued):
                while whole and raw_get(self, RCVMORE):
                    parts.append(raw_recv(self, flags, copy, track))
                return parts
            # A live message overtook the redelivered ones: journal it and send it behind them.
            while raw_get(self, RCVMORE):
                parts.append(raw_recv(self, flags, copy, track))
            self._hold_behind(redelivery, parts if copy else [p.bytes for p in parts])

    def _came_live(self, routed: RouterRequests, entry_id: int) -> bool:
        """A redelivered ROUTER request whose copy came live first: that copy went to the application, this is acked."""
        entry = self._port.load(entry_id)
        if entry is None or not routed.came_live(entry):
            return False
        with contextlib.suppress(ZJournalError):
            self._journal.ack(entry_id)
        return True

    def _recv_sub_redelivering(self, flags: int, track: bool) -> list[bytes]:
        """Read a whole message while a SUB's re-injected entries are queued (matched by content)."""
        redelivery = self._s.redelivery
        assert isinstance(redelivery, SubRedelivery)
        self._s.rx_redelivered = 0
        redelivery.refill()  # learns the subscriptions first; injects nothing before one is known
        while True:
            frames = self._rest_of(zmq.Socket.recv(self, flags, False, track), track)
            entry_id = redelivery.recognise_message(frames)
            if entry_id:
                self._s.rx_redelivered = entry_id
                return frames
            if not redelivery.queued:
                redelivery.refill()  # older entries may be waiting in the journal: they come first
            if not redelivery.queued:
                if not redelivery.active:
                    self._retire_redelivery()
                return frames
            # A live message overtook the redelivered ones: journal it and send it behind them.
            self._hold_behind(redelivery, frames)

    def _hold_behind(self, redelivery: InprocRedelivery, frames: list[bytes]) -> None:
        """A live message arrived before the redelivered ones: journal it, to come after all of them.

        It is journaled as a pending entry never handed over (attempts 0) and
        not re-injected now: its id is above every older pending entry, so the
        redelivery's next window fetch finds it in its place, after them, once.
        """
        classifier = self._classifier
        if classifier is not None and not classifier(frames):
            self._port.count_ephemeral(self._jname)
            redelivery.inject_live(0, frames)  # ephemeral: never journaled, behind what is injected now
            return
        header = _take_header(frames)
        if self._s.frame_limit is not None and self._dropped_over_frame_limit(frames, header):
            return
        if header is not None:
            self._hold_confirmed_behind(frames, header)
            redelivery.exhausted = False
            return
        try:
            self._port.log(self._jname, _IN, frames, track=False, attempts=0)
        except StoreError:
            self._keep_unjournaled(frames, 0, Redelivering._journal_behind)
            raise
        redelivery.exhausted = False  # there is something to fetch again

    def _journal_behind(self, frames: list[bytes], settle: int) -> bool:
        redelivery = self._s.redelivery
        if not isinstance(redelivery, InprocRedelivery):
            return self._journal_new(frames, settle)  # redelivery ended meanwhile: it is next
        self._hold_behind(redelivery, frames)
        return False

    def _hold_in_python(self, frames: list[bytes]) -> None:
        """Journal a live ROUTER message that arrived before the redelivered ones, to hand over after them."""
        state = self._s
        origin, state.rx_origin = state.rx_origin, None
        classifier = self._classifier
        if classifier is not None and not classifier(frames[1:]):
            self._port.count_ephemeral(self._jname)
            state.behind.append((0, frames))
            return
        stored, envelope_size = frames, envelope_size_of(frames)
        key = None
        if origin is not None and state.routed is not None:
            key = RouterRequests.key_of(origin, frames, envelope_size)
            if self._copy_of_request(key, frames, envelope_size):
                return
            stored, envelope_size = with_origin(origin, frames, envelope_size)
        # In flight (tracked) so that fetching redeliverable entries skips it; attempts 0 until handed over.
        try:
            entry_id = self._port.log(self._jname, _IN, stored, track=True, attempts=0, envelope_size=envelope_size)
        except StoreError:
            self._keep_unjournaled(frames, 0, Redelivering._journal_in_python)
            raise
        state.behind.append((entry_id, frames))
        if key is not None and state.routed is not None:
            state.routed.handed(entry_id, key, frames[0])  # in hand from now: a copy of it is not handed over

    def _journal_in_python(self, frames: list[bytes], settle: int) -> bool:
        if self._s.redelivery is None:
            return self._journal_new(frames, settle)
        self._hold_in_python(frames)
        return False

    def _retire_redelivery(self) -> None:
        """Redelivery is over: drop the private peer and go back to the fast path.

        Live messages held behind the redelivered ones are then served from
        Python first (pollers see them through the poll hook).
        """
        state = self._s
        redelivery = state.redelivery
        state.redelivery = None
        state.local = None
        if isinstance(redelivery, InprocRedelivery):
            with contextlib.suppress(zmq.ZMQError):
                zmq.Socket.disconnect(self, redelivery.endpoint)
        if redelivery is not None:
            redelivery.close()
        if state.behind:
            local = LocalRedelivery(self)
            local.exhausted = True  # only these: everything older was redelivered already
            for entry_id, frames in state.behind:
                local.messages.append((entry_id, frames))
                local.queued.append(entry_id)
            state.behind.clear()
            state.redelivery = state.local = local
        self._update_fast_paths()

    def _redelivered(self, entry_id: int, requester_gone: bool = False) -> None:
        """Hand over a re-injected entry: attempts + 1, then the ack policy as for a new one."""
        policy = self._in_policy
        entry = self._port.deliver(entry_id, track=policy is not AckPolicy.EXPLICIT)
        if entry is None:
            return
        self._s.redelivered = (entry_id, entry.attempts)
        if requester_gone:
            self._s.from_python.append(entry_id)
            redelivery = self._s.redelivery
            if self._s.routed is not None and isinstance(redelivery, InprocRedelivery):
                self._s.routed.redelivered(entry, redelivery.token)  # the application answers the peer
        self._s.last_id = entry_id
        if policy is AckPolicy.NEXT:
            self._s.settle_next = entry_id
        elif policy is AckPolicy.REPLY:
            self._s.awaiting_reply = entry_id
        if self._handler is not None:
            self._handler.on_inbound(self, entry_id, entry.frames)
