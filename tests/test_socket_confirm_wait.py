"""``sock.wait_confirmed(timeout)``: a confirm=True sender waits until receiving journals confirmed what it sent.

As RabbitMQ's ``waitForConfirms`` and JetStream's ``publish_async_completed``:
True once nothing is unconfirmed and nothing became a dead letter since the
last call, False at the timeout; what is unconfirmed stays pending either way.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import zmq
import zmq.asyncio
from test_socket_confirm import _wait

import zjournal


def _pending_out(journal: zjournal.Journal, name: str = "out") -> int:
    return journal.count(name=name, state="pending", direction="out")


def _receive_later(sock: zmq.Socket, count: int, delay: float) -> tuple[threading.Thread, list[bytes]]:
    """A thread that starts receiving ``count`` messages on ``sock`` after ``delay`` seconds."""
    got: list[bytes] = []

    def run() -> None:
        time.sleep(delay)
        for _ in range(count):
            got.append(sock.recv())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, got


def _connected(
    ctx: zmq.Context, sender: zjournal.Journal, receiver: zjournal.Journal, where: str
) -> tuple[zmq.Socket, zmq.Socket]:
    """A confirm=True PUSH of ``sender`` connected to a journaled PULL of ``receiver`` bound at ``where``."""
    push = sender.wrap(ctx.socket(zmq.PUSH), name="out", confirm=True)
    pull = receiver.wrap(ctx.socket(zmq.PULL), name="in")
    pull.bind(where)
    push.connect(where)
    return push, pull


def test_it_returns_once_the_receiving_journal_confirmed_everything(open_journal, tmp_path, ctx, endpoint) -> None:
    sender = open_journal(str(tmp_path / "a"))
    receiver = open_journal(str(tmp_path / "b"))
    push, pull = _connected(ctx, sender, receiver, endpoint())
    for n in range(200):
        push.send(b"%d" % n)
    reader, got = _receive_later(pull, 200, delay=0.3)  # nothing is journaled over there before it reads
    started = time.monotonic()
    assert push.wait_confirmed(10) is True
    waited = time.monotonic() - started
    reader.join(5)
    assert got == [b"%d" % n for n in range(200)]
    assert _pending_out(sender) == 0
    assert 0.25 < waited < 5  # it waited for the reader, and no longer than the confirmations took


def test_once_it_returns_true_the_journal_counts_nothing_pending(
    open_journal, tmp_path, ctx, endpoint, monkeypatch
) -> None:
    """The sender's thread may be acking confirmed entries in the journal when the application waits:
    those are still unconfirmed to the wait (it once returned True while the journal counted them pending)."""
    from zjournal.journal.port import SocketPort

    acking = threading.Event()
    real_settle_many = SocketPort.settle_many

    def slow_in_the_thread(self, *args, **kwargs):  # the real ack, late when the sender's thread makes it
        if threading.current_thread() is not threading.main_thread():
            acking.set()
            time.sleep(0.5)
        return real_settle_many(self, *args, **kwargs)

    monkeypatch.setattr(SocketPort, "settle_many", slow_in_the_thread)
    sender = open_journal(str(tmp_path / "a"))
    receiver = open_journal(str(tmp_path / "b"))
    push, pull = _connected(ctx, sender, receiver, endpoint())
    for n in range(20):
        push.send(b"%d" % n)
    for n in range(20):
        assert pull.recv() == b"%d" % n
    assert acking.wait(10)  # the application sends nothing: the thread took the confirmations in and acks them
    assert push.wait_confirmed(10) is True
    assert _pending_out(sender) == 0


def test_at_its_timeout_it_answers_false_and_everything_stays_pending(open_journal, tmp_path, ctx, endpoint) -> None:
    sender = open_journal(str(tmp_path / "a"))
    receiver = open_journal(str(tmp_path / "b"))
    push = sender.wrap(ctx.socket(zmq.PUSH), name="out", confirm=True, confirm_timeout=0.1)
    where = endpoint()
    push.connect(where)  # nobody bound yet
    for n in range(5):
        push.send(b"%d" % n)
    started = time.monotonic()
    assert push.wait_confirmed(0.3) is False
    assert 0.29 < time.monotonic() - started < 3
    assert _pending_out(sender) == 5
    pull = receiver.wrap(ctx.socket(zmq.PULL), name="in")
    pull.bind(where)
    assert sorted(pull.recv() for _ in range(5)) == [b"%d" % n for n in range(5)]
    assert push.wait_confirmed() is True  # no limit: until the last confirmation
    assert _pending_out(sender) == 0


def test_a_dead_letter_makes_the_next_answer_false_and_the_one_after_starts_over(
    open_journal, tmp_path, ctx, endpoint
) -> None:
    sender = open_journal(str(tmp_path / "a"))
    push = sender.wrap(ctx.socket(zmq.PUSH), name="out", confirm=True, confirm_timeout=0.05, max_attempts=2)
    push.connect(endpoint())  # nobody ever confirms
    for n in range(3):
        push.send(b"%d" % n)
    started = time.monotonic()
    assert push.wait_confirmed(10) is False  # each one sent twice, then a dead letter: nothing left to wait for
    assert time.monotonic() - started < 5
    assert sender.count(name="out", state="dead") == 3
    assert _pending_out(sender) == 0
    assert push.wait_confirmed(0) is True  # nothing unconfirmed, and no dead letter since the last call


@pytest.mark.parametrize("asked_meanwhile", [False, True], ids=["not-asked", "asked-meanwhile"])
def test_a_dead_letter_confirmed_after_all_is_acked_and_no_dead_letter_any_more(
    open_journal, tmp_path, ctx, endpoint, asked_meanwhile
) -> None:
    """max_attempts ran out while the messages waited in a slow receiver's queue: its confirmations, when
    it reads them at last, ack them (delivered: a replay of the dead letters would send them twice)."""
    sender = open_journal(str(tmp_path / "a"))
    receiver = open_journal(str(tmp_path / "b"))
    push = sender.wrap(ctx.socket(zmq.PUSH), name="out", confirm=True, confirm_timeout=0.05, max_attempts=2)
    pull = receiver.wrap(ctx.socket(zmq.PULL), name="in")
    where = endpoint()
    pull.bind(where)
    push.connect(where)
    for n in range(3):
        push.send(b"%d" % n)
    _wait(lambda: sender.count(name="out", state="dead") == 3, "3 dead letters")  # queued at the receiver, unread
    if asked_meanwhile:
        assert push.wait_confirmed(0) is False  # told of the dead letters
    pull.rcvtimeo = 5000
    assert [pull.recv() for _ in range(3)] == [b"0", b"1", b"2"]  # the resends queued behind: dropped
    assert pull.poll(300) == 0
    _wait(lambda: sender.count(name="out", state="dead") == 0, "the dead letters acked")
    assert _pending_out(sender) == 0
    confirmed = sender.info()["confirm"]
    assert confirmed["confirmed"] == 3
    assert confirmed["latency_seconds_max"] < 30  # from their last send (each confirmed twice: original and copy)
    assert push.wait_confirmed(0) is True  # no dead letter left to tell of, whether it was told of them or not


def test_a_dealer_waits_for_a_journaled_router(open_journal, tmp_path, ctx, endpoint) -> None:
    client = open_journal(str(tmp_path / "client"))
    server = open_journal(str(tmp_path / "server"))
    dealer = client.wrap(ctx.socket(zmq.DEALER), name="out", confirm=True, confirm_timeout=0.1)
    router = server.wrap(ctx.socket(zmq.ROUTER), name="in")
    where = endpoint()
    router.bind(where)
    dealer.connect(where)
    for n in range(20):
        dealer.send_multipart([b"", b"%d" % n])
    got: list[list[bytes]] = []
    reader = threading.Thread(target=lambda: got.extend(router.recv_multipart() for _ in range(20)), daemon=True)
    reader.start()
    assert dealer.wait_confirmed(10) is True
    reader.join(5)
    assert [frames[1:] for frames in got] == [[b"", b"%d" % n] for n in range(20)]
    assert _pending_out(client) == 0


@pytest.mark.parametrize("timeout", [-1, "1", True, float("nan"), float("inf")])
def test_a_timeout_that_is_no_number_of_seconds_is_refused(journal, ctx, endpoint, timeout) -> None:
    push = journal.wrap(ctx.socket(zmq.PUSH), name="out", confirm=True)
    with pytest.raises(zjournal.InvalidArgumentError, match="timeout"):
        push.wait_confirmed(timeout)


def test_only_confirm_senders_wait_and_a_closed_one_says_so(journal, ctx) -> None:
    plain = journal.wrap(ctx.socket(zmq.PUSH), name="plain")
    with pytest.raises(zjournal.InvalidArgumentError, match="confirm=True"):
        plain.wait_confirmed(1)
    push = journal.wrap(ctx.socket(zmq.PUSH), name="out", confirm=True)
    push.close(0)
    with pytest.raises(zmq.ZMQError) as raised:
        push.wait_confirmed(1)
    assert raised.value.errno == zmq.ENOTSOCK


def test_asyncio_waits_without_stalling_the_event_loop(open_journal, tmp_path, endpoint) -> None:
    sender = open_journal(str(tmp_path / "a"))
    receiver = open_journal(str(tmp_path / "b"))

    async def main() -> tuple[bool, bool, int, list[bytes]]:
        actx = zmq.asyncio.Context()
        try:
            push = sender.wrap(actx.socket(zmq.PUSH), name="out", confirm=True, confirm_timeout=0.1)
            pull = receiver.wrap(actx.socket(zmq.PULL), name="in")
            where = endpoint()
            push.connect(where)
            for n in range(50):
                await push.send(b"%d" % n)
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    ticks += 1
                    await asyncio.sleep(0.01)

            beat = asyncio.create_task(ticker())
            early = await push.wait_confirmed(0.3)  # nobody bound: False, and the loop ran meanwhile
            ticked = ticks
            pull.bind(where)
            got = [await pull.recv() for _ in range(50)]
            late = await push.wait_confirmed(10)
            beat.cancel()
            push.close()
            pull.close()
            return early, late, ticked, got
        finally:
            actx.destroy(linger=0)

    early, late, ticked, got = asyncio.run(main())
    assert early is False and late is True
    assert ticked >= 10  # the other task kept running while the wait went on
    assert sorted(got) == sorted(b"%d" % n for n in range(50))
    assert _pending_out(sender) == 0


def test_an_asyncio_wait_returns_when_the_confirmations_come_not_at_its_next_look(
    open_journal, tmp_path, endpoint, monkeypatch
) -> None:
    """The sender's thread wakes the wait: with looks a minute apart, it still returns within seconds."""
    from zjournal.sockets import aio

    monkeypatch.setattr(aio, "RESEND_TICK_MS", 60_000)
    sender = open_journal(str(tmp_path / "a"))
    receiver = open_journal(str(tmp_path / "b"))

    async def main() -> list[bool]:
        actx = zmq.asyncio.Context()
        try:
            push = sender.wrap(actx.socket(zmq.PUSH), name="out", confirm=True)
            pull = receiver.wrap(actx.socket(zmq.PULL), name="in")
            where = endpoint()
            pull.bind(where)
            push.connect(where)
            waits = []
            for n in range(3):  # publisher-confirm style: each message confirmed before the next
                await push.send(b"%d" % n)
                assert await pull.recv() == b"%d" % n
                waits.append(await asyncio.wait_for(push.wait_confirmed(), 5))
            push.close()
            pull.close()
            return waits
        finally:
            actx.destroy(linger=0)

    assert asyncio.run(main()) == [True, True, True]
    assert _pending_out(sender) == 0


def test_an_asyncio_dealer_resends_from_its_wait(open_journal, tmp_path) -> None:
    client = open_journal(str(tmp_path / "client"))
    server = open_journal(str(tmp_path / "server"))

    async def main() -> tuple[bool, list[bytes]]:
        actx = zmq.asyncio.Context()
        try:
            where = f"ipc://{tmp_path}/peer.ipc"  # (ipc: an inproc peer that goes is never connected again)
            dropper = actx.socket(zmq.ROUTER)  # takes the first copy and never confirms it
            dropper.bind(where)
            dealer = client.wrap(actx.socket(zmq.DEALER), name="out", confirm=True, confirm_timeout=0.1)
            dealer.connect(where)
            await dealer.send(b"hello")
            await dropper.recv_multipart()
            dropper.close(0)
            router = server.wrap(actx.socket(zmq.ROUTER), name="in")
            router.bind(where)  # the dealer reconnects here; only a resend can bring the message

            got: list[bytes] = []

            async def serve() -> None:
                while True:
                    got.append((await router.recv_multipart())[-1])

            serving = asyncio.create_task(serve())
            confirmed = await dealer.wait_confirmed(10)
            serving.cancel()
            dealer.close()
            router.close()
            return confirmed, got
        finally:
            actx.destroy(linger=0)

    confirmed, got = asyncio.run(main())
    assert confirmed is True
    assert got == [b"hello"]  # the resend, handed over once
    assert _pending_out(client) == 0


def test_a_tornado_future_socket_waits_as_an_asyncio_one(open_journal, tmp_path, endpoint) -> None:
    from zmq.eventloop import future

    sender = open_journal(str(tmp_path / "a"))
    receiver = open_journal(str(tmp_path / "b"))

    async def main() -> tuple[bool, bool]:
        fctx = future.Context()
        try:
            push, pull = _connected(fctx, sender, receiver, endpoint())
            for n in range(10):
                await push.send(b"%d" % n)
            early = await push.wait_confirmed(0.2)  # nothing read, so nothing journaled over there yet
            for _ in range(10):
                await pull.recv()
            late = await push.wait_confirmed(10)
            push.close()
            pull.close()
            return early, late
        finally:
            fctx.destroy(linger=0)

    assert asyncio.run(main()) == (False, True)
    assert _pending_out(sender) == 0
