"""Pollers and the resends a receiving journal drops: a poll reports only what the application will get.

A resend of a message the journal holds already is dropped (and confirmed
again). libzmq holds it until it is read, so a poller asking libzmq alone
reported the socket readable, and a blocking ``recv`` after that poll waited
for the next message. The sender is played by a plain PUSH speaking the wire
format (zjournal.sockets.confirm_wire), so that the resend is exactly a resend.
"""

from __future__ import annotations

import time

import pytest
import zmq

from zjournal.sockets import confirm_wire as wire

ORIGIN = b"\x05" * 16


@pytest.fixture
def resending_peer(open_journal, ctx, endpoint, confirm_intake):
    """A journaled PULL or ROUTER (options as given), the plain PUSH or DEALER that plays a confirm sender into
    it, and ``send(seq, body)``: that sender's merged frame."""

    def make(receiving: int = zmq.PULL, **options):
        _confirms, address = confirm_intake(ORIGIN)
        sock = open_journal().wrap(ctx.socket(receiving), name="in", **options)
        where = endpoint()
        sock.bind(where)
        peer = ctx.socket(zmq.DEALER if receiving == zmq.ROUTER else zmq.PUSH)
        peer.connect(where)

        def send(seq: int, body: bytes) -> None:
            peer.send(wire.encode_merged(ORIGIN, seq, 1, address, body))

        return sock, peer, send

    return make


def _poll_by(how: str, sock: zmq.Socket):
    """``poll(timeout_ms) -> bool`` of ``sock`` the way ``how`` names: a zmq.Poller, zmq.select or sock.poll."""

    def poll(timeout_ms: int) -> bool:
        if how == "Poller":
            poller = zmq.Poller()
            poller.register(sock, zmq.POLLIN)
            return bool(poller.poll(timeout_ms))
        if how == "select":
            return bool(zmq.select([sock], [], [], timeout_ms / 1000)[0])
        return bool(sock.poll(timeout_ms))

    return poll


@pytest.mark.parametrize("how", ["Poller", "select", "sock.poll"])
@pytest.mark.parametrize("ack", ["next", "explicit"])
def test_a_poll_does_not_report_a_resend_held_already_and_waits_for_a_real_message(resending_peer, how, ack) -> None:
    pull, _push, send = resending_peer(ack=ack)
    send(1, b"one")
    assert pull.recv() == b"one"
    if ack == "explicit":
        pull.ack()
    send(1, b"one")  # its confirmation was lost: sent again
    time.sleep(0.1)  # queued in libzmq
    poll = _poll_by(how, pull)
    started = time.monotonic()
    assert not poll(300)  # the resend is not the application's
    assert time.monotonic() - started >= 0.25  # and the poll waited its timeout for a real message
    send(2, b"two")
    assert poll(5000)
    pull.rcvtimeo = 1000
    assert pull.recv() == b"two"  # at once, not after the next message


@pytest.mark.parametrize("ack", ["next", "explicit"])
def test_a_poll_acks_nothing_and_the_next_recv_gets_the_message_it_read(resending_peer, ack) -> None:
    """The poll reads what is queued to look past resends; the message in hand is done only at the next recv."""
    pull, _push, send = resending_peer(ack=ack)
    journal = pull.journal
    send(1, b"one")
    assert pull.recv() == b"one"
    send(2, b"two")
    send(3, b"three")
    time.sleep(0.1)
    assert pull.poll(1000) and pull.poll(0)  # (a second look reads nothing more)
    assert [e.frames[-1] for e in journal.entries(name="in", state="pending")][:1] == [b"one"]  # not acked
    assert pull.recv() == b"two" and pull.last_attempts == 1
    assert pull.recv_multipart() == [b"three"]
    pending = [e.frames for e in journal.entries(name="in", state="pending")]
    assert pending == ([[b"three"]] if ack == "next" else [[b"one"], [b"two"], [b"three"]])


def test_a_poll_looks_past_resends_of_several_frames_and_keeps_plain_messages_for_recv(
    open_journal, ctx, endpoint, confirm_intake
) -> None:
    _confirms, address = confirm_intake(ORIGIN)
    journal = open_journal()
    pull = journal.wrap(ctx.socket(zmq.PULL), name="in")
    where = endpoint()
    pull.bind(where)
    push = ctx.socket(zmq.PUSH)
    push.connect(where)

    def send_frames(seq: int, *frames: bytes) -> None:
        push.send_multipart([wire.encode_header(ORIGIN, seq, 1, address), *frames])

    send_frames(1, b"a", b"b")
    assert pull.recv_multipart() == [b"a", b"b"]
    send_frames(1, b"a", b"b")  # a resend of a message of two frames
    time.sleep(0.1)
    assert not pull.poll(200)
    push.send(b"plain")  # not a confirm sender's: kept for recv as it came
    assert pull.poll(5000)
    buffer = bytearray(10)
    assert pull.recv_into(buffer) == 5 and bytes(buffer[:5]) == b"plain"
    send_frames(2, b"c", b"d")
    assert pull.poll(5000)
    assert pull.recv() == b"c" and pull.get(zmq.RCVMORE) and pull.recv() == b"d"  # frame by frame, as sent
    assert journal.info()["confirm"]["duplicates_dropped"] == 1
    assert [e.frames for e in journal.entries(name="in", state="pending")] == [[b"c", b"d"]]
    push.send(b"left for close")
    assert pull.poll(5000)
    pull.close()  # (what a poll read and nobody received goes as libzmq's queue would: nothing hangs)
    push.close(0)


@pytest.fixture
def routing_peer(resending_peer):
    """A journaled ROUTER, a plain DEALER that speaks the wire format into it, and ``send(seq, body)``."""
    return resending_peer(zmq.ROUTER)


@pytest.mark.parametrize("how", ["Poller", "sock.poll"])
def test_a_router_polled_does_not_report_a_resend_held_already(routing_peer, how) -> None:
    """The general receive path (a ROUTER's), as the fast path above: the poll drops the resend and waits."""
    router, _dealer, send = routing_peer
    send(1, b"one")
    rid, body = router.recv_multipart()
    assert body == b"one"
    send(1, b"one")  # its confirmation was lost: sent again
    time.sleep(0.1)
    poll = _poll_by(how, router)
    started = time.monotonic()
    assert not poll(300)
    assert time.monotonic() - started >= 0.25
    send(2, b"two")
    assert poll(5000)
    router.rcvtimeo = 1000
    assert router.recv_multipart() == [rid, b"two"]
    assert router.journal.info()["confirm"]["duplicates_dropped"] == 1


def test_a_router_polled_keeps_the_message_it_read_whole_for_recv(routing_peer) -> None:
    """What the poll read is the next recv's, frame by frame or whole, journaled by it and not before."""
    router, dealer, send = routing_peer
    journal = router.journal
    send(1, b"one")
    assert router.poll(5000) and router.poll(0)  # (a second look reads nothing more)
    assert journal.count(name="in", state="pending") == 0  # not journaled by the poll
    rid = router.recv()
    assert router.get(zmq.RCVMORE) and router.recv() == b"one" and not router.get(zmq.RCVMORE)
    assert [e.frames[-1] for e in journal.entries(name="in", state="pending")] == [b"one"]
    dealer.send_multipart([b"plain", b"frames"])  # not a confirm sender's: kept as it came
    assert router.poll(5000)
    assert router.recv_multipart() == [rid, b"plain", b"frames"]
    dealer.send(b"left for close")
    assert router.poll(5000)
    router.close()  # (what a poll read and nobody received goes as libzmq's queue would)


def test_a_journaled_reqs_resend_read_by_a_poll_is_still_recognised(
    open_journal, ctx, tmp_path, confirm_intake
) -> None:
    """A ROUTER that also serves journaled REQs: the poll keeps the origin their connection announced."""
    _confirms, address = confirm_intake(ORIGIN)
    where = f"ipc://{tmp_path}/router"  # (a REQ's origin travels as connection metadata: not over inproc)
    router = open_journal(str(tmp_path / "server")).wrap(ctx.socket(zmq.ROUTER), name="in")
    router.bind(where)
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(where)
    dealer.send(wire.encode_merged(ORIGIN, 1, 1, address, b"one"))  # the ROUTER hears a confirm sender
    assert router.recv_multipart()[1:] == [b"one"]
    req = open_journal(str(tmp_path / "client")).wrap(ctx.socket(zmq.REQ), "client", resend_after=1.0)
    req.connect(where)
    req.send(b"slow")
    assert router.poll(5000)
    rid, empty, body = router.recv_multipart()
    assert (empty, body) == (b"", b"slow")
    assert req.poll(1300) == 0 and req.resent == 1  # a copy goes out while the client waits
    assert router.poll(2000)  # it reads the copy
    with pytest.raises(zmq.Again):
        router.recv_multipart(zmq.NOBLOCK)  # recognised as the request in hand: not handed over again
    assert router.resends_recognised == 1
    router.send_multipart([rid, b"", b"answer"])
    assert req.poll(2000) and req.recv() == b"answer"
