"""Outboxes: a confirm sender's unconfirmed messages wait in a memory-mapped ring, and none is lost by it."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import zjournal
from zjournal.journal import inflight, outbox
from zjournal.journal.core import port_of
from zjournal.journal.entry import DIRECTION_CODES, Direction
from zjournal.journal.ledger import Ledger

OUT = DIRECTION_CODES[Direction.OUT]


def _pending_out(journal: zjournal.Journal) -> dict[int, list[bytes]]:
    return {e.id: e.frames for e in journal.entries(state="pending", direction="out")}


class OutboxMachine(RuleBasedStateMachine):
    """Messages in, confirmations in any order, the ring wrapping many times: the journal shows exactly the model."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp(prefix="zjournal-outbox-")
        self.journal = zjournal.open(os.path.join(self.dir, "j"))
        self.port = port_of(self.journal)
        self.box = self.port.open_outbox("out")
        self.model: dict[int, list[bytes]] = {}
        self.counter = 0

    def teardown(self) -> None:
        self.journal.close()

    @rule(
        size=st.sampled_from([1, 100, 5000, 40_000, 64_000, 70_000]), parts=st.integers(1, 3), many=st.integers(1, 40)
    )
    def send(self, size: int, parts: int, many: int) -> None:
        for _ in range(many):
            self.counter += 1
            frames = [self.counter.to_bytes(4, "big") + bytes(size // parts)] + [b"p"] * (parts - 1)
            entry_id = self.port.log_out(self.box, frames)
            self.model[entry_id] = frames

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def confirm_some(self, data: st.DataObject) -> None:
        ids = sorted(self.model)
        chosen = data.draw(st.lists(st.sampled_from(ids), max_size=30, unique=True))
        self.port.settle_many("out", OUT, chosen, self.box)
        for entry_id in chosen:
            del self.model[entry_id]

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def read_and_ack_one_by_id(self, data: st.DataObject) -> None:
        entry_id = data.draw(st.sampled_from(sorted(self.model)))
        entry = self.journal.get(entry_id)  # found through the ring of recent ids: the outbox's record, read back
        assert (entry.frames, entry.state.value) == (self.model[entry_id], "pending")
        if data.draw(st.booleans()):
            self.journal.ack(entry_id)  # as an application may, instead of its confirmation
            del self.model[entry_id]

    @rule()
    def close_and_reopen(self) -> None:
        self.port.close_slots(self.box)
        self.journal.close()
        self.journal = zjournal.open(os.path.join(self.dir, "j"))
        self.port = port_of(self.journal)
        for entry_id in self.model:
            self.port.adopt(entry_id, "out", OUT)  # as a confirm sender does at startup
        self.box = self.port.open_outbox("out")

    @invariant()
    def the_journal_holds_exactly_what_is_unconfirmed(self) -> None:
        assert _pending_out(self.journal) == self.model
        assert self.journal.count(state="pending", direction="out") == len(self.model)


TestOutboxModel = OutboxMachine.TestCase
TestOutboxModel.settings = settings(
    max_examples=25, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


SENDER = r"""
import os, signal, sys, zjournal
from zjournal.journal.core import port_of
from zjournal.journal.entry import DIRECTION_CODES, Direction
j = zjournal.open(sys.argv[1])
port = port_of(j)
box = port.open_outbox("out")
ids = []
for i in range(int(sys.argv[2])):
    ids.append(port.log_out(box, [b"m%d" % i + bytes(i % 3000)]))
    if i % 7 == 0 and i > 50:
        port.settle_many("out", DIRECTION_CODES[Direction.OUT], [ids[i - 50]], box)  # confirmed late, out of order
print(" ".join(map(str, ids)), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_keeps_every_unconfirmed_message_of_a_ring_that_wrapped(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    count = 6000  # about 9 MB through a 2 MiB ring: it wraps, and full chunks go to the store
    proc = subprocess.run([sys.executable, "-c", SENDER, path, str(count)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ids = [int(i) for i in proc.stdout.split()]
    confirmed = {ids[i - 50] for i in range(count) if i % 7 == 0 and i > 50}
    with zjournal.open(path) as j:
        pending = _pending_out(j)
        assert inflight.slot_files(path) == []  # taken into the store at open
    assert set(pending) == set(ids) - confirmed
    for n, entry_id in enumerate(ids):
        if entry_id in pending:
            assert pending[entry_id] == [b"m%d" % n + bytes(n % 3000)]


def test_a_record_inside_a_message_is_never_taken_for_one(tmp_path: Path) -> None:
    """A payload that holds a well-formed record (without the file's key) does not come back as an entry."""
    path = str(tmp_path / "j")
    fake = b"forged"
    head = struct.pack("<IIQdBB", zlib.adler32(fake, (999 << 9) & 0xFFFFFFFF), len(fake), 999, 1.0, 0, 0)
    payload = (head + bytes(outbox.HEADER_SIZE - len(head)) + fake).ljust(outbox.ALIGN * 4, b"\0")
    script = SENDER.replace('[b"m%d" % i + bytes(i % 3000)]', "[bytes(64 - 32) + bytes.fromhex(sys.argv[3])]")
    proc = subprocess.run(
        [sys.executable, "-c", script, path, "20", (payload * 3).hex()], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with zjournal.open(path) as j:
        pending = _pending_out(j)
    assert 999 not in pending
    assert len(pending) == 20


def test_a_damaged_outbox_file_only_ever_shows_fewer_records(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    zjournal.open(path).close()
    where = inflight.directory(path)
    os.makedirs(where, exist_ok=True)
    garbage = outbox.MAGIC + os.urandom(outbox.FILE_HEADER_SIZE + 8192)
    with open(os.path.join(where, "7.slots"), "wb") as f:
        f.write(garbage)
    with zjournal.open(path) as j:
        assert j.count() == 0


def test_a_full_ring_goes_to_the_store_a_chunk_per_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A producer far ahead of its confirmations (a ROUTER whose peer went, large high-water marks): once the
    # ring is full, each store write takes a chunk of it. After the first chunk, each send once spilled just
    # the record it overwrote, in a store write of its own (~40 µs a send instead of ~8).
    writes: list[int] = []
    spill_held = Ledger.spill_held

    def counted(ledger: Ledger, held: list[outbox.Cell]) -> None:
        writes.append(len(held))
        spill_held(ledger, held)

    monkeypatch.setattr(Ledger, "spill_held", counted)
    size = 4000
    per_ring = outbox.RING_BYTES // outbox._aligned(outbox.HEADER_SIZE + size)
    per_chunk = outbox.SPILL_CHUNK // outbox._aligned(outbox.HEADER_SIZE + size)
    with zjournal.open(str(tmp_path / "j")) as j:
        port = port_of(j)
        box = port.open_outbox("out")
        ids = [port.log_out(box, [i.to_bytes(4, "big") + bytes(size - 4)]) for i in range(3 * per_ring)]
        assert sum(writes) >= 2 * per_ring - per_chunk  # what the ring could not hold went to the store
        assert len(writes) <= sum(writes) // per_chunk + 2
        assert j.count(state="pending", direction="out") == len(ids)
        assert j.get(ids[0]).frames == [bytes(size)] and j.get(ids[-1]).frames[0][:4] == (len(ids) - 1).to_bytes(
            4, "big"
        )
        port.close_slots(box)
