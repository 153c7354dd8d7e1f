"""zmq.asyncio sockets: wrapping one gives a journaled asyncio socket."""

from __future__ import annotations

import asyncio

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
