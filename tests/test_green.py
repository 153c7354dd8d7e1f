"""Journaled zmq.green (gevent) sockets: a greenlet waiting on one lets the others run (zjournal.sockets.green).

Before, a journaled green socket's blocking ``recv`` waited on the original
socket's events (gevent's 11.6 s safety timeout woke it), and its blocking
multipart calls waited inside libzmq, stopping the whole hub. Each test
sets libzmq's own timeouts as a guard: a call that blocks the hub raises
``zmq.Again`` after them instead of hanging the suite (zmq.green itself
ignores them, and warns that it does).
"""

from __future__ import annotations

import time
import warnings

import gevent
import pytest
import zmq.green as zmq
from test_loop_resends import _swallowed
from test_socket_confirm import _pending_out

GUARD_MS = 3000


@pytest.fixture
def green_ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


def _guarded(sock: zmq.Socket) -> zmq.Socket:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # ("TIMEO socket options have no effect in zmq.green")
        sock.rcvtimeo = sock.sndtimeo = GUARD_MS
    return sock


def _ticks_while(wait, act, delay: float = 0.3) -> tuple[list, int]:
    """Run ``wait()`` in a greenlet, ``act()`` in another after ``delay``, and a third that ticks every 10 ms:
    what ``wait`` returned, and how many ticks ran before it did."""
    ticks: list[float] = []
    results: list = []

    def ticker() -> None:
        while not results:
            ticks.append(time.monotonic())
            gevent.sleep(0.01)

    def later() -> None:
        gevent.sleep(delay)
        act()

    greenlets = [gevent.spawn(ticker), gevent.spawn(lambda: results.append(wait())), gevent.spawn(later)]
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    return results, len(ticks)


@pytest.mark.parametrize("method", ["recv", "recv_multipart"])
def test_a_journaled_green_pull_waiting_for_a_message_lets_its_sender_run(journal, green_ctx, ipc, method) -> None:
    address = ipc()
    pull = _guarded(journal.wrap(green_ctx.socket(zmq.PULL), name="in"))
    pull.bind(address)
    push = green_ctx.socket(zmq.PUSH)
    push.connect(address)
    started = time.monotonic()
    results, ticks = _ticks_while(getattr(pull, method), lambda: push.send(b"late"))
    assert results == [b"late" if method == "recv" else [b"late"]]
    assert time.monotonic() - started < 2  # woken by its own event, not by gevent's 11.6 s safety timeout
    assert ticks >= 10  # the hub ran the other greenlets meanwhile
    assert journal.count(name="in") == 1


def test_a_journaled_green_push_at_its_hwm_lets_its_receiver_run(journal, green_ctx, ipc) -> None:
    address = ipc()
    push = _guarded(journal.wrap(green_ctx.socket(zmq.PUSH), name="out"))
    push.bind(address)  # no peer yet: a PUSH's send waits for one
    pull = green_ctx.socket(zmq.PULL)
    results, ticks = _ticks_while(lambda: push.send_multipart([b"a", b"b"]), lambda: pull.connect(address))
    assert results == [None]
    assert ticks >= 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pull.rcvtimeo = GUARD_MS
    assert pull.recv_multipart() == [b"a", b"b"]


@pytest.fixture
def lost_and_served(open_journal, green_ctx, tmp_path, ipc):
    """A green confirm DEALER (confirm_timeout 0.2 s) whose message b"must arrive" a plain ROUTER swallowed,
    and ``serve(wait)``: a journaled ROUTER at its address answers what reaches it (only a resend can),
    while another greenlet runs ``wait()`` (which waits for the reply); returns what that returned.
    Also the DEALER's journal: (journal, dealer, serve)."""
    sender = open_journal(str(tmp_path / "out"))
    dealer = _guarded(sender.wrap(green_ctx.socket(zmq.DEALER), name="out", confirm=True, confirm_timeout=0.2))
    address = ipc()
    _swallowed(green_ctx, address, dealer, b"must arrive")  # by a plain ROUTER: never confirmed
    router = _guarded(open_journal(str(tmp_path / "in")).wrap(green_ctx.socket(zmq.ROUTER), name="in"))
    router.bind(address)

    def answer() -> None:
        peer, body = router.recv_multipart()
        router.send_multipart([peer, b"got " + body])

    def serve(wait):
        server, reply = gevent.spawn(answer), gevent.spawn(wait)
        gevent.joinall([server, reply], timeout=10, raise_error=True)
        return reply.value

    return sender, dealer, serve


def test_a_green_confirm_dealer_waiting_for_a_reply_resends_what_was_not_confirmed(lost_and_served) -> None:
    sender, dealer, serve = lost_and_served
    assert serve(dealer.recv) == b"got must arrive"  # the resend: only the waiting dealer's ticks send it
    deadline = time.monotonic() + 5
    while _pending_out(sender) and time.monotonic() < deadline:
        gevent.sleep(0.02)
    assert _pending_out(sender) == 0


def test_a_green_confirm_senders_wait_lets_its_receiver_greenlet_run(open_journal, green_ctx, tmp_path, ipc) -> None:
    address = ipc()
    push = open_journal(str(tmp_path / "out")).wrap(green_ctx.socket(zmq.PUSH), name="out", confirm=True)
    push.bind(address)
    pull = _guarded(open_journal(str(tmp_path / "in")).wrap(green_ctx.socket(zmq.PULL), name="in"))
    pull.connect(address)
    consumer = gevent.spawn(pull.recv)  # runs only when the sender's greenlet yields
    push.send(b"x")
    started = time.monotonic()
    assert push.wait_confirmed(GUARD_MS / 1000)  # before, it kept the hub: nothing was received, nor confirmed
    assert time.monotonic() - started < 2
    assert consumer.get(timeout=5) == b"x"


def test_a_green_confirm_dealer_waiting_in_a_green_poller_resends_what_was_not_confirmed(lost_and_served) -> None:
    _sender, dealer, serve = lost_and_served

    def wait_for_the_reply() -> bytes:
        poller = zmq.Poller()  # zmq.green's: it waits in the hub, then asks libzmq without waiting
        poller.register(dealer, zmq.POLLIN)
        assert poller.poll(GUARD_MS)
        return dealer.recv()

    assert serve(wait_for_the_reply) == b"got must arrive"  # the resend: only the dealer's hub timer sends it
