"""In-flight slots: the message a socket is moving lives in its slot file, and nothing is lost by it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import zmq

import zjournal
from zjournal.crashlog import whole_lines
from zjournal.journal import inflight
from zjournal.journal.entry import encode_key


def _slot_files(journal_path: str) -> list[str]:
    return inflight.slot_files(journal_path)


def _in_store(journal: zjournal.Journal, entry_id: int) -> bool:
    return journal._store.get("entries", encode_key(entry_id)) is not None


@pytest.fixture
def pipe(journal, ctx, endpoint):
    """A plain PUSH into a journaled PULL."""
    pull = journal.wrap(ctx.socket(zmq.PULL), name="work")
    addr = endpoint()
    pull.bind(addr)
    push = ctx.socket(zmq.PUSH)
    push.connect(addr)
    return push, pull


def test_the_message_in_hand_is_in_a_slot_not_the_store(journal, journal_path, pipe) -> None:
    push, pull = pipe
    push.send(b"one")
    assert pull.recv() == b"one"
    first = pull.last_id
    assert not _in_store(journal, first)
    assert len(_slot_files(journal_path)) == 1
    entry = journal.get(first)
    assert entry is not None and entry.frames == [b"one"] and entry.state == "pending" and entry.attempts == 1
    assert [e.id for e in journal.entries(state="pending")] == [first]
    assert journal.count(state="pending") == 1
    push.send(b"two")
    assert pull.recv() == b"two"  # asking for the next one acked the first
    assert journal.get(first) is None
    assert journal.count(state="pending") == 1


def test_a_clean_close_leaves_no_slot_files_and_what_is_kept_stays_pending(
    journal, journal_path, pipe, open_journal
) -> None:
    push, pull = pipe
    push.send(b"kept")
    push.send(b"done")
    with pytest.raises(RuntimeError), pull.receiving() as frames:
        assert frames == [b"kept"]
        raise RuntimeError("handling failed")
    assert pull.recv() == b"done"  # the kept one leaves its slot for the store, still pending
    pull.close()  # done with "done"
    journal.close()
    assert _slot_files(journal_path) == []
    again = open_journal()
    assert [e.frames for e in again.entries(state="pending")] == [[b"kept"]]


def test_the_floor_never_passes_an_entry_held_in_a_slot(journal, pipe, open_journal) -> None:
    push, pull = pipe
    push.send(b"held")
    push.send(b"next")
    with pytest.raises(RuntimeError), pull.receiving():
        raise RuntimeError("keep it")
    journal.append("other", [b"newer"], direction="in")  # the store's first live entry is newer
    assert len(list(journal.entries())) == 2  # a scan moves the floor up to the first live id
    assert pull.recv() == b"next"  # the held one goes to the store, below that first id
    journal.close()
    again = open_journal()
    assert sorted(e.frames[0] for e in again.entries()) == [b"held", b"newer", b"next"]
    assert again.count(state="pending") == 3


def test_messages_larger_than_a_slot_go_to_the_store(journal, pipe) -> None:
    push, pull = pipe
    big = b"b" * (inflight.CAPACITY + 1)
    push.send(big)
    assert pull.recv() == big
    big_id = pull.last_id
    assert _in_store(journal, big_id)
    push.send(b"small")
    assert pull.recv() == b"small"
    assert journal.get(big_id) is None  # acked all the same
    small_id = pull.last_id
    assert not _in_store(journal, small_id) and journal.count(state="pending") == 1


def test_multipart_messages_round_trip_through_a_slot(journal, ctx, endpoint) -> None:
    router = journal.wrap(ctx.socket(zmq.ROUTER), name="front")
    addr = endpoint()
    router.bind(addr)
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"client-1")
    dealer.connect(addr)
    dealer.send_multipart([b"", b"hello", b"world"])
    frames = router.recv_multipart()
    entry = journal.get(router.last_id)
    assert entry is not None and entry.frames == frames and entry.envelope == [b"client-1", b""]
    assert not _in_store(journal, router.last_id)


def test_nacking_the_message_in_hand_redelivers_it(journal, pipe) -> None:
    push, pull = pipe
    push.send(b"again")
    assert pull.recv() == b"again"
    first = pull.last_id
    pull.nack()
    assert pull.poll(2000)
    assert pull.recv() == b"again"
    assert pull.last_id == first and journal.get(first).attempts == 2


def test_a_read_only_view_sees_the_message_being_handled(journal, journal_path, pipe, open_journal) -> None:
    push, pull = pipe
    push.send(b"in hand")
    assert pull.recv() == b"in hand"
    view = open_journal(read_only=True)
    assert view.count(state="pending", direction="in") == 1
    assert [e.frames for e in view.entries()] == [[b"in hand"]]
    assert view.get(pull.last_id).frames == [b"in hand"]
    push.send(b"next")
    assert pull.recv() == b"next"
    view.refresh()
    assert [e.frames for e in view.entries()] == [[b"next"]]


def test_a_view_counts_again_only_when_the_journal_changed(journal, pipe, open_journal, monkeypatch) -> None:
    from zjournal.journal.ledger import Ledger

    view = open_journal(read_only=True)
    counted = []
    count_entries = Ledger.count_entries

    def counting(ledger: Ledger) -> None:
        counted.append(ledger)
        count_entries(ledger)

    monkeypatch.setattr(Ledger, "count_entries", counting)
    push, pull = pipe

    def refreshed() -> tuple[int, int]:
        """(times the view counted its entries so far, pending entries it sees)."""
        view.refresh()
        pending = view.count(state="pending")  # (a view counts when asked)
        return sum(1 for ledger in counted if ledger is view._ledger), pending

    assert refreshed() == (1, 0)
    assert refreshed() == (1, 0)  # nothing changed: no count
    first = journal.append("orders", [b"o"], direction="in")
    assert refreshed() == (2, 1)  # a store write
    assert refreshed() == (2, 1)
    push.send(b"one")
    assert pull.recv() == b"one"
    assert refreshed() == (3, 2)  # a slot changed, the store did not
    assert refreshed() == (3, 2)
    push.send(b"two")
    assert pull.recv() == b"two"  # overwrites the slot: the ack of "one"
    assert refreshed() == (4, 2)
    journal.ack(first)
    assert refreshed() == (5, 1)
    journal.compact()  # the owner's files change, its data does not
    assert refreshed()[1] == 1
    assert [e.frames for e in view.entries(state="pending")] == [[b"two"]]


def test_a_follower_reads_only_what_is_new_and_counts_nothing(journal, pipe, open_journal, monkeypatch) -> None:
    """`inspect --follow`: each refresh reads the entries after the last one seen, no count, no full scan."""
    from zjournal.journal.ledger import Ledger

    first = [journal.append("orders", [b"o%d" % i], direction="in") for i in range(5)]
    view = open_journal(read_only=True)
    counted = []
    count_entries = Ledger.count_entries
    monkeypatch.setattr(Ledger, "count_entries", lambda ledger: counted.append(ledger) or count_entries(ledger))
    scanned_from = []
    scan = view._ledger.store.scan
    store = view._ledger.store
    monkeypatch.setattr(store, "scan", lambda table, start=b"": scanned_from.append(start) or scan(table, start))
    push, pull = pipe
    seen = first[-1]
    for round_ in range(3):
        more = journal.append("orders", [b"r%d" % round_], direction="in")
        push.send(b"m%d" % round_)
        assert pull.recv() == b"m%d" % round_  # (held in the PULL's slot, not in the store)
        view.refresh()
        new = list(view.entries(after=seen))
        assert [e.frames for e in new] == [[b"r%d" % round_], [b"m%d" % round_]]
        assert new[0].id == more
        seen = new[-1].id
    assert counted == []  # followed through three changes: never counted
    assert len(scanned_from) == 3 and all(start > encode_key(first[-1]) for start in scanned_from)
    assert view.count(state="pending") == 5 + 3 + 1  # asked: counted now, once
    assert view.count(name="orders") == 8
    assert len(counted) == 1
    assert list(view.entries(after=seen)) == []
    assert [e.id for e in view.entries(after=first[2], name="orders")][:2] == first[3:5]
    assert list(view.entries(after=2**64 - 1)) == []
    for bad in (-1, "3", 1.5, True):
        with pytest.raises(zjournal.InvalidArgumentError):
            view.entries(after=bad)


def test_a_view_opens_without_counting_until_a_count_is_asked_for(journal, pipe, open_journal, monkeypatch) -> None:
    """`inspect --id N` of a journal of a million entries: the open reads no entry it is not asked for."""
    from zjournal.journal.ledger import Ledger

    ids = [journal.append("orders", [b"o%d" % i], direction="in") for i in range(4)]
    journal.ack(ids[0])
    push, pull = pipe
    push.send(b"in hand")
    assert pull.recv() == b"in hand"
    counted = []
    count_entries = Ledger.count_entries
    monkeypatch.setattr(Ledger, "count_entries", lambda ledger: counted.append(ledger) or count_entries(ledger))
    view = open_journal(read_only=True)
    assert view.get(ids[2]).frames == [b"o2"]
    assert view.get(ids[0]) is None
    assert [e.frames for e in view.entries(after=ids[2])] == [[b"o3"], [b"in hand"]]
    assert view.oldest_pending().id == ids[1]
    assert counted == []
    assert view.count(state="pending") == 4 and view.names() == ["orders", "work"]
    assert view.count(name="work") == 1
    assert len(counted) == 1


def test_a_torn_slot_is_skipped(tmp_path: Path) -> None:
    path = str(tmp_path / "j")
    os.makedirs(path)
    _, slots = inflight.create(path, "work", 1)
    assert slots is not None
    slots.inbound.write(7, [b"whole message"], 1.5, 0)
    slots.outbound.write(8, [b"a", b"b"], 2.5, 1)
    assert sorted(entry_id for entry_id, _ in inflight.read_records(path)) == [7, 8]
    slots.outbound.write(9, [b""], 3.5, 0)  # an empty message is not an empty slot
    assert sorted(entry_id for entry_id, _ in inflight.read_records(path)) == [7, 9]
    slots.outbound.clear()
    assert [entry_id for entry_id, _ in inflight.read_records(path)] == [7]
    slots.outbound.write(8, [b"a", b"b"], 2.5, 1)
    with open(slots.path, "r+b") as f:  # a byte of the inbound message changed after its header was written
        f.seek(4096 + inflight.HEADER_SIZE + 3)
        f.write(b"X")
    assert [entry_id for entry_id, _ in inflight.read_records(path)] == [8]
    slots.close()
    assert inflight.slot_files(path) == []


KILLED_WHILE_HANDLING = r"""
import os, signal, sys, zmq, zjournal
path, addr = sys.argv[1:3]
journal = zjournal.open(path)
ctx = zmq.Context()
pull = journal.wrap(ctx.socket(zmq.PULL), name="work")
pull.bind(addr)
req = journal.wrap(ctx.socket(zmq.REQ), name="ask")
req.connect("ipc://" + path + ".nobody")   # nobody answers: the request stays in flight
req.send(b"question")
for expected in (b"first", b"second"):
    assert pull.recv() == expected
print("handling", pull.last_id, req.last_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_while_handling_keeps_the_slots_and_nothing_acked(tmp_path: Path) -> None:
    path = str(tmp_path / "crash.journal")
    addr = f"ipc://{tmp_path}/work.sock"
    command = [sys.executable, "-c", KILLED_WHILE_HANDLING, path, addr]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    ctx = zmq.Context()
    try:
        push = ctx.socket(zmq.PUSH)
        push.connect(addr)
        push.send(b"first")
        push.send(b"second")
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert proc.wait(20) == -signal.SIGKILL
    finally:
        ctx.destroy(linger=0)
    assert line[0] == "handling"
    second, question = int(line[1]), int(line[2])
    assert len(inflight.slot_files(path)) == 2  # the killed process never cleaned up
    with zjournal.open(path) as journal:
        assert inflight.slot_files(path) == []  # opening moved the records into the store
        pending = {e.id: e for e in journal.entries(state="pending")}
        assert set(pending) == {second, question}  # "first" was acked by asking for "second"
        assert pending[second].frames == [b"second"] and pending[second].direction == "in"
        assert pending[question].frames == [b"question"] and pending[question].direction == "out"
        assert _in_store(journal, second) and _in_store(journal, question)
        ctx = zmq.Context()
        try:
            pull = journal.wrap(ctx.socket(zmq.PULL), name="work")
            pull.bind(addr)
            assert pull.recv() == b"second" and journal.get(second).attempts == 2
        finally:
            ctx.destroy(linger=0)


def test_interval_mode_syncs_the_slot_files(open_journal, ctx, monkeypatch) -> None:
    import threading

    synced = threading.Event()
    real_sync = inflight.SlotFile.sync
    monkeypatch.setattr(inflight.SlotFile, "sync", lambda self: (real_sync(self), synced.set()))
    journal = open_journal(durability="interval", fsync_interval=5)
    _received_one(journal, ctx, "inproc://interval")
    assert synced.wait(5)  # the background thread fsynced the slot that changed


def _received_one(journal: zjournal.Journal, ctx: zmq.Context, where: str) -> zjournal.JournaledSocket:
    """A journaled PULL bound at ``where`` that received one message (``b"m"``), held in its slot."""
    pull = journal.wrap(ctx.socket(zmq.PULL), name="work")
    pull.bind(where)
    push = ctx.socket(zmq.PUSH)
    push.connect(where)
    push.send(b"m")
    assert pull.recv() == b"m"
    return pull


def test_a_new_slot_file_is_on_disk_with_its_header_before_the_store_records_it(
    open_journal, journal_path, ctx, monkeypatch
) -> None:
    # The record outlives a power cut once the log is fsynced; a file whose header was still only in
    # the page cache would then read as zeros: a false alarm ("no longer a slot file") at the next open.
    synced: list[tuple[int, bytes, bool]] = []
    real_sync = inflight.SlotFile.sync

    def sync_and_look(self: inflight.SlotFile) -> None:
        real_sync(self)
        recorded = journal._store.get("meta", b"slot-file:%d" % self.number) is not None
        synced.append((self.number, os.pread(self.fd, 64, 0), recorded))

    monkeypatch.setattr(inflight.SlotFile, "sync", sync_and_look)
    journal = open_journal(durability="interval", fsync_interval=3600)  # (no background fsync meanwhile)
    pull = journal.wrap(ctx.socket(zmq.PULL), name="work")
    assert synced, "the new slot file was never fsynced"
    number, header, recorded = synced[0]
    assert not recorded and header.startswith(inflight._MAGIC)
    assert journal._store.get("meta", b"slot-file:%d" % number) is not None
    pull.close()


def test_always_mode_and_retention_keep_every_entry_in_the_store(open_journal, ctx, tmp_path) -> None:
    for n, options in enumerate(({"durability": "always"}, {"retention": 60})):
        journal = open_journal(str(tmp_path / f"j{n}"), **options)
        pull = journal.wrap(ctx.socket(zmq.PULL), name="work")
        pull.bind(f"inproc://store-only-{n}")
        push = ctx.socket(zmq.PUSH)
        push.connect(f"inproc://store-only-{n}")
        push.send(b"m")
        assert pull.recv() == b"m"
        assert _in_store(journal, pull.last_id)
        assert inflight.slot_files(str(tmp_path / f"j{n}")) == []


def test_sync_fsyncs_the_slot_files_too(journal, ctx, monkeypatch) -> None:
    synced: list[str] = []
    monkeypatch.setattr(inflight.SlotFile, "sync", lambda self: synced.append(self.path))
    pull = journal.wrap(ctx.socket(zmq.PULL), name="work")
    journal.sync()
    assert synced == [pull._s.slots.path]


@pytest.mark.parametrize("mode", ["process", "interval"])
def test_sync_makes_what_a_slot_holds_durable_with_or_without_a_descriptor(open_journal, ctx, mode) -> None:
    # interval mode keeps a descriptor to fdatasync through; process mode only the mapping's own (msync)
    journal = open_journal(durability=mode, fsync_interval=3600)  # (no background fsync meanwhile)
    pull = _received_one(journal, ctx, "inproc://sync-modes")
    slots = pull._s.slots
    assert (slots.fd >= 0) == (mode == "interval")
    journal.sync()
    assert slots._synced == (pull.last_id, 0)  # what it held when the sync began


def test_acks_from_another_thread_race_the_socket_safely(journal, journal_path, pipe, open_journal) -> None:
    import queue
    import threading

    push, pull = pipe
    ids: queue.Queue[int | None] = queue.Queue()

    def acker() -> None:
        while (entry_id := ids.get()) is not None:
            journal.ack(entry_id)  # races the socket's own ack (the overwrite of its slot)

    thread = threading.Thread(target=acker)
    thread.start()
    for i in range(3000):
        push.send(b"%d" % i)
        assert pull.recv() == b"%d" % i
        ids.put(pull.last_id)
    ids.put(None)
    thread.join(30)
    assert journal.count(state="pending") == len(list(journal.entries(state="pending"))) <= 1
    pull.close()
    journal.close()
    again = open_journal()
    assert again.count() == 0 and list(again.entries()) == []


def test_a_socket_whose_slot_file_cannot_be_made_journals_in_the_store(journal, journal_path, ctx, caplog) -> None:
    shutil.rmtree(journal_path + "/inflight", ignore_errors=True)  # (it holds the journal's overflow spare)
    with open(journal_path + "/inflight", "w") as blocker:  # a file where the slot directory goes
        blocker.write("x")
    pull = journal.wrap(ctx.socket(zmq.PULL), name="work")
    assert "without an in-flight slot" in caplog.text
    pull.bind("inproc://no-slots")
    push = ctx.socket(zmq.PUSH)
    push.connect("inproc://no-slots")
    push.send(b"m")
    assert pull.recv() == b"m"
    assert _in_store(journal, pull.last_id) and journal.count(state="pending") == 1
    pull.close()
    journal.close()
    with zjournal.open(journal_path) as again:  # and the journal opens again as it is
        assert again.count() == 0


def test_a_scan_racing_the_socket_never_moves_the_floor_past_a_pending_entry(journal, journal_path, pipe) -> None:
    """A scan (a metrics scrape, inspect) reads the slots, then the store; appends land in between."""
    push, pull = pipe
    entered, go = threading.Event(), threading.Event()
    real_scan = journal._store.scan

    def scan(table, start=b""):  # hold the scan between its slot snapshot and its store snapshot
        if table == "entries" and not go.is_set():
            entered.set()
            go.wait(5)
        return real_scan(table, start)

    journal._store.scan = scan
    seen: list[list[int]] = []
    scanner = threading.Thread(target=lambda: seen.append([e.id for e in journal.entries(state="pending")]))
    scanner.start()
    assert entered.wait(5)
    push.send(b"keep-me")
    push.send(b"L" * (inflight.CAPACITY + 1))  # journaled in the store, not the slot
    push.send(b"third")
    with pytest.raises(RuntimeError), pull.receiving():
        kept = pull.last_id
        raise RuntimeError("the handler failed: the message stays pending")
    pull.recv()  # the large one
    go.set()
    scanner.join()
    pull.recv()  # the kept entry is spilled from its slot to the store here
    assert kept in [e.id for e in journal.entries(state="pending")]
    pull.close()
    journal.close()
    with zjournal.open(journal_path) as again:
        assert kept in [e.id for e in again.entries(state="pending")]


def test_interval_mode_makes_a_spilled_entry_durable_before_its_slot_can_be_overwritten(open_journal, ctx) -> None:
    journal = open_journal(durability="interval", fsync_interval=1000)
    pull = journal.wrap(ctx.socket(zmq.PULL), name="work")
    pull.bind("inproc://spill")
    push = ctx.socket(zmq.PUSH)
    push.connect("inproc://spill")
    push.send(b"X")
    with pytest.raises(RuntimeError), pull.receiving():
        kept = pull.last_id
        raise RuntimeError("keep X pending")
    synced_with: list[int] = []
    real_sync = journal._store.sync

    def sync() -> None:  # what the slot still holds when the store is fsynced
        synced_with.append(pull._s.slots.inbound.entry_id)
        real_sync()

    journal._store.sync = sync
    push.send(b"Y")
    pull.recv()  # X leaves its slot for the store; Y takes the slot
    assert synced_with == [kept]  # the store was fsynced while the slot still held X
    assert _in_store(journal, kept)


VIEWED_OWNER = r"""
import os, sys, time, zmq, zjournal
j = zjournal.open(sys.argv[1], plugins=False)
log = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
ctx = zmq.Context()
push = ctx.socket(zmq.PUSH); push.bind("inproc://w")
pull = j.wrap(ctx.socket(zmq.PULL), name="work"); pull.connect("inproc://w")
print("ready", flush=True)
i = 0
while True:
    push.send(b"m%d" % i); i += 1
    try:
        with pull.receiving():
            raise RuntimeError   # kept pending for good: slot first, store once the next one comes
    except RuntimeError:
        pass
    os.write(log, b"%d %.6f\n" % (pull.last_id, time.time()))
    time.sleep(0.0005)
"""


def test_a_view_of_a_live_journal_never_misses_an_entry_pending_all_along(tmp_path: Path) -> None:
    import time

    path, log = str(tmp_path / "j.journal"), str(tmp_path / "owner.log")
    owner = subprocess.Popen([sys.executable, "-c", VIEWED_OWNER, path, log], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        view = zjournal.open(path, read_only=True, plugins=False)
        deadline = time.time() + 3
        views = 0
        while time.time() < deadline:
            started = time.time()
            view.refresh()
            listed = {e.id for e in view.entries(name="work", state="pending")}
            # (whole lines: the owner may be writing one, and "2720 17" is no entry kept before started)
            kept = [int(line.split()[0]) for line in whole_lines(log) if float(line.split()[1]) < started]
            assert not [i for i in kept if i not in listed]
            views += 1
        view.close()
        assert views > 10
    finally:
        owner.kill()
        owner.wait()
