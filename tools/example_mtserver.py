"""Worked example: the multithreaded server of the ZeroMQ Guide, made crash-safe.

Run:  python tools/example_mtserver.py [--requests 200] [--dir DIR]

Two services, each a journaled ``zjournal.Queue`` in front of worker threads
on ``inproc://``:

* ``sum`` answers "sum A..B" requests. Its workers do not add up big ranges
  themselves: they split a range into chunks and send each chunk to
* ``add``, a second service, through a journaled DEALER socket
  (``ack="explicit"``): each chunk stays pending in the ``sum`` journal until
  its partial result comes back, which acks it with ``sock.ack(id)``.

A client sends requests and checks every answer. At the end the script prints
what each journal still holds (nothing, when every reply came back).
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import threading
from pathlib import Path

import zmq

import zjournal

CHUNK = 1000


def adder(ctx: zmq.Context, backend: str, stop: threading.Event) -> None:
    """An ``add`` worker: REP, answers the sum of one chunk."""
    sock = ctx.socket(zmq.REP)
    sock.connect(backend)
    while not stop.is_set():
        if sock.poll(20):
            low, high = struct.unpack(">qq", sock.recv())
            sock.send(struct.pack(">q", sum(range(low, high + 1))))
    sock.close(0)


def summer(ctx: zmq.Context, backend: str, add_front: str, journal: zjournal.Journal, index: int, stop) -> None:
    """A ``sum`` worker: splits its range into chunks for ``add`` and gathers the partial sums."""
    rep = ctx.socket(zmq.REP)
    rep.connect(backend)
    chunks = journal.wrap(ctx.socket(zmq.DEALER), name=f"sum.chunks-{index}", ack="explicit")
    chunks.connect(add_front)
    while not stop.is_set():
        if not rep.poll(20):
            continue
        low, high = struct.unpack(">qq", rep.recv())
        sent: dict[bytes, int] = {}
        for start in range(low, high + 1, CHUNK):
            chunk = struct.pack(">qq", start, min(start + CHUNK - 1, high))
            chunks.send_multipart([b"", chunk])
            sent[chunk] = chunks.last_id
        total = 0
        for _ in sent:
            _empty, partial = chunks.recv_multipart()
            total += struct.unpack(">q", partial)[0]
            chunks.ack()  # the partial result (inbound, explicit too) is counted in
        for entry_id in sent.values():
            chunks.ack(entry_id)  # every partial result is in: the chunks are done
        rep.send(struct.pack(">q", total))
    rep.close(0)
    chunks.close(0)


def service(ctx, journal, name: str, front: str, back: str, worker, count: int, stop, threads: list, *args):
    frontend = ctx.socket(zmq.ROUTER)
    frontend.bind(front)
    backend = ctx.socket(zmq.DEALER)
    backend.bind(back)
    queue = zjournal.Queue(frontend, backend, journal, name=name)
    queue.start()
    for i in range(count):
        thread = threading.Thread(target=worker, args=(ctx, back, *args, *((i,) if args else ()), stop))
        thread.start()
        threads.append(thread)
    return queue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--dir", default=None, help="where the journals go (default: a temporary directory)")
    args = parser.parse_args()
    where = Path(args.dir or tempfile.mkdtemp(prefix="zjournal-mtserver-"))
    ctx = zmq.Context()
    stop = threading.Event()
    add_journal = zjournal.open(str(where / "add.journal"))
    sum_journal = zjournal.open(str(where / "sum.journal"))
    threads: list[threading.Thread] = []
    add_queue = service(ctx, add_journal, "add", "inproc://add", "inproc://add-workers", adder, 4, stop, threads)
    sum_queue = service(
        ctx,
        sum_journal,
        "sum",
        "inproc://sum",
        "inproc://sum-workers",
        summer,
        4,
        stop,
        threads,
        "inproc://add",
        sum_journal,
    )
    client = ctx.socket(zmq.REQ)
    client.connect("inproc://sum")
    for n in range(args.requests):
        low, high = n, n * 37 + 5000
        client.send(struct.pack(">qq", low, high))
        answer = struct.unpack(">q", client.recv())[0]
        assert answer == sum(range(low, high + 1)), (low, high, answer)
    print(f"{args.requests} answers checked")
    for queue, journal in ((sum_queue, sum_journal), (add_queue, add_journal)):
        report = queue.stop(drain_timeout=1)
        print(
            f"{queue.name}: {queue.stats.requests} requests journaled; at stop: {report}; "
            f"entries left: {journal.count()}"
        )
    stop.set()
    for thread in threads:
        thread.join()
    client.close(0)
    sum_journal.close()
    add_journal.close()
    ctx.destroy(0)


if __name__ == "__main__":
    main()
