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

# Two runs of one sender's stream (a floor moves both: zjournal.journal.seen), and another sender.
ALL_ORIGINS = (b"a" * 16, b"a" * 8 + b"b" * 8, bytes(range(16)))
ORIGINS = st.sampled_from(ALL_ORIGINS)
SEQS = st.integers(min_value=1, max_value=40)


class SeenMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="zjournal-seen-")
        self.store = RocksStore(self.dir)
        self.index = SeenIndex()
        self.index.load(self.store)
        self.committed: set[tuple[bytes, int]] = set()  # keys whose batch was written, ever
        self.kept: set[tuple[bytes, int]] = set()  # ... and at or above every floor since: must stay seen
        self.floors: dict[bytes, int] = {}  # the highest floor applied per origin, its stream's included

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _committed(self, origin: bytes, seqs: list[int], floor: int) -> None:
        self.committed.update((origin, seq) for seq in seqs)
        self.kept.update((origin, seq) for seq in seqs if seq >= floor)

    @rule(origin=ORIGINS, seq=SEQS)
    def journal(self, origin: bytes, seq: int) -> None:
        batch = self.store.batch()
        floor = self.index.floor(origin)  # (0 again for a run forgotten whole)
        done = self.index.add(batch, origin, seq)
        self.store.write(batch)
        done()
        self._committed(origin, [seq], floor)

    @rule(origin=ORIGINS, seqs=st.lists(SEQS, min_size=1, max_size=8))
    def journal_a_batch(self, origin: bytes, seqs: list[int]) -> None:
        batch = self.store.batch()
        fresh = [seq for seq in dict.fromkeys(seqs) if not self.index.seen(origin, seq)]  # as the port does
        floor = self.index.floor(origin)
        done = self.index.add_many(batch, origin, fresh)
        self.store.write(batch)
        done()
        self._committed(origin, fresh, floor)

    @rule(origin=ORIGINS, seq=SEQS)
    def write_fails(self, origin: bytes, seq: int) -> None:
        batch = self.store.batch()
        self.index.add(batch, origin, seq)  # the batch is never written: nothing was journaled

    @rule(origin=ORIGINS, floor=SEQS)
    def sender_floor_moves(self, origin: bytes, floor: int) -> None:
        batch = self.store.batch()
        stream = seen.stream_of(origin)
        runs = {origin} | {o for o in self.index.by_origin if seen.stream_of(o) == stream}
        done = self.index.forget_below(batch, origin, floor)
        if done is not None:
            self.store.write(batch)
            done()
            for run in runs:  # (a run not known now was forgotten whole, or never known: no floor)
                self.floors[run] = max(self.floors.get(run, 0), floor) if run in self.index.by_origin else 0
            self.kept = {(o, seq) for o, seq in self.kept if o not in runs or seq >= floor}

    @rule()
    def crash_and_reopen(self) -> None:
        self.store.close()  # the WAL holds every write that returned
        self.store = RocksStore(self.dir)
        self.index = SeenIndex()
        self.index.load(self.store)

    @invariant()
    def no_false_duplicate_and_nothing_forgotten_above_the_floor(self) -> None:
        for origin in ALL_ORIGINS:
            # (an earlier run with no key left at or above a floor is forgotten whole: its floor is 0 again)
            assert self.index.floor(origin) in (0, self.floors.get(origin, 0))
            for seq in range(1, 41):
                if self.index.seen(origin, seq):
                    assert (origin, seq) in self.committed, f"false duplicate {origin!r} {seq}"
                else:
                    assert (origin, seq) not in self.kept, f"committed {origin!r} {seq} forgotten above the floor"
        assert self.index.floor(bytes(range(16))) == self.floors.get(bytes(range(16)), 0)  # (a stream of one run)


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


def test_runs_not_heard_from_for_the_idle_time_are_forgotten_whole_unless_busy(tmp_path) -> None:
    """A sender that went for good leaves nothing behind (keys and floor, memory and store)."""
    store = RocksStore(str(tmp_path / "j"))
    index = SeenIndex()
    gone, in_a_ring, heard = b"g" * 16, b"r" * 16, b"h" * 16
    for origin in (gone, in_a_ring, heard):
        batch = store.batch()
        done = index.add_many(batch, origin, [5, 6, 7])
        store.write(batch)
        done()
        batch = store.batch()
        index.forget_below(batch, origin, 6)()  # (a floor record too)
        store.write(batch)
    now = index.by_origin[heard].active + seen.IDLE_FORGET
    index.by_origin[heard].active = now - 1  # heard from a second ago
    assert index.idle_check_due(now) and not index.idle_check_due(now + 1)  # a look once a minute at most
    batch = store.batch()
    forget = index.forget_idle(batch, now, busy={in_a_ring})  # (its keys in a key ring not stored yet)
    store.write(batch)
    forget()
    assert set(index.origins()) == {in_a_ring, heard}
    reloaded = SeenIndex()
    reloaded.load(store)
    assert set(reloaded.origins()) == {in_a_ring, heard}
    assert reloaded.seen(heard, 7) and not reloaded.seen(gone, 7)
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


def test_a_senders_runs_record_keeps_only_runs_with_pending_entries(tmp_path) -> None:
    """ConfirmPort.begin_run: an entry's run is the last one whose first id is not above it."""
    import msgpack

    import zjournal
    from zjournal.journal.core import port_of

    journal = zjournal.open(str(tmp_path / "j"))
    port = port_of(journal)
    one, two, three = (bytes([n]) * 16 for n in (1, 2, 3))
    assert port.begin_run("out", one, []) == [(1, one)]
    ids = [journal.append("out", [b"m%d" % n], direction="out") for n in range(3)]
    runs = port.begin_run("out", two, ids[:1])  # run one has a pending entry
    assert runs == [(1, one), (ids[-1] + 1, two)]
    journal.append("other", [b"x"], direction="in")
    assert port.begin_run("out", three, ids[:1]) == [(1, one), (ids[-1] + 2, three)]  # run two had none
    assert port.begin_run("out", one, []) == [(ids[-1] + 2, one)]  # no id handed out since: the same first
    for hostile in (b"\xc1", msgpack.packb([[1, b"short"]]), msgpack.packb([[5, two], [2, one]]), msgpack.packb(7)):
        batch = journal._ledger.store.batch()
        batch.put("meta", b"confirm-runs:out", hostile)
        journal._ledger.store.write(batch)
        assert port.begin_run("out", two, [1]) == [(ids[-1] + 2, two)]  # not a record: every run forgotten
    journal.close()
