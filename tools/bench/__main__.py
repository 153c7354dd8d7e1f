"""zjournal's benchmarks, every scenario side by side in one invocation.

Run:  python tools/bench [--json bench-results.json] [--repeat 3] [--only pushpull,latency,...] [--quick]

Scenarios (``pushpull.py`` also runs alone, with more variants: see its docstring):

* ``hotpath``: what one send / recv call costs, raw, journaled and with
  ``confirm=True``, in one process (the figure to measure before and after a
  change to the per-message code);
* ``api``: the journal's own calls (``append``, ``get``, ``ack``, ``dead``)
  against RocksDB's own put, get and delete;
* ``pushpull``: PUSH->PULL throughput, 100-byte and 4 KiB messages, raw pyzmq
  and both ends journaled in ``process``, ``interval`` (10 ms) and ``always`` mode,
  and ``process+confirm`` (the sender with ``confirm=True``: end-to-end confirms);
* ``fanin``: 1, 4 and 16 ``confirm=True`` senders into one journaled PULL: the
  receiver's CPU per message must not grow with its senders;
* ``latency``: REQ->REP round trips, p50 / p99 / p99.9;
* ``device``: ``zmq.proxy`` against ``zjournal.Queue`` under pipelining clients;
* ``peers``: Redis Streams (AOF everysec and always) and persist-queue, every
  message acked (install the peers with ``tools/bench/install-peers.sh``);
* ``memory``: peak RSS of a journaled receiver with 100,000 and 1,000,000
  pending entries, and bytes on disk per entry;
* ``scaling``: per-call costs (``ack``, ``get``, ``wrap``, ``count``,
  ``oldest_pending``) at 1 and 2,000 open sockets, 1 and 100,000 names used,
  1 and 100,000 dead letters, and a ``confirm=True`` send with 1,000 and
  200,000 messages unconfirmed: they must not grow.

Every figure is a median over ``--repeat`` runs, with min and max; ratios
compare with raw pyzmq (or zmq.proxy) *from the same invocation*, because the
machines this runs on are shared and noisy. Prints markdown tables, then the
targets of the benchmark issue and whether this run met them; writes all of
it, samples included, to the JSON file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the scenario modules, for spawned processes too

import api
import device
import fanin
import hotpath
import latency
import memory
import peers
import pushpull
import scaling
from common import table

SCENARIOS = ("hotpath", "api", "pushpull", "fanin", "latency", "device", "peers", "memory", "scaling")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for dist in ("zjournal", "pyzmq", "rocksdict", "msgpack"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    import zmq

    versions["libzmq"] = zmq.zmq_version()
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "versions": versions,
    }


def run_scenario(name: str, args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    if name == "hotpath":
        return hotpath.run(count=10_000 if quick else 100_000, repeat=args.repeat)
    if name == "api":
        return api.run(count=5_000 if quick else 50_000, repeat=args.repeat)
    if name == "pushpull":
        return pushpull.run(
            sizes=(100,) if quick else (100, 4096),
            messages=20_000 if quick else args.messages,
            repeat=args.repeat,
        )
    if name == "fanin":
        senders = (1, 4) if quick else (1, 4, 16)
        return fanin.run(senders=senders, messages=8_000 if quick else 160_000, repeat=args.repeat)
    if name == "latency":
        return latency.run(requests=2_000 if quick else 20_000, repeat=args.repeat)
    if name == "device":
        return device.run(requests=10_000 if quick else 100_000, repeat=args.repeat)
    if name == "peers":
        return peers.run(messages=5_000 if quick else 50_000, repeat=args.repeat)
    if name == "memory":
        return memory.run(entries=(10_000, 50_000) if quick else (100_000, 1_000_000))
    if name == "scaling":
        return scaling.run(
            sockets=(1, 200) if quick else (1, 2000),
            names=(1, 5_000) if quick else (1, 100_000),
            unconfirmed=(1_000, 60_000) if quick else (1_000, 200_000),
            repeat=1 if quick else args.repeat,
        )
    raise SystemExit(f"unknown scenario {name!r}: choose from {', '.join(SCENARIOS)}")


def _row(result: dict[str, Any], **match: Any) -> dict[str, Any] | None:
    return next((r for r in result["rows"] if all(r.get(k) == v for k, v in match.items())), None)


def targets(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The benchmark issue's targets, as far as this run measured them."""
    found = []

    def add(name: str, value: float, target: float, higher_is_better: bool = True) -> None:
        met = value >= target if higher_is_better else value <= target
        found.append({"target": name, "value": value, "goal": target, "met": met})

    if "pushpull" in results:
        process = _row(results["pushpull"], size=100, variant="process")
        interval = _row(results["pushpull"], size=100, variant="interval")
        if process:
            add("PUSH->PULL 100 B, both ends journaled (process) / raw pyzmq", process["ratio_to_raw"], 0.25)
        if process and interval:
            add("interval / process throughput (100 B)", interval["median"] / process["median"], 0.8)
        confirmed = _row(results["pushpull"], size=100, variant="process+confirm")
        if confirmed:
            add("PUSH->PULL 100 B, confirm=True (process) / raw pyzmq", confirmed["ratio_to_raw"], 0.15)
    if "fanin" in results:
        most = results["fanin"]["rows"][-1]
        # A receiver's cost per message must not grow with its senders (zjournal.sockets.confirm_wire.LastSender).
        add(f"receiver CPU per message, {most['senders']} confirm senders / 1", most["cpu_ratio_to_first"], 1.5, False)
    if "latency" in results:
        pipe = _row(results["latency"], variant="pipe")
        confirmed_pipe = _row(results["latency"], variant="pipe+confirm")
        if pipe and confirmed_pipe:
            add("latency p50, confirm=True / without (pipe)", confirmed_pipe["p50_us"] / pipe["p50_us"], 2.0, False)
    if "device" in results:
        queue = _row(results["device"], device="queue-process")
        if queue:
            add("zjournal.Queue (process) / zmq.proxy", queue["ratio_to_proxy"], 0.2)
    if "memory" in results and len(results["memory"]["rows"]) >= 2:
        small, large = results["memory"]["rows"][0], results["memory"]["rows"][-1]
        more = large["pending"] - small["pending"]
        growth = max(large[step] - small[step] for step in ("receive_rss_mib", "restart_rss_mib")) * 1024 * 1024 / more
        # An entry held in memory would cost at least its 100-byte message; 16 bytes is "does not grow".
        add("peak RSS growth per extra pending entry (bytes)", max(0.0, growth), 16, higher_is_better=False)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--messages", type=int, default=200_000, help="PUSH->PULL messages per run")
    parser.add_argument("--json", default="bench-results.json", help="where to write the results")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test, not a measurement")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}: choose from {', '.join(SCENARIOS)}")
    started = time.time()
    report: dict[str, Any] = {
        "started": datetime.datetime.fromtimestamp(started, datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "tools/bench", *sys.argv[1:]]),
        "machine": machine(),
        "quick": args.quick,
        "scenarios": {},
    }
    print(f"# zjournal benchmarks ({report['started']})")
    m = report["machine"]
    print(f"{m['cpus']} x {m['cpu']}, Python {m['python']}, {m['system']}, libzmq {m['versions']['libzmq']}")
    modules = {
        "hotpath": hotpath,
        "api": api,
        "pushpull": pushpull,
        "fanin": fanin,
        "latency": latency,
        "device": device,
        "peers": peers,
        "memory": memory,
        "scaling": scaling,
    }
    for name in names:
        t0 = time.monotonic()
        result = run_scenario(name, args)
        result["seconds"] = round(time.monotonic() - t0, 1)
        report["scenarios"][name] = result
        print(f"\n## {name}: {result['title']} ({result['seconds']} s)\n")
        print(modules[name].markdown(result), flush=True)
    report["targets"] = targets(report["scenarios"])
    report["seconds"] = round(time.time() - started, 1)
    if report["targets"]:
        print("\n## targets\n")
        rows = [
            (t["target"], f"{t['value']:.3f}", f"{t['goal']}", "met" if t["met"] else "NOT met")
            for t in report["targets"]
        ]
        print(table(("target", "this run", "goal", ""), rows))
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\n{report['seconds']} s; results in {args.json}")


if __name__ == "__main__":
    main()
