"""The hot path alone: what one send or recv call costs, raw pyzmq against journaled, in one process.

Run:  python tools/bench --only hotpath

A PUSH and a PULL over inproc in one process, unbounded queues: ``send`` and
``send_multipart`` timed while nothing is received, then ``recv`` and
``recv_multipart`` of what was queued, so each figure is one side's own cost
per message (µs per call), without the other process or the network. Both
sockets journaled (``process`` mode) against both raw. This is the number to
measure before and after a change to the per-message code. The ``confirm``
column is the same with the PUSH wrapped with ``confirm=True``: its send
carries a confirm header, and the PULL's recv strips it, journals the dedup
key and holds the confirmation (which goes back to the PUSH's journal within
10 ms, or at once when a batch fills).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import zmq
from common import table

CALLS = ("send", "recv", "send_multipart", "recv_multipart")
CHUNK = 1000  # messages sent, then received, per round


VARIANTS = ("raw", "journaled", "confirm")


def _time_calls(variant: str, count: int, workdir: str, index: int) -> dict[str, float]:
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    push.sndhwm = pull.rcvhwm = 0
    journals = []
    if variant != "raw":
        import zjournal

        # confirm=True: sender and receiver in journals of their own, as two services would be
        sender = zjournal.open(f"{workdir}/hot-{index}.journal", plugins=False)
        receiver = sender
        if variant == "confirm":
            receiver = zjournal.open(f"{workdir}/hot-{index}-in.journal", plugins=False)
        journals = [sender] if receiver is sender else [sender, receiver]
        push = sender.wrap(push, name="out", confirm=variant == "confirm")
        pull = receiver.wrap(pull, name="in")
    pull.bind(f"inproc://hot-{index}")
    push.connect(f"inproc://hot-{index}")
    one, two = b"x" * 100, [b"header", b"x" * 100]
    # Sends first, with nothing received, then the receives of what was queued: each side alone. In
    # rounds of CHUNK messages, so a confirm sender has at most that many unconfirmed (as it would
    # facing a receiver that keeps up), not the whole run.
    costs = dict.fromkeys(CALLS, 0.0)
    for send, recv, argument in (("send", "recv", one), ("send_multipart", "recv_multipart", two)):
        for _ in range(count // CHUNK):
            costs[send] += _seconds(getattr(push, send), argument, CHUNK)
            costs[recv] += _seconds(getattr(pull, recv), 0, CHUNK)
    costs = {call: seconds / (count // CHUNK * CHUNK) * 1e6 for call, seconds in costs.items()}
    push.close(0)
    pull.close(0)
    for journal in journals:
        journal.close()
    ctx.term()
    return costs


def _seconds(call: Any, argument: Any, count: int) -> float:
    """Seconds ``count`` calls of ``call(argument)`` take."""
    start = time.perf_counter()
    for _ in range(count):
        call(argument)
    return time.perf_counter() - start


def run(count: int = 100_000, repeat: int = 3) -> dict[str, Any]:
    samples: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="zjhot") as tmp:
        index = 0
        for _ in range(repeat):
            for variant in VARIANTS:
                index += 1
                for call, micros in _time_calls(variant, count, tmp, index).items():
                    samples.setdefault((call, variant), []).append(micros)
    rows = []
    for call in CALLS:
        raw, journaled, confirm = (statistics.median(samples[(call, v)]) for v in VARIANTS)
        rows.append(
            {
                "call": call,
                "raw_us": raw,
                "journaled_us": journaled,
                "added_us": journaled - raw,
                "confirm_us": confirm,
                "confirm_added_us": confirm - raw,
            }
        )
    return {
        "title": f"µs per call, one process, 100-byte messages (multipart: 2 frames), median of {repeat}",
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (
            r["call"],
            f"{r['raw_us']:.2f}",
            f"{r['journaled_us']:.2f}",
            f"{r['added_us']:+.2f}",
            f"{r['confirm_us']:.2f}",
            f"{r['confirm_added_us']:+.2f}",
        )
        for r in result["rows"]
    ]
    return table(("call", "raw pyzmq (µs)", "journaled (µs)", "added", "confirm=True (µs)", "added"), rows)
