"""Replication: how fast the shipper carries a journal's pending entries to NATS JetStream, and a takeover.

Run:  python tools/bench/shipping.py --entries 200000 --nodes 3

Starts its own nats-server(s) on 127.0.0.1 (tests/natsserver.py: the test
extra's pinned binary), opens a journal with ``replicate=``, appends
``--entries`` pending entries of ``--size`` bytes as fast as one thread can,
and reports the append rate, how long shipping took to catch up after the
last append (``lag_entries`` back to 0), the rate the shipper carried; then
reopens the journal (its first batches are a snapshot of every entry: the
shipper's own capacity) and times ``zjournal.takeover`` fencing the owner and
carrying every entry over into a new journal.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from natsserver import Servers

import zjournal


def run(entries: int, size: int, nodes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="zjournal-ship-") as tmp:
        servers = Servers(Path(tmp) / "nats", nodes=nodes).start()
        try:
            journal = zjournal.open(f"{tmp}/owner", replicate=servers.url, replicate_as="bench", ship_interval=0.05)
            payload = [b"x" * size]
            started = time.perf_counter()
            for _ in range(entries):
                journal.append("jobs", payload, direction="in")
            appended = time.perf_counter()
            while journal.replication.lag_entries:
                time.sleep(0.005)
            caught_up = time.perf_counter()
            journal.close()
            # The shipper's own capacity: a reopened journal ships all of its entries as a snapshot at once.
            reopened = time.perf_counter()
            journal = zjournal.open(f"{tmp}/owner", replicate=servers.url, replicate_as="bench", ship_interval=0.05)
            while journal.replication.batches == 0 or journal.replication.lag_entries:
                time.sleep(0.005)
            snapshot = time.perf_counter() - reopened
            journal.close()
            took = time.perf_counter()
            result = zjournal.takeover(servers.url, "bench", f"{tmp}/standby", timeout=30)
            taken = time.perf_counter() - took
            assert result["pending"] == entries, result
        finally:
            servers.stop()
    return {
        "append_per_s": entries / (appended - started),
        "catch_up_s": caught_up - appended,
        "shipped_per_s": entries / (caught_up - started),
        "snapshot_s": snapshot,
        "snapshot_per_s": entries / snapshot,
        "takeover_s": taken,
    }


def synchronous(messages: int, nodes: int) -> dict[str, float]:
    """durability="replicated": a journaled PUSH's send returns once the engine's quorum has the message."""
    import statistics

    import zmq

    with tempfile.TemporaryDirectory(prefix="zjournal-sync-") as tmp:
        servers = Servers(Path(tmp) / "nats", nodes=nodes).start()
        ctx = zmq.Context()
        try:
            journal = zjournal.open(f"{tmp}/j", replicate=servers.url, replicate_as="sync", durability="replicated")
            push = journal.wrap(ctx.socket(zmq.PUSH), "feed")
            pull = ctx.socket(zmq.PULL)
            pull.bind("inproc://sync")
            push.connect("inproc://sync")
            took = []
            started = time.perf_counter()
            for _ in range(messages):
                t = time.perf_counter()
                push.send(b"x" * 100)
                took.append(time.perf_counter() - t)
                pull.recv()
            elapsed = time.perf_counter() - started
            push.close()
            journal.close()
            device = _through_device(ctx, f"{tmp}/d", servers.url, messages)
            prefetched = _prefetched(ctx, f"{tmp}/p", servers.url, messages * 5)
        finally:
            ctx.destroy(0)
            servers.stop()
    took.sort()
    return {
        "per_s": messages / elapsed,
        "p50_ms": statistics.median(took) * 1000,
        "p99_ms": took[int(len(took) * 0.99)] * 1000,
        **device,
        "prefetch_per_s": prefetched,
    }


def _prefetched(ctx: Any, path: str, url: str, messages: int) -> float:
    """A journaled PULL with prefetch=64 in durability="replicated": one wait per batch read ahead (msg/s)."""
    import threading

    import zmq

    journal = zjournal.open(path, replicate=url, replicate_as="sync-prefetch", durability="replicated")
    pull = journal.wrap(ctx.socket(zmq.PULL), "work", prefetch=64)
    pull.bind("inproc://sync-prefetch")
    push = ctx.socket(zmq.PUSH)
    push.connect("inproc://sync-prefetch")
    sender = threading.Thread(target=lambda: [push.send(b"x" * 100) for _ in range(messages)])
    started = time.perf_counter()
    sender.start()
    for _ in range(messages):
        pull.recv()
    elapsed = time.perf_counter() - started
    sender.join()
    push.close(0)
    pull.close()
    journal.close()
    return messages / elapsed


def _through_device(ctx: Any, path: str, url: str, requests: int) -> dict[str, float]:
    """A plain REQ -> zjournal.Queue (durability="replicated") -> a plain REP: round trips, one at a time."""
    import statistics
    import threading

    import zmq

    journal = zjournal.open(path, replicate=url, replicate_as="sync-device", durability="replicated")
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    front.bind("inproc://sync-front")
    back.bind("inproc://sync-back")
    queue = zjournal.Queue(front, back, journal)
    queue.start()
    stop = threading.Event()

    def worker() -> None:
        rep = ctx.socket(zmq.REP)
        rep.connect("inproc://sync-back")
        while not stop.is_set():
            if rep.poll(50):
                rep.send(rep.recv())
        rep.close(0)

    thread = threading.Thread(target=worker)
    thread.start()
    req = ctx.socket(zmq.REQ)
    req.connect("inproc://sync-front")
    took = []
    started = time.perf_counter()
    for _ in range(requests):
        t = time.perf_counter()
        req.send(b"x" * 100)
        req.recv()
        took.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    req.close(0)
    queue.stop(drain_timeout=0)
    journal.close()
    took.sort()
    return {
        "device_per_s": requests / elapsed,
        "device_p50_ms": statistics.median(took) * 1000,
        "device_p99_ms": took[int(len(took) * 0.99)] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--nodes", type=int, default=3, choices=(1, 3))
    parser.add_argument("--sync", type=int, metavar="N", default=0, help="Also N sends in durability='replicated'.")
    args = parser.parse_args()
    if args.sync:
        q = synchronous(args.sync, args.nodes)
        print(
            f"durability='replicated', {args.nodes} node(s), one sender: {q['per_s']:,.0f} msg/s, "
            f"send p50 {q['p50_ms']:.2f} ms, p99 {q['p99_ms']:.2f} ms; through zjournal.Queue, one REQ client: "
            f"{q['device_per_s']:,.0f} req/s, round trip p50 {q['device_p50_ms']:.2f} ms, "
            f"p99 {q['device_p99_ms']:.2f} ms; a PULL with prefetch=64: {q['prefetch_per_s']:,.0f} msg/s"
        )
    r = run(args.entries, args.size, args.nodes)
    print(
        f"{args.entries:,} pending entries of {args.size} B, {args.nodes} node(s): appended at "
        f"{r['append_per_s']:,.0f}/s, shipping caught up {r['catch_up_s']:.2f} s after the last append "
        f"({r['shipped_per_s']:,.0f} entries/s end to end); reopened, all of them shipped as a snapshot in "
        f"{r['snapshot_s']:.2f} s ({r['snapshot_per_s']:,.0f} entries/s, open included); "
        f"takeover of all of them: {r['takeover_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
