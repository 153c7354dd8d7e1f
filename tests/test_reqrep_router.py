"""A journaled ROUTER serving journaled REQ clients recognises their resends (zjournal.sockets.requesters)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

import zjournal
from zjournal.sockets.requests import _send_whole


def _router(open_journal, ctx, tmp_path: Path, address: str) -> tuple[zjournal.Journal, zmq.Socket]:
    journal = open_journal(str(tmp_path / "server"))
    router = journal.wrap(ctx.socket(zmq.ROUTER), "server")
    router.bind(address)
    return journal, router


def _req(open_journal, ctx, tmp_path: Path, address: str, name: str = "client", **options) -> zmq.Socket:
    req = open_journal(str(tmp_path / name)).wrap(ctx.socket(zmq.REQ), "client", **options)
    req.connect(address)
    return req


def _nothing_handed(router: zmq.Socket, ms: int = 300) -> None:
    """No message for the application within ``ms`` (a copy read meanwhile is not handed over)."""
    router.setsockopt(zmq.RCVTIMEO, ms)
    with pytest.raises(zmq.Again):
        router.recv_multipart()
    router.setsockopt(zmq.RCVTIMEO, -1)


def test_a_resend_of_a_request_in_hand_is_not_handed_over_and_gets_the_one_reply(
    open_journal, ctx, tmp_path, ipc
) -> None:
    address = ipc()
    server_journal, router = _router(open_journal, ctx, tmp_path, address)
    req = _req(open_journal, ctx, tmp_path, address, resend_after=1.0)
    req.send(b"slow")
    rid, empty, body = router.recv_multipart()
    assert (empty, body) == (b"", b"slow")
    assert req.poll(1300) == 0  # a resend goes out (with a request id: REQ_CORRELATE) while the client waits
    assert req.resent == 1
    _nothing_handed(router, 200)  # the copy arrived and was recognised: the application handles it once
    assert router.resends_recognised == 1
    router.send_multipart([rid, b"", b"answer"])  # to the original envelope, as the application knows it
    assert req.poll(2000) == zmq.POLLIN
    assert req.recv() == b"answer"  # through the latest copy's envelope (its request id): once
    assert req.poll(300) == 0
    assert server_journal.count(name="server", state="pending", direction="in") == 0  # settled by the reply
    req.send(b"slow")  # the same body after its reply: a new request, handed over
    assert router.recv_multipart()[2:] == [b"slow"]


def test_a_resend_on_another_connection_gets_the_reply_the_application_sends_to_the_first(
    open_journal, ctx, tmp_path, ipc
) -> None:
    first, second = ipc(), ipc()
    _, router = _router(open_journal, ctx, tmp_path, first)
    router.bind(second)
    req = _req(open_journal, ctx, tmp_path, first, resend_after=1.0)
    req.send(b"order 1")
    first_rid, _, _ = router.recv_multipart()
    req.connect(second)
    time.sleep(0.2)
    assert req.poll(1300) == 0  # the resend goes on the other connection (a REQ takes turns): a new routing id
    assert req.resent == 1
    _nothing_handed(router, 200)
    assert router.resends_recognised == 1
    router.send_multipart([first_rid, b"", b"done 1"])  # a REQ takes its reply from where it sent last
    assert req.poll(2000) == zmq.POLLIN
    assert req.recv() == b"done 1"


def _crash(router: zmq.Socket, journal: zjournal.Journal) -> None:
    """The server dies with the request in hand: its journal goes first, so the request stays pending."""
    journal.close()
    router.close(linger=0)


def test_a_restarted_router_answers_a_resend_with_the_reply_to_its_redelivered_request(
    open_journal, ctx, tmp_path, ipc
) -> None:
    address = ipc()
    server_journal, router = _router(open_journal, ctx, tmp_path, address)
    req = _req(open_journal, ctx, tmp_path, address)
    req.send(b"order 7")
    router.recv_multipart()
    _crash(router, server_journal)
    restarted_journal, restarted = _router(open_journal, ctx, tmp_path, address)
    restarted.setsockopt(zmq.RCVTIMEO, 2000)
    rid, empty, body = restarted.recv_multipart()  # redelivered from its journal: its requester's pipe is gone
    assert (empty, body) == (b"", b"order 7")
    assert restarted.last_attempts == 2
    restarted.send_multipart([rid, b"", b"done 7"])  # reaches nobody; kept for the resend
    assert req.poll(500) == 0  # the client resends on its new connection
    _nothing_handed(restarted)  # answered from the kept reply, without the application
    assert req.recv() == b"done 7"
    assert restarted.resends_recognised == 1
    assert restarted_journal.count(name="server", state="pending", direction="in") == 0
    req.send(b"order 7")  # the same body again after its reply: a new request
    restarted.setsockopt(zmq.RCVTIMEO, 2000)
    rid, _, body = restarted.recv_multipart()
    assert body == b"order 7"
    restarted.send_multipart([rid, b"", b"done again"])
    assert req.recv() == b"done again"


def test_a_client_that_had_its_reply_gets_the_same_body_handled_anew_after_a_restart(
    open_journal, ctx, tmp_path, ipc
) -> None:
    address = ipc()
    server_journal, router = _router(open_journal, ctx, tmp_path, address)
    req = _req(open_journal, ctx, tmp_path, address)
    req.send(b"status")
    rid, _, _ = router.recv_multipart()
    server_journal.close()  # the server dies after its reply left, before the reply's ack was written
    _send_whole(router, [rid, b"", b"status at 1"])
    router.close(linger=1000)
    assert req.recv() == b"status at 1"
    restarted_journal, restarted = _router(open_journal, ctx, tmp_path, address)
    restarted.setsockopt(zmq.RCVTIMEO, 2000)
    rid, _, body = restarted.recv_multipart()  # redelivered from its journal
    assert body == b"status"
    restarted.send_multipart([rid, b"", b"status at 2"])  # reaches nobody; kept for a resend
    req.send(b"status")  # a new request with the same body: its first send, no request id
    rid, _, body = restarted.recv_multipart()
    assert body == b"status"  # handed to the application, not answered with "status at 2"
    restarted.send_multipart([rid, b"", b"status at 3"])
    assert req.recv() == b"status at 3"
    assert restarted.resends_recognised == 0
    assert restarted_journal.count(name="server", state="pending", direction="in") == 0


def test_requests_of_two_clients_across_a_restart_are_each_handled_once(open_journal, ctx, tmp_path, ipc) -> None:
    address = ipc()
    server_journal, router = _router(open_journal, ctx, tmp_path, address)
    clients = {name: _req(open_journal, ctx, tmp_path, address, name) for name in ("a", "b")}
    for name, req in clients.items():
        req.send(b"from " + name.encode())
    router.recv_multipart()
    router.recv_multipart()
    _crash(router, server_journal)
    restarted_journal, restarted = _router(open_journal, ctx, tmp_path, address)
    for req in clients.values():
        assert req.poll(300) == 0  # both resend; their copies race the redelivered requests
    handled = []
    restarted.setsockopt(zmq.RCVTIMEO, 500)
    while True:  # the Guide's server loop: receive, handle, reply
        try:
            *envelope, body = restarted.recv_multipart()
        except zmq.Again:
            break
        handled.append(body)
        restarted.send_multipart([*envelope, b"re " + body])
    assert sorted(handled) == [b"from a", b"from b"]  # each once, whichever copy came first
    for name, req in clients.items():
        assert req.poll(2000) == zmq.POLLIN
        assert req.recv() == b"re from " + name.encode()
    assert restarted_journal.count(name="server", state="pending", direction="in") == 0


def test_plain_clients_of_a_journaled_router_see_nothing_new(open_journal, ctx, tmp_path, ipc) -> None:
    address = ipc()
    _, router = _router(open_journal, ctx, tmp_path, address)
    plain = ctx.socket(zmq.REQ)
    plain.connect(address)
    for n in range(3):
        plain.send(b"same")  # a plain REQ names no origin: every request is handed over
        rid, _, body = router.recv_multipart()
        assert body == b"same"
        router.send_multipart([rid, b"", b"re %d" % n])
        assert plain.recv() == b"re %d" % n
    assert router.resends_recognised == 0


def test_an_asyncio_router_handling_requests_concurrently_sees_each_once(open_journal, tmp_path, ipc) -> None:
    address = ipc()
    actx = zmq.asyncio.Context()
    server_journal = open_journal(str(tmp_path / "server"))
    client_journal = open_journal(str(tmp_path / "client"))
    handled: list[bytes] = []

    async def main() -> None:
        router = server_journal.wrap(actx.socket(zmq.ROUTER), "server")
        router.bind(address)
        req = client_journal.wrap(actx.socket(zmq.REQ), "client", resend_after=0.3)
        req.connect(address)

        async def handle(envelope: list[bytes], body: bytes) -> None:
            await asyncio.sleep(0.5)  # slower than resend_after: a copy comes while this one is in hand
            await router.send_multipart([*envelope, b"re " + body])

        async def serve() -> None:
            while True:
                *envelope, body = await router.recv_multipart()  # reads on while requests are in hand
                handled.append(body)
                asyncio.get_running_loop().create_task(handle(envelope, body))

        server = asyncio.get_running_loop().create_task(serve())
        for n in range(3):
            await req.send(b"job %d" % n)
            assert await asyncio.wait_for(req.recv(), 5) == b"re job %d" % n
        assert req.resent >= 3
        assert router.resends_recognised == req.resent
        server.cancel()
        req.close(linger=0)
        router.close(linger=0)

    try:
        asyncio.run(main())
    finally:
        actx.destroy(linger=0)
    assert handled == [b"job 0", b"job 1", b"job 2"]
