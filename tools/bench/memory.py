"""Memory and disk: peak RSS with a million pending entries, and bytes on disk per entry.

Run:  python tools/bench --only memory

Each step runs in a fresh process and reports its peak RSS (VmHWM: ru_maxrss
would carry over the parent's peak through fork and exec):
a baseline (zjournal imported, an empty journal open); a journaled PULL
receiving ``--entries`` messages with ``ack="explicit"`` (so every one stays
pending); a restart that opens the journal (after a clean close: the counts
that close recorded, no scan) and has the first 10,000 redelivered through a
wrapped PULL; then an open after a kill -9, which counts every entry. Pending
entries live on disk: RSS should not grow with their number.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from common import table

STEP = r"""
import json, os, sys, time, zmq, zjournal
step, path, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ctx = zmq.Context()
result = {"step": step}
if step == "baseline":
    with zjournal.open(path) as j:
        pass
elif step == "receive":
    journal = zjournal.open(path)
    pull = journal.wrap(ctx.socket(zmq.PULL), name="in", ack="explicit")
    pull.bind("inproc://m")
    push = ctx.socket(zmq.PUSH)
    push.connect("inproc://m")
    started = time.perf_counter()
    for i in range(count):
        if i % 1000 == 0:
            for _ in range(1000):
                push.send(os.urandom(size))  # incompressible, like real payloads at worst
        pull.recv()
    result["seconds"] = round(time.perf_counter() - started, 2)
    result["pending"] = journal.count(state="pending")
    journal.close()
    result["bytes_on_disk"] = sum(p.stat().st_size for p in __import__("pathlib").Path(path).iterdir())
elif step == "restart":
    started = time.perf_counter()
    journal = zjournal.open(path)
    result["open_seconds"] = round(time.perf_counter() - started, 2)
    result["pending"] = journal.count(state="pending")
    pull = journal.wrap(ctx.socket(zmq.PULL), name="in", ack="explicit")
    for _ in range(10_000):
        pull.recv()
    result["redelivered"] = 10_000
    pull.close(0)
    journal.close()
elif step == "open-and-kill":
    zjournal.open(path)
    os.kill(os.getpid(), 9)
elif step == "open-after-kill":
    started = time.perf_counter()
    journal = zjournal.open(path)
    result["open_seconds"] = round(time.perf_counter() - started, 2)
    result["pending"] = journal.count(state="pending")
    journal.close()
with open("/proc/self/status") as status:  # this process's own peak (Linux)
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
result["peak_rss_mib"] = round(peak_kib / 1024, 1)
ctx.destroy(0)
print(json.dumps(result))
"""


def step(name: str, path: str, count: int, size: int, returncode: int = 0) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", STEP, name, path, str(count), str(size)], capture_output=True, text=True, check=False
    )
    if done.returncode != returncode:
        raise SystemExit(f"step {name} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout) if returncode == 0 else {}


def run(entries: Sequence[int] = (100_000, 1_000_000), size: int = 100) -> dict[str, Any]:
    """Peak RSS of each step for each number of pending entries, and bytes on disk per entry."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="zjmem") as tmp:
        base = step("baseline", str(Path(tmp) / "empty.journal"), 0, size)
        for count in entries:
            path = str(Path(tmp) / f"mem-{count}.journal")
            receive = step("receive", path, count, size)
            restart = step("restart", path, count, size)
            step("open-and-kill", path, count, size, returncode=-9)
            after_kill = step("open-after-kill", path, count, size)
            if not restart["pending"] == after_kill["pending"] == count:
                raise SystemExit(f"pending {restart['pending']} and {after_kill['pending']}, not {count}")
            rows.append(
                {
                    "pending": count,
                    "baseline_rss_mib": base["peak_rss_mib"],
                    "receive_rss_mib": receive["peak_rss_mib"],
                    "receive_seconds": receive["seconds"],
                    "restart_rss_mib": restart["peak_rss_mib"],
                    "open_seconds": restart["open_seconds"],
                    "open_after_kill_seconds": after_kill["open_seconds"],
                    "bytes_per_entry": receive["bytes_on_disk"] / count,
                }
            )
    return {
        "title": f"Peak RSS of a journaled receiver with N pending {size}-byte entries (ack='explicit')",
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (
            f"{r['pending']:,}",
            r["baseline_rss_mib"],
            r["receive_rss_mib"],
            r["restart_rss_mib"],
            f"{r['bytes_per_entry']:.0f}",
            r["open_seconds"],
            r["open_after_kill_seconds"],
        )
        for r in result["rows"]
    ]
    headers = (
        "pending entries",
        "empty journal (MiB)",
        "receiving them (MiB)",
        "restart, redeliver 10,000 (MiB)",
        "bytes on disk / entry",
        "open after a clean close (s)",
        "open after kill -9: counts every entry (s)",
    )
    return table(headers, rows)
