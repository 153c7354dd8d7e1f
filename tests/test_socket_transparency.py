"""Through the wrapper, sockets behave exactly as pyzmq's: same results, same errors.

Every scenario runs twice, once on plain pyzmq sockets and once on journaled
ones, and the observable results must be equal.
"""

from __future__ import annotations

import errno
import pickle
import time
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


def _frame_by_frame(sock: zmq.Socket) -> list[zmq.Frame]:
    """pyzmq's own idiom: recv(copy=False) until a frame says no more parts follow."""
    frames = [sock.recv(copy=False)]
    while frames[-1].more:
        frames.append(sock.recv(copy=False))
    return frames


def _told(frame: zmq.Frame) -> tuple[bytes, bool, int, str, str]:
    """What pyzmq code reads off a received frame: bytes, more flag, and the connection's properties."""
    return (frame.bytes, frame.more, frame.get(zmq.MORE), frame.get("Socket-Type"), frame["X-App"])


# sender, receiver, confirm=True on the sender: every receiver a journal reads in a way of its own
# (a REQ has no confirm=True: its reply confirms it)
_CASES = [
    (sender, receiver, confirm)
    for sender, receiver in [
        ("PUSH", "PULL"),
        ("DEALER", "ROUTER"),
        ("ROUTER", "DEALER"),
        ("PAIR", "PAIR"),
        ("REQ", "REP"),
        ("DEALER", "DEALER"),
    ]
    for confirm in (False, True)
    if not (confirm and sender == "REQ")
]


def _exchange(
    open_journal, tmp_path, ctx, sender_type: str, receiver_type: str, journaled: bool, **receiver_options: Any
) -> list[Any]:
    """Two messages read frame by frame and one with recv_multipart, all copy=False: what their frames tell."""
    confirm = receiver_options.pop("confirm", False)
    sender = ctx.socket(getattr(zmq, sender_type))
    receiver = ctx.socket(getattr(zmq, receiver_type))
    sender.setsockopt(zmq.METADATA, b"X-App:orders")
    sender.setsockopt(zmq.ROUTING_ID, b"sender")
    receiver.setsockopt(zmq.ROUTING_ID, b"receiver")
    if sender_type == "ROUTER":
        sender.router_mandatory = True
    if journaled:
        sender = open_journal(str(tmp_path / "sender")).wrap(sender, name="out", confirm=confirm)
        receiver = open_journal(str(tmp_path / "receiver")).wrap(receiver, name="in", **receiver_options)
    port = receiver.bind_to_random_port("tcp://127.0.0.1")
    sender.connect(f"tcp://127.0.0.1:{port}")
    envelope = [b"receiver"] if sender_type == "ROUTER" else []
    told = []
    for message in ([b"a" * 100, b"b", b"c"], [b"one frame"]):
        while True:  # a ROUTER can send once the connection is up
            try:
                sender.send_multipart(envelope + message)
                break
            except zmq.ZMQError as e:
                assert e.errno == zmq.EHOSTUNREACH
                time.sleep(0.01)
        told.append([_told(frame) for frame in _frame_by_frame(receiver)])
        if sender_type == "REQ":
            receiver.send(b"reply")
            sender.recv()
    sender.send_multipart([*envelope, b"x", b"y"])
    told.append([_told(frame) for frame in receiver.recv_multipart(copy=False)])
    sender.close(0)
    receiver.close(0)
    return told


@pytest.mark.parametrize(
    ("sender_type", "receiver_type", "confirm"),
    _CASES,
    ids=[f"{s}->{r}{'-confirm' if c else ''}" for s, r, c in _CASES],
)
def test_frames_received_with_copy_false_tell_more_and_the_connections_properties(
    open_journal, tmp_path, ctx, sender_type, receiver_type, confirm
) -> None:
    """A frame from recv(copy=False) says what libzmq's would: ``more`` (code looping on it reads
    whole messages) and the peer's properties (Socket-Type, ZMTP metadata such as a CURVE User-Id),
    also when the journal made the frame (a confirm header taken off, a message read whole)."""
    expected = _exchange(open_journal, tmp_path, ctx, sender_type, receiver_type, journaled=False)
    got = _exchange(open_journal, tmp_path, ctx, sender_type, receiver_type, journaled=True, confirm=confirm)
    assert got == expected
    assert expected[1][-1][1:] == (False, 0, sender_type, "orders")  # (what the comparison is about)


@pytest.mark.parametrize("confirm", [False, True], ids=["plain", "confirm"])
@pytest.mark.parametrize("options", [{"prefetch": 64}, {"ack": "explicit"}], ids=["prefetch", "explicit"])
def test_frames_read_ahead_tell_more_and_the_connections_properties(
    open_journal, tmp_path, ctx, options, confirm
) -> None:
    """The same for messages a receiver read ahead (``prefetch``, or ``ack="explicit"`` facing a confirm sender)."""
    expected = _exchange(open_journal, tmp_path, ctx, "PUSH", "PULL", journaled=False)
    got = _exchange(open_journal, tmp_path, ctx, "PUSH", "PULL", journaled=True, confirm=confirm, **options)
    assert got == expected


@pytest.mark.parametrize("kind", ["PULL", "DEALER", "PAIR", "REP"])
def test_frames_redelivered_with_copy_false_tell_more_and_no_connection(journal, ctx, kind) -> None:
    """Messages redelivered from the journal at startup, read frame by frame with copy=False: whole
    messages by their ``more`` flags; they came over no connection, so a property raises pyzmq's EINVAL."""
    messages = [[b"a", b"b", b"c"], [b"one frame"]]
    for message in messages:
        journal.append("in", message, direction="in")
    sock = journal.wrap(ctx.socket(getattr(zmq, kind)), name="in")
    sock.bind("tcp://127.0.0.1:*")
    for message in messages:
        frames = _frame_by_frame(sock)
        assert [frame.bytes for frame in frames] == message
        assert [frame.get(zmq.MORE) for frame in frames] == [1] * (len(message) - 1) + [0]
        with pytest.raises(zmq.ZMQError) as info:
            frames[0].get("Peer-Address")
        assert info.value.errno == errno.EINVAL
        if kind == "REP":
            sock.send(b"done")
