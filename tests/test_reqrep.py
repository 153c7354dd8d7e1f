"""A journaled REQ resends what nobody answered; a journaled REP recognises the resend; both still look like REQ/REP."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

import zjournal


def _pair(open_journal, ctx, tmp_path: Path, address: str, **req_options):
    server_journal = open_journal(str(tmp_path / "server"))
    client_journal = open_journal(str(tmp_path / "client"))
    rep = server_journal.wrap(ctx.socket(zmq.REP), "server")
    rep.bind(address)
    req = client_journal.wrap(ctx.socket(zmq.REQ), "client", **req_options)
    req.connect(address)
    return server_journal, rep, client_journal, req


def test_a_journaled_req_still_behaves_as_a_req(open_journal, ctx, tmp_path, ipc) -> None:
    _, rep, client_journal, req = _pair(open_journal, ctx, tmp_path, ipc(), resend_after=0.2)
    with pytest.raises(zmq.ZMQError) as e:
        req.recv(zmq.NOBLOCK)
    assert e.value.errno == zmq.EFSM  # nothing asked yet
    req.send(b"q")
    with pytest.raises(zmq.ZMQError) as e:
        req.send(b"second")  # REQ_RELAXED is on underneath; the application still gets EFSM
    assert e.value.errno == zmq.EFSM
    with pytest.raises(zmq.ZMQError) as e:
        req.send(b"a", zmq.SNDMORE)
    assert e.value.errno == zmq.EFSM
    assert not req.poll(0, zmq.POLLOUT)
    assert not req.get(zmq.EVENTS) & zmq.POLLOUT
    poller = zmq.Poller()
    poller.register(req, zmq.POLLIN | zmq.POLLOUT)
    assert poller.poll(0) == []
    with pytest.raises(zmq.Again):
        req.recv(zmq.NOBLOCK)
    assert rep.recv() == b"q"
    rep.send_multipart([b"a", b"b"])
    assert dict(poller.poll(1000)) == {req: zmq.POLLIN}
    assert req.recv() == b"a" and req.get(zmq.RCVMORE)
    assert req.recv() == b"b"
    assert req.poll(0, zmq.POLLOUT) == zmq.POLLOUT
    assert client_journal.count(name="client", state="pending") == 0
    req.setsockopt(zmq.RCVTIMEO, 300)
    req.send(b"unanswered")
    started = time.monotonic()
    with pytest.raises(zmq.Again):
        req.recv()  # RCVTIMEO keeps its meaning, though resends go out while it waits
    assert 0.25 < time.monotonic() - started < 2
    assert req.resent >= 1


def test_a_slow_rep_answers_the_copies_queued_by_its_reply(open_journal, ctx, tmp_path, ipc) -> None:
    server_journal, rep, client_journal, req = _pair(open_journal, ctx, tmp_path, ipc(), resend_after=0.2)
    req.send(b"slow")
    assert rep.recv() == b"slow"
    assert req.poll(300) == 0  # a resend goes while the client waits
    assert req.resent >= 1
    rep.send(b"answer 1")  # the copies queued by now are sent this reply too: not handed over again
    assert rep.poll(300) == 0
    assert req.recv() == b"answer 1"  # through the latest copy's envelope: once
    assert rep._s.replies.answered == req.resent
    assert req.poll(200) == 0  # nothing stale left
    req.send(b"next")
    assert rep.recv() == b"next"
    rep.send(b"next answer")
    assert req.recv() == b"next answer"  # not the late reply of an older send
    assert client_journal.count(name="client") == 0 and server_journal.count(name="server") == 0


def test_a_closed_connection_resends_at_once(open_journal, ctx, tmp_path, ipc) -> None:
    address = ipc()
    server_journal, rep, _, req = _pair(open_journal, ctx, tmp_path, address)  # the default: 10 s
    req.send(b"lost")
    assert rep.recv() == b"lost"
    rep.close(linger=0)  # the server dies with the request in hand
    server_journal.close()
    fresh = ctx.socket(zmq.REP)  # a plain server takes over the endpoint
    fresh.bind(address)
    started = time.monotonic()
    assert req.poll(500) == 0  # the resend goes from the client's wait...
    assert fresh.poll(2000) == zmq.POLLIN
    assert time.monotonic() - started < 3  # ... long before resend_after (10 s)
    assert fresh.recv() == b"lost"
    fresh.send(b"answer")
    assert req.recv() == b"answer"


def test_a_restarted_rep_answers_the_resend_of_what_it_served_from_python(open_journal, ctx, tmp_path, ipc) -> None:
    address = ipc()
    server_journal, rep, client_journal, req = _pair(open_journal, ctx, tmp_path, address)
    req.send(b"order 7")
    assert rep.recv() == b"order 7"
    rep.close(linger=0)  # killed while handling it: the request stays pending in its journal
    server_journal.close()
    assert req.poll(300) == 0  # the client resends (it waits in this thread: the test drives both)
    assert req.resent == 1
    restarted_journal = open_journal(str(tmp_path / "server"))
    restarted = restarted_journal.wrap(ctx.socket(zmq.REP), "server")
    restarted.bind(address)
    restarted.setsockopt(zmq.RCVTIMEO, 2000)
    assert restarted.recv() == b"order 7"  # redelivered from its journal: its requester's pipe is gone
    assert restarted.last_attempts == 2
    restarted.send(b"done 7")  # reaches nobody; kept for the resend
    restarted.setsockopt(zmq.RCVTIMEO, 1000)
    with pytest.raises(zmq.Again):
        restarted.recv()  # the resend came and was answered without the application
    assert req.recv() == b"done 7"
    assert restarted._s.replies.answered == 1
    assert restarted_journal.count(name="server") == 0 and client_journal.count(name="client") == 0
    req.send(b"order 7")  # the same body again, after the reply: a new request, handled
    restarted.setsockopt(zmq.RCVTIMEO, 2000)
    assert restarted.recv() == b"order 7"
    restarted.send(b"done again")
    assert req.recv() == b"done again"


def test_requests_an_earlier_req_left_are_sent_again_beside_the_new_ones(open_journal, ctx, tmp_path, ipc) -> None:
    address = ipc()
    client_journal = open_journal(str(tmp_path / "client"))
    first = client_journal.wrap(ctx.socket(zmq.REQ), "client", resend_after=0.3)
    first.connect(address)
    first.send(b"left behind")  # nobody is there yet; the application gives up (a Lazy Pirate close)
    first.close(linger=0)
    assert client_journal.count(name="client", state="pending") == 1
    rep = ctx.socket(zmq.REP)  # a plain server
    rep.bind(address)
    second = client_journal.wrap(ctx.socket(zmq.REQ), "client", resend_after=0.3)
    second.connect(address)
    second.send(b"new")
    got = []
    for _ in range(2):
        assert rep.poll(5000)
        got.append(rep.recv())
        rep.send(b"re:" + got[-1])
    assert sorted(got) == [b"left behind", b"new"]
    assert second.recv() == b"re:new"  # the application's own reply; the other goes to nobody
    deadline = time.monotonic() + 5
    while client_journal.count(name="client", state="pending") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client_journal.count(name="client", state="pending") == 0  # acked by its reply


def test_resend_after_none_sends_once(open_journal, ctx, tmp_path, ipc) -> None:
    _, rep, client_journal, req = _pair(open_journal, ctx, tmp_path, ipc(), resend_after=None)
    req.send(b"once")
    assert rep.recv() == b"once"
    assert req.poll(300) == 0
    rep.send(b"answer")
    assert rep.poll(100) == 0  # never sent again
    assert req.recv() == b"answer"
    with pytest.raises(zjournal.ZJournalError):
        client_journal.wrap(ctx.socket(zmq.REQ), "bad", resend_after=0)


def test_asyncio_req_resends_from_the_event_loop(open_journal, tmp_path, ipc) -> None:
    address = ipc()
    actx = zmq.asyncio.Context()
    client_journal = open_journal(str(tmp_path / "client"))

    async def main() -> None:
        server = actx.socket(zmq.ROUTER)  # sees every copy (a REP could not read one before replying)
        server.bind(address)
        req = client_journal.wrap(actx.socket(zmq.REQ), "client", resend_after=0.2)
        req.connect(address)
        await req.send(b"q")
        first = await server.recv_multipart()
        assert first[1:] == [b"", b"q"]  # never answered
        copy = await asyncio.wait_for(server.recv_multipart(), 3)  # the resend, from the event loop's timer
        assert copy[0] == first[0] and len(copy[1]) == 4 and copy[2:] == [b"", b"q"]  # REQ_CORRELATE's id
        await server.send_multipart([*copy[:3], b"a"])
        assert await asyncio.wait_for(req.recv(), 3) == b"a"
        req.close(linger=0)
        server.close(linger=0)

    try:
        asyncio.run(main())
    finally:
        actx.term()
    assert client_journal.count(name="client") == 0


def test_the_device_recognises_a_client_resend_of_a_pending_request(open_journal, ctx, tmp_path, ipc) -> None:
    import threading

    frontend, backend = ipc(), ipc()
    device_journal = open_journal(str(tmp_path / "device"))
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    front.bind(frontend)
    back.bind(backend)
    queue = zjournal.Queue(front, back, device_journal, "device")
    queue.start()
    handled: list[bytes] = []

    def slow_worker() -> None:
        worker = ctx.socket(zmq.REP)
        worker.connect(backend)
        while worker.poll(1500):
            handled.append(worker.recv())
            time.sleep(0.7)  # the client resends at 0.3 and 0.6 s; its next resend would race the reply
            worker.send(b"re:" + handled[-1])
        worker.close(0)

    thread = threading.Thread(target=slow_worker)
    thread.start()
    client_journal = open_journal(str(tmp_path / "client"))
    req = client_journal.wrap(ctx.socket(zmq.REQ), "client", resend_after=0.3)
    req.connect(frontend)
    req.send(b"job")
    assert req.recv() == b"re:job"  # the reply to the first forward reaches the resend's envelope
    assert req.resent >= 1
    req.send(b"after")
    assert req.recv() == b"re:after"
    thread.join()
    queue.stop()
    assert handled == [b"job", b"after"]  # no second forward while the first was in flight
    assert queue.stats.resends_recognised == req.resent
    assert queue.stats.requests == 2  # no second entry
    assert device_journal.count(name="device") == 0


def test_a_rep_reads_ahead_after_a_reply_and_still_behaves_as_a_rep(open_journal, ctx, tmp_path, ipc) -> None:
    address = ipc()
    _, rep, _, journaled_client = _pair(open_journal, ctx, tmp_path, address)
    plain_client = ctx.socket(zmq.REQ)
    plain_client.connect(address)
    journaled_client.send(b"a")
    assert rep.recv() == b"a"
    plain_client.send(b"b")
    time.sleep(0.2)  # queued at the REP when it replies to "a"
    rep.send(b"ra")  # a copy of "a" queued now would be answered too; "b" is read ahead and held
    with pytest.raises(zmq.ZMQError) as e:
        rep.send(b"no request in hand")
    assert e.value.errno == zmq.EFSM
    assert rep.poll(0, zmq.POLLOUT) == 0 and rep.poll(0) == zmq.POLLIN
    assert not rep.get(zmq.EVENTS) & zmq.POLLOUT
    assert rep.recv() == b"b"
    rep.send(b"rb")
    assert plain_client.recv() == b"rb" and journaled_client.recv() == b"ra"


def test_recv_into_refuses_a_buffer_it_cannot_write_as_pyzmq_does(journal, ctx, endpoint) -> None:
    address = endpoint()
    a = journal.wrap(ctx.socket(zmq.PAIR), "a")
    a.bind(address)
    b = ctx.socket(zmq.PAIR)
    b.connect(address)
    with pytest.raises(BufferError):  # pyzmq's own error for these (its test_recv_into_bad)
        a.recv_into(memoryview(bytearray(10))[::2])
    with pytest.raises(BufferError):
        a.recv_into(b"read only")
    b.send(b"still there")
    buf = bytearray(20)
    assert a.recv_into(buf) == 11 and bytes(buf[:11]) == b"still there"


def test_a_request_max_attempts_made_a_dead_letter_is_acked_by_its_late_reply(open_journal, ctx, endpoint) -> None:
    """The counts stay true: before 2026-12-07 the reply deleted the dead letter as if it were pending (the
    pending count went to -1, and the journal's counters could not be read at its next open)."""
    journal = open_journal(max_attempts=2)
    where = endpoint()
    server = ctx.socket(zmq.ROUTER)  # plain: it answers late
    server.bind(where)
    req = journal.wrap(ctx.socket(zmq.REQ), name="client", resend_after=0.05)
    req.connect(where)
    req.send(b"hello")
    copy = server.recv_multipart()
    req.poll(500)  # the REQ resends from its own calls: sent twice, then a dead letter
    assert journal.count(name="client", state="dead") == 1
    while server.poll(100):
        copy = server.recv_multipart()  # the last copy: a reply to an earlier one is stale
    server.send_multipart([*copy[:-1], b"late"])
    req.rcvtimeo = 5000
    assert req.recv() == b"late"  # the application waited, as with a plain REQ
    assert journal.count(name="client", state="dead") == 0
    assert journal.count(name="client", state="pending") == 0
    assert list(journal.entries(name="client")) == []
