"""The public journal contract: append, get, entries, count, ack, nack, dead, attempt."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

import zjournal
from zjournal import Direction, Entry, Journal, State


@pytest.fixture(params=["rocks", "memory"])
def any_journal(request: pytest.FixtureRequest, open_journal: Callable[..., Journal]):
    if request.param == "rocks":
        yield open_journal()
    else:
        j = Journal()
        yield j
        j.close()


def test_append_returns_increasing_ids_and_stores_the_whole_message(any_journal: Journal) -> None:
    before = time.time()
    a = any_journal.append("orders", [b"k", bytearray(b"v"), memoryview(b"w")], direction="in")
    b = any_journal.append("orders", [b"x"], direction=Direction.OUT)
    assert 0 < a < b
    e = any_journal.get(a)
    assert isinstance(e, Entry)
    assert (e.id, e.name, e.direction, e.frames, e.state, e.attempts) == (
        a,
        "orders",
        "in",
        [b"k", b"v", b"w"],
        "pending",
        0,
    )
    assert all(type(f) is bytes for f in e.frames)
    assert before <= e.created <= time.time()
    assert any_journal.get(b).direction == Direction.OUT


@pytest.mark.parametrize("last", [bytes, bytearray, memoryview])
def test_a_message_with_a_large_last_frame_is_stored_whole(any_journal: Journal, last) -> None:
    """Large records are encoded apart (joined, not packed twice): the same record either way."""
    frames = [b"", b"a" * 255, b"b" * 256, b"c" * 65_535, b"d" * 65_536, last(b"e" * (3 << 20))]
    i = any_journal.append("big", frames, direction="in", envelope_size=1)
    e = any_journal.get(i)
    assert e.frames == [bytes(f) for f in frames] and e.envelope_size == 1 and e.name == "big"
    assert e.state == "pending" and e.attempts == 0


def test_state_is_a_str_enum_equal_to_plain_strings() -> None:
    assert State.PENDING == "pending" and State.ACKED == "acked" and State.DEAD == "dead"
    assert Direction.IN == "in" and str(Direction.OUT) == "out"


def test_get_of_unknown_id_is_none(any_journal: Journal) -> None:
    assert any_journal.get(12345) is None


def test_envelope_is_kept_apart_from_the_body(any_journal: Journal) -> None:
    i = any_journal.append("router", [b"peer", b"", b"body"], direction="in", envelope_size=2)
    e = any_journal.get(i)
    assert e.envelope == [b"peer", b""] and e.body == [b"body"] and e.frames == [b"peer", b"", b"body"]


def test_entries_filters_and_is_oldest_first(any_journal: Journal) -> None:
    j = any_journal
    ids = [
        j.append(n, [str(i).encode()], direction=d)
        for i, (n, d) in enumerate([("a", "in"), ("b", "out"), ("a", "out"), ("a", "in"), ("b", "in")])
    ]
    j.dead(ids[3], "poison")
    assert [e.id for e in j.entries()] == ids
    assert [e.id for e in j.entries(name="a")] == [ids[0], ids[2], ids[3]]
    assert [e.id for e in j.entries(direction="in")] == [ids[0], ids[3], ids[4]]
    assert [e.id for e in j.entries(state="dead")] == [ids[3]]
    assert [e.id for e in j.entries(name="a", state=State.PENDING, direction="in")] == [ids[0]]


def test_count_matches_entries_for_every_filter(any_journal: Journal) -> None:
    j = any_journal
    ids = [j.append(n, [b"x"], direction=d) for n in ("a", "b") for d in ("in", "out") for _ in range(3)]
    j.ack(ids[0])
    j.dead(ids[1])
    j.dead(ids[7], "no")
    for name in (None, "a", "b"):
        for state in (None, "pending", "acked", "dead"):
            for direction in (None, "in", "out"):
                expected = sum(1 for _ in j.entries(name=name, state=state, direction=direction))
                assert j.count(name=name, state=state, direction=direction) == expected
    assert j.count() == 11
    assert j.count(state="dead") == 2
    assert j.names() == ["a", "b"]


def test_ack_removes_the_entry_and_is_idempotent(any_journal: Journal) -> None:
    i = any_journal.append("s", [b"x"], direction="in")
    assert any_journal.ack(i) is True
    assert any_journal.get(i) is None
    assert any_journal.ack(i) is False
    assert any_journal.count() == 0


def test_ack_of_a_dead_entry_resolves_it(any_journal: Journal) -> None:
    i = any_journal.append("s", [b"x"], direction="in")
    any_journal.dead(i, "bad")
    assert any_journal.ack(i) is True
    assert any_journal.count(state="dead") == 0


def test_nack_returns_to_pending_and_revives_dead_entries(any_journal: Journal) -> None:
    i = any_journal.append("s", [b"x"], direction="in", attempts=1)
    any_journal.nack(i)
    assert any_journal.get(i).state == "pending" and any_journal.get(i).attempts == 1
    any_journal.dead(i, "gave up")
    e = any_journal.get(i)
    assert (e.state, e.reason) == ("dead", "gave up")
    any_journal.nack(i)
    e = any_journal.get(i)
    assert (e.state, e.attempts, e.reason) == ("pending", 0, "")


def test_attempt_counts_deliveries_and_kills_after_max_attempts(open_journal) -> None:
    j = open_journal(max_attempts=3)
    i = j.append("s", [b"x"], direction="in", attempts=1)
    assert j.attempt(i).attempts == 2
    e = j.attempt(i)
    assert (e.state, e.attempts) == ("pending", 3)
    e = j.attempt(i)
    assert e.state == "dead" and e.attempts == 3 and "max_attempts=3" in e.reason
    assert j.get(i).state == "dead"
    assert j.count(state="dead") == 1 and j.count(state="pending") == 0


def test_attempt_limit_can_be_given_per_call(any_journal: Journal) -> None:
    i = any_journal.append("s", [b"x"], direction="in", attempts=1)
    assert any_journal.attempt(i, max_attempts=1).state == "dead"


def test_attempt_on_a_dead_entry_is_refused(any_journal: Journal) -> None:
    i = any_journal.append("s", [b"x"], direction="in")
    any_journal.dead(i)
    with pytest.raises(zjournal.InvalidTransitionError):
        any_journal.attempt(i)


def test_retention_keeps_acked_entries_then_expires_them(open_journal) -> None:
    j = open_journal(retention=60)
    i = j.append("s", [b"x"], direction="in")
    j.ack(i)
    e = j.get(i)
    assert e.state == "acked" and e.updated >= e.created
    assert j.count(state="acked") == 1
    with pytest.raises(zjournal.InvalidTransitionError):
        j.nack(i)
    with pytest.raises(zjournal.InvalidTransitionError):
        j.dead(i)
    assert j.expire(now=time.time()) == 0
    assert j.expire(now=time.time() + 61) == 1
    assert j.get(i) is None and j.count() == 0


def test_a_retention_sweep_reads_only_what_was_appended_before_its_cutoff(open_journal, request) -> None:
    # A sweep runs every retention/2 (at most every minute): reading every entry kept was 1.3 s per sweep
    # for 500,000. What was appended after the cutoff was acked after it too: the sweep stops there.
    j = open_journal(retention=60)
    old = [j.append("s", [b"old"], direction="in") for _ in range(3)]
    j.ack(old[0])
    j.ack(old[1])  # (old[2] stays pending)
    time.sleep(0.01)
    cutoff = time.time()
    time.sleep(0.01)
    new = [j.append("s", [b"new"], direction="in") for _ in range(100)]
    for entry_id in new:
        j.ack(entry_id)
    read = request.getfixturevalue("records_read")  # (from now on)
    assert j.expire(now=cutoff + 60) == 2
    assert j.get(old[0]) is None and j.get(old[1]) is None
    assert j.get(old[2]).state == State.PENDING and all(j.get(i).state == State.ACKED for i in new)
    assert read == [*old, new[0]]
    read.clear()
    assert j.expire(now=time.time() + 61) == 100  # all of them, once they are old enough
    assert j.count(state="acked") == 0 and j.count(state="pending") == 1


def test_retention_sweeps_in_the_background(open_journal) -> None:
    j = open_journal(retention=0.05)
    i = j.append("s", [b"x"], direction="in")
    j.ack(i)
    deadline = time.monotonic() + 5
    # (get and count read without the journal's lock: between the sweep's delete and its counter change,
    # a reader may see the entry gone and still counted; both hold once the sweep's commit is through)
    while (j.get(i) is not None or j.count(state="acked")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert j.get(i) is None
    assert j.count(state="acked") == 0


def test_ids_are_never_reused_after_reopen(open_journal, journal_path: str) -> None:
    j = open_journal()
    ids = [j.append("s", [b"x"], direction="in") for _ in range(3)]
    for i in ids:
        j.ack(i)
    j.close()
    j = open_journal()
    assert j.append("s", [b"y"], direction="in") == ids[-1] + 1


def test_reopen_restores_entries_and_counters(open_journal) -> None:
    j = open_journal()
    a = j.append("a", [b"1", b"2"], direction="in")
    b = j.append("b", [b"3"], direction="out")
    j.dead(b, "why")
    j.close()
    j = open_journal()
    assert j.count(state="pending") == 1 and j.count(state="dead", name="b") == 1
    assert j.get(a).frames == [b"1", b"2"]
    assert j.get(b).reason == "why"


def test_scans_skip_the_removed_prefix(open_journal) -> None:
    j = open_journal()
    for _ in range(2000):
        j.ack(j.append("s", [b"x"], direction="in"))
    keep = j.append("s", [b"live"], direction="in")
    assert [e.id for e in j.entries()] == [keep]
    j.close()
    j = open_journal()
    assert [e.id for e in j.entries()] == [keep]


def test_context_manager_and_idempotent_close(journal_path: str) -> None:
    with zjournal.open(journal_path) as j:
        j.append("s", [b"x"], direction="in")
    assert j.closed
    j.close()
    with pytest.raises(zjournal.JournalClosedError):
        j.append("s", [b"x"], direction="in")


def test_durability_modes_all_journal(open_journal, tmp_path) -> None:
    for mode in ("process", "interval", "always", "none"):
        path = str(tmp_path / mode)
        j = open_journal(path, durability=mode, fsync_interval=5)
        assert j.durability == mode
        i = j.append("s", [b"x"], direction="in")
        j.close()
        j = open_journal(path)
        assert j.get(i).frames == [b"x"]


def test_sync_compact_and_size(journal: Journal) -> None:
    journal.append("s", [b"x" * 1000], direction="in")
    journal.sync()
    journal.compact()
    assert journal.size_on_disk() > 0
    assert "pending" in repr(journal)


def test_pending_attempts_counts_pending_entries_by_attempts(journal: Journal) -> None:
    ids = {n: journal.append("a", [b"m%d" % n], direction="in") for n in range(6)}
    other = journal.append("b", [b"other"], direction="out")
    for n, times in ((1, 1), (2, 2), (3, 2), (4, 1)):
        for _ in range(times):
            journal.attempt(ids[n])
    journal.ack(ids[4])  # acked and dead entries are not pending: not counted
    journal.dead(ids[5], "poison")
    journal.attempt(other)
    assert journal.pending_attempts() == {0: 1, 1: 2, 2: 2}
    assert journal.pending_attempts("a") == {0: 1, 1: 1, 2: 2}
    assert journal.pending_attempts("nobody") == {}


def test_oldest_pending_skips_dead_letters_and_sees_one_revived(journal) -> None:
    dead = [journal.append("s", [b"poison-%d" % i], direction="in") for i in range(50)]
    for entry_id in dead:
        journal.dead(entry_id, "poison")
    assert journal.oldest_pending() is None
    first = journal.append("s", [b"live"], direction="in")
    assert journal.oldest_pending().id == first
    assert journal.oldest_pending().id == first  # asked again: starts past the dead letters
    journal.nack(dead[10])  # an operator revives a dead letter older than every pending entry
    assert journal.oldest_pending().id == dead[10]
    journal.ack(dead[10])
    journal.ack(first)
    assert journal.oldest_pending() is None
