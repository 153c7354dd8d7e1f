"""Through the wrapper, sockets behave exactly as pyzmq's: same results, same errors.

Every scenario runs twice, once on plain pyzmq sockets and once on journaled
ones, and the observable results must be equal.
"""

from __future__ import annotations

import errno
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import zmq
import zmq.asyncio

import zjournal

Make = Callable[[int], zmq.Socket]


def run_both(journal: zjournal.Journal, ctx: zmq.Context, endpoint, scenario: Callable[..., Any]) -> Any:
    """Run ``scenario(make, addr)`` on plain and on journaled sockets; both results must match."""

    def plain(kind: int) -> zmq.Socket:
        return ctx.socket(kind)

    def journaled(kind: int) -> zmq.Socket:
        return journal.wrap(ctx.socket(kind))

    expected = scenario(plain, endpoint())
    got = scenario(journaled, endpoint())
    assert got == expected
    return got


def connected(make: Make, addr: str, server: int, client: int) -> tuple[zmq.Socket, zmq.Socket]:
    s = make(server)
    c = make(client)
    s.bind(addr)
    c.connect(addr)
    return s, c


def describe(value: Any) -> Any:
    """A comparable description of what recv returned (type and content)."""
    if isinstance(value, list):
        return [describe(v) for v in value]
    if isinstance(value, zmq.Frame):
        return ("Frame", value.bytes)
    return (type(value).__name__, value)


def test_push_pull_every_send_and_recv_variant(journal, ctx, endpoint) -> None:
    def scenario(make: Make, addr: str) -> list[Any]:
        pull, push = connected(make, addr, zmq.PULL, zmq.PUSH)
        push.send(b"plain")
        push.send(memoryview(b"view"))
        push.send(bytearray(b"array"))
        push.send_multipart([b"a", b"b", b"c"])
        push.send_string("ünïcode")
        push.send_json({"k": [1, 2]})
        push.send_pyobj({"p": (1, 2)})
        push.send_serialized({"s": 1}, lambda m: [b"ser", pickle.dumps(m)])
        push.send(b"f1", zmq.SNDMORE)
        push.send(b"f2")
        tracker = push.send(b"x" * 100_000, copy=False, track=True)
        push.send(zmq.Frame(b"frame"))
        out = [
            describe(pull.recv()),
            describe(pull.recv(copy=False)),
            describe(pull.recv_multipart()),
            describe(pull.recv_multipart()),
            pull.recv_string(),
            pull.recv_json(),
            pull.recv_pyobj(),
            pull.recv_serialized(lambda frames: pickle.loads(frames[1])),
        ]
        out.append(describe(pull.recv()))
        out.append(pull.rcvmore)
        out.append(describe(pull.recv()))
        out.append(pull.getsockopt(zmq.RCVMORE))
        out.append(len(pull.recv()))
        out.append(type(tracker).__name__)
        buf = bytearray(3)
        out.append((pull.recv_into(buf), bytes(buf)))
        return out

    got = run_both(journal, ctx, endpoint, scenario)
    assert got[0] == ("bytes", b"plain") and got[1] == ("Frame", b"view")
    # Each earlier message was acked by asking for the next, and the last one when the scenario
    # dropped its sockets: pyzmq closes a socket nobody holds, and closing settles it.
    assert [e.frames for e in journal.entries(direction="in")] == []


def test_req_rep_round_trip_and_efsm(journal, ctx, endpoint) -> None:
    def scenario(make: Make, addr: str) -> list[Any]:
        rep, req = connected(make, addr, zmq.REP, zmq.REQ)
        req.send(b"question")
        with pytest.raises(zmq.ZMQError) as info:
            req.send(b"again")  # REQ must wait for the reply
        out: list[Any] = [info.value.errno == errno.EFSM if hasattr(errno, "EFSM") else info.value.errno]
        out.append(rep.recv())
        with pytest.raises(zmq.ZMQError) as info2:
            rep.recv(zmq.NOBLOCK)  # REP must reply first
        out.append(info2.value.errno)
        rep.send_multipart([b"answer", b"2"])
        out.append(req.recv_multipart())
        return out

    run_both(journal, ctx, endpoint, scenario)
    assert journal.count() == 0  # the request was acked by its reply on both sides


def test_dealer_router_with_envelopes(journal, ctx, endpoint) -> None:
    alive = []  # the router's last request stays in hand (pending) while its socket lives

    def scenario_with_id(make: Make, addr: str) -> list[Any]:
        router = make(zmq.ROUTER)
        alive.append(router)
        router.bind(addr)
        dealer = make(zmq.DEALER)
        dealer.routing_id = b"client-1"
        dealer.connect(addr)
        dealer.send_multipart([b"", b"hello"])
        frames = router.recv_multipart()
        router.send_multipart([frames[0], b"", b"world"])
        return [frames, dealer.recv_multipart()]

    got = run_both(journal, ctx, endpoint, scenario_with_id)
    assert got == [[b"client-1", b"", b"hello"], [b"", b"world"]]
    inbound = [e for e in journal.entries(name="router", direction="in")]
    assert [(e.envelope, e.body) for e in inbound] == [([b"client-1", b""], [b"hello"])]


def test_pub_sub_topic_filtering(journal, ctx, endpoint) -> None:
    def scenario(make: Make, addr: str) -> list[Any]:
        pub, sub = connected(make, addr, zmq.PUB, zmq.SUB)
        sub.subscribe(b"news.")
        while not sub.poll(10):  # the subscription travels asynchronously
            pub.send_multipart([b"news.hello", b"0"])
        sub.recv_multipart()
        while sub.poll(0):
            sub.recv_multipart()
        pub.send_multipart([b"sport.x", b"1"])
        pub.send_multipart([b"news.y", b"2"])
        return [sub.recv_multipart()]

    assert run_both(journal, ctx, endpoint, scenario) == [[b"news.y", b"2"]]


def test_pair(journal, ctx, endpoint) -> None:
    def scenario(make: Make, addr: str) -> list[Any]:
        a, b = connected(make, addr, zmq.PAIR, zmq.PAIR)
        a.send(b"ping")
        got = b.recv()
        b.send(b"pong")
        return [got, a.recv()]

    assert run_both(journal, ctx, endpoint, scenario) == [b"ping", b"pong"]


def test_noblock_again_is_pyzmqs_and_leaves_no_entry(journal, ctx, endpoint) -> None:
    def scenario(make: Make, addr: str) -> list[Any]:
        push = make(zmq.PUSH)  # no peer: nothing can be sent
        pull = make(zmq.PULL)
        out = []
        for call in (
            lambda: push.send(b"x", zmq.NOBLOCK),
            lambda: push.send_multipart([b"a", b"b"], zmq.DONTWAIT),
            lambda: pull.recv(zmq.NOBLOCK),
            lambda: pull.recv_multipart(zmq.NOBLOCK),
        ):
            with pytest.raises(zmq.Again) as info:
                call()
            out.append((type(info.value), info.value.errno, str(info.value)))
        return out

    run_both(journal, ctx, endpoint, scenario)
    assert journal.count() == 0


def test_poller_and_poll_see_the_same(journal, ctx, endpoint) -> None:
    def scenario(make: Make, addr: str) -> list[Any]:
        pull, push = connected(make, addr, zmq.PULL, zmq.PUSH)
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        before = dict(poller.poll(0))
        push.send(b"x")
        after = dict(poller.poll(1000))
        return [before.get(pull), after.get(pull), pull.poll(0), zmq.select([pull], [], [], 0)[0] == [pull]]

    assert run_both(journal, ctx, endpoint, scenario) == [None, zmq.POLLIN, zmq.POLLIN, True]


def test_closed_sockets_raise_pyzmqs_error(journal, ctx, endpoint) -> None:
    def scenario(make: Make, addr: str) -> list[Any]:
        s = make(zmq.PUSH)
        s.close(linger=0)
        out: list[Any] = [s.closed]
        for call in (lambda: s.send(b"x"), lambda: s.recv(), lambda: s.send_multipart([b"x"])):
            with pytest.raises(zmq.ZMQError) as info:
                call()
            out.append(info.value.errno)
        s.close()  # idempotent
        return out

    assert run_both(journal, ctx, endpoint, scenario)[1] == errno.ENOTSOCK


def test_repr_is_pyzmqs_and_says_journaled(journal, ctx) -> None:
    """Code that reads a socket's repr sees pyzmq's (the application's own class); a log still tells it is journaled."""

    class Mine(zmq.Socket):
        pass

    actx = zmq.asyncio.Context()
    cases = [
        (ctx.socket(zmq.PUSH), "zmq.Socket(zmq.PUSH)"),
        (ctx.socket(zmq.PULL, socket_class=Mine), f"{__name__}.Mine(zmq.PULL)"),
        (actx.socket(zmq.DEALER), "zmq.asyncio.Socket(zmq.DEALER)"),
    ]
    for plain, shown in cases:
        assert repr(plain).startswith(f"<{shown} at ")
        sock = journal.wrap(plain, name="\x1b[2Jorders")
        assert repr(sock) == f"<{shown} at {hex(id(sock))} journaled name='\\x1b[2Jorders'>"
        sock.close()
        assert repr(sock).endswith("journaled name='\\x1b[2Jorders' closed>")
    actx.term()


def test_sending_str_raises_pyzmqs_type_error(journal, ctx, endpoint) -> None:
    def scenario(make: Make, addr: str) -> list[Any]:
        pull, push = connected(make, addr, zmq.PULL, zmq.PUSH)
        out = []
        for call in (lambda: push.send("text"), lambda: push.send_multipart([b"ok", "text"])):
            with pytest.raises(TypeError) as info:
                call()
            out.append(type(info.value))
        push.send(b"after")
        out.append(pull.recv())
        return out

    assert run_both(journal, ctx, endpoint, scenario)[-1] == b"after"
