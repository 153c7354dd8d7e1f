"""The journaled queue device: correlation, shutdown, restart, ephemeral traffic."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
import zmq

import zjournal


class Workers:
    """Worker threads on the backend; DEALER workers answer out of order."""

    def __init__(self, ctx: zmq.Context, addr: str, count: int, kind: int = zmq.REP) -> None:
        self.ctx, self.addr, self.kind = ctx, addr, kind
        self.processed: list[bytes] = []
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self._work, args=(i,), daemon=True) for i in range(count)]
        for t in self.threads:
            t.start()

    def _work(self, index: int) -> None:
        sock = self.ctx.socket(self.kind)
        sock.connect(self.addr)
        held: list[list[bytes]] = []
        rng = random.Random(index)
        while not self.stop_event.is_set():
            if not sock.poll(20):
                continue
            frames = sock.recv_multipart()
            if self.kind == zmq.REP:
                self.processed.append(frames[-1])
                sock.send_multipart([b"done:" + frames[-1]])
                continue
            held.append(frames)  # a DEALER worker: answer a few at a time, shuffled
            if len(held) >= 3 or not sock.poll(0):
                rng.shuffle(held)
                for msg in held:
                    self.processed.append(msg[-1])
                    sock.send_multipart([*msg[:-1], b"done:" + msg[-1]])
                held.clear()
        sock.close(0)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(5)


@pytest.fixture
def device(ctx, endpoint) -> Iterator[tuple[zmq.Socket, zmq.Socket, str, str]]:
    front, back = endpoint(), endpoint()
    fe = ctx.socket(zmq.ROUTER)
    fe.bind(front)
    be = ctx.socket(zmq.DEALER)
    be.bind(back)
    yield fe, be, front, back


def test_many_pipelining_clients_each_reply_acks_exactly_its_request(journal, ctx, device) -> None:
    fe, be, front, back = device
    queue = zjournal.Queue(fe, be, journal)
    queue.start()
    workers = Workers(ctx, back, 4, kind=zmq.DEALER)
    clients = [ctx.socket(zmq.DEALER) for _ in range(8)]
    for c in clients:
        c.connect(front)
    for n in range(100):
        for i, c in enumerate(clients):
            c.send_multipart([b"", b"c%d-%d" % (i, n)])
    for i, c in enumerate(clients):
        replies = sorted(c.recv_multipart()[1] for _ in range(100))
        assert replies == sorted(b"done:c%d-%d" % (i, n) for n in range(100))
    report = queue.stop(drain_timeout=1)
    workers.stop()
    assert report.pending == [] and report.drained == 0
    assert (queue.stats.requests, queue.stats.replies, queue.stats.duplicates) == (800, 800, 0)
    assert journal.count() == 0


def test_req_clients_and_rep_workers(journal, ctx, device) -> None:
    fe, be, front, back = device
    queue = zjournal.Queue(fe, be, journal)
    queue.start()
    workers = Workers(ctx, back, 2)
    req = ctx.socket(zmq.REQ)
    req.connect(front)
    for n in range(20):
        req.send(b"q%d" % n)
        assert req.recv() == b"done:q%d" % n
    queue.stop(0.5)
    workers.stop()
    assert journal.count() == 0


def test_shutdown_with_no_workers_reports_pending_and_restart_delivers(journal_path, open_journal, ctx, device) -> None:
    fe, be, front, back = device
    j = open_journal()
    queue = zjournal.Queue(fe, be, j, name="jobs")
    queue.start()
    client = ctx.socket(zmq.DEALER)
    client.connect(front)
    for n in range(30):
        client.send_multipart([b"", b"job-%02d" % n])
    deadline_polls = 0
    while queue.pending < 30 and deadline_polls < 200:
        client.poll(10)
        deadline_polls += 1
    report = queue.stop(drain_timeout=0.2)
    assert report.timed_out is False or report.pending  # nothing answered them
    assert len(report.pending) == 30 and queue.pending == 30
    bodies = [e.body[-1] for e in j.entries(name="jobs", state="pending")]
    assert bodies == [b"job-%02d" % n for n in range(30)]  # readable, oldest first
    # No worker ever got them: no delivery counted, so even max_attempts=1 delivers them after the restart.
    assert [e.attempts for e in j.entries(name="jobs")] == [0] * 30
    j.close()

    j = open_journal(max_attempts=1)
    restarted = zjournal.Queue(fe, be, j, name="jobs")
    restarted.start()
    workers = Workers(ctx, back, 3)
    for _ in range(300):
        if restarted.pending == 0:
            break
        client.poll(10)
    report = restarted.stop(drain_timeout=1)
    workers.stop()
    assert sorted(workers.processed) == [b"job-%02d" % n for n in range(30)]
    assert report.pending == [] and restarted.stats.redelivered == 30
    assert j.count(name="jobs") == 0 and j.count(state="dead") == 0  # all acked, none dead-lettered


def test_restart_gives_up_after_max_attempts(journal_path, open_journal, ctx, device) -> None:
    fe, be, _front, _back = device
    with zjournal.open(journal_path) as j:
        j.append("queue", [b"gone", b"", b"poison"], direction="in", attempts=2, envelope_size=2)
    j = open_journal(max_attempts=2)
    queue = zjournal.Queue(fe, be, j)
    queue.start()
    report = queue.stop(0.1)
    assert queue.stats.dead == 1 and report.pending == []
    assert [e.body for e in j.entries(state="dead")] == [[b"poison"]]


def test_ephemeral_requests_pass_without_disk_and_are_dropped_at_shutdown(journal, ctx, device) -> None:
    fe, be, front, back = device
    queue = zjournal.Queue(fe, be, journal, classify={b"ping": "ephemeral"})
    queue.start()
    client = ctx.socket(zmq.DEALER)
    client.connect(front)
    client.send_multipart([b"", b"ping-1"])
    client.send_multipart([b"", b"order-1"])
    stray = ctx.socket(zmq.DEALER)  # a worker that takes requests and never answers
    stray.connect(back)
    got = [stray.recv_multipart()[-1] for _ in range(2)]
    assert sorted(got) == [b"order-1", b"ping-1"]
    assert queue.stats.ephemeral == 1 and queue.stats.requests == 1
    report = queue.stop(drain_timeout=0.1)
    assert report.dropped == 1 and len(report.pending) == 1
    assert [e.body for e in journal.entries()] == [[b"order-1"]]


def test_duplicate_replies_are_counted_and_not_forwarded(journal, ctx, device) -> None:
    fe, be, front, back = device
    queue = zjournal.Queue(fe, be, journal)
    queue.start()
    client = ctx.socket(zmq.DEALER)
    client.connect(front)
    worker = ctx.socket(zmq.DEALER)
    worker.connect(back)
    client.send_multipart([b"", b"once"])
    request = worker.recv_multipart()
    worker.send_multipart([*request[:-1], b"first"])
    worker.send_multipart([*request[:-1], b"second"])
    worker.send_multipart([b"no-tag", b"", b"junk"])
    assert client.recv_multipart() == [b"", b"first"]
    assert client.poll(200) == 0
    queue.stop(0.1)
    assert queue.stats.duplicates == 1 and queue.stats.malformed == 1


def test_run_in_the_callers_thread_and_request_stop(journal, device) -> None:
    fe, be, _front, _back = device
    queue = zjournal.Queue(fe, be, journal)
    threading.Timer(0.1, queue.request_stop, kwargs={"drain_timeout": 0}).start()
    report = queue.run()
    assert isinstance(report, zjournal.StopReport) and report.pending == []


def test_wrong_socket_types_are_refused(journal, ctx) -> None:
    with pytest.raises(zjournal.InvalidArgumentError, match="ROUTER"):
        zjournal.Queue(ctx.socket(zmq.DEALER), ctx.socket(zmq.DEALER), journal)
    with pytest.raises(zjournal.InvalidArgumentError, match="DEALER"):
        zjournal.Queue(ctx.socket(zmq.ROUTER), ctx.socket(zmq.PUSH), journal)


def test_a_request_whose_worker_died_is_sent_again(journal, ctx, device) -> None:
    fe, be, front, back = device
    queue = zjournal.Queue(fe, be, journal, redeliver_after=0.2, max_attempts=5)
    queue.start()
    client = ctx.socket(zmq.DEALER)
    client.connect(front)
    doomed = ctx.socket(zmq.DEALER)  # takes the request and dies without answering
    doomed.connect(back)
    client.send_multipart([b"", b"orphan"])
    assert doomed.poll(2000)
    doomed.recv_multipart()
    doomed.close(0)
    workers = Workers(ctx, back, 1)
    assert client.poll(5000) and client.recv_multipart() == [b"", b"done:orphan"]
    queue.stop(0.5)
    workers.stop()
    assert queue.stats.redelivered == 1 and journal.count() == 0


def test_load_balancing_router_backend_with_plain_guide_workers(journal, ctx, endpoint) -> None:
    """REQ workers as in the Guide's load-balancing broker: READY first, then [client, b"", request]."""
    front, back = endpoint(), endpoint()
    fe = ctx.socket(zmq.ROUTER)
    fe.bind(front)
    be = ctx.socket(zmq.ROUTER)
    be.bind(back)
    queue = zjournal.Queue(fe, be, journal)
    queue.start()
    served: dict[int, list[bytes]] = {0: [], 1: []}
    stop = threading.Event()

    def worker(index: int) -> None:
        sock = ctx.socket(zmq.REQ)
        sock.connect(back)
        sock.send(b"READY")
        while not stop.is_set():
            if sock.poll(20):
                client, empty, request = sock.recv_multipart()
                served[index].append(request)
                sock.send_multipart([client, empty, b"OK " + request])
        sock.close(0)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    clients = [ctx.socket(zmq.REQ) for _ in range(3)]
    for c in clients:
        c.connect(front)
    for n in range(20):
        for i, c in enumerate(clients):
            c.send(b"c%d-%d" % (i, n))
        for i, c in enumerate(clients):
            assert c.recv() == b"OK c%d-%d" % (i, n)
    report = queue.stop(0.5)
    stop.set()
    for t in threads:
        t.join(5)
    assert report.pending == [] and journal.count() == 0
    assert queue.stats.replies == 60 and queue.stats.malformed == 0
    assert served[0] and served[1]  # both workers got work


def test_confirm_clients_are_confirmed_once_the_device_journaled_their_requests(
    journal, open_journal, ctx, device, tmp_path
) -> None:
    """client (confirm=True) -> device -> worker: the client's entry goes once the device holds the request."""
    fe, be, front, back = device
    queue = zjournal.Queue(fe, be, journal)
    queue.start()
    client_journal = open_journal(str(tmp_path / "client"))
    client = client_journal.wrap(ctx.socket(zmq.DEALER), name="client", confirm=True, confirm_timeout=0.2)
    client.connect(front)
    for n in range(30):
        client.send_multipart([b"", b"r%d" % n])
    # No worker yet: the requests wait in the device, journaled, and the client's entries are confirmed.
    deadline = time.monotonic() + 10
    while client_journal.count(name="client", state="pending", direction="out"):
        assert time.monotonic() < deadline, "the device never confirmed"
        client.poll(20)  # (a DEALER resends from its own waits)
    assert journal.count(name="queue", state="pending") == 30
    assert queue.stats.confirmed >= 30
    time.sleep(0.5)  # a resend in flight meanwhile is recognised: no second entry
    assert journal.count(name="queue", state="pending") == 30
    workers = Workers(ctx, back, 2, kind=zmq.DEALER)
    replies = sorted(client.recv_multipart()[-1] for _ in range(30))
    assert replies == sorted(b"done:r%d" % n for n in range(30))  # the header never reached a worker
    assert sorted(workers.processed) == sorted(b"r%d" % n for n in range(30))
    queue.stop(0.5)
    workers.stop()
    assert journal.count(name="queue", state="pending") == 0


def test_a_resend_of_a_journaled_request_is_not_queued_twice(journal, ctx, device, confirm_intake) -> None:
    from zjournal.sockets import confirm_wire as wire

    fe, be, front, _back = device
    queue = zjournal.Queue(fe, be, journal)
    queue.start()
    sink, sink_address = confirm_intake(b"\x05" * 16)
    client = ctx.socket(zmq.DEALER)  # plays a confirm=True client, speaking the wire format
    client.connect(front)
    header = wire.encode_header(b"\x05" * 16, 7, 7, sink_address)
    for _ in range(3):  # sent, then resent twice
        client.send_multipart([header, b"", b"once"])
    origin, seqs = wire.parse_confirms(sink.recv_multipart())
    assert origin == b"\x05" * 16 and set(seqs) == {7}  # confirmed (each resend is confirmed again)
    deadline = time.monotonic() + 5
    while queue.stats.resends_dropped < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert journal.count(name="queue", state="pending") == 1
    assert [e.frames[1:] for e in journal.entries(name="queue")] == [[b"", b"once"]]
    queue.stop(0.2)
