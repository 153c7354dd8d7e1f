"""A journaled receiver's MAXMSGSIZE holds for the application's frames, not for a confirm sender's header.

libzmq checks every frame against MAXMSGSIZE (inproc does not: these tests
use ipc) and disconnects a peer that sends a larger one. A confirm=True
sender merges its header into a one-frame message, so a message within the
receiver's limit could be refused for zjournal's bytes, and every resend of
it too: the journaled receiver gives libzmq a header more and holds the
frames to the application's limit itself (zjournal.sockets.frame_limit).
"""

from __future__ import annotations

import logging

import pytest
import zmq
from test_socket_confirm_refusal import TIMEOUT, _nothing_more_comes

from zjournal.sockets import confirm_wire

LIMIT = 1000


def _ipc(tmp_path, name: str = "data") -> str:
    return f"ipc://{tmp_path}/{name}"


def _pair(open_journal, tmp_path, ctx, kinds=(zmq.PUSH, zmq.PULL), limit_before_wrap=False, **options):
    """A confirm sender and a journaled receiver whose MAXMSGSIZE is LIMIT, connected over ipc."""
    sender = open_journal(str(tmp_path / "s"))
    receiver = open_journal(str(tmp_path / "r"))
    raw = ctx.socket(kinds[1])
    if limit_before_wrap:
        raw.maxmsgsize = LIMIT
    sock = receiver.wrap(raw, name="in", **options)
    if not limit_before_wrap:
        sock.maxmsgsize = LIMIT
    sock.bind(_ipc(tmp_path))
    out = sender.wrap(ctx.socket(kinds[0]), name="out", confirm=True, confirm_timeout=TIMEOUT)
    out.connect(_ipc(tmp_path))
    sock.rcvtimeo = 5000
    return sender, out, sock


@pytest.mark.parametrize("limit_before_wrap", [False, True], ids=["set-after-wrap", "set-before-wrap"])
@pytest.mark.parametrize("kinds", [(zmq.PUSH, zmq.PULL), (zmq.DEALER, zmq.ROUTER)], ids=["push-pull", "dealer-router"])
def test_a_confirm_senders_message_as_large_as_the_receivers_maxmsgsize_arrives(
    open_journal, tmp_path, ctx, kinds, limit_before_wrap
) -> None:
    _sender, out, sock = _pair(open_journal, tmp_path, ctx, kinds, limit_before_wrap)
    message = b"m" * LIMIT  # merged with its header, a frame larger than LIMIT on the wire
    out.send(message)
    got = sock.recv_multipart()
    assert got[-1] == message and len(got) == (2 if kinds[1] == zmq.ROUTER else 1)
    assert out.wait_confirmed(timeout=5) is True
    assert sock.maxmsgsize == LIMIT  # what the application set, not what libzmq was given
    assert zmq.Socket.get(sock, zmq.MAXMSGSIZE) == LIMIT + confirm_wire.MAX_HEADER_BYTES


@pytest.mark.parametrize("options", [{}, {"prefetch": 8}, {"ack": "explicit"}], ids=["next", "prefetch", "explicit"])
def test_a_confirm_senders_message_over_the_receivers_maxmsgsize_is_dropped_and_refused(
    open_journal, tmp_path, ctx, options, caplog
) -> None:
    sender, out, sock = _pair(open_journal, tmp_path, ctx, **options)
    out.send(b"before")
    out.send(b"o" * (LIMIT + 1))  # within libzmq's limit (a header more), over the application's
    out.send(b"after")
    with caplog.at_level(logging.WARNING, logger="zjournal"):
        assert [sock.recv(), sock.recv()] == [b"before", b"after"]  # as libzmq would: never handed over
    assert out.wait_confirmed(timeout=5) is False  # refused: a dead letter, not resent for ever
    (dead,) = sender.entries(name="out", state="dead")
    assert dead.frames == [b"o" * (LIMIT + 1)]
    assert "MAXMSGSIZE (1,000 bytes)" in dead.reason
    assert sender.count(name="out", state="pending", direction="out") == 0
    assert _nothing_more_comes(sock)
    assert any("dropped a message" in r.getMessage() for r in caplog.records)


def test_a_plain_senders_frames_over_maxmsgsize_are_dropped_with_their_message(open_journal, tmp_path, ctx) -> None:
    """Within the header libzmq allows more, over the application's limit: dropped whole, as libzmq would
    have dropped them; frame by frame, the application never sees the first frame of such a message."""
    receiver = open_journal(str(tmp_path / "r"))
    pull = receiver.wrap(ctx.socket(zmq.PULL), name="in")
    pull.maxmsgsize = LIMIT
    pull.bind(_ipc(tmp_path))
    pull.rcvtimeo = 5000
    push = ctx.socket(zmq.PUSH)
    push.connect(_ipc(tmp_path))
    push.send(b"x" * (LIMIT + 1))
    push.send_multipart([b"first", b"y" * (LIMIT + 10)])
    push.send_multipart([b"ok", b"z" * LIMIT])
    assert pull.recv() == b"ok"  # frame by frame
    assert pull.rcvmore
    assert pull.recv() == b"z" * LIMIT
    assert receiver.count(name="in") == 1  # the dropped ones were never journaled


def test_a_poll_does_not_report_a_message_dropped_for_its_size(open_journal, tmp_path, ctx) -> None:
    sender, out, sock = _pair(open_journal, tmp_path, ctx)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    out.send(b"o" * (LIMIT + 1))
    assert poller.poll(500) == []  # read and dropped in it: a recv after it would wait for the next message
    out.send(b"o" * (LIMIT + 2))
    assert sock.poll(500) == 0
    assert out.wait_confirmed(5) is False  # both refused, by the polls (nothing else read them)
    assert sender.count(name="out", state="dead") == 2
    out.send(b"next")
    assert poller.poll(5000) == [(sock, zmq.POLLIN)]
    assert sock.recv() == b"next"


def test_maxmsgsize_minus_one_lifts_the_limit_and_the_receiver_takes_its_fast_path_again(
    open_journal, tmp_path, ctx
) -> None:
    _sender, _out, sock = _pair(open_journal, tmp_path, ctx)
    assert sock._s.fast_in is None  # the limit is held on the general path
    sock.maxmsgsize = -1
    assert sock.maxmsgsize == -1 and zmq.Socket.get(sock, zmq.MAXMSGSIZE) == -1
    assert sock._s.fast_in is not None


def test_a_sending_sockets_maxmsgsize_is_libzmqs(open_journal, tmp_path, ctx) -> None:
    journal = open_journal(str(tmp_path / "j"))
    push = journal.wrap(ctx.socket(zmq.PUSH), name="out")
    push.maxmsgsize = LIMIT  # a PUSH receives nothing: no header to allow for
    assert push.maxmsgsize == LIMIT == zmq.Socket.get(push, zmq.MAXMSGSIZE)


def test_an_asyncio_receiver_holds_its_maxmsgsize_too(open_journal, tmp_path) -> None:
    import asyncio

    import zmq.asyncio

    async def run() -> list[bytes]:
        ctx = zmq.asyncio.Context()
        try:
            receiver = open_journal(str(tmp_path / "r"))
            pull = receiver.wrap(ctx.socket(zmq.PULL), name="in")
            pull.maxmsgsize = LIMIT
            assert pull.maxmsgsize == LIMIT
            pull.bind(_ipc(tmp_path))
            push = ctx.socket(zmq.PUSH)
            push.connect(_ipc(tmp_path))
            for message in (b"x" * (LIMIT + 1), b"a" * LIMIT, b"x" * (LIMIT + 2), b"b"):
                await push.send(message)
            return [await asyncio.wait_for(pull.recv(), 5) for _ in range(2)]
        finally:
            ctx.destroy(linger=0)

    assert asyncio.run(run()) == [b"a" * LIMIT, b"b"]


def test_over_inproc_a_frame_larger_than_libzmqs_own_limit_arrives_as_with_plain_pyzmq(
    open_journal, tmp_path, ctx, endpoint
) -> None:
    """libzmq checks no frame that comes over inproc: only one within the header's allowance is dropped."""
    receiver = open_journal(str(tmp_path / "r"))
    pull = receiver.wrap(ctx.socket(zmq.PULL), name="in")
    pull.maxmsgsize = LIMIT
    where = endpoint()
    pull.bind(where)
    pull.rcvtimeo = 5000
    push = ctx.socket(zmq.PUSH)
    push.connect(where)
    huge = b"h" * (LIMIT + confirm_wire.MAX_HEADER_BYTES + 1)
    for message in (b"x" * (LIMIT + 1), huge, b"ok"):
        push.send(message)
    assert [pull.recv(), pull.recv()] == [huge, b"ok"]


def test_live_messages_over_the_limit_during_a_redelivery_are_dropped_too(
    journal_path, open_journal, ctx, tmp_path
) -> None:
    """A live message that overtakes redelivered ones is journaled behind them (Redelivering._hold_behind)."""
    from test_socket_redelivery import leave_pending

    pending = 1000  # more than a redelivery window: live messages come in while it lasts
    leave_pending(journal_path, "in", [[b"old%05d" % i] for i in range(pending)])
    journal = open_journal()
    pull = journal.wrap(ctx.socket(zmq.PULL), name="in")
    pull.maxmsgsize = LIMIT
    pull.bind(_ipc(tmp_path))
    push = ctx.socket(zmq.PUSH)
    push.connect(_ipc(tmp_path))
    got = [pull.recv() for _ in range(3)]
    for message in (b"new0", b"x" * (LIMIT + 1), b"new1"):
        push.send(message)
    while pull.poll(500):
        got.append(pull.recv())
    assert got == [b"old%05d" % i for i in range(pending)] + [b"new0", b"new1"]
