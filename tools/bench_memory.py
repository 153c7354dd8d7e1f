"""Memory and disk: peak RSS with a million pending entries, and bytes on disk per entry.

Run:  python tools/bench_memory.py [--entries 1000000] [--size 100]

Each step runs in a fresh process and reports its peak RSS (ru_maxrss):
a baseline (zjournal imported, an empty journal open); a journaled PULL
receiving ``--entries`` messages with ``ack="explicit"`` (so every one stays
pending); a restart that opens the journal (counting the entries) and has the
first 10,000 redelivered through a wrapped PULL. Pending entries live on
disk: RSS should not grow with their number.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

STEP = r"""
import json, os, resource, sys, time, zmq, zjournal
step, path, count, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ctx = zmq.Context()
result = {"step": step}
if step == "baseline":
    with zjournal.open(path + "-empty") as j:
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
result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
ctx.destroy(0)
print(json.dumps(result))
"""


def step(name: str, path: str, count: int, size: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", STEP, name, path, str(count), str(size)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"step {name} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="zjmem") as tmp:
        path = str(Path(tmp) / "mem.journal")
        results = [step(name, path, args.entries, args.size) for name in ("baseline", "receive", "restart")]
    base, receive, restart = results
    print(f"{args.entries:,} pending entries of {args.size}-byte messages")
    print("| step | peak RSS (MiB) | notes |")
    print("|---|---:|---|")
    print(f"| baseline: empty journal | {base['peak_rss_mib']} | |")
    print(
        f"| receive {args.entries:,}, all pending | {receive['peak_rss_mib']} "
        f"| {receive['seconds']} s; {receive['bytes_on_disk'] / args.entries:.0f} bytes on disk per entry |"
    )
    print(
        f"| restart with them pending, redeliver 10,000 | {restart['peak_rss_mib']} "
        f"| open and count: {restart['open_seconds']} s |"
    )


if __name__ == "__main__":
    main()
