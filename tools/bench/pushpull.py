"""PUSH -> PULL throughput, raw pyzmq against journaled sockets, in one run.

Run:  python tools/bench --only pushpull   (or this file: python tools/bench/pushpull.py --sizes 100)

Sender and receiver run in separate processes over ipc. ``process+prefetch``
is ``process`` with the receiver wrapped with ``prefetch=64`` (opt-in);
``process+confirm`` the sender with ``confirm=True`` (end-to-end confirms);
``process+replicate`` both journals with ``replicate=`` to a local NATS
JetStream server the run starts (tests/natsserver.py, from the test extra); a
``:recv`` suffix (``process:recv``) journals the receiver only, to see what
one journaled consumer can take; an ``@poll`` suffix (``process+confirm@poll``)
has the receiver wait in a ``zmq.Poller`` before each ``recv``, as a service
serving several sockets does (``@multipart``: it reads with ``recv_multipart``);
a ``/router`` suffix (``process+confirm/router``) sends from a DEALER to a
ROUTER instead (a plain ROUTER may drop the last messages of a DEALER that
disconnects: the rate is then that of those received, which stop the run
after 2 s of silence). Each repetition runs
every variant once, in turn, so machine noise hits them alike; the table gives
the median msg/s per variant and its ratio to raw pyzmq of the same size from
the same run. ``always`` moves a fiftieth of the messages (it fsyncs each).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq
from common import NATS_ENV, rate, run_pair, start_nats, summary, table

# Also runnable: "process+prefetch" (the receiver with prefetch=64), "process+replicate" (both journals shipped to
# NATS JetStream), a ":recv" suffix (receiver journaled only), "@poll" (the receiver polls before each recv) or
# "@multipart" (it reads with recv_multipart), and "/router" (DEALER->ROUTER).
VARIANTS = ("raw", "process", "interval", "always", "process+confirm")
_streams = itertools.count()


def _kinds(variant: str) -> tuple[int, int]:
    """The sender's and the receiver's socket types of a variant."""
    return (zmq.DEALER, zmq.ROUTER) if variant.endswith("/router") else (zmq.PUSH, zmq.PULL)


def _make(sends: bool, variant: str, ctx: zmq.Context, path: str, name: str):
    kind = _kinds(variant)[0 if sends else 1]
    variant = variant.partition("/")[0].partition("@")[0]  # ("@poll": how the receiver waits, see _receiver)
    sock = ctx.socket(kind)
    sock.sndhwm = sock.rcvhwm = 10_000
    if variant == "raw":
        return sock, None
    import zjournal

    variant, _, only = variant.partition(":")
    if only == "recv" and sends:
        return sock, None  # ":recv": only the receiver is journaled
    durability, _, option = variant.partition("+")
    replicate = {}
    if option == "replicate":
        replicate = {"replicate": os.environ[NATS_ENV], "replicate_as": f"bench-{os.getpid()}-{next(_streams)}"}
    journal = zjournal.open(path, durability=durability, fsync_interval=10, **replicate)
    # "+prefetch": the receiver reads up to 64 queued messages per journal write (opt-in)
    prefetch = 64 if option == "prefetch" and not sends else 0
    # "+confirm": the sender's entries stay pending until the receiving journal confirms them
    confirm = option == "confirm" and sends
    return journal.wrap(sock, name=name, prefetch=prefetch, confirm=confirm), journal


def _sender(variant: str, addr: str, path: str, count: int, size: int, ready) -> None:
    ctx = zmq.Context()
    sock, journal = _make(True, variant, ctx, path, "bench-out")
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
    sock, journal = _make(False, variant, ctx, path, "bench-in")
    sock.bind(addr)
    result.put("bound")
    if variant.endswith("/router"):
        sock.recv_multipart()
        received, elapsed = _receive_routed(sock, count, polls="@poll" in variant)
        _close(sock, journal, ctx)
        result.put((received - 1) / elapsed)
        return
    sock.recv()
    start = time.perf_counter()
    if variant.endswith("@poll"):
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        for _ in range(count - 1):
            poller.poll()
            sock.recv()
    elif variant.endswith("@multipart"):
        for _ in range(count - 1):
            sock.recv_multipart()
    else:
        for _ in range(count - 1):
            sock.recv()
    elapsed = time.perf_counter() - start
    _close(sock, journal, ctx)
    result.put((count - 1) / elapsed)


def _close(sock: zmq.Socket, journal: Any, ctx: zmq.Context) -> None:
    sock.close()
    if journal is not None:
        journal.close()
    ctx.term()


def _receive_routed(sock: zmq.Socket, count: int, polls: bool) -> tuple[int, float]:
    """A ROUTER's part of a run after its first message: how many it received in all, and in how long."""
    sock.rcvtimeo = 2000
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    start = last = time.perf_counter()
    received = 1
    while received < count:
        if polls and not poller.poll(2000):
            break
        try:
            sock.recv_multipart()
        except zmq.Again:
            break  # (a plain ROUTER dropped the last ones: the silence at the end does not count)
        received += 1
        last = time.perf_counter()
    return received, last - start


def run_once(variant: str, count: int, size: int, workdir: Path, index: int) -> float:
    addr = f"ipc://{workdir}/bench-{index}.sock"
    return run_pair(
        _receiver,
        (variant, addr, str(workdir / f"in-{index}"), count),
        _sender,
        (variant, addr, str(workdir / f"out-{index}"), count, size),
    )


def _nats_for(variants: Sequence[str], workdir: Path) -> Any:
    """A JetStream server for the +replicate variants (None when there are none)."""
    return start_nats(workdir) if any("+replicate" in v for v in variants) else None


def run(
    sizes: Sequence[int] = (100, 4096),
    variants: Sequence[str] = VARIANTS,
    messages: int = 200_000,
    repeat: int = 3,
) -> dict[str, Any]:
    """Every variant at every size, ``repeat`` times in turn; msg/s summaries and ratios to raw (of its sockets)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="zjournal-bench-") as tmp:
        servers = _nats_for(variants, Path(tmp))
        index = 0
        rates: dict[tuple[int, str], list[float]] = {(size, v): [] for size in sizes for v in variants}
        for _ in range(repeat):
            for size in sizes:
                for variant in variants:
                    index += 1
                    # always fsyncs each message: fewer of them
                    count = max(2, messages // 50) if variant.startswith("always") else messages
                    rates[(size, variant)].append(run_once(variant, count, size, Path(tmp), index))
        if servers is not None:
            servers.stop()
    for (size, variant), values in rates.items():
        row = {"size": size, "variant": variant, **summary(values)}
        raw = rates.get((size, "raw/router" if variant.endswith("/router") else "raw"))  # (the same sockets)
        if raw:
            row["ratio_to_raw"] = row["median"] / statistics.median(raw)
        rows.append(row)
    return {
        "title": f"PUSH->PULL (/router: DEALER->ROUTER), sender and receiver in separate processes, median of {repeat}",
        "unit": "msg/s",
        "messages": messages,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (
            f"{r['size']} B",
            r["variant"],
            rate(r["median"]),
            rate(r["min"]),
            rate(r["max"]),
            f"{r['ratio_to_raw']:.3f}" if "ratio_to_raw" in r else "-",
        )
        for r in result["rows"]
    ]
    return table(("size", "variant", "msg/s (median)", "min", "max", "/ raw"), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--sizes", default="100,4096")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    result = run(sizes, args.variants.split(","), args.messages, args.repeat)
    print(result["title"])
    print(markdown(result))


if __name__ == "__main__":
    main()
