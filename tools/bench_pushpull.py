"""PUSH -> PULL throughput, raw pyzmq against journaled sockets, in one run.

Run:  python tools/bench_pushpull.py [--messages 200000] [--size 100] [--repeat 3]

Sender and receiver run in separate processes over ipc. ``process+prefetch``
is ``process`` with the receiver wrapped with ``prefetch=64`` (opt-in); a
``:recv`` suffix (``process:recv``) journals the receiver only, to see what
one journaled consumer can take. Each repetition runs
every variant once, in turn, so machine noise hits them alike; the table gives
the median msg/s per variant and its ratio to raw pyzmq from the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import zmq

VARIANTS = ("raw", "process", "process+prefetch", "interval", "always")


def _make(kind: int, variant: str, ctx: zmq.Context, path: str, name: str):
    sock = ctx.socket(kind)
    sock.sndhwm = sock.rcvhwm = 10_000
    if variant == "raw":
        return sock, None
    import zjournal

    variant, _, only = variant.partition(":")
    if only == "recv" and kind == zmq.PUSH:
        return sock, None  # ":recv": only the receiver is journaled
    durability, _, option = variant.partition("+")
    journal = zjournal.open(path, durability=durability, fsync_interval=10)
    # "+prefetch": the receiver reads up to 64 queued messages per journal write (opt-in)
    prefetch = 64 if option == "prefetch" and kind == zmq.PULL else 0
    return journal.wrap(sock, name=name, prefetch=prefetch), journal


def _sender(variant: str, addr: str, path: str, count: int, size: int, ready) -> None:
    ctx = zmq.Context()
    sock, journal = _make(zmq.PUSH, variant, ctx, path, "bench-out")
    sock.connect(addr)
    ready.wait()
    payload = b"x" * size
    for _ in range(count):
        sock.send(payload)
    sock.close()
    if journal is not None:
        journal.close()
    ctx.term()


def _receiver(variant: str, addr: str, path: str, count: int, result) -> None:
    ctx = zmq.Context()
    sock, journal = _make(zmq.PULL, variant, ctx, path, "bench-in")
    sock.bind(addr)
    result.put("bound")
    sock.recv()
    start = time.perf_counter()
    for _ in range(count - 1):
        sock.recv()
    elapsed = time.perf_counter() - start
    sock.close()
    if journal is not None:
        journal.close()
    ctx.term()
    result.put((count - 1) / elapsed)


def run_once(variant: str, count: int, size: int, workdir: Path, index: int) -> float:
    spawn = mp.get_context("spawn")  # RocksDB must be opened after any fork
    addr = f"ipc://{workdir}/bench-{index}.sock"
    result = spawn.Queue()
    ready = spawn.Event()
    recv = spawn.Process(target=_receiver, args=(variant, addr, str(workdir / f"in-{index}"), count, result))
    recv.start()
    assert result.get(timeout=30) == "bound"
    send = spawn.Process(target=_sender, args=(variant, addr, str(workdir / f"out-{index}"), count, size, ready))
    send.start()
    ready.set()
    rate = result.get(timeout=600)
    send.join(60)
    recv.join(60)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    variants = args.variants.split(",")
    rates: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="zjournal-bench-") as tmp:
        index = 0
        for _ in range(args.repeat):
            for variant in variants:
                index += 1
                count = args.messages if not variant.startswith("always") else max(2, args.messages // 50)
                rates[variant].append(run_once(variant, count, args.size, Path(tmp), index))
    raw = statistics.median(rates["raw"]) if "raw" in rates else None
    print(f"PUSH->PULL, {args.size}-byte messages, both ends journaled, median of {args.repeat}")
    print("| variant | msg/s (median) | min | max | / raw |")
    print("|---|---:|---:|---:|---:|")
    for variant, values in rates.items():
        med = statistics.median(values)
        ratio = f"{med / raw:.3f}" if raw else "-"
        print(f"| {variant} | {med:,.0f} | {min(values):,.0f} | {max(values):,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
