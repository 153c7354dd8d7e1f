"""zmq.asyncio sockets: wrapping one gives a journaled asyncio socket."""

from __future__ import annotations

import asyncio
import time

import pytest
import zmq
import zmq.asyncio

import zjournal


@pytest.fixture
def actx():
    context = zmq.asyncio.Context()
    yield context
    context.destroy(linger=0)


def test_asyncio_sockets_journal_and_ack(journal, actx, endpoint) -> None:
    async def main() -> None:
        pull = journal.wrap(actx.socket(zmq.PULL), name="in")
        push = journal.wrap(actx.socket(zmq.PUSH), name="out")
        assert isinstance(pull, zjournal.AsyncJournaledSocket) and isinstance(pull, zmq.asyncio.Socket)
        addr = endpoint()
        pull.bind(addr)
        push.connect(addr)
        await push.send_multipart([b"a", b"1"])
        await push.send(b"b")
        assert await pull.recv_multipart() == [b"a", b"1"]
        assert journal.get(pull.last_id).frames == [b"a", b"1"]
        async with pull.receiving() as frames:
            assert frames == [b"b"]
        assert journal.count(name="in") == 0
        recv = asyncio.ensure_future(pull.recv())  # waits through the event loop
        await asyncio.sleep(0)
        await push.send_string("late")
        assert await asyncio.wait_for(recv, 2) == b"late"
        pull.close()
        push.close()
        assert journal.count() == 0

    asyncio.run(main())


def test_asyncio_redelivery_and_poller(journal_path, open_journal, actx, endpoint) -> None:
    with zjournal.open(journal_path) as j:
        j.append("in", [b"old"], direction="in", attempts=1)
    j = open_journal()

    async def main() -> None:
        pull = j.wrap(actx.socket(zmq.PULL), name="in")
        poller = zmq.asyncio.Poller()
        poller.register(pull, zmq.POLLIN)
        assert dict(await poller.poll(2000)).get(pull) == zmq.POLLIN
        assert await pull.recv() == b"old"
        assert j.get(pull.last_id).attempts == 2

    asyncio.run(main())


def test_asyncio_req_rep(journal, actx, endpoint) -> None:
    async def main() -> None:
        rep = journal.wrap(actx.socket(zmq.REP), name="rep")
        req = journal.wrap(actx.socket(zmq.REQ), name="req")
        addr = endpoint()
        rep.bind(addr)
        req.connect(addr)
        await req.send(b"q")
        assert await rep.recv() == b"q"
        assert journal.count(name="rep") == 1 and journal.count(name="req") == 1
        await rep.send(b"a")
        assert await req.recv() == b"a"
        assert journal.count() == 0

    asyncio.run(main())


def test_asyncio_rep_redelivers_before_live_and_drops_the_reply(journal_path, open_journal, actx, endpoint) -> None:
    with zjournal.open(journal_path) as j:
        j.append("service", [b"old"], direction="in", attempts=1)

    async def main() -> None:
        journal = open_journal()
        rep = journal.wrap(actx.socket(zmq.REP), name="service")
        addr = endpoint()
        rep.bind(addr)
        req = actx.socket(zmq.REQ)
        req.connect(addr)
        await req.send(b"live")
        assert await asyncio.wait_for(rep.recv(), 2) == b"old"
        await rep.send(b"to nobody")  # the requester is gone: dropped, and the request acked
        assert await asyncio.wait_for(rep.recv(), 2) == b"live"
        await rep.send(b"answer")
        assert await asyncio.wait_for(req.recv(), 2) == b"answer"
        assert journal.count(state="pending") == 0

    asyncio.run(main())


def _pipe(journal, actx, endpoint, name="in"):
    pull = journal.wrap(actx.socket(zmq.PULL), name=name)
    addr = endpoint()
    pull.bind(addr)
    push = zmq.Context.shadow(actx.underlying).socket(zmq.PUSH)
    push.connect(addr)
    return push, pull


async def _recv_cancelled_as_it_arrives(push, receive, sent: bytes) -> None:
    """``receive()`` under a 0.2 s timeout; ``sent`` arrives while the loop is busy past it: both due at once."""

    async def consumer():
        async with asyncio.timeout(0.2):
            return await receive()

    task = asyncio.create_task(consumer())
    await asyncio.sleep(0)  # the task runs up to its awaited recv
    push.send(sent)
    time.sleep(0.3)  # the loop is busy: the timeout falls due while the message arrives
    with pytest.raises(TimeoutError):
        await task


@pytest.mark.parametrize("method", ["recv", "recv_multipart", "recv_string", "recv_json", "recv_pyobj"])
def test_a_recv_cancelled_as_its_message_arrives_hands_that_message_over_next(journal, actx, endpoint, method) -> None:
    """The timeout falls due in the same loop turn as the message arrives: the result is never seen."""
    payloads = {"recv_json": b'{"n": 1}', "recv_pyobj": __import__("pickle").dumps({"n": 1})}
    sent = payloads.get(method, b"order-1")

    async def main() -> None:
        push, pull = _pipe(journal, actx, endpoint)
        await _recv_cancelled_as_it_arrives(push, getattr(pull, method), sent)
        push.send(b"order-2")
        assert await pull.recv_multipart() == [sent]  # handed over now, as it is
        assert await pull.recv_multipart() == [b"order-2"]
        pull.close()
        push.close()

    asyncio.run(main())
    assert journal.count() == 0  # each handed over once, acked


def test_a_message_that_came_back_after_a_cancelled_recv_is_not_acked_by_a_clean_close(journal, actx, endpoint) -> None:
    """Having failed to reach the application once, it is acked by the next recv or an ack, not a close."""

    async def main() -> None:
        push, pull = _pipe(journal, actx, endpoint)
        await _recv_cancelled_as_it_arrives(push, pull.recv, b"order-1")
        assert await asyncio.wait_for(pull.recv(), 2) == b"order-1"  # handed over now
        pull.close()  # no next recv, no ack: it stays pending
        again = journal.wrap(actx.socket(zmq.PULL), name="in")
        assert await asyncio.wait_for(again.recv(), 2) == b"order-1"
        assert again.last_attempts == 2
        again.close()  # an ordinary redelivery: the clean close acks it
        push.close()

    asyncio.run(main())
    assert journal.count() == 0


def test_a_consumer_with_a_short_timeout_loses_nothing(journal, actx, endpoint) -> None:
    import random
    import threading

    n = 400
    got: list[bytes] = []

    async def main() -> None:
        push, pull = _pipe(journal, actx, endpoint)

        def produce() -> None:
            for i in range(n):
                push.send(b"m%04d" % i)
                time.sleep(random.random() * 0.002)

        producer = threading.Thread(target=produce)
        producer.start()
        while producer.is_alive() or len(got) < n:
            try:
                async with asyncio.timeout(0.001):
                    got.append((await pull.recv_multipart())[0])
            except TimeoutError:
                if not producer.is_alive() and not pull.poll(0) and len(got) < n:
                    await asyncio.sleep(0.01)
                    if not await pull.poll(200):
                        break
        producer.join()
        pull.close()
        push.close()

    asyncio.run(main())
    assert got == [b"m%04d" % i for i in range(n)]


def test_closing_with_a_result_nobody_took_leaves_it_pending(journal, actx, endpoint) -> None:
    async def main() -> None:
        push, pull = _pipe(journal, actx, endpoint)
        push.send(b"untaken")
        future = pull.recv()
        await asyncio.wait({future}, timeout=5)  # waits for it without taking its result
        assert future.done()  # read, journaled, never awaited
        pull.close()
        push.close()

    asyncio.run(main())
    assert [e.frames for e in journal.entries(state="pending")] == [[b"untaken"]]


def test_an_asyncio_sub_gets_its_pending_entries(journal_path, open_journal, actx, endpoint) -> None:
    with zjournal.open(journal_path) as j:
        j.append("feed", [b"t.old"], direction="in", attempts=1)
    journal = open_journal()

    async def main() -> None:
        sub = journal.wrap(actx.socket(zmq.SUB), name="feed")
        addr = endpoint()
        sub.connect(addr)
        sub.subscribe(b"t.")
        assert await asyncio.wait_for(sub.recv(), 2) == b"t.old"
        assert sub.last_attempts == 2
        sub.close()

    asyncio.run(main())
    assert journal.count(state="pending") == 0
