"""Ack policies: which entries each socket type journals, and what acks them."""

from __future__ import annotations

import pytest
import zmq

import zjournal


def pair(journal, ctx, addr, server, client, **options):
    s = journal.wrap(ctx.socket(server), name=f"s{server}", **options)
    c = journal.wrap(ctx.socket(client), name=f"c{client}", **options)
    s.bind(addr)
    c.connect(addr)
    return s, c


def states(journal, name):
    return [(e.direction, e.state, e.frames) for e in journal.entries(name=name)]


def test_push_pull_sent_and_next(journal, ctx, endpoint) -> None:
    pull, push = pair(journal, ctx, endpoint(), zmq.PULL, zmq.PUSH)
    push.send(b"1")
    assert states(journal, "c8") == [("out", "pending", [b"1"])]  # acked at the next send or close
    first_id = push.last_id
    push.send(b"2")
    assert journal.get(first_id) is None
    assert pull.recv() == b"1"
    assert states(journal, "s7") == [("in", "pending", [b"1"])]
    assert pull.recv() == b"2"  # asking for the next acks the previous
    assert states(journal, "s7") == [("in", "pending", [b"2"])]
    pull.close()
    push.close()
    assert journal.count() == 0


def test_idle_recv_acks_the_previous_at_once(journal, ctx, endpoint) -> None:
    pull, push = pair(journal, ctx, endpoint(), zmq.PULL, zmq.PUSH)
    push.send(b"1")
    pull.recv()
    with pytest.raises(zmq.Again):
        pull.recv(zmq.NOBLOCK)
    assert journal.count(name="s7") == 0


def test_req_rep_reply_policy(journal, ctx, endpoint) -> None:
    rep, req = pair(journal, ctx, endpoint(), zmq.REP, zmq.REQ)
    req.send(b"q")
    assert states(journal, "c3") == [("out", "pending", [b"q"])]
    assert rep.recv() == b"q"
    assert states(journal, "s4") == [("in", "pending", [b"q"])]
    rep.send(b"a")  # the REP's reply acks its request; replies are not journaled
    assert states(journal, "s4") == []
    assert req.recv() == b"a"  # the reply acks the REQ's request
    assert states(journal, "c3") == []


def test_dealer_router_both_directions(journal, ctx, endpoint) -> None:
    router, dealer = pair(journal, ctx, endpoint(), zmq.ROUTER, zmq.DEALER)
    dealer.send_multipart([b"", b"req"])
    frames = router.recv_multipart()
    in_entry = journal.get(router.last_id)
    assert (in_entry.direction, in_entry.envelope_size, in_entry.body) == ("in", 2, [b"req"])
    router.send_multipart([frames[0], b"", b"rep"])
    out_entry = journal.get(router.last_id)
    assert (out_entry.direction, out_entry.envelope, out_entry.body) == ("out", [frames[0]], [b"", b"rep"])
    assert dealer.recv_multipart() == [b"", b"rep"]


def test_pub_sub(journal, ctx, endpoint) -> None:
    sub, pub = pair(journal, ctx, endpoint(), zmq.SUB, zmq.PUB)
    sub.subscribe(b"")
    while not sub.poll(10):
        pub.send(b"hello")
    assert sub.recv() == b"hello"
    assert journal.count(name="s2", direction="in", state="pending") == 1
    assert journal.count(name="c1", direction="out") >= 1


def test_pair_both_ways(journal, ctx, endpoint) -> None:
    b, a = pair(journal, ctx, endpoint(), zmq.PAIR, zmq.PAIR)
    a.send(b"x")
    assert b.recv() == b"x"
    b.send(b"y")
    assert a.recv() == b"y"
    assert {(e.name, e.direction, e.frames[0]) for e in journal.entries()} == {
        ("c0", "out", b"x"),  # acked by a's next send (or its close)
        ("s0", "in", b"x"),  # acked when b asks for its next message
        ("s0", "out", b"y"),
        ("c0", "in", b"y"),
    }
    b.send(b"z")
    assert [e.frames for e in journal.entries(name="s0", direction="out")] == [[b"z"]]


def test_explicit_policy_keeps_entries_until_acked(journal, ctx, endpoint) -> None:
    pull, push = pair(journal, ctx, endpoint(), zmq.PULL, zmq.PUSH, ack="explicit")
    push.send(b"1")
    push.send(b"2")
    pull.recv()
    first = pull.last_id
    pull.recv()
    second = pull.last_id
    assert journal.count(name="s7", state="pending") == 2
    assert pull.ack(first) is True
    assert journal.get(first) is None and journal.get(second).state == "pending"
    pull.ack()  # default: last_id
    assert journal.count(name="s7") == 0
    assert journal.count(name="c8", state="pending") == 2  # explicit outbound too
    journal.ack(push.last_id)  # acked from anywhere


def test_receiving_acks_on_success_and_keeps_pending_on_error(journal, ctx, endpoint) -> None:
    pull, push = pair(journal, ctx, endpoint(), zmq.PULL, zmq.PUSH, ack="explicit")
    push.send(b"ok")
    push.send(b"boom")
    with pull.receiving() as frames:
        assert frames == [b"ok"]
    assert journal.count(name="s7") == 0
    with pytest.raises(RuntimeError), pull.receiving() as frames:
        raise RuntimeError(frames)
    assert states(journal, "s7") == [("in", "pending", [b"boom"])]


def test_receiving_with_next_policy_leaves_a_failed_message_pending(journal, ctx, endpoint) -> None:
    pull, push = pair(journal, ctx, endpoint(), zmq.PULL, zmq.PUSH)
    push.send(b"boom")
    push.send(b"fine")
    with pytest.raises(ValueError), pull.receiving():
        raise ValueError
    assert pull.recv() == b"fine"  # asking for the next does not ack the failed one
    pull.close()
    assert states(journal, "s7") == [("in", "pending", [b"boom"])]


def test_nack_redelivers_in_process(journal, ctx, endpoint) -> None:
    pull, push = pair(journal, ctx, endpoint(), zmq.PULL, zmq.PUSH)
    push.send(b"retry-me")
    assert pull.recv() == b"retry-me"
    entry_id = pull.last_id
    pull.nack()
    assert pull.poll(1000) == zmq.POLLIN
    assert pull.recv() == b"retry-me"
    assert pull.last_id == entry_id and journal.get(entry_id).attempts == 2


def test_journal_ack_from_another_socket(journal, ctx, endpoint) -> None:
    """A result arriving on another socket acks the task sent earlier."""
    tasks_out = journal.wrap(ctx.socket(zmq.PUSH), name="tasks", ack="explicit")
    worker_in = ctx.socket(zmq.PULL)
    addr = endpoint()
    worker_in.bind(addr)
    tasks_out.connect(addr)
    tasks_out.send(b"task-7")
    task_id = tasks_out.last_id
    assert worker_in.recv() == b"task-7"
    assert journal.get(task_id).state == "pending"
    journal.ack(task_id)
    assert journal.count(name="tasks") == 0


def test_retention_keeps_socket_acks_for_audit(open_journal, ctx, endpoint) -> None:
    j = open_journal(retention=60)
    pull, push = pair(j, ctx, endpoint(), zmq.PULL, zmq.PUSH)
    push.send(b"1")
    push.send(b"2")
    pull.recv()
    pull.recv()
    assert j.count(name="c8", state="acked") == 1 and j.count(name="s7", state="acked") == 1


def test_ack_of_an_unknown_id_raises(journal, ctx) -> None:
    pull = journal.wrap(ctx.socket(zmq.PULL))
    with pytest.raises(zjournal.UnknownEntryError):
        pull.ack(424242)


def test_nack_on_a_router_or_rep_delivers_again_to_the_live_requester(journal, ctx, endpoint) -> None:
    router_addr, rep_addr = endpoint(), endpoint()
    router = journal.wrap(ctx.socket(zmq.ROUTER), name="svc")
    router.bind(router_addr)
    rep = journal.wrap(ctx.socket(zmq.REP), name="svc2")
    rep.bind(rep_addr)
    for server, addr in ((router, router_addr), (rep, rep_addr)):
        client = ctx.socket(zmq.REQ)
        client.connect(addr)
        client.rcvtimeo = 2000
        client.send(b"job")
        first = server.recv_multipart()
        server.nack()  # a transient failure: deliver it again
        again = server.recv_multipart()
        assert again == first  # the same envelope: the live requester's
        assert journal.get(server.last_id).attempts == 2
        server.send_multipart([*again[:-1], b"result"])
        assert client.recv() == b"result"
    router.close()  # settles the request in hand and the reply ZeroMQ took
    assert journal.count(state="pending") == 0


def test_nack_on_a_rep_of_a_request_redelivered_from_an_earlier_run(journal_path, open_journal, ctx) -> None:
    with zjournal.open(journal_path) as earlier:
        earlier.append("svc", [b"old"], direction="in", attempts=1)
    journal = open_journal()
    rep = journal.wrap(ctx.socket(zmq.REP), name="svc")
    assert rep.recv() == b"old"
    rep.nack()  # given back: the REP may receive it again, without EFSM
    assert rep.recv() == b"old" and journal.get(rep.last_id).attempts == 3
    rep.send(b"dropped: its requester is gone")
    assert journal.count(state="pending") == 0
