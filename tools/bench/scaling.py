"""Per-call costs that must not grow: at 1 and at 2,000 open sockets, at 1 and at 100,000 names used.

Run:  python tools/bench --only scaling

One journal in one process. ``journal.ack``, ``journal.get`` and ``wrap`` (20 more
sockets) timed beside 1 open journaled socket and beside 2,000; then
``journal.count(name=..., state=...)`` and ``count(state=...)`` after 1 and
after 100,000 names were used once (and are empty again), and
``oldest_pending()`` (what a metrics scrape asks) with 1 and with 100,000
dead letters ahead of the oldest pending entry (after a first call, which
reads past them once); and a ``confirm=True`` ``send`` with 1,000 and with
200,000 messages unconfirmed (its receiver reads nothing: a producer far
ahead of its consumer). Past its outbox's ring (8 MiB: ~43,000 messages of
100 B) every message goes to the store once, a chunk of them per write: that
part grows once, not with the count (a defect once made it a store write per
send: 22.96 µs at 200,000 against 12.86 after the fix, 2026-12-07). Each
figure is µs per call,
the median of ``--repeat`` runs; the last column is the ratio of the large
case to the small one (about 1 when the cost does not grow).
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import zmq
from common import table


def _per_call(call: Callable[[Any], Any], arguments: list[Any]) -> float:
    start = time.perf_counter()
    for argument in arguments:
        call(argument)
    return (time.perf_counter() - start) / len(arguments) * 1e6


def _sockets(journal: Any, ctx: zmq.Context, open_sockets: int) -> dict[str, float]:
    idle = [journal.wrap(ctx.socket(zmq.PUSH), name=f"idle-{i}") for i in range(open_sockets - 1)]
    extra: list[Any] = []
    wrap_us = _per_call(lambda i: extra.append(journal.wrap(ctx.socket(zmq.PUSH), name=f"more-{i}")), list(range(20)))
    ids = [journal.append("x", [b"payload"], direction="in") for _ in range(3000)]
    costs = {"get": _per_call(journal.get, ids), "ack": _per_call(journal.ack, ids), "wrap": wrap_us}
    for sock in [*idle, *extra]:
        sock.close(0)
    return costs


def _names(journal: Any, names: int) -> dict[str, float]:
    for i in range(names):
        journal.ack(journal.append(f"name-{i}", [b"m"], direction="in"))
    probe = ["orders"] * 3000
    return {
        "count(name, state)": _per_call(lambda n: journal.count(name=n, state="pending"), probe),
        "count(state)": _per_call(lambda _: journal.count(state="pending"), probe),
    }


def _dead_letters(journal: Any, dead: int) -> dict[str, float]:
    for start in range(0, dead, 10_000):
        for _ in range(min(10_000, dead - start)):
            journal.dead(journal.append("d", [b"poison"], direction="in"), "poison")
    journal.append("d", [b"pending"], direction="in")
    journal.oldest_pending()  # the first call reads past the dead letters once; later ones start after them
    return {"oldest_pending()": _per_call(lambda _: journal.oldest_pending(), [None] * 300)}


def _unconfirmed(journal: Any, ctx: zmq.Context, count: int, path: str) -> dict[str, float]:
    reader = ctx.socket(zmq.PULL)  # bound, never read: nothing is confirmed
    reader.rcvhwm = 0
    reader.bind(f"ipc://{path}.sock")
    sock = journal.wrap(ctx.socket(zmq.PUSH), name="ahead", confirm=True, confirm_timeout=3600)
    sock.sndhwm = 0
    sock.connect(f"ipc://{path}.sock")
    payload = b"x" * 100
    for _ in range(count):
        sock.send(payload)
    costs = {"send, confirm=True": _per_call(sock.send, [payload] * 10_000)}
    sock.close(0)
    reader.close(0)
    return costs


def run(
    sockets: tuple[int, int] = (1, 2000),
    names: tuple[int, int] = (1, 100_000),
    unconfirmed: tuple[int, int] = (1_000, 200_000),
    repeat: int = 3,
) -> dict[str, Any]:
    import zjournal

    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 2,000 sockets need their descriptors
    samples: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="zjscale") as tmp:
        index = 0
        for _ in range(repeat):
            for size in sockets:
                index += 1
                ctx = zmq.Context()
                ctx.max_sockets = size + 100
                with zjournal.open(f"{tmp}/s{index}.journal", plugins=False) as journal:
                    for call, us in _sockets(journal, ctx, size).items():
                        samples.setdefault((call, f"{size} sockets"), []).append(us)
                ctx.term()
            for size in names:
                index += 1
                with zjournal.open(f"{tmp}/n{index}.journal", plugins=False) as journal:
                    for call, us in _names(journal, size).items():
                        samples.setdefault((call, f"{size} names"), []).append(us)
                    for call, us in _dead_letters(journal, size).items():
                        samples.setdefault((call, f"{size} dead"), []).append(us)
            for size in unconfirmed:
                index += 1
                ctx = zmq.Context()
                with zjournal.open(f"{tmp}/u{index}.journal", plugins=False) as journal:
                    for call, us in _unconfirmed(journal, ctx, size, f"{tmp}/u{index}").items():
                        samples.setdefault((call, f"{size} unconfirmed"), []).append(us)
                ctx.term()
    rows = []
    for call, unit, (small, large) in [
        ("get", "sockets", sockets),
        ("ack", "sockets", sockets),
        ("wrap", "sockets", sockets),
        ("count(name, state)", "names", names),
        ("count(state)", "names", names),
        ("oldest_pending()", "dead", names),
        ("send, confirm=True", "unconfirmed", unconfirmed),
    ]:
        a = statistics.median(samples[(call, f"{small} {unit}")])
        b = statistics.median(samples[(call, f"{large} {unit}")])
        rows.append({"call": call, "beside": unit, "small": small, "large": large, "small_us": a, "large_us": b})
    return {
        "title": f"µs per call, small against large (sockets, names, dead letters, unconfirmed), median of {repeat}",
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (
            r["call"],
            r["beside"],
            f"{r['small_us']:.2f} (at {r['small']:,})",
            f"{r['large_us']:.2f} (at {r['large']:,})",
            f"{r['large_us'] / r['small_us']:.2f}",
        )
        for r in result["rows"]
    ]
    return table(("call", "beside", "µs, small", "µs, large", "large / small"), rows)
