"""A confirm PUSH's socket is used by two threads, one at a time: the application's and its resend thread.

libzmq lets only one thread at a time use a socket. A ``confirm=True``
PUSH resends from a thread of its own (an idle producer must not strand its
last messages), under ``ConfirmSender.lock``; the application's sends hold
that lock too. So must its other calls that reach libzmq: options,
``EVENTS``, polls, endpoints, monitors. Each test holds the lock in the test's thread,
as a resend in progress does, and checks that the call waits for it.
"""

from __future__ import annotations

import threading

import pytest
import zmq

WAITS = 0.2  # how long a call must have been kept waiting by a resend in progress


def _poller_poll(sock: zmq.Socket) -> None:
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLOUT)
    poller.poll(0)


CALLS = {  # (the socket, a fresh endpoint, the endpoint it is connected to, the one it is bound to)
    "get EVENTS": lambda sock, *_: sock.get(zmq.EVENTS),
    "an option attribute": lambda sock, *_: sock.sndhwm,
    "set": lambda sock, *_: sock.set(zmq.SNDHWM, 500),
    "sock.poll": lambda sock, *_: sock.poll(0, zmq.POLLOUT),
    "zmq.Poller": lambda sock, *_: _poller_poll(sock),
    "zmq.select": lambda sock, *_: zmq.select([], [sock], [], 0),
    "connect": lambda sock, fresh, *_: sock.connect(fresh),
    "bind": lambda sock, fresh, *_: sock.bind(fresh),
    "disconnect": lambda sock, _fresh, connected, _bound: sock.disconnect(connected),
    "unbind": lambda sock, _fresh, _connected, bound: sock.unbind(bound),
    "send NOBLOCK": lambda sock, *_: sock.send(b"x", zmq.NOBLOCK),
    "get_monitor_socket": lambda sock, *_: sock.get_monitor_socket().close(0),
    "monitor": lambda sock, *_: sock.monitor("inproc://zj-monitor", zmq.EVENT_CONNECTED),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_a_confirm_push_applications_call_waits_for_a_resend_in_progress(journal, ctx, endpoint, call) -> None:
    push = journal.wrap(ctx.socket(zmq.PUSH), name="out", confirm=True)
    peer = ctx.socket(zmq.PULL)
    connected, bound = endpoint(), endpoint()
    peer.bind(connected)
    push.connect(connected)
    push.bind(bound)
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            CALLS[call](push, endpoint(), connected, bound)
        except BaseException as e:  # (reported below, in the test's thread)
            errors.append(e)
        done.set()

    with push._s.confirm.lock:  # a resend in progress
        worker = threading.Thread(target=run)
        worker.start()
        assert not done.wait(WAITS), f"{call} reached libzmq while the resend thread was using the socket"
    assert done.wait(5)
    worker.join()
    assert not errors


def test_other_sockets_take_no_lock(journal, ctx) -> None:
    dealer = journal.wrap(ctx.socket(zmq.DEALER), name="dealer", confirm=True)  # resends from the app's calls
    assert dealer._resend_hold() is None
    with dealer._s.confirm.lock:
        dealer.get(zmq.EVENTS)  # (from this thread: a lock taken would deadlock here)
        dealer.poll(0, zmq.POLLOUT)
    plain = journal.wrap(ctx.socket(zmq.PUSH), name="plain")
    assert plain._resend_hold() is None


def test_a_collection_in_the_middle_of_a_resend_may_close_the_socket_the_application_dropped(
    journal, ctx, endpoint
) -> None:
    push = journal.wrap(ctx.socket(zmq.PUSH), name="out", confirm=True)
    push.connect(endpoint())
    push.send(b"unconfirmed")
    done = threading.Event()

    def resend_then_collect() -> None:
        hold = push._s.confirm.hold
        assert hold.try_enter(0)  # a resend in progress, in this thread (as in the resend thread)
        try:
            push.__del__()  # what a garbage collection there does to a socket the application dropped
        finally:
            hold.__exit__()
        done.set()

    threading.Thread(target=resend_then_collect, daemon=True).start()
    assert done.wait(5), "the close waited for the lock its own thread held"
    assert push.closed
    assert journal.count(name="out", state="pending", direction="out") == 1  # (unconfirmed: pending still)
