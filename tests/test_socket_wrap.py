"""Wrapping: what ``Journal.wrap`` returns, names, contexts and refusals."""

from __future__ import annotations

import pytest
import zmq

import zjournal


def test_wrap_returns_a_real_zmq_socket_sharing_the_handle(journal, ctx) -> None:
    raw = ctx.socket(zmq.PULL)
    sock = journal.wrap(raw, name="orders")
    assert isinstance(sock, zmq.Socket) and isinstance(sock, zjournal.JournaledSocket)
    assert sock.underlying == raw.underlying
    assert sock.type == zmq.PULL and sock.journal_name == "orders" and sock.journal is journal
    sock.close()
    assert sock.closed and raw.closed


def test_journal_socket_creates_and_wraps(journal, ctx) -> None:
    sock = journal.socket(ctx, zmq.PUSH, name="tasks")
    assert isinstance(sock, zjournal.JournaledSocket) and sock.type == zmq.PUSH
    assert sock.journal_name == "tasks"


def test_default_names_are_stable_and_readable(journal, ctx) -> None:
    a = journal.wrap(ctx.socket(zmq.PULL))
    b = journal.wrap(ctx.socket(zmq.PULL))
    c = journal.wrap(ctx.socket(zmq.ROUTER))
    assert (a.journal_name, b.journal_name, c.journal_name) == ("pull", "pull-2", "router")


def test_two_live_sockets_with_one_name_are_refused(journal, ctx) -> None:
    first = journal.wrap(ctx.socket(zmq.PULL), name="orders")
    with pytest.raises(zjournal.InvalidArgumentError, match="already journaled as 'orders'"):
        journal.wrap(ctx.socket(zmq.PULL), name="orders")
    first.close()
    journal.wrap(ctx.socket(zmq.PULL), name="orders")  # free again once closed


def test_wrapping_a_closed_or_wrapped_socket_or_non_socket_is_refused(journal, ctx) -> None:
    closed = ctx.socket(zmq.PULL)
    closed.close()
    with pytest.raises(zjournal.InvalidArgumentError, match="closed socket"):
        journal.wrap(closed)
    sock = journal.wrap(ctx.socket(zmq.PULL))
    with pytest.raises(zjournal.InvalidArgumentError, match="already journaled"):
        journal.wrap(sock)
    with pytest.raises(zjournal.InvalidArgumentError, match=r"takes a zmq\.Socket"):
        journal.wrap(object())


def test_bad_options_are_refused(journal, ctx) -> None:
    with pytest.raises(zjournal.InvalidArgumentError, match="unknown ack policy"):
        journal.wrap(ctx.socket(zmq.PULL), ack="whenever")
    with pytest.raises(zjournal.InvalidArgumentError, match="REQ and REP"):
        journal.wrap(ctx.socket(zmq.PULL), ack="reply")
    with pytest.raises(zjournal.InvalidArgumentError, match="sockets that receive"):
        journal.wrap(ctx.socket(zmq.PUSH), ack="next")
    with pytest.raises(zjournal.InvalidArgumentError, match="unknown message class"):
        journal.wrap(ctx.socket(zmq.PULL), classify="important")
    with pytest.raises(zjournal.InvalidArgumentError, match="max_attempts"):
        journal.wrap(ctx.socket(zmq.PULL), max_attempts=0)


def test_wrap_on_a_closed_journal_is_refused(journal, ctx) -> None:
    journal.close()
    with pytest.raises(zjournal.JournalClosedError):
        journal.wrap(ctx.socket(zmq.PULL))


def test_journaled_context_wraps_every_socket(journal, ctx, endpoint) -> None:
    jctx = journal.context(ctx, classify=None)
    pull = jctx.socket(zmq.PULL)
    push = jctx.socket(zmq.PUSH, name="sender")
    assert isinstance(pull, zjournal.JournaledSocket) and push.journal_name == "sender"
    addr = endpoint()
    pull.bind(addr)
    push.connect(addr)
    push.send(b"x")
    assert pull.recv() == b"x"
    assert journal.count(name="pull", direction="in") == 1
    assert jctx.underlying == ctx.underlying  # everything else is the context's


def test_bind_and_connect_context_managers_work(journal, ctx, endpoint) -> None:
    pull = journal.wrap(ctx.socket(zmq.PULL))
    push = journal.wrap(ctx.socket(zmq.PUSH))
    addr = endpoint()
    with pull.bind(addr), push.connect(addr):
        push.send(b"in-context")
        assert pull.recv() == b"in-context"


def test_closing_the_journal_settles_what_zeromq_took(open_journal, ctx, endpoint) -> None:
    j = open_journal()
    pull = ctx.socket(zmq.PULL)
    addr = endpoint()
    pull.bind(addr)
    push = j.wrap(ctx.socket(zmq.PUSH), name="out")
    push.connect(addr)
    push.send(b"one")
    assert j.count(name="out", state="pending") == 1  # its ack is folded into the next send
    j.close()
    j = open_journal()
    assert j.count(name="out") == 0


def test_wrapping_reads_no_entry_of_other_streams(journal, ctx, request) -> None:
    """What a socket takes up at wrap (a confirm sender's unconfirmed messages, a REQ's unanswered requests) is
    found from the counters first: a journal of 200,000 entries of other streams made each such wrap take 200 ms."""
    for _ in range(50):
        journal.append("backlog", [b"someone else's"], direction="out")
    read = request.getfixturevalue("records_read")  # (from now on)
    sockets = [
        journal.wrap(ctx.socket(zmq.PUSH), name="confirmed", confirm=True),
        journal.wrap(ctx.socket(zmq.REQ), name="requests", resend_after=1.0),
        journal.wrap(ctx.socket(zmq.PULL), name="work"),
    ]
    assert journal.replay("confirmed", into=ctx.socket(zmq.PUSH)) == 0
    assert read == []
    # (and a stream that has pending entries is still read: the backlog's go out)
    out, peer = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    out.linger = 0
    peer.bind("inproc://wrapping-reads")
    out.connect("inproc://wrapping-reads")
    assert journal.replay("backlog", into=out) == 50 and len(read) >= 50
    assert peer.recv() == b"someone else's"
    for sock in sockets:
        sock.close(linger=0)
