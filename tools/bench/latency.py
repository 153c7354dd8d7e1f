"""REQ -> REP round-trip latency, raw pyzmq against both ends journaled, in one run.

Run:  python tools/bench --only latency

The REP server runs in its own process; the REQ client times each round trip
(100-byte requests). Reports p50 / p99 / p99.9 in microseconds per variant,
the median over repetitions, each repetition running every variant in turn.

``pipe`` and ``pipe+confirm`` time the same round trip over two journaled
PUSH -> PULL pairs (there and back, ``process`` durability), the PUSHes
without and with ``confirm=True``: what end-to-end confirms add to a message's
way (a REQ/REP pair cannot confirm).
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq
from common import quantile, table

VARIANTS = ("raw", "process", "interval", "always", "pipe", "pipe+confirm")


def _wrap(sock: zmq.Socket, variant: str, path: str, name: str):
    if variant == "raw":
        return sock, None
    import zjournal

    journal = zjournal.open(path, durability=variant, fsync_interval=10)
    return journal.wrap(sock, name=name), journal


def _pipe(ctx: zmq.Context, variant: str, path: str, side: str, addr: str) -> tuple[Any, Any, Any]:
    """A journaled PULL bound at ``addr``.``side`` and a PUSH to the other side's (confirm=True for ``+confirm``)."""
    import zjournal

    journal = zjournal.open(path)
    pull = journal.wrap(ctx.socket(zmq.PULL), name="in")
    push = journal.wrap(ctx.socket(zmq.PUSH), name="out", confirm=variant.endswith("+confirm"))
    pull.bind(f"{addr}.{side}")
    push.connect(f"{addr}.{'client' if side == 'server' else 'server'}")
    return pull, push, journal


def _server(variant: str, addr: str, path: str, ready, stop) -> None:
    ctx = zmq.Context()
    if variant.startswith("pipe"):
        pull, push, journal = _pipe(ctx, variant, path, "server", addr)
        ready.set()
        while not stop.is_set():
            if pull.poll(100):
                push.send(pull.recv())
        pull.close(0)
        push.close(0)
        journal.close()
        ctx.term()
        return
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
    if variant.startswith("pipe"):
        receiver, sock, journal = _pipe(ctx, variant, str(workdir / f"cli-{index}"), "client", addr)
    else:
        sock, journal = _wrap(ctx.socket(zmq.REQ), variant, str(workdir / f"cli-{index}"), "client")
        sock.connect(addr)
        receiver = sock
    payload = b"x" * 100
    for _ in range(100):  # warm up
        sock.send(payload)
        receiver.recv()
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        t0 = clock()
        sock.send(payload)
        receiver.recv()
        samples.append((clock() - t0) * 1e6)
    if receiver is not sock:
        receiver.close(0)
    sock.close(0)
    if journal is not None:
        journal.close()
    ctx.term()
    stop.set()
    server.join(30)
    return samples


def run(requests: int = 20_000, repeat: int = 3, variants: Sequence[str] = VARIANTS) -> dict[str, Any]:
    """p50/p99/p99.9 of each variant, the median over repetitions."""
    stats: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory(prefix="zjlat") as tmp:
        index = 0
        for _ in range(repeat):
            for variant in variants:
                index += 1
                count = requests if variant != "always" else max(100, requests // 20)
                if variant.startswith("pipe"):
                    count = max(100, requests // 4)  # two pairs, two processes each way: a quarter suffices
                samples = run_once(variant, count, Path(tmp), index)
                stats[variant].append((quantile(samples, 0.5), quantile(samples, 0.99), quantile(samples, 0.999)))
    rows = []
    for variant, runs in stats.items():
        p50, p99, p999 = (statistics.median(r[i] for r in runs) for i in range(3))
        rows.append({"variant": variant, "p50_us": p50, "p99_us": p99, "p999_us": p999, "runs": runs})
    raw = next((r for r in rows if r["variant"] == "raw"), None)
    for row in rows:
        if raw:
            row["p50_to_raw"] = row["p50_us"] / raw["p50_us"]
    return {
        "title": f"round trips, REQ->REP (pipe: two PUSH->PULL pairs), 100 B, median of {repeat} runs (µs)",
        "requests": requests,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (
            r["variant"],
            f"{r['p50_us']:,.0f}",
            f"{r['p99_us']:,.0f}",
            f"{r['p999_us']:,.0f}",
            f"{r['p50_to_raw']:.1f}x" if "p50_to_raw" in r else "-",
        )
        for r in result["rows"]
    ]
    return table(("variant", "p50", "p99", "p99.9", "p50 / raw"), rows)
