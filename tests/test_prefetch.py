"""prefetch=N: read what is queued, journal it in one write, hand it out one by one."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import zmq

import zjournal


def pipe(journal, ctx, endpoint, kind=zmq.PULL, peer=zmq.PUSH, **options):
    sock = journal.wrap(ctx.socket(kind), name="in", **options)
    addr = endpoint()
    sock.bind(addr)
    other = ctx.socket(peer)
    other.connect(addr)
    return sock, other


def test_messages_come_out_in_order_whatever_the_api(journal, ctx, endpoint) -> None:
    pull, push = pipe(journal, ctx, endpoint, prefetch=8)
    for i in range(20):
        push.send_multipart([b"m%02d" % i, b"tail"])
    got = []
    for i in range(20):
        if i % 3 == 0:
            first = pull.recv()
            assert pull.rcvmore == 1 and pull.getsockopt(zmq.RCVMORE) == 1
            second = pull.recv(copy=False)
            assert pull.rcvmore == 0
            got.append([first, second.bytes])
        elif i % 3 == 1:
            got.append([f.bytes for f in pull.recv_multipart(copy=False)])
        else:
            got.append(pull.recv_multipart())
    assert got == [[b"m%02d" % i, b"tail"] for i in range(20)]


def test_one_write_journals_what_was_queued_and_acks_ride_along(journal, ctx, endpoint) -> None:
    pull, push = pipe(journal, ctx, endpoint, prefetch=16)
    for i in range(10):
        push.send(b"%d" % i)
    assert pull.poll(1000)
    assert pull.recv() == b"0"
    # all ten were read and journaled at once; only the one handed over is "delivered" so far
    assert journal.count(name="in", state="pending") == 10
    assert pull.poll(0) == zmq.POLLIN and pull.getsockopt(zmq.EVENTS) & zmq.POLLIN
    for i in range(1, 10):
        assert pull.recv() == b"%d" % i
    with pytest.raises(zmq.Again):
        pull.recv(zmq.NOBLOCK)  # idle: the deferred acks are written now
    assert journal.count(name="in") == 0


def test_explicit_policy_with_prefetch(journal, ctx, endpoint) -> None:
    pull, push = pipe(journal, ctx, endpoint, prefetch=4, ack="explicit")
    for i in range(3):
        push.send(b"%d" % i)
    ids = []
    for _ in range(3):
        pull.recv()
        ids.append(pull.last_id)
    assert journal.count(name="in", state="pending") == 3
    pull.ack(ids[1])
    assert [e.id for e in journal.entries(name="in")] == [ids[0], ids[2]]


def test_closing_leaves_what_was_never_handed_over_pending(journal, ctx, endpoint) -> None:
    pull, push = pipe(journal, ctx, endpoint, prefetch=8)
    for i in range(5):
        push.send(b"%d" % i)
    assert pull.poll(1000)
    assert pull.recv() == b"0"
    assert pull.recv() == b"1"
    pull.close()  # 0 done, 1 done at a clean close, 2..4 never handed over
    assert [e.frames for e in journal.entries(name="in")] == [[b"2"], [b"3"], [b"4"]]
    again = journal.wrap(ctx.socket(zmq.PULL), name="in", prefetch=8)
    assert [again.recv() for _ in range(3)] == [b"2", b"3", b"4"]


def test_ephemeral_messages_in_a_prefetched_batch(journal, ctx, endpoint) -> None:
    pull, push = pipe(journal, ctx, endpoint, prefetch=8, classify={b"tick": "ephemeral"})
    for body in (b"order-1", b"tick", b"order-2"):
        push.send(body)
    assert pull.poll(1000)
    assert [pull.recv() for _ in range(3)] == [b"order-1", b"tick", b"order-2"]
    assert journal.count_ephemeral("in") == 1


def test_prefetch_is_refused_where_it_cannot_apply(journal, ctx) -> None:
    with pytest.raises(zjournal.InvalidArgumentError, match="prefetch"):
        journal.wrap(ctx.socket(zmq.REP), prefetch=8)
    with pytest.raises(zjournal.InvalidArgumentError, match="prefetch"):
        journal.wrap(ctx.socket(zmq.PULL), prefetch=-1)


CONSUMER = r"""
import os, signal, sys, zmq, zjournal
journal = zjournal.open(sys.argv[1])
ctx = zmq.Context()
pull = journal.wrap(ctx.socket(zmq.PULL), name="in", prefetch=16, ack=sys.argv[3])
pull.bind(sys.argv[2])
print("ready", flush=True)
for i in range(4):
    print(pull.recv().decode(), flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("ack", ["next", "explicit"])
def test_kill_9_with_prefetched_messages_loses_nothing(tmp_path, ctx, ack) -> None:
    path, addr = str(tmp_path / "p.journal"), f"ipc://{tmp_path}/p"
    proc = subprocess.Popen([sys.executable, "-c", CONSUMER, path, addr, ack], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    push = ctx.socket(zmq.PUSH)
    push.connect(addr)
    for i in range(10):
        push.send(b"m%d" % i)
    handled = [proc.stdout.readline().strip() for _ in range(4)]
    assert proc.wait(20) == -signal.SIGKILL
    assert handled == ["m0", "m1", "m2", "m3"]
    with zjournal.open(path) as j:
        pending = list(j.entries(state="pending"))
    left = [e.frames[0].decode() for e in pending]
    assert set(left) >= {f"m{i}" for i in range(4, 10)}  # everything read ahead is there
    assert left == sorted(left, key=lambda m: int(m[1:]))
    if ack == "explicit":
        assert set(left) == {f"m{i}" for i in range(10)}
    else:  # asking for m3 acked m0..m2 (recorded in the slot file only): only the message in hand comes back
        assert left == [f"m{i}" for i in range(3, 10)]
    # the hand-overs were recorded in the slot file only: opening after the kill counts them
    attempts = {e.frames[0].decode(): e.attempts for e in pending}
    assert all(attempts[m] == 1 for m in handled if m in attempts)
    assert all(attempts[m] == 0 for m in left if m not in handled)


def test_prefetched_messages_are_seen_by_zmq_poller(journal, ctx, endpoint) -> None:
    pull = journal.wrap(ctx.socket(zmq.PULL), name="in", prefetch=8)
    addr = endpoint()
    pull.bind(addr)
    push = ctx.socket(zmq.PUSH)
    push.connect(addr)
    for i in range(3):
        push.send(b"%d" % i)
    assert pull.recv() == b"0"  # reads the other two ahead: libzmq holds nothing now
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    assert dict(poller.poll(0)) == {pull: zmq.POLLIN}
    assert pull.recv() == b"1" and dict(poller.poll(0)) == {pull: zmq.POLLIN}
    assert pull.recv() == b"2" and dict(poller.poll(0)) == {}


def test_messages_read_ahead_are_not_counted_as_deliveries(open_journal, ctx, endpoint) -> None:
    journal = open_journal(max_attempts=1)
    addr = endpoint()
    push = ctx.socket(zmq.PUSH)
    push.bind(addr)
    pull = journal.wrap(ctx.socket(zmq.PULL), name="work", prefetch=64)
    pull.connect(addr)
    for i in range(10):
        push.send(b"m%d" % i)
    while not pull.poll(10):
        pass
    assert pull.recv() == b"m0"  # the rest were read ahead, never handed over
    assert journal.get(pull.last_id).attempts == 1
    assert {e.attempts for e in journal.entries(state="pending") if e.id != pull.last_id} == {0}
    pull.close()
    again = journal.wrap(ctx.socket(zmq.PULL), name="work")
    got = []
    while again.poll(300):
        got.append(again.recv())
    assert got == [b"m%d" % i for i in range(1, 10)] and journal.count(state="dead") == 0
