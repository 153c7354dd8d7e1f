"""Redelivery at startup: pending inbound entries come back through the normal recv path, first."""

from __future__ import annotations

import pytest
import zmq

import zjournal


def leave_pending(path: str, name: str, messages: list[list[bytes]], envelope_size: int = 0) -> list[int]:
    """A previous run that received these messages and died before acking them."""
    with zjournal.open(path) as j:
        return [j.append(name, m, direction="in", attempts=1, envelope_size=envelope_size) for m in messages]


def test_pull_redelivers_before_live_traffic_and_pollers_see_it(journal_path, open_journal, ctx, endpoint) -> None:
    ids = leave_pending(journal_path, "orders", [[b"old", b"1"], [b"old", b"2"]])
    j = open_journal()
    pull = j.wrap(ctx.socket(zmq.PULL), name="orders")
    addr = endpoint()
    pull.bind(addr)
    push = ctx.socket(zmq.PUSH)
    push.connect(addr)
    push.send(b"live-1")
    push.send(b"live-2")
    poller = zmq.Poller()
    poller.register(pull, zmq.POLLIN)
    got = []
    while len(got) < 4:
        assert dict(poller.poll(2000)).get(pull) == zmq.POLLIN
        got.append(pull.recv_multipart())
        if got[-1][0] == b"old":
            assert pull.last_id == ids[len(got) - 1]
            assert j.get(pull.last_id).attempts == 2
    assert got == [[b"old", b"1"], [b"old", b"2"], [b"live-1"], [b"live-2"]]
    pull.close()
    assert j.count() == 0


def test_frame_by_frame_reads_of_redelivered_messages(journal_path, open_journal, ctx) -> None:
    leave_pending(journal_path, "orders", [[b"a", b"b", b"c"]])
    j = open_journal()
    pull = j.wrap(ctx.socket(zmq.PULL), name="orders")
    frames = [pull.recv()]
    while pull.getsockopt(zmq.RCVMORE):
        assert zmq.select([pull], [], [], 1)[0] == [pull]
        frames.append(pull.recv(copy=False).bytes)
    assert frames == [b"a", b"b", b"c"]
    assert pull.rcvmore == 0


def test_many_pending_entries_come_back_in_order(journal_path, open_journal, ctx) -> None:
    messages = [[b"%05d" % i] for i in range(1000)]  # more than one redelivery window
    leave_pending(journal_path, "bulk", messages)
    j = open_journal()
    pull = j.wrap(ctx.socket(zmq.PULL), name="bulk")
    assert [pull.recv_multipart() for _ in messages] == messages
    pull.close()
    assert j.count() == 0


def test_max_attempts_sends_poison_to_the_dead_letters(journal_path, open_journal, ctx) -> None:
    with zjournal.open(journal_path) as j:
        poison = j.append("orders", [b"poison"], direction="in", attempts=3)
        fine = j.append("orders", [b"fine"], direction="in", attempts=1)
    j = open_journal(max_attempts=3)
    pull = j.wrap(ctx.socket(zmq.PULL), name="orders")
    assert pull.recv() == b"fine"
    assert pull.last_id == fine
    dead = j.get(poison)
    assert dead.state == "dead" and "max_attempts=3" in dead.reason
    assert j.count(state="dead") == 1


def test_per_socket_max_attempts(journal_path, open_journal, ctx) -> None:
    leave_pending(journal_path, "orders", [[b"tried-once"]])
    j = open_journal()
    pull = j.wrap(ctx.socket(zmq.PULL), name="orders", max_attempts=1)
    with pytest.raises(zmq.Again):
        pull.recv(zmq.NOBLOCK)
    assert j.count(state="dead") == 1


def test_rep_redelivery_drops_the_reply_quietly_and_acks(journal_path, open_journal, ctx, endpoint) -> None:
    leave_pending(journal_path, "service", [[b"old-request"]])
    j = open_journal()
    rep = j.wrap(ctx.socket(zmq.REP), name="service")
    addr = endpoint()
    rep.bind(addr)
    assert rep.recv() == b"old-request"
    assert j.get(rep.last_id).attempts == 2
    rep.send(b"nobody waits for this")
    assert j.count(name="service") == 0
    req = ctx.socket(zmq.REQ)
    req.connect(addr)
    req.send(b"live")
    assert rep.recv() == b"live"
    rep.send(b"answer")
    assert req.recv() == b"answer"


def test_rep_hands_over_redelivered_requests_before_live_ones(journal_path, open_journal, ctx, endpoint) -> None:
    leave_pending(journal_path, "service", [[b"old-1"], [b"old-2", b"part"]])
    j = open_journal()
    rep = j.wrap(ctx.socket(zmq.REP), name="service")
    addr = endpoint()
    rep.bind(addr)
    req = ctx.socket(zmq.REQ)
    req.connect(addr)
    req.send(b"live")  # waiting in libzmq before the first recv
    poller = zmq.Poller()
    poller.register(rep, zmq.POLLIN | zmq.POLLOUT)
    assert dict(poller.poll(2000)).get(rep) == zmq.POLLIN
    assert rep.recv() == b"old-1" and j.get(rep.last_id).attempts == 2
    with pytest.raises(zmq.ZMQError) as info:
        rep.recv()  # a REP replies before it receives again, as with libzmq
    assert info.value.errno == zmq.EFSM
    assert dict(poller.poll(0)).get(rep) == zmq.POLLOUT and rep.poll(0, zmq.POLLOUT) == zmq.POLLOUT
    rep.send(b"to nobody")  # its requester is gone: dropped, and the request acked
    assert rep.recv_multipart() == [b"old-2", b"part"]
    for receive in (rep.recv_multipart, rep.recv, lambda: rep.recv_into(bytearray(10))):
        with pytest.raises(zmq.ZMQError) as info:  # the last redelivered one: still no live request first
            receive()
        assert info.value.errno == zmq.EFSM
    rep.send_multipart([b"to", b"nobody"])
    assert j.count(name="service", state="pending") == 0
    assert dict(poller.poll(2000)).get(rep) == zmq.POLLIN
    assert rep.recv() == b"live"
    rep.send(b"answer")
    assert req.recv() == b"answer" and j.count(name="service", state="pending") == 0


def test_router_redelivery_keeps_the_body_and_acks_on_next(journal_path, open_journal, ctx, endpoint) -> None:
    leave_pending(journal_path, "front", [[b"gone-client", b"", b"old"]], envelope_size=2)
    j = open_journal()
    router = j.wrap(ctx.socket(zmq.ROUTER), name="front")
    router.setsockopt(zmq.ROUTER_MANDATORY, 0)
    addr = endpoint()
    router.bind(addr)
    identity, empty, body = router.recv_multipart()
    assert (empty, body) == (b"", b"old")
    router.send_multipart([identity, b"", b"reply to a gone client"])
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(addr)
    dealer.send_multipart([b"", b"live"])
    assert router.recv_multipart()[1:] == [b"", b"live"]
    live = [e for e in j.entries(name="front", direction="in")]
    assert [(e.envelope[1:], e.body) for e in live] == [([b""], [b"live"])]


def test_router_hands_over_redelivered_requests_before_live_ones(journal_path, open_journal, ctx, endpoint) -> None:
    leave_pending(journal_path, "front", [[b"gone", b"", b"old-%d" % i] for i in range(3)], envelope_size=2)
    j = open_journal()
    router = j.wrap(ctx.socket(zmq.ROUTER), name="front")
    addr = endpoint()
    router.bind(addr)
    client = ctx.socket(zmq.DEALER)
    client.connect(addr)
    for i in range(3):
        client.send_multipart([b"", b"live-%d" % i])
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    bodies = []
    while len(bodies) < 6:
        assert dict(poller.poll(2000)).get(router) == zmq.POLLIN
        frames = router.recv_multipart()
        bodies.append(frames[-1])
        if frames[-1].startswith(b"live"):
            router.send_multipart([frames[0], b"", b"re: " + frames[-1]])  # through the client's own pipe
    assert bodies == [b"old-0", b"old-1", b"old-2", b"live-0", b"live-1", b"live-2"]
    assert [client.recv_multipart()[-1] for _ in range(3)] == [b"re: live-0", b"re: live-1", b"re: live-2"]
    assert j.get(router.last_id).attempts == 1  # a live one held back was handed over once
    # the last request stays pending until the next is asked for (the last reply until the next send)
    assert j.count(name="front", state="pending", direction="in") == 1


def test_dealer_redelivers_through_pollers_and_its_sends_reach_only_real_peers(
    journal_path, open_journal, ctx, endpoint
) -> None:
    leave_pending(journal_path, "worker", [[b"old-1"], [b"old-2", b"x"]])
    j = open_journal()
    dealer = j.wrap(ctx.socket(zmq.DEALER), name="worker")  # wrapped before it connects
    router = ctx.socket(zmq.ROUTER)
    addr = endpoint()
    router.bind(addr)
    dealer.connect(addr)
    for i in range(50):
        dealer.send(b"out-%d" % i)  # none of these may go to the private peer
    got = [router.recv_multipart()[1] for _ in range(50)]
    assert got == [b"out-%d" % i for i in range(50)]
    dealer.send(b"hello")
    identity, _ = router.recv_multipart()
    router.send_multipart([identity, b"live"])
    poller = zmq.Poller()
    poller.register(dealer, zmq.POLLIN)
    received = []
    while len(received) < 3:
        assert dict(poller.poll(2000)).get(dealer) == zmq.POLLIN
        received.append(dealer.recv_multipart())
    assert received == [[b"old-1"], [b"old-2", b"x"], [b"live"]]  # redelivered first
    assert j.get(dealer.last_id).frames == [b"live"] and j.count(name="worker", direction="in") == 1


@pytest.mark.parametrize("kind", [zmq.DEALER, zmq.PAIR])
def test_dealer_and_pair_redeliver_from_python_before_live(journal_path, open_journal, ctx, endpoint, kind) -> None:
    leave_pending(journal_path, "peer", [[b"old", b"x"]])
    j = open_journal()
    raw = ctx.socket(kind)
    addr = endpoint()
    raw.bind(addr)  # bound before wrapping: a DEALER cannot get a private peer any more
    sock = j.wrap(raw, name="peer")
    other = ctx.socket(zmq.DEALER if kind == zmq.DEALER else zmq.PAIR)
    other.connect(addr)
    other.send(b"live")
    assert sock.poll(0) == zmq.POLLIN
    assert sock.getsockopt(zmq.EVENTS) & zmq.POLLIN
    assert sock.recv() == b"old" and sock.rcvmore == 1
    assert sock.recv() == b"x" and sock.rcvmore == 0
    assert j.get(sock.last_id).attempts == 2
    assert sock.recv_multipart() == [b"live"]


@pytest.mark.parametrize("kind", [zmq.DEALER, zmq.PAIR])
def test_messages_served_from_python_are_seen_by_zmq_poller_and_select(
    journal_path, open_journal, ctx, endpoint, kind
) -> None:
    leave_pending(journal_path, "peer", [[b"old-1"], [b"old-2"]])
    j = open_journal()
    raw = ctx.socket(kind)
    addr = endpoint()
    raw.bind(addr)
    sock = j.wrap(raw, name="peer")
    quiet = ctx.socket(zmq.PULL)  # registered too: a poller mixes journaled and plain sockets
    quiet.bind(endpoint())
    poller = zmq.Poller()
    poller.register(quiet, zmq.POLLIN)
    poller.register(sock, zmq.POLLIN)
    assert dict(poller.poll(0)) == {sock: zmq.POLLIN}  # nothing in libzmq yet: only the held messages
    assert zmq.select([sock, quiet], [], [], 0)[0] == [sock]
    other = ctx.socket(zmq.DEALER if kind == zmq.DEALER else zmq.PAIR)
    other.connect(addr)
    other.send(b"live")
    got = []
    while len(got) < 3:
        assert dict(poller.poll(2000)).get(sock) == zmq.POLLIN
        got.append(sock.recv_multipart())
    assert got == [[b"old-1"], [b"old-2"], [b"live"]]
    assert dict(poller.poll(0)) == {}


def test_sub_redelivers_through_pollers_before_live(journal_path, open_journal, ctx, endpoint) -> None:
    leave_pending(journal_path, "feed", [[b"news.old", b"1"], [b"sport.old"], [b"news.old", b"2"]])
    j = open_journal()
    sub = j.wrap(ctx.socket(zmq.SUB), name="feed")
    addr = endpoint()
    sub.connect(addr)
    sub.subscribe(b"news.")
    pub = ctx.socket(zmq.PUB)
    pub.bind(addr)
    while True:  # the live subscription travels asynchronously: publish until it is in place
        pub.send_multipart([b"news.live"])
        if zmq.select([sub], [], [], 0.05)[0]:
            break
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    got = []
    while len(got) < 3:
        assert dict(poller.poll(2000)).get(sub) == zmq.POLLIN
        got.append(sub.recv_multipart())
    assert got[:2] == [[b"news.old", b"1"], [b"news.old", b"2"]]  # redelivered first, oldest first
    assert got[2] == [b"news.live"]
    while sub.poll(100):  # live copies the subscription loop sent
        assert sub.recv_multipart() == [b"news.live"]
    pub.send_multipart([b"news.two", b"frames"])
    assert sub.recv() == b"news.two" and sub.rcvmore == 1  # frame by frame, as pyzmq shows it
    assert sub.recv() == b"frames" and sub.rcvmore == 0
    # the one no subscription matches stays pending for a later run
    assert [e.frames for e in j.entries(name="feed", state="pending") if e.frames[0] == b"sport.old"]


def test_replay_outbound_through_a_plain_socket(journal_path, open_journal, ctx, endpoint) -> None:
    with zjournal.open(journal_path) as j:
        for i in range(3):
            j.append("tasks", [b"task", b"%d" % i], direction="out", attempts=1)
    j = open_journal()
    addr = endpoint()
    pull = ctx.socket(zmq.PULL)
    pull.bind(addr)
    push = ctx.socket(zmq.PUSH)
    push.connect(addr)
    assert j.replay("tasks", into=push) == 3
    assert [pull.recv_multipart()[1] for _ in range(3)] == [b"0", b"1", b"2"]
    assert j.count(name="tasks") == 0
    assert j.replay("tasks", into=push) == 0


def test_replay_outbound_through_a_journaled_req_waits_for_the_reply(journal_path, open_journal, ctx, endpoint) -> None:
    with zjournal.open(journal_path) as j:
        first = j.append("client", [b"unanswered-1"], direction="out", attempts=1)
        j.append("client", [b"unanswered-2"], direction="out", attempts=1)
    j = open_journal()
    addr = endpoint()
    rep = ctx.socket(zmq.REP)
    rep.bind(addr)
    # resend_after=None: by hand (by default the REQ sends them itself: tests/test_reqrep.py)
    req = j.wrap(ctx.socket(zmq.REQ), name="client", resend_after=None)
    req.connect(addr)
    assert j.replay("client", into=req) == 1  # a REQ takes one request at a time
    assert rep.recv() == b"unanswered-1"
    assert j.get(first).attempts == 2
    rep.send(b"ok")
    assert req.recv() == b"ok"
    assert j.get(first) is None
    assert j.replay("client", into=req) == 1
    assert rep.recv() == b"unanswered-2"
    assert [e.frames for e in j.entries(name="client")] == [[b"unanswered-2"]]  # resent, not journaled again


def test_replay_into_a_router_sends_only_what_still_names_its_peer(journal_path, open_journal, ctx, endpoint) -> None:
    addr = endpoint()
    router = ctx.socket(zmq.ROUTER)
    router.bind(addr)
    stranger = ctx.socket(zmq.DEALER)  # a peer whose routing id libzmq makes up
    named = ctx.socket(zmq.DEALER)
    named.setsockopt(zmq.ROUTING_ID, b"worker-7")  # a peer that chose its own
    for peer in (stranger, named):
        peer.connect(addr)
        peer.send(b"hello")
    made_up = next(rid for rid, _ in (router.recv_multipart() for _ in range(2)) if rid != b"worker-7")
    # An earlier run journaled replies under the same ids (libzmq hands them out alike in every process).
    with zjournal.open(journal_path) as j:
        earlier = j.append("replies", [made_up, b"for a peer of an earlier run"], direction="out", envelope_size=1)
        j.append("replies", [b"worker-7", b"for the peer that named itself"], direction="out", envelope_size=1)
    j = open_journal()
    this_run = j.append("replies", [made_up, b"journaled in this run"], direction="out", envelope_size=1)
    assert j.replay("replies", into=router) == 2
    assert named.recv_multipart() == [b"for the peer that named itself"]
    assert stranger.recv_multipart() == [b"journaled in this run"]
    assert stranger.poll(300) == 0  # not the earlier run's reply: that id may have named someone else
    assert [e.id for e in j.entries(name="replies", state="pending")] == [earlier]
    assert j.get(this_run) is None


def test_nothing_pending_means_no_private_peer(journal, ctx) -> None:
    pull = journal.wrap(ctx.socket(zmq.PULL), name="fresh")
    assert pull._s.redelivery is None


def test_the_poll_hook_keeps_plain_file_descriptors_working(journal_path, open_journal, ctx, endpoint) -> None:
    import os

    leave_pending(journal_path, "peer", [[b"old"]])
    j = open_journal()
    raw = ctx.socket(zmq.PAIR)
    raw.bind(endpoint())
    pair = j.wrap(raw, name="peer")  # bound before wrapping: served from Python
    read_end, write_end = os.pipe()
    try:
        poller = zmq.Poller()
        poller.register(read_end, zmq.POLLIN)
        poller.register(pair, zmq.POLLIN)
        assert dict(poller.poll(0)) == {pair: zmq.POLLIN}
        os.write(write_end, b"x")
        assert dict(poller.poll(0)) == {pair: zmq.POLLIN, read_end: zmq.POLLIN}
        assert pair.recv() == b"old"
        assert dict(poller.poll(0)) == {read_end: zmq.POLLIN}
    finally:
        os.close(read_end)
        os.close(write_end)


@pytest.mark.parametrize("kind", ["pull", "dealer", "sub"])
def test_live_messages_during_a_long_redelivery_come_after_every_pending_entry_once(
    journal_path, open_journal, ctx, endpoint, kind
) -> None:
    """More pending entries than one redelivery window, and live traffic arriving meanwhile."""
    pending = 1000
    leave_pending(journal_path, "in", [[b"t.old", b"%05d" % i] for i in range(pending)])
    j = open_journal()
    addr = endpoint()
    if kind == "sub":
        sock = j.wrap(ctx.socket(zmq.SUB), name="in")
        sock.connect(addr)
        sock.subscribe(b"t.")
        peer = ctx.socket(zmq.PUB)
        peer.bind(addr)
        while not zmq.select([sock], [], [], 0.01)[0]:  # the live subscription is in place
            pass
    else:
        sock = j.wrap(ctx.socket(zmq.PULL if kind == "pull" else zmq.DEALER), name="in")
        sock.bind(addr)
        peer = ctx.socket(zmq.PUSH if kind == "pull" else zmq.DEALER)
        peer.connect(addr)
    got = [sock.recv_multipart() for _ in range(3)]
    for i in range(50):
        peer.send_multipart([b"t.new", b"%05d" % i])
    while sock.poll(300):
        got.append(sock.recv_multipart())
    old = [m for m in got if m[0] == b"t.old"]
    assert old == [[b"t.old", b"%05d" % i] for i in range(pending)]  # strictly oldest first, each once
    assert got[: len(old)] == old  # and before every live one
    assert got[len(old) :] == [[b"t.new", b"%05d" % i] for i in range(50)]
    assert j.count(state="pending") <= 1  # at most the one in hand


def test_unsubscribing_during_redelivery_leaves_those_entries_pending(journal_path, open_journal, ctx, endpoint):
    leave_pending(journal_path, "feed", [[b"a.old-%d" % i] for i in range(5)] + [[b"b.old"]])
    j = open_journal()
    sub = j.wrap(ctx.socket(zmq.SUB), name="feed")
    addr = endpoint()
    sub.connect(addr)
    sub.subscribe(b"a.")
    sub.subscribe(b"b.")
    sub.unsubscribe(b"a.")  # the a. entries were re-injected already; the SUB now drops them
    sub.rcvtimeo = 2000
    assert sub.recv() == b"b.old"
    pub = ctx.socket(zmq.PUB)
    pub.bind(addr)
    while not zmq.select([sub], [], [], 0.01)[0]:
        pub.send(b"b.live")
    assert sub.recv() == b"b.live"
    pending = sorted(e.frames[0] for e in j.entries(name="feed", state="pending"))
    assert pending[:5] == [b"a.old-%d" % i for i in range(5)]
    assert pending[5:] == [b"b.live"]  # the message in hand


def test_recv_into_takes_redelivered_messages_first_and_strips_nothing_of_them(
    journal_path, open_journal, ctx, endpoint
) -> None:
    leave_pending(journal_path, "work", [[b"pending-1", b"two"]])
    leave_pending(journal_path, "svc", [[b"pending-request"]])
    j = open_journal()
    buf = bytearray(4)

    def read_into(sock) -> list[tuple[int, bytes]]:
        frames = []
        while True:
            n = sock.recv_into(buf)
            frames.append((n, bytes(buf[: min(n, len(buf))])))
            if not sock.rcvmore:
                return frames

    pull = j.wrap(ctx.socket(zmq.PULL), name="work")
    pull.bind(endpoint())
    assert read_into(pull) == [(9, b"pend"), (3, b"two")]  # sizes as libzmq reports them, truncated as it does
    rep = j.wrap(ctx.socket(zmq.REP), name="svc")
    addr = endpoint()
    rep.bind(addr)
    client = ctx.socket(zmq.REQ)
    client.connect(addr)
    client.send(b"live")
    assert read_into(rep) == [(15, b"pend")]  # the redelivered request before the live one
    rep.send(b"dropped: its requester is gone")
    assert read_into(rep) == [(4, b"live")]
    rep.send(b"answer")
    assert client.recv() == b"answer"
