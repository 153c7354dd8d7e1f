"""Model-based test: the journal behaves like a plain dict of entries, across reopens and crashes.

Entries come from ``append`` (the store) and from sockets' in-flight slots
(``hold``: what a journaled socket does per message, the previous message of
the slot acked by the overwrite or left pending); every operation applies to
both kinds alike.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import zjournal
from zjournal.journal.core import port_of

NAMES = st.sampled_from(["orders", "events", "ünïcode"])
FRAMES = st.lists(st.binary(max_size=20), min_size=1, max_size=3)
MAX_ATTEMPTS = 3


@dataclass
class Model:
    name: str
    direction: str
    frames: list[bytes]
    state: str = "pending"
    attempts: int = 0


def abandon(journal: zjournal.Journal) -> None:
    """Let go of a journal the way a killed process does: nothing of ``close()``'s bookkeeping.

    RocksDB is closed (its files then hold what the write-ahead log held, as
    after a kill), the slot files are unmapped but stay, with what they hold.
    """
    ledger = journal._ledger
    ledger.closed = True
    ledger.store.close()
    for slots in ledger.slot_files:
        slots._mm.close()
        if slots.fd >= 0:  # (interval mode keeps one to fsync through; process mode only the mapping's)
            os.close(slots.fd)
            slots.fd = -1


class JournalMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="zjournal-model-")
        self.journal = zjournal.open(self.dir, max_attempts=MAX_ATTEMPTS)
        self.model: dict[int, Model] = {}
        self.issued: list[int] = []
        self.slots: dict[str, object] = {}  # name -> the journal's slot file for that "socket"

    def teardown(self) -> None:
        self.journal.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _some_id(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from(self.issued))

    @rule(name=NAMES, frames=FRAMES, direction=st.sampled_from(["in", "out"]))
    def append(self, name: str, frames: list[bytes], direction: str) -> None:
        entry_id = self.journal.append(name, frames, direction=direction)
        assert not self.issued or entry_id > self.issued[-1]
        self.issued.append(entry_id)
        self.model[entry_id] = Model(name, direction, frames)

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        entry_id = self._some_id(data)
        changed = self.journal.ack(entry_id)
        assert changed == (entry_id in self.model)
        self.model.pop(entry_id, None)

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def nack(self, data: st.DataObject) -> None:
        entry_id = self._some_id(data)
        if entry_id not in self.model:
            try:
                self.journal.nack(entry_id)
            except zjournal.UnknownEntryError:
                return
            raise AssertionError("nack of a removed entry succeeded")
        self.journal.nack(entry_id)
        m = self.model[entry_id]
        if m.state == "dead":
            m.attempts = 0
        m.state = "pending"

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def dead(self, data: st.DataObject) -> None:
        entry_id = self._some_id(data)
        if entry_id not in self.model:
            try:
                self.journal.dead(entry_id)
            except zjournal.UnknownEntryError:
                return
            raise AssertionError("dead of a removed entry succeeded")
        self.journal.dead(entry_id, "model")
        self.model[entry_id].state = "dead"

    @precondition(lambda self: self.issued)
    @rule(data=st.data())
    def attempt(self, data: st.DataObject) -> None:
        entry_id = self._some_id(data)
        m = self.model.get(entry_id)
        if m is None or m.state != "pending":
            try:
                self.journal.attempt(entry_id)
            except (zjournal.UnknownEntryError, zjournal.InvalidTransitionError):
                return
            raise AssertionError("attempt on a non-pending entry succeeded")
        e = self.journal.attempt(entry_id)
        if m.attempts >= MAX_ATTEMPTS:
            m.state = "dead"
        else:
            m.attempts += 1
        assert (e.state, e.attempts) == (m.state, m.attempts)

    @rule(
        name=st.sampled_from(["orders", "events"]),
        frames=FRAMES,
        direction=st.sampled_from(["in", "out"]),
        settle_previous=st.booleans(),
    )
    def hold(self, name: str, frames: list[bytes], direction: str, settle_previous: bool) -> None:
        if name not in self.slots:
            self.slots[name] = port_of(self.journal).open_slots(name)
        pair = self.slots[name]
        slot = pair.inbound if direction == "in" else pair.outbound  # type: ignore[attr-defined]
        settle = slot.entry_id if settle_previous else 0
        entry_id = port_of(self.journal).log_held(slot, frames, settle)
        assert entry_id > self.issued[-1] if self.issued else True
        self.issued.append(entry_id)
        if settle:
            del self.model[settle]  # acked by the overwrite; otherwise it went to the store, pending
        self.model[entry_id] = Model(name, direction, frames, attempts=1)

    @rule()
    def reopen(self) -> None:
        self.journal.close()
        self.slots.clear()
        self.journal = zjournal.open(self.dir, max_attempts=MAX_ATTEMPTS)

    @rule()
    def crash(self) -> None:
        """Reopen after what a kill -9 leaves: no clean close, the slot files still there."""
        abandon(self.journal)
        self.slots.clear()
        self.journal = zjournal.open(self.dir, max_attempts=MAX_ATTEMPTS)

    @invariant()
    def same_entries(self) -> None:
        got = {e.id: Model(e.name, e.direction, e.frames, e.state, e.attempts) for e in self.journal.entries()}
        assert got == self.model

    @invariant()
    def same_counts(self) -> None:
        for state in ("pending", "acked", "dead"):
            for name in (None, "orders", "events", "ünïcode"):
                expected = sum(1 for m in self.model.values() if m.state == state and (name is None or m.name == name))
                assert self.journal.count(name=name, state=state) == expected


JournalMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestJournalModel = JournalMachine.TestCase
