"""Queue device throughput: ``zmq.proxy`` against ``zjournal.Queue`` on the same load, in one run.

Run:  python tools/bench --only device  (or: python tools/bench/device.py --kinds proxy,queue-process,queue-replicated)

Three processes per run: the device (ROUTER frontend, DEALER backend, over
ipc), a client process with ``--clients`` DEALER sockets each keeping
``--window`` requests in flight, and a worker process whose DEALER sockets echo
every request straight back (so the device, not the workers, is what is
measured). The table gives the median requests/s and the ratio to zmq.proxy.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq
from common import NATS_ENV, rate, start_nats, summary, table


def _device(kind: str, front: str, back: str, path: str, ready, stop) -> None:
    ctx = zmq.Context()
    frontend = ctx.socket(zmq.ROUTER)
    frontend.bind(front)
    backend = ctx.socket(zmq.DEALER)
    backend.bind(back)
    for sock in (frontend, backend):
        sock.sndhwm = sock.rcvhwm = 100_000
    if kind == "proxy":
        ready.set()
        with contextlib.suppress(zmq.ContextTerminated):
            zmq.proxy(frontend, backend)
        return
    import zjournal

    durability = kind.split("-")[1]
    replicate = {}
    if durability == "replicated":  # each batch forwarded once the engine's quorum has it
        replicate = {"replicate": os.environ[NATS_ENV], "replicate_as": f"bench-device-{os.getpid()}"}
    journal = zjournal.open(path, durability=durability, **replicate)
    queue = zjournal.Queue(frontend, backend, journal)
    queue.start()
    ready.set()
    stop.wait()
    queue.stop(drain_timeout=0)
    journal.close()
    ctx.destroy(0)


def _dealers(ctx: zmq.Context, endpoint: str, count: int) -> tuple[list[zmq.Socket], zmq.Poller]:
    """``count`` DEALER sockets connected to ``endpoint``, and a poller for them."""
    socks = [ctx.socket(zmq.DEALER) for _ in range(count)]
    poller = zmq.Poller()
    for s in socks:
        s.connect(endpoint)
        poller.register(s, zmq.POLLIN)
    return socks, poller


def _workers(back: str, count: int, stop) -> None:
    ctx = zmq.Context()
    _socks, poller = _dealers(ctx, back, count)
    while not stop.is_set():
        for sock, _ in poller.poll(50):
            for _ in range(100):
                try:
                    sock.send_multipart(sock.recv_multipart(zmq.NOBLOCK))
                except zmq.Again:
                    break
    ctx.destroy(0)


def _clients(front: str, count: int, window: int, total: int, result) -> None:
    ctx = zmq.Context()
    socks, poller = _dealers(ctx, front, count)
    per = total // count
    sent = dict.fromkeys(socks, 0)
    got = 0
    start = time.perf_counter()
    for s in socks:
        for _ in range(window):
            s.send_multipart([b"", b"x" * 100])
            sent[s] += 1
    while got < per * count:
        for sock, _ in poller.poll(1000):
            while True:
                try:
                    sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                got += 1
                if sent[sock] < per:
                    sock.send_multipart([b"", b"x" * 100])
                    sent[sock] += 1
    result.put(got / (time.perf_counter() - start))
    ctx.destroy(0)


def run_once(kind: str, args: argparse.Namespace, workdir: Path, index: int) -> float:
    spawn = mp.get_context("spawn")
    front, back = f"ipc://{workdir}/f{index}", f"ipc://{workdir}/b{index}"
    ready, stop, result = spawn.Event(), spawn.Event(), spawn.Queue()
    device = spawn.Process(target=_device, args=(kind, front, back, str(workdir / f"j{index}"), ready, stop))
    device.start()
    ready.wait(30)
    workers = spawn.Process(target=_workers, args=(back, 4, stop))
    workers.start()
    clients = spawn.Process(target=_clients, args=(front, args.clients, args.window, args.requests, result))
    clients.start()
    rate = result.get(timeout=600)
    stop.set()
    clients.join(30)
    workers.join(30)
    if kind == "proxy":
        device.terminate()
    device.join(30)
    return rate


KINDS = ("proxy", "queue-process", "queue-interval")  # also: "queue-replicated" (starts a NATS server)


def run(
    requests: int = 100_000, clients: int = 16, window: int = 50, repeat: int = 3, kinds: tuple[str, ...] = KINDS
) -> dict[str, Any]:
    """zmq.proxy and zjournal.Queue on the same load, ``repeat`` times in turn."""
    args = argparse.Namespace(requests=requests, clients=clients, window=window)
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(prefix="zjdev") as tmp:
        servers = start_nats(Path(tmp)) if "queue-replicated" in kinds else None
        index = 0
        for _ in range(repeat):
            for kind in kinds:
                index += 1
                rates[kind].append(run_once(kind, args, Path(tmp), index))
        if servers is not None:
            servers.stop()
    proxy = statistics.median(rates["proxy"])
    rows = [
        {"device": kind, **summary(values), "ratio_to_proxy": statistics.median(values) / proxy}
        for kind, values in rates.items()
    ]
    return {
        "title": f"Queue device, {clients} DEALER clients x {window} in flight, 4 echo workers, median of {repeat}",
        "unit": "requests/s",
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (r["device"], rate(r["median"]), rate(r["min"]), rate(r["max"]), f"{r['ratio_to_proxy']:.3f}")
        for r in result["rows"]
    ]
    return table(("device", "requests/s (median)", "min", "max", "/ zmq.proxy"), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="of proxy, queue-process, queue-interval, queue-replicated"
    )

    args = parser.parse_args()
    result = run(requests=args.requests, repeat=args.repeat, kinds=tuple(args.kinds.split(",")))
    print(result["title"])
    print(markdown(result))


if __name__ == "__main__":
    main()
