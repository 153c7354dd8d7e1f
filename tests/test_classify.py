"""Must-save vs ephemeral: the classifier decides what reaches the disk."""

from __future__ import annotations

import pytest
import zmq

import zjournal
from zjournal.sockets.policy import compile_classifier


def connect(journal, ctx, addr, **options):
    pull = journal.wrap(ctx.socket(zmq.PULL), name="in", **options)
    push = journal.wrap(ctx.socket(zmq.PUSH), name="out", **options)
    pull.bind(addr)
    push.connect(addr)
    return pull, push


def test_socket_wide_ephemeral_writes_nothing_but_counts(journal, ctx, endpoint) -> None:
    pull, push = connect(journal, ctx, endpoint(), classify="ephemeral")
    for i in range(5):
        push.send(b"%d" % i)
    assert [pull.recv() for _ in range(5)] == [b"0", b"1", b"2", b"3", b"4"]
    assert journal.count() == 0
    assert journal.count_ephemeral("out") == 5 and journal.count_ephemeral("in") == 5
    assert journal.count_ephemeral() == 10


def test_prefix_rules_longest_match_wins(journal, ctx, endpoint) -> None:
    rules = {b"order.": "durable", b"order.debug.": "ephemeral", "": "ephemeral"}
    pull, push = connect(journal, ctx, endpoint(), classify=rules)
    for topic in (b"order.new", b"order.debug.trace", b"heartbeat"):
        push.send_multipart([topic, b"payload"])
    assert journal.count(name="out") == 1
    assert [e.frames[0] for e in journal.entries(name="out")] == [b"order.new"]
    assert pull.recv_multipart()[0] == b"order.new"
    assert [e.frames[0] for e in journal.entries(name="in")] == [b"order.new"]
    assert [pull.recv_multipart()[0] for _ in range(2)] == [b"order.debug.trace", b"heartbeat"]
    assert journal.count(name="in") == 0  # the durable one was acked by asking for the next


def test_unmatched_prefix_is_durable_by_default(journal, ctx, endpoint) -> None:
    _pull, push = connect(journal, ctx, endpoint(), classify={b"log.": "ephemeral"})
    push.send(b"log.x")
    push.send(b"payment")
    assert [e.frames for e in journal.entries(name="out")] == [[b"payment"]]


def test_callable_classifier_sees_the_body(journal, ctx, endpoint) -> None:
    router = journal.wrap(ctx.socket(zmq.ROUTER), name="r", classify=lambda body: body[-1] != b"drop")
    addr = endpoint()
    router.bind(addr)
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(addr)
    dealer.send_multipart([b"keep"])
    dealer.send_multipart([b"drop"])
    router.recv_multipart()
    assert [e.body for e in journal.entries(name="r")] == [[b"keep"]]
    router.recv_multipart()
    assert journal.count(name="r") == 0 and journal.count_ephemeral("r") == 1


def test_classifier_forms() -> None:
    assert compile_classifier(None) is None
    assert compile_classifier("durable") is None
    assert compile_classifier(zjournal.MessageClass.EPHEMERAL)([b"x"]) is False
    assert compile_classifier(lambda f: True)([b"x"]) is True
    with pytest.raises(zjournal.InvalidArgumentError):
        compile_classifier(lambda f: "sometimes")([b"x"])
    with pytest.raises(zjournal.InvalidArgumentError):
        compile_classifier(42)


@pytest.mark.parametrize("prefetch", [0, 8])
def test_last_id_is_0_after_an_ephemeral_message_so_ack_never_takes_an_earlier_one(
    journal, ctx, endpoint, prefetch
) -> None:
    rules = {b"order.": "durable", "": "ephemeral"}
    pull = journal.wrap(ctx.socket(zmq.PULL), name="in", classify=rules, ack="explicit", prefetch=prefetch)
    push = journal.wrap(ctx.socket(zmq.PUSH), name="out", classify=rules)
    pull.bind(addr := endpoint())
    push.connect(addr)
    push.send(b"order.1")
    assert push.last_id > 0
    push.send(b"tick")
    assert push.last_id == 0
    assert pull.recv() == b"order.1"
    order = pull.last_id
    assert order > 0
    assert pull.recv() == b"tick"
    assert pull.last_id == 0
    with pytest.raises(zjournal.UnknownEntryError):
        pull.ack()  # nothing to ack: the order stays pending for its own ack
    assert journal.get(order).state == zjournal.State.PENDING
    assert pull.ack(order)
