"""A sync journaled socket waited on by an event loop resends from that loop (zjournal.sockets.loop_resends).

A confirm DEALER (or a journaled REQ) resends from the application's calls on
it. Under tornado's ``ZMQStream``, or ``loop.add_reader(sock.FD, ...)``, the
application makes none while it idles: the loop's timer does the resending.
The first copy of each message is swallowed by a plain peer that never
confirms or answers, so only a resend can get it through.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import zmq
from test_socket_confirm import _pending_out

import zjournal


def _swallowed(ctx: zmq.Context, address: str, sock: zmq.Socket, message: bytes) -> None:
    """``sock`` sends ``message`` into a plain ROUTER at ``address``, which reads it and goes: never confirmed."""
    plain = ctx.socket(zmq.ROUTER)
    plain.bind(address)
    sock.connect(address)
    sock.send(message)
    assert plain.poll(5000)
    plain.recv_multipart()
    plain.close(linger=0)


def _arrivals(router: zmq.Socket, sender: zjournal.Journal) -> tuple[list[bytes], Callable[[], bool]]:
    """What reaches ``router`` (a journaled ROUTER), and ``arrived()``: whether something did and ``sender``
    holds nothing unconfirmed any more (each call reads what came meanwhile)."""
    got: list[bytes] = []

    def arrived() -> bool:
        while router.poll(0):
            got.append(router.recv_multipart()[1])
        return bool(got) and _pending_out(sender) == 0

    return got, arrived


def _run_tornado_until(condition, timeout: float = 10.0) -> None:
    """Run tornado's current IOLoop (started after the streams were made, as a service does) until ``condition``."""
    from tornado.ioloop import IOLoop, PeriodicCallback

    loop = IOLoop.current()
    deadline = time.monotonic() + timeout

    def check() -> None:
        if condition() or time.monotonic() > deadline:
            loop.stop()

    checker = PeriodicCallback(check, 20)
    checker.start()
    loop.start()
    checker.stop()


@pytest.fixture
def tornado_loop():
    """A fresh asyncio loop for tornado's IOLoop.current() of this thread, closed afterwards."""
    from tornado.ioloop import IOLoop

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    IOLoop.current().close(all_fds=False)
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture
def lost_first_copy(open_journal, ctx, tmp_path, ipc):
    """``lose()``: a confirm DEALER (confirm_timeout 0.2 s) whose message b"must arrive" a plain ROUTER
    swallowed, and a journaled ROUTER at that address now: (the DEALER's journal, the DEALER, what reaches
    the ROUTER, ``arrived()``: see _arrivals). ``lose(before)`` calls ``before(dealer)`` first."""

    def lose(before: Callable[[zmq.Socket], object] | None = None):
        sender = open_journal(str(tmp_path / "out"))
        dealer = sender.wrap(ctx.socket(zmq.DEALER), name="out", confirm=True, confirm_timeout=0.2)
        if before is not None:
            before(dealer)
        address = ipc()
        _swallowed(ctx, address, dealer, b"must arrive")
        router = open_journal(str(tmp_path / "in")).wrap(ctx.socket(zmq.ROUTER), name="in")
        router.bind(address)
        return (sender, dealer, *_arrivals(router, sender))

    return lose


def test_a_zmqstream_confirm_dealer_idle_in_its_ioloop_resends_what_was_not_confirmed(
    tornado_loop, lost_first_copy
) -> None:
    from zmq.eventloop.zmqstream import ZMQStream

    sender, dealer, got, arrived = lost_first_copy()
    stream = ZMQStream(dealer)  # made before the loop runs, as a tornado service does
    stream.on_recv(lambda _msg: None)
    _run_tornado_until(arrived)
    assert got == [b"must arrive"]
    assert _pending_out(sender) == 0
    # Everything confirmed: the loop's timer stops at its next look (an idle service is not woken every tick)
    ticker = dealer._s.loop_resends
    _run_tornado_until(lambda: ticker._timer is None, timeout=2)
    assert ticker._timer is None
    stream.close()


def test_a_zmqstream_confirm_dealer_sends_what_an_earlier_run_left_unconfirmed_without_a_send(
    tornado_loop, open_journal, ctx, tmp_path, ipc
) -> None:
    from zmq.eventloop.zmqstream import ZMQStream

    path = str(tmp_path / "out")
    address = ipc()
    with zjournal.open(path) as before:
        dealer = before.wrap(ctx.socket(zmq.DEALER), name="out", confirm=True, confirm_timeout=0.2)
        _swallowed(ctx, address, dealer, b"from the run before")
        dealer.close(linger=0)  # unconfirmed: pending for the next run
    sender = open_journal(path)
    assert _pending_out(sender) == 1
    router = open_journal(str(tmp_path / "in")).wrap(ctx.socket(zmq.ROUTER), name="in")
    router.bind(address)
    dealer = sender.wrap(ctx.socket(zmq.DEALER), name="out", confirm=True, confirm_timeout=0.2)
    dealer.connect(address)
    stream = ZMQStream(dealer)
    stream.on_recv(lambda _msg: None)
    got, arrived = _arrivals(router, sender)
    _run_tornado_until(arrived)
    assert got == [b"from the run before"]
    assert _pending_out(sender) == 0
    stream.close()


def test_a_zmqstream_req_idle_in_its_ioloop_resends_its_request_and_gets_the_reply(
    tornado_loop, open_journal, ctx, ipc
) -> None:
    from zmq.eventloop.zmqstream import ZMQStream

    journal = open_journal()
    server = ctx.socket(zmq.ROUTER)  # a plain server that answers only the second copy
    address = ipc()
    server.bind(address)
    req = journal.wrap(ctx.socket(zmq.REQ), name="client", resend_after=0.2)
    req.connect(address)
    stream = ZMQStream(req)
    replies: list[list[bytes]] = []
    stream.on_recv(replies.append)
    stream.send(b"question")
    copies: list[list[bytes]] = []

    def answered() -> bool:
        while server.poll(0):
            copies.append(server.recv_multipart())
            if len(copies) == 2:
                *envelope, _body = copies[1]
                server.send_multipart([*envelope, b"answer"])
        return bool(replies)

    _run_tornado_until(answered)
    assert len(copies) >= 2 and copies[0][-1] == copies[1][-1] == b"question"
    assert replies == [[b"answer"]]
    assert journal.count(name="client", state="pending") == 0
    stream.close()


def test_an_asyncio_reader_on_a_confirm_dealers_fd_resends_from_the_running_loop(lost_first_copy) -> None:
    sender, dealer, got, arrived = lost_first_copy()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(dealer.FD, lambda: dealer.get(zmq.EVENTS))  # an application's own loop integration
        try:
            deadline = time.monotonic() + 10
            while not arrived() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            loop.remove_reader(dealer.FD)

    asyncio.run(main())
    assert got == [b"must arrive"]
    assert _pending_out(sender) == 0


def test_a_zmq_asyncio_poller_over_a_confirm_dealer_resends_from_the_loop_of_each_asyncio_run(
    lost_first_copy,
) -> None:
    import zmq.asyncio

    async def poll_once(dealer: zmq.Socket) -> None:
        poller = zmq.asyncio.Poller()
        poller.register(dealer, zmq.POLLIN)
        await poller.poll(10)

    timers = []  # a first loop, gone before the message is lost: the socket's timer must not stay tied to it
    sender, dealer, got, arrived = lost_first_copy(
        before=lambda dealer: (asyncio.run(poll_once(dealer)), timers.append(dealer._s.loop_resends))
    )

    async def main() -> None:
        poller = zmq.asyncio.Poller()
        poller.register(dealer, zmq.POLLIN)  # waiting for replies that never come, as a client does
        deadline = time.monotonic() + 10
        while not arrived() and time.monotonic() < deadline:
            await poller.poll(50)

    asyncio.run(main())
    assert got == [b"must arrive"]
    assert _pending_out(sender) == 0
    assert timers[0] and dealer._s.loop_resends is not timers[0]


def test_only_sockets_that_resend_from_the_applications_calls_get_a_loop_timer(open_journal, ctx) -> None:
    journal = open_journal()

    async def main() -> None:
        push = journal.wrap(ctx.socket(zmq.PUSH), name="push", confirm=True)  # resends from its own thread
        dealer = journal.wrap(ctx.socket(zmq.DEALER), name="dealer")  # no confirm: nothing to resend
        confirming = journal.wrap(ctx.socket(zmq.DEALER), name="confirming", confirm=True)
        for sock in (push, dealer, confirming):
            assert sock.fileno() == sock.FD
        assert push._s.loop_resends is False and dealer._s.loop_resends is False
        assert confirming._s.loop_resends
        confirming.close(linger=0)
        assert confirming._s.loop_resends._timer is None  # cancelled with the socket
        push.close(linger=0)
        dealer.close(linger=0)

    asyncio.run(main())
    outside = journal.wrap(ctx.socket(zmq.DEALER), name="outside", confirm=True)
    outside.FD  # noqa: B018 - no event loop here: nothing armed, asked again next time
    assert outside._s.loop_resends is None
    outside.close(linger=0)
