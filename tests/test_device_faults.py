"""The queue device keeps serving under hostile peers, a full disk, slow workers and bad settings.

Every case ends with a well-behaved client getting its reply through the
same device: a fault is only handled if the device still serves afterwards.
"""

from __future__ import annotations

import json
import math
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

import zjournal
from zjournal.device import report
from zjournal.sockets import confirm_wire


@pytest.fixture
def sockets(ctx, endpoint) -> Iterator[tuple[zmq.Socket, zmq.Socket, str, str]]:
    front, back = endpoint(), endpoint()
    fe = ctx.socket(zmq.ROUTER)
    fe.bind(front)
    be = ctx.socket(zmq.DEALER)
    be.bind(back)
    yield fe, be, front, back


def request(ctx: zmq.Context, front: str, body: bytes) -> zmq.Socket:
    client = ctx.socket(zmq.REQ)
    client.rcvtimeo = 3000
    client.connect(front)
    client.send(body)
    return client


def serve_one(worker: zmq.Socket, answer: bytes = b"ok") -> list[bytes]:
    """A correct DEALER worker's turn: echo the tag and envelope, answer the body."""
    assert worker.poll(3000), "the device forwarded nothing"
    frames = worker.recv_multipart()
    worker.send_multipart([*frames[:-1], answer])
    return frames


def eventually(check, seconds: float = 5.0) -> None:
    """Replies reach clients before their acks are written: wait for the journal to say so."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "never became true"
        time.sleep(0.01)


def pending_bodies(journal: zjournal.Journal) -> list[list[bytes]]:
    return [e.body for e in journal.entries(state="pending")]


def still_serving(ctx: zmq.Context, front: str, worker: zmq.Socket, queue: zjournal.Queue) -> None:
    client = request(ctx, front, b"health")
    serve_one(worker, b"healthy")
    assert client.recv() == b"healthy"
    client.close(0)
    assert queue._thread is not None and queue._thread.is_alive()


def test_hostile_clients_and_workers_are_dropped_counted_and_the_device_goes_on(open_journal, ctx, sockets) -> None:
    journal = open_journal(max_message_size=10_000)
    fe, be, front, back = sockets
    queue = zjournal.Queue(fe, be, journal, redeliver_after=None)
    queue.start()
    worker = ctx.socket(zmq.DEALER)
    worker.connect(back)
    # libzmq refuses a larger frame before reading it (a confirm=True client's header may be merged into it)
    assert fe.getsockopt(zmq.MAXMSGSIZE) == 10_000 + confirm_wire.MAX_HEADER_BYTES
    still_serving(ctx, front, worker, queue)

    # Clients: no body at all, a message over the limit in frames of their own, a look-alike tag.
    rogue = ctx.socket(zmq.DEALER)
    rogue.connect(front)
    rogue.send_multipart([b""])
    rogue.send_multipart([b"", *[b"x" * 5000] * 3])  # 15,000 bytes in frames under the per-frame limit
    rogue.send_multipart([b"zjq:" + struct.pack(">Q", 1), b"", b"looks like a tag"])
    forwarded = serve_one(worker)  # the look-alike is an ordinary request: its frame is its envelope
    assert forwarded[-1] == b"looks like a tag" and forwarded[0] != b"zjq:" + struct.pack(">Q", 1)
    still_serving(ctx, front, worker, queue)
    assert queue.stats.causes[report.REQUEST_WITHOUT_BODY] == 1
    assert queue.stats.causes[report.REQUEST_TOO_LARGE] == 1
    assert queue.stats.rejected == 2

    # Workers: no tag, a made-up tag, the tag alone, the envelope without a body, another request's tag.
    a, b = request(ctx, front, b"A"), request(ctx, front, b"B")
    got = {}
    for _ in range(2):
        assert worker.poll(3000)
        frames = worker.recv_multipart()
        got[frames[-1]] = frames
    tag_a, env_a = got[b"A"][0], got[b"A"][1:-1]
    tag_b, env_b = got[b"B"][0], got[b"B"][1:-1]
    worker.send_multipart([b"garbage", b"", b"x"])
    worker.send_multipart([b"zjq:" + struct.pack(">Q", 1) + bytes(8), *env_a, b"forged"])
    worker.send_multipart([tag_a])
    worker.send_multipart([tag_a, *env_a])
    worker.send_multipart([tag_b, *env_a, b"for A, under B's tag"])  # acks nothing; A gets what was meant for it
    assert a.recv() == b"for A, under B's tag"
    time.sleep(0.2)
    assert sorted(pending_bodies(journal)) == [[b"A"], [b"B"]]  # neither acked by a reply not its own
    worker.send_multipart([tag_b, *env_b, b"B's own"])
    assert b.recv() == b"B's own"
    causes = queue.stats.causes
    assert causes[report.REPLY_WITHOUT_TAG] == 1
    assert causes[report.REPLY_UNKNOWN_TAG] == 1
    assert causes[report.REPLY_EMPTY] == 2
    assert causes[report.REPLY_WRONG_ENVELOPE] == 1
    assert queue.stats.malformed == 5
    still_serving(ctx, front, worker, queue)
    queue.stop(0.2)
    assert pending_bodies(journal) == [[b"A"]]  # answered only under B's tag


def test_an_empty_reply_in_balancing_mode_is_dropped_and_the_worker_serves_on(journal, ctx, endpoint) -> None:
    front, back = endpoint(), endpoint()
    fe, be = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    fe.bind(front)
    be.bind(back)
    queue = zjournal.Queue(fe, be, journal, redeliver_after=None)
    queue.start()
    worker = ctx.socket(zmq.DEALER)
    worker.connect(back)
    worker.send_multipart([b"", b"READY"])
    client = request(ctx, front, b"job")
    assert worker.poll(3000)
    frames = worker.recv_multipart()
    worker.send_multipart([b""])  # an empty reply: the worker is free again, the request still waits
    client2 = request(ctx, front, b"job2")
    assert worker.poll(3000)
    second = worker.recv_multipart()
    worker.send_multipart([*second[:-1], b"done2"])
    assert client2.recv() == b"done2"
    assert queue.stats.causes[report.REPLY_EMPTY] == 1
    eventually(lambda: pending_bodies(journal) == [[b"job"]])
    assert frames[-1] == b"job" and client.poll(100) == 0
    queue.stop(0.2)


def test_a_ready_flood_costs_one_entry_for_its_worker(journal, ctx, endpoint) -> None:
    front, back = endpoint(), endpoint()
    fe, be = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    fe.bind(front)
    be.bind(back)
    queue = zjournal.Queue(fe, be, journal, redeliver_after=None)
    queue.start()
    worker = ctx.socket(zmq.DEALER)
    worker.sndhwm = 0
    worker.connect(back)
    for _ in range(20_000):
        worker.send_multipart([b"", b"READY"])
    deadline = time.monotonic() + 10
    while worker.getsockopt(zmq.EVENTS) & zmq.POLLOUT == 0 or time.monotonic() < deadline - 9:
        time.sleep(0.05)  # at least a second for the device to read the flood
    assert len(queue._ready) + len(queue._at_worker) == 1  # one entry for the one worker
    client = request(ctx, front, b"job")
    frames = serve_one(worker, b"done")
    assert frames[-1] == b"job" and client.recv() == b"done"
    queue.stop(0.2)


def test_a_slow_workers_reply_answers_its_client_after_the_request_went_dead(journal, ctx, sockets) -> None:
    fe, be, front, back = sockets
    queue = zjournal.Queue(fe, be, journal, max_attempts=1, redeliver_after=0.2)
    queue.start()
    worker = ctx.socket(zmq.REP)
    worker.connect(back)
    client = request(ctx, front, b"job")
    assert worker.recv() == b"job"
    deadline = time.monotonic() + 5
    while journal.count(state="dead") == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert journal.count(state="dead") == 1  # slower than redeliver_after, with no attempt left
    worker.send(b"done:job")
    assert client.recv() == b"done:job"
    eventually(lambda: journal.count(state="dead") == 0)  # answered after all: acked
    assert queue.stats.late == 1 and queue.stats.duplicates == 0 and journal.count(state="pending") == 0
    queue.stop(0.2)


def test_the_first_reply_of_any_delivery_answers_and_the_others_are_duplicates(journal, ctx, sockets) -> None:
    fe, be, front, back = sockets
    queue = zjournal.Queue(fe, be, journal, max_attempts=5, redeliver_after=0.2)
    queue.start()
    worker = ctx.socket(zmq.DEALER)
    worker.connect(back)
    client = request(ctx, front, b"job")
    assert worker.poll(3000)
    first = worker.recv_multipart()
    assert worker.poll(3000)  # sent again, 0.2 s later
    second = worker.recv_multipart()
    assert first == second
    worker.send_multipart([*first[:-1], b"from the first delivery"])
    assert client.recv() == b"from the first delivery"
    worker.send_multipart([*second[:-1], b"from the second"])
    eventually(lambda: queue.stats.duplicates == 1)
    assert queue.stats.replies == 1 and journal.count(state="pending") == 0
    queue.stop(0.2)


def test_after_a_restart_every_pending_request_goes_before_any_new_one(
    open_journal, journal_path, ctx, sockets
) -> None:
    fe, be, front, back = sockets
    journal = open_journal()
    first = zjournal.Queue(fe, be, journal, redeliver_after=None)
    first.start()
    old = ctx.socket(zmq.DEALER)
    old.sndhwm = 0
    old.connect(front)
    for i in range(10_000):
        old.send_multipart([b"", b"old-%05d" % i])
    deadline = time.monotonic() + 30
    while journal.count(state="pending") < 10_000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(first.stop(0).pending) == 10_000
    new = ctx.socket(zmq.DEALER)
    new.connect(front)
    for i in range(20):
        new.send_multipart([b"", b"new-%02d" % i])  # clients already waiting when the device comes back
    time.sleep(0.2)
    worker = ctx.socket(zmq.DEALER)
    worker.rcvhwm = 0
    worker.connect(back)
    second = zjournal.Queue(fe, be, journal, redeliver_after=None)
    second.start()
    seen = []
    while len(seen) < 10_020:
        assert worker.poll(5000), f"stalled after {len(seen)}"
        seen.append(worker.recv_multipart()[-1])
    second.stop(0)
    assert seen == [b"old-%05d" % i for i in range(10_000)] + [b"new-%02d" % i for i in range(20)]


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "1"])
def test_redeliver_after_must_be_a_finite_positive_number(journal, ctx, sockets, bad) -> None:
    fe, be, _, _ = sockets
    with pytest.raises(zjournal.InvalidArgumentError, match="redeliver_after"):
        zjournal.Queue(fe, be, journal, redeliver_after=bad)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_max_attempts_must_be_a_positive_integer(journal, ctx, sockets, bad) -> None:
    fe, be, _, _ = sockets
    with pytest.raises(zjournal.InvalidArgumentError, match="max_attempts"):
        zjournal.Queue(fe, be, journal, max_attempts=bad)


def zjournal_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "zjournal.cli", *args]


@pytest.mark.parametrize(
    "options",
    [
        ["--frontend", "tcp://127.0.0.1:70000", "--backend", "tcp://127.0.0.1:0"],
        ["--frontend", "tcp://127.0.0.1:0", "--backend", "inproc://nobody-else-can-reach-this"],
        ["--frontend", "tcp://127.0.0.1:0", "--backend", "tcp://127.0.0.1:0", "--redeliver-after", "nan"],
        ["--frontend", "tcp://127.0.0.1:0", "--backend", "tcp://127.0.0.1:0", "--redeliver-after", "-1"],
        ["--frontend", "tcp://127.0.0.1:0", "--backend", "tcp://127.0.0.1:0", "--max-attempts", "0"],
    ],
)
def test_zjournal_device_refuses_bad_settings_before_creating_a_journal(tmp_path, options) -> None:
    path = tmp_path / "never.journal"
    proc = subprocess.run(zjournal_cli("device", str(path), *options), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not path.exists()


def test_zjournal_device_prints_its_bound_endpoints_and_survives_hostile_peers(tmp_path) -> None:
    path = str(tmp_path / "d.journal")
    proc = subprocess.Popen(
        zjournal_cli(
            "device",
            path,
            "--frontend",
            "tcp://127.0.0.1:0",
            "--backend",
            "tcp://127.0.0.1:0",
            "--max-message-size",
            "100000",
            "--redeliver-after",
            "600",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ctx = zmq.Context()
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        front = proc.stdout.readline().split()
        back = proc.stdout.readline().split()
        assert front[0] == "frontend" and back[0] == "backend"
        assert not front[1].endswith(":0") and front[1].startswith("tcp://127.0.0.1:")
        worker = ctx.socket(zmq.DEALER)
        worker.linger = 0
        worker.connect(back[1])
        big = ctx.socket(zmq.DEALER)
        big.linger = 0
        big.connect(front[1])
        big.send_multipart([b"", b"y" * 1_000_000])  # over --max-message-size: refused by libzmq
        rogue = ctx.socket(zmq.DEALER)
        rogue.linger = 0
        rogue.connect(front[1])
        rogue.send_multipart([b""])
        worker.send_multipart([b"zjq:" + bytes(16), b"", b"made-up"])
        client = ctx.socket(zmq.REQ)
        client.linger = 0
        client.rcvtimeo = 5000
        client.connect(front[1])
        client.send(b"health")
        frames = serve_one(worker)
        assert frames[-1] == b"health"  # the oversized message was never journaled nor forwarded
        worker.send_multipart([frames[0]])  # the tag alone
        assert client.recv() == b"ok"
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        ctx.destroy(0)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped: drained 0, pending 0" in out
    assert "dropped a request without body" in err and "Traceback" not in err


DISK_FULL = r"""
import glob, json, os, resource, signal, sys, time, zmq, zjournal
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG, as on a full disk, instead of being killed
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
path = sys.argv[1]
j = zjournal.open(path, plugins=False)
ctx = zmq.Context()
fe, be = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
fe.bind("inproc://f"); be.bind("inproc://b")
q = zjournal.Queue(fe, be, j, redeliver_after=None)
q.start()
worker = ctx.socket(zmq.REP); worker.connect("inproc://b")

def client(body):
    c = ctx.socket(zmq.REQ); c.rcvtimeo = 5000; c.connect("inproc://f"); c.send(body); return c

def serve():
    if not worker.poll(1000):
        return None
    body = worker.recv(); worker.send(b"re:" + body); return body

c1 = client(b"r1"); serve(); c1.recv()
while j.count(state="pending"):   # r1's ack is written after its reply went out
    time.sleep(0.01)
wal = max(glob.glob(path + "/*.log"), key=os.path.getsize)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(wal), hard))   # the disk is full
c2 = client(b"r2")
during = serve()                                   # nothing may reach a worker unjournaled
stats_during = {"store_errors": q.stats.store_errors, "unjournaled": q.stats.unjournaled}
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))                  # space is back
after = serve()
reply = c2.recv()
c3 = client(b"r3"); serve(); c3.recv()
report = q.stop(0.5)
alive = q._thread.is_alive()
print(json.dumps({"during": during, "after": after and after.decode(), "reply": reply.decode(),
                  "stats_during": stats_during, "unjournaled_after": q.stats.unjournaled,
                  "pending": report.pending, "error": q.stats.last_store_error}))
"""


def test_a_full_disk_holds_requests_back_and_the_device_carries_on_once_space_is_back(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", DISK_FULL, str(tmp_path / "q.journal")], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["during"] is None  # not forwarded while it could not be journaled
    assert result["stats_during"]["store_errors"] >= 1 and result["stats_during"]["unjournaled"] == 1
    assert "too large" in result["error"].lower() or "space" in result["error"].lower()
    assert result["after"] == "r2" and result["reply"] == "re:r2"  # journaled and served once space was back
    assert result["unjournaled_after"] == 0 and result["pending"] == []
    assert "the journal refused a write" in proc.stderr


def test_a_reply_to_a_delivery_made_before_a_restart_still_answers(open_journal, ctx, sockets) -> None:
    """Requests in flight at a stop stay pending; after a restart a worker's reply to the old delivery counts."""
    fe, be, front, back = sockets
    journal = open_journal()
    queue = zjournal.Queue(fe, be, journal, redeliver_after=None)
    queue.start()
    clients = [request(ctx, front, b"job-%d" % i) for i in range(5)]
    worker = ctx.socket(zmq.DEALER)
    worker.connect(back)
    held = [worker.recv_multipart() for _ in range(5)]
    report_ = queue.stop(0.1)
    assert len(report_.pending) == 5 and report_.timed_out
    restarted = zjournal.Queue(fe, be, journal, redeliver_after=None)
    restarted.start()
    again = [worker.recv_multipart() for _ in range(5)]  # the restart delivers them again...
    assert [f[0] for f in again] == [f[0] for f in held]  # ... under the same tags (the secret is the journal's)
    for frames in held:
        worker.send_multipart([*frames[:-1], b"from before the restart"])
    assert [c.recv() for c in clients] == [b"from before the restart"] * 5
    for frames in again:
        worker.send_multipart([*frames[:-1], b"again"])
    eventually(lambda: restarted.stats.duplicates == 5)
    assert journal.count(state="pending") == 0
    restarted.stop(0.2)
    for c in clients:
        c.close(0)


def test_ids_in_tags_are_not_enough_to_ack(open_journal, ctx, sockets) -> None:
    fe, be, front, back = sockets
    journal = open_journal()
    queue = zjournal.Queue(fe, be, journal, redeliver_after=None)
    queue.start()
    client = request(ctx, front, b"job")
    worker = ctx.socket(zmq.DEALER)
    worker.connect(back)
    frames = worker.recv_multipart()
    tag = frames[0]
    forged = tag[:-8] + bytes(8)  # the right prefix and id, a made-up MAC
    worker.send_multipart([forged, *frames[1:-1], b"forged"])
    assert client.poll(300) == 0
    worker.send_multipart([*frames[:-1], b"genuine"])
    assert client.recv() == b"genuine"
    queue.stop(0.2)
    assert queue.stats.causes[report.REPLY_UNKNOWN_TAG] == 1


def test_a_device_that_dies_lets_its_context_terminate(journal, ctx, sockets, confirm_intake) -> None:
    """The application's classifier raises: the device stops with that error, its confirm sockets closed.

    Those sockets are made in the frontend's context but outside its list
    (zjournal's threads use them, so ctx.destroy() must not close them): the
    device closes them on every way out, or ctx.term() would wait for ever.
    """

    def classify(frames: list[bytes]) -> bool:
        if frames[0] == b"boom":
            raise RuntimeError("the application's classifier failed")
        return True

    fe, be, front, _back = sockets
    queue = zjournal.Queue(fe, be, journal, classify=classify)
    queue.start()
    sink, sink_address = confirm_intake(b"\x06" * 16)
    client = ctx.socket(zmq.DEALER)  # plays a confirm=True client: the device opens a confirm socket to it
    client.connect(front)
    client.send_multipart([confirm_wire.encode_header(b"\x06" * 16, 1, 1, sink_address), b"", b"kept"])
    assert sink.poll(5000), "the device never confirmed"
    client.send_multipart([b"", b"boom"])  # (a plain request: classified, and the classifier raises)
    with pytest.raises(RuntimeError, match="classifier failed"):
        queue.stop(0.5)
    assert journal.count(name="queue", state="pending") == 1  # the confirmed request stays journaled
    done = []
    threading.Thread(target=lambda: (ctx.destroy(linger=0), done.append(True)), daemon=True).start()
    deadline = time.monotonic() + 5
    while not done:
        assert time.monotonic() < deadline, "ctx.destroy() waits for a socket of the dead device"
        time.sleep(0.01)
