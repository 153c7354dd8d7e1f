"""The hot path alone: what one send or recv call costs, raw pyzmq against journaled, in one process.

Run:  python tools/bench --only hotpath

A PUSH and a PULL over inproc in one process, unbounded queues: ``send`` and
``send_multipart`` timed while nothing is received, then ``recv`` and
``recv_multipart`` of what was queued, so each figure is one side's own cost
per message (µs per call), without the other process or the network. Both
sockets journaled (``process`` mode) against both raw. This is the number to
measure before and after a change to the per-message code.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import zmq
from common import table

CALLS = ("send", "recv", "send_multipart", "recv_multipart")


def _time_calls(journaled: bool, count: int, workdir: str, index: int) -> dict[str, float]:
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    push.sndhwm = pull.rcvhwm = 0
    journal = None
    if journaled:
        import zjournal

        journal = zjournal.open(f"{workdir}/hot-{index}.journal", plugins=False)
        push, pull = journal.wrap(push, name="out"), journal.wrap(pull, name="in")
    pull.bind(f"inproc://hot-{index}")
    push.connect(f"inproc://hot-{index}")
    one, two = b"x" * 100, [b"header", b"x" * 100]
    # Sends first, with nothing received, then the receives of what was queued: each side alone.
    costs = {
        "send": _per_call(push.send, one, count),
        "recv": _per_call(pull.recv, 0, count),
        "send_multipart": _per_call(push.send_multipart, two, count),
        "recv_multipart": _per_call(pull.recv_multipart, 0, count),
    }
    push.close(0)
    pull.close(0)
    if journal is not None:
        journal.close()
    ctx.term()
    return costs


def _per_call(call: Any, argument: Any, count: int) -> float:
    """µs per ``call(argument)``, over ``count`` calls."""
    start = time.perf_counter()
    for _ in range(count):
        call(argument)
    return (time.perf_counter() - start) / count * 1e6


def run(count: int = 100_000, repeat: int = 3) -> dict[str, Any]:
    samples: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="zjhot") as tmp:
        index = 0
        for _ in range(repeat):
            for variant in ("raw", "journaled"):
                index += 1
                for call, micros in _time_calls(variant == "journaled", count, tmp, index).items():
                    samples.setdefault((call, variant), []).append(micros)
    rows = []
    for call in CALLS:
        raw = statistics.median(samples[(call, "raw")])
        journaled = statistics.median(samples[(call, "journaled")])
        rows.append({"call": call, "raw_us": raw, "journaled_us": journaled, "added_us": journaled - raw})
    return {
        "title": f"µs per call, one process, 100-byte messages (multipart: 2 frames), median of {repeat}",
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (r["call"], f"{r['raw_us']:.2f}", f"{r['journaled_us']:.2f}", f"{r['added_us']:+.2f}") for r in result["rows"]
    ]
    return table(("call", "raw pyzmq (µs)", "journaled (µs)", "added"), rows)
