"""A message the receiving journal will never take (larger than its ``max_message_size``).

The receiver's application gets one MessageTooLargeError in the message's
place, as without confirms, and nothing else it was sent is lost. A
``confirm=True`` sender is told at once (a refusal: zjournal.sockets.confirm_wire)
and makes the message a dead letter with the reason, rather than send it
again every ``confirm_timeout`` for ever, each time refused again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import zmq
import zmq.utils.monitor

import zjournal
from zjournal.sockets import confirm_wire as wire

LIMIT = 1000
BIG = b"b" * 5000
TIMEOUT = 0.3  # confirm_timeout: a resend would come within it


def _receive(sock: zmq.Socket, want: int, multipart: bool) -> list:
    """What the application gets for ``want`` messages: each message, or the error raised in its place."""
    sock.rcvtimeo = 5000  # (zmq.Again, not a hang, when one is lost)
    got: list = []
    while len(got) < want:
        try:
            got.append(sock.recv_multipart() if multipart else sock.recv())
        except zjournal.MessageTooLargeError as e:
            got.append(e)
    return got


def _nothing_more_comes(sock: zmq.Socket) -> bool:
    """No resend (nor anything else) within three confirm timeouts."""
    sock.rcvtimeo = int(3 * TIMEOUT * 1000)
    try:
        sock.recv_multipart()
    except zmq.Again:
        return True
    except zjournal.MessageTooLargeError:
        return False
    return False


@pytest.mark.parametrize(
    ("options", "multipart"),
    [({}, False), ({"ack": "explicit"}, False), ({"prefetch": 16}, False), ({}, True)],
    ids=["next", "explicit", "prefetch", "multipart"],
)
def test_a_message_too_large_for_the_receiving_journal_becomes_the_senders_dead_letter(
    open_journal, tmp_path, ctx, endpoint, options, multipart
) -> None:
    sender = open_journal(str(tmp_path / "s"))
    receiver = open_journal(str(tmp_path / "r"), max_message_size=LIMIT)
    push = sender.wrap(ctx.socket(zmq.PUSH), name="out", confirm=True, confirm_timeout=TIMEOUT)
    pull = receiver.wrap(ctx.socket(zmq.PULL), name="in", **options)
    where = endpoint()
    pull.bind(where)
    push.connect(where)
    messages = [[b"s1"], [BIG], [b"s2"], [b"s3"]] if not multipart else [[b"s1", b"x"], [BIG, b"x"], [b"s2", b"x"]]
    for message in messages:
        push.send_multipart(message) if multipart else push.send(message[0])
    time.sleep(0.1)  # all queued: a receiver that reads ahead takes them in one batch

    got = _receive(pull, len(messages), multipart)

    expected = [m if multipart else m[0] for m in messages]
    assert got[:1] + got[2:] == expected[:1] + expected[2:]  # in order, nothing lost
    assert isinstance(got[1], zjournal.MessageTooLargeError)  # in the refused one's place
    assert (got[1].size, got[1].limit) == (sum(len(f) for f in messages[1]), LIMIT)
    assert push.wait_confirmed(timeout=5) is False  # a dead letter was made: not everything was confirmed
    assert sender.count(name="out", state="pending", direction="out") == 0
    (dead,) = sender.entries(name="out", state="dead")
    assert dead.frames == messages[1]
    assert dead.reason == f"refused by the receiving journal: {got[1]}"
    assert _nothing_more_comes(pull)  # not sent again
    assert receiver.count(name="in", state="dead") == 0


def test_a_router_refuses_a_confirm_dealers_message_too_large_for_its_journal(open_journal, tmp_path, ctx, endpoint):
    sender = open_journal(str(tmp_path / "s"))
    receiver = open_journal(str(tmp_path / "r"), max_message_size=LIMIT)
    dealer = sender.wrap(ctx.socket(zmq.DEALER), name="out", confirm=True, confirm_timeout=TIMEOUT)
    router = receiver.wrap(ctx.socket(zmq.ROUTER), name="in")
    where = endpoint()
    router.bind(where)
    dealer.connect(where)
    dealer.send_multipart([BIG])
    dealer.send_multipart([b"small"])
    got = _receive(router, 2, multipart=True)
    assert isinstance(got[0], zjournal.MessageTooLargeError) and got[1][1:] == [b"small"]
    assert dealer.wait_confirmed(timeout=5) is False
    assert [e.frames for e in sender.entries(name="out", state="dead")] == [[BIG]]
    assert _nothing_more_comes(router)


def test_a_plain_senders_message_too_large_in_a_batch_read_ahead_takes_nothing_else_with_it(
    open_journal, tmp_path, ctx, endpoint
) -> None:
    """Journaling a batch with the too-large message in it refused them all (and they were out of libzmq)."""
    receiver = open_journal(str(tmp_path / "r"), max_message_size=LIMIT)
    push = ctx.socket(zmq.PUSH)
    pull = receiver.wrap(ctx.socket(zmq.PULL), name="in", prefetch=16)
    where = endpoint()
    pull.bind(where)
    push.connect(where)
    for message in (b"s1", BIG, b"s2", BIG, b"s3"):
        push.send(message)
    time.sleep(0.1)

    got = _receive(pull, 5, multipart=False)

    assert [type(g).__name__ if isinstance(g, Exception) else g for g in got] == [
        b"s1",
        "MessageTooLargeError",
        b"s2",
        "MessageTooLargeError",
        b"s3",
    ]
    assert receiver.count(name="in", state="pending") == 1  # s3, in hand
    push.close(0)


def test_a_confirm_clients_request_too_large_for_the_queue_device_becomes_its_dead_letter(
    open_journal, tmp_path, ctx, endpoint
) -> None:
    device_journal = open_journal(str(tmp_path / "d"), max_message_size=LIMIT)
    client_journal = open_journal(str(tmp_path / "c"))
    front, back = endpoint(), endpoint()
    frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    frontend.bind(front)
    backend.bind(back)
    queue = zjournal.Queue(frontend, backend, device_journal)
    queue.start()
    # Each frame under the limit (the device's libzmq disconnects a peer that sends a larger frame), the whole over it.
    too_large = [b"", b"a" * 600, b"b" * 600]
    try:
        client = client_journal.wrap(ctx.socket(zmq.DEALER), name="out", confirm=True, confirm_timeout=TIMEOUT)
        client.connect(front)
        worker = ctx.socket(zmq.DEALER)
        worker.connect(back)
        client.send_multipart(too_large)
        client.send_multipart([b"", b"small"])
        worker.rcvtimeo = 5000
        assert worker.recv_multipart()[-1] == b"small"  # the device forwards the one that fits, its header off
        assert client.wait_confirmed(timeout=5) is False
        (dead,) = client_journal.entries(name="out", state="dead")
        assert dead.frames == too_large
        assert dead.reason.startswith("refused by the receiving journal: message of 1,2")  # (with the routing id)
        assert dead.reason.endswith("larger than the journal's max_message_size (1,000 bytes)")
        assert queue.stats.causes.get("request too large") == 1
        worker.close(0)
    finally:
        queue.stop(drain_timeout=1)


def test_a_refusal_carries_its_reason_and_only_printable_characters_of_it() -> None:
    origin = b"\x07" * 16
    frames = wire.encode_refusal(origin, [3, 9], "too large \x1b[31mred\x1b[0m\n")
    assert wire.parse_refusal(frames) == (origin, [3, 9], "too large [31mred[0m")
    assert wire.parse_confirms(frames) is None  # a sender that knows no refusals ignores them
    assert wire.parse_refusal(wire.encode_confirms(origin, [3])) is None
    assert wire.parse_refusal([*frames[:2], b"x" * (wire.MAX_REASON_BYTES + 1)]) is None
    long_reason = wire.encode_refusal(origin, [1], "é" * wire.MAX_REASON_BYTES)[2]
    assert len(long_reason) <= wire.MAX_REASON_BYTES and long_reason.decode() == "é" * (wire.MAX_REASON_BYTES // 2)


def _forwarded(worker: zmq.Socket) -> list[bytes] | None:
    try:
        return worker.recv_multipart()
    except zmq.Again:
        return None


def _frame_limit_holds_for_plain_clients_not_for_a_confirm_header(ctx, front: str, worker: zmq.Socket, journal) -> None:
    """A confirm client's request of LIMIT - 10 bytes in one frame, its header merged in front, goes through;
    a plain client's frame over the limit is refused by libzmq (the client disconnected, nothing forwarded)."""
    client = journal.wrap(ctx.socket(zmq.DEALER), name="out", confirm=True, confirm_timeout=TIMEOUT)
    client.connect(front)
    plain = ctx.socket(zmq.DEALER)
    monitor = plain.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    plain.connect(front)
    worker.rcvtimeo = 3000
    client.send(b"c" * (LIMIT - 10))
    got = _forwarded(worker)
    assert got is not None and got[-1] == b"c" * (LIMIT - 10)
    assert client.wait_confirmed(timeout=5) is True
    plain.send(b"p" * (LIMIT + wire.MAX_HEADER_BYTES + 1))
    monitor.rcvtimeo = 5000
    assert zmq.utils.monitor.recv_monitor_message(monitor)["event"] == zmq.EVENT_DISCONNECTED  # by libzmq
    worker.rcvtimeo = 500
    assert _forwarded(worker) is None
    plain.disable_monitor()
    monitor.close(0)
    plain.close(0)


def test_the_devices_frame_limit_lets_a_confirm_clients_merged_header_through(open_journal, tmp_path, ctx) -> None:
    device_journal = open_journal(str(tmp_path / "d"), max_message_size=LIMIT)
    front, back = f"ipc://{tmp_path}/f", f"ipc://{tmp_path}/b"  # (not inproc: libzmq limits frames it decodes)
    frontend, backend = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    backend.bind(back)
    queue = zjournal.Queue(frontend, backend, device_journal)
    frontend.bind(front)  # after the Queue set MAXMSGSIZE: libzmq applies it to endpoints bound afterwards
    queue.start()
    worker = ctx.socket(zmq.DEALER)
    worker.connect(back)
    try:
        _frame_limit_holds_for_plain_clients_not_for_a_confirm_header(
            ctx, front, worker, open_journal(str(tmp_path / "c"))
        )
    finally:
        worker.close(0)
        queue.stop(drain_timeout=1)


def test_the_device_command_limits_frames_on_its_frontend(open_journal, tmp_path, ctx) -> None:
    """``zjournal device --max-message-size`` sets the frame limit before it binds (set after, libzmq ignores it)."""
    front, back = f"ipc://{tmp_path}/f", f"ipc://{tmp_path}/b"
    command = [sys.executable, "-m", "zjournal.cli", "device", str(tmp_path / "d"), "--frontend", front]
    proc = subprocess.Popen(
        [*command, "--backend", back, "--max-message-size", str(LIMIT), "--drain-timeout", "0.2"],
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = ctx.socket(zmq.DEALER)
    try:
        assert proc.stdout.readline().strip() == "ready"
        worker.connect(back)
        _frame_limit_holds_for_plain_clients_not_for_a_confirm_header(
            ctx, front, worker, open_journal(str(tmp_path / "c"))
        )
    finally:
        worker.close(0)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
