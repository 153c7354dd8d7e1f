"""REQ -> REP round-trip latency, raw pyzmq against both ends journaled, in one run.

Run:  python tools/bench_latency.py [--requests 20000] [--repeat 3]

The REP server runs in its own process; the REQ client times each round trip
(100-byte requests). Reports p50 / p99 / p99.9 in microseconds per variant,
the median over repetitions, each repetition running every variant in turn.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

import zmq

VARIANTS = ("raw", "process", "interval", "always")


def _wrap(sock: zmq.Socket, variant: str, path: str, name: str):
    if variant == "raw":
        return sock, None
    import zjournal

    journal = zjournal.open(path, durability=variant, fsync_interval=10)
    return journal.wrap(sock, name=name), journal


def _server(variant: str, addr: str, path: str, ready, stop) -> None:
    ctx = zmq.Context()
    sock, journal = _wrap(ctx.socket(zmq.REP), variant, path, "server")
    sock.bind(addr)
    ready.set()
    while not stop.is_set():
        if sock.poll(100):
            sock.send(sock.recv())
    sock.close(0)
    if journal is not None:
        journal.close()
    ctx.term()


def run_once(variant: str, count: int, workdir: Path, index: int) -> list[float]:
    spawn = mp.get_context("spawn")
    addr = f"ipc://{workdir}/lat-{index}"
    ready, stop = spawn.Event(), spawn.Event()
    server = spawn.Process(target=_server, args=(variant, addr, str(workdir / f"srv-{index}"), ready, stop))
    server.start()
    ready.wait(30)
    ctx = zmq.Context()
    sock, journal = _wrap(ctx.socket(zmq.REQ), variant, str(workdir / f"cli-{index}"), "client")
    sock.connect(addr)
    payload = b"x" * 100
    for _ in range(100):  # warm up
        sock.send(payload)
        sock.recv()
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        t0 = clock()
        sock.send(payload)
        sock.recv()
        samples.append((clock() - t0) * 1e6)
    sock.close(0)
    if journal is not None:
        journal.close()
    ctx.term()
    stop.set()
    server.join(30)
    return samples


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    stats: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="zjlat") as tmp:
        index = 0
        for _ in range(args.repeat):
            for variant in VARIANTS:
                index += 1
                count = args.requests if variant != "always" else max(100, args.requests // 20)
                samples = run_once(variant, count, Path(tmp), index)
                stats[variant].append((quantile(samples, 0.5), quantile(samples, 0.99), quantile(samples, 0.999)))
    print(f"REQ->REP round trips, 100-byte requests, both ends journaled, median of {args.repeat} runs (µs)")
    print("| variant | p50 | p99 | p99.9 | p50 / raw |")
    print("|---|---:|---:|---:|---:|")
    raw_p50 = statistics.median(s[0] for s in stats["raw"])
    for variant, runs in stats.items():
        p50, p99, p999 = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"| {variant} | {p50:,.0f} | {p99:,.0f} | {p999:,.0f} | {p50 / raw_p50:.1f}x |")


if __name__ == "__main__":
    main()
