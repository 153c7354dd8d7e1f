"""The receiving side's deduplication record (zjournal.journal.seen): never a false duplicate.

A model-based test over a real RocksDB: keys committed, keys whose write never
happened (the batch was dropped, as when a write raises), floors moving,
crashes and reopens. The property that matters: ``seen`` is True only for a
key that was committed and not forgotten, because dropping a message as a
duplicate that this journal never held would lose it.
"""

from __future__ import annotations

import shutil
import tempfile

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from zjournal.journal import seen
from zjournal.journal.seen import SeenIndex
from zjournal.store import RocksStore

ORIGINS = st.sampled_from([b"a" * 16, b"b" * 16, bytes(range(16))])
SEQS = st.integers(min_value=1, max_value=40)


class SeenMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="zjournal-seen-")
        self.store = RocksStore(self.dir)
        self.index = SeenIndex()
        self.index.load(self.store)
        self.committed: set[tuple[bytes, int]] = set()  # keys whose batch was written
        self.floors: dict[bytes, int] = {}  # the highest floor committed per origin

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(origin=ORIGINS, seq=SEQS)
    def journal(self, origin: bytes, seq: int) -> None:
        batch = self.store.batch()
        done = self.index.add(batch, origin, seq)
        self.store.write(batch)
        done()
        self.committed.add((origin, seq))

    @rule(origin=ORIGINS, seqs=st.lists(SEQS, min_size=1, max_size=8))
    def journal_a_batch(self, origin: bytes, seqs: list[int]) -> None:
        batch = self.store.batch()
        fresh = [seq for seq in dict.fromkeys(seqs) if not self.index.seen(origin, seq)]  # as the port does
        done = self.index.add_many(batch, origin, fresh)
        self.store.write(batch)
        done()
        self.committed.update((origin, seq) for seq in fresh if seq >= self.floors.get(origin, 0))

    @rule(origin=ORIGINS, seq=SEQS)
    def write_fails(self, origin: bytes, seq: int) -> None:
        batch = self.store.batch()
        self.index.add(batch, origin, seq)  # the batch is never written: nothing was journaled

    @rule(origin=ORIGINS, floor=SEQS)
    def sender_floor_moves(self, origin: bytes, floor: int) -> None:
        batch = self.store.batch()
        done = self.index.forget_below(batch, origin, floor)
        if done is not None:
            self.store.write(batch)
            done()
            self.floors[origin] = max(self.floors.get(origin, 0), floor)

    @rule()
    def crash_and_reopen(self) -> None:
        self.store.close()  # the WAL holds every write that returned
        self.store = RocksStore(self.dir)
        self.index = SeenIndex()
        self.index.load(self.store)

    @invariant()
    def no_false_duplicate_and_nothing_forgotten_above_the_floor(self) -> None:
        for origin in (b"a" * 16, b"b" * 16, bytes(range(16))):
            floor = self.floors.get(origin, 0)
            assert self.index.floor(origin) == floor
            for seq in range(1, 41):
                if self.index.seen(origin, seq):
                    assert (origin, seq) in self.committed, f"false duplicate {origin!r} {seq}"
                    assert seq >= floor
                elif (origin, seq) in self.committed:
                    assert seq < floor, f"committed {origin!r} {seq} forgotten above the floor {floor}"


TestSeenModel = SeenMachine.TestCase
TestSeenModel.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def test_keys_below_the_floor_leave_the_store(tmp_path) -> None:
    store = RocksStore(str(tmp_path / "j"))
    index = SeenIndex()
    origin = b"o" * 16
    for seq in range(1, 11):
        batch = store.batch()
        done = index.add(batch, origin, seq)
        store.write(batch)
        done()
    batch = store.batch()
    index.forget_below(batch, origin, 8)()
    store.write(batch)
    kept = [k for k, _v in store.scan("meta", b"seen:") if k.startswith(b"seen:")]
    assert kept == [seen.key(origin, seq) for seq in (8, 9, 10)]
    assert index.origins() == {origin: (8, 3)}
    store.close()


def test_a_foreign_key_in_the_seen_range_is_never_taken_as_seen(tmp_path) -> None:
    store = RocksStore(str(tmp_path / "j"))
    batch = store.batch()
    batch.put("meta", b"seen:short", b"")  # hostile or damaged: not 16 + 8 bytes
    batch.put("meta", b"seen-floor:" + b"x" * 16, b"bad")
    store.write(batch)
    index = SeenIndex()
    index.load(store)
    assert not index.seen(b"short"[:16].ljust(16, b"\0"), 0)
    assert index.floor(b"x" * 16) == 0
    store.close()
