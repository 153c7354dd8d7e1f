"""What every benchmark scenario shares: summaries of repeated runs and markdown tables."""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

NATS_ENV = "ZJOURNAL_BENCH_NATS"  # the NATS server a run started for its replicated variants, for its processes


def start_nats(workdir: Path) -> Any:
    """A JetStream server on 127.0.0.1 (tests/natsserver.py: the test extra's pinned binary), named in NATS_ENV."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from natsserver import Servers

    servers = Servers(workdir / "nats").start()
    os.environ[NATS_ENV] = servers.url
    return servers


def summary(samples: Sequence[float]) -> dict[str, Any]:
    """Median and spread of the repetitions of one measurement (never the mean: one slow run skews it)."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": list(samples),
    }


def quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table; the first column is left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(headers) + " |", "|---|" + "---:|" * (len(headers) - 1)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def rate(value: float) -> str:
    return f"{value:,.0f}"


def run_pair(
    consumer: Callable[..., None], consumer_args: tuple, producer: Callable[..., None], producer_args: tuple
) -> float:
    """Run a consumer and a producer in processes of their own; the consumer's rate (msg/s).

    The consumer gets a result queue as its last argument: it puts one value
    once it is ready for messages, then its rate. The producer gets an event as
    its last argument, set once the consumer is ready. Processes are spawned,
    not forked: RocksDB must be opened after any fork.
    """
    spawn = mp.get_context("spawn")
    result, ready = spawn.Queue(), spawn.Event()
    receiving = spawn.Process(target=consumer, args=(*consumer_args, result))
    receiving.start()
    result.get(timeout=30)  # ready
    sending = spawn.Process(target=producer, args=(*producer_args, ready))
    sending.start()
    ready.set()
    rate = result.get(timeout=600)
    sending.join(60)
    receiving.join(60)
    return rate
