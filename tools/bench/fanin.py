"""Several confirm senders into one receiver: the receiver's cost per message must not grow with them.

Run:  python tools/bench --only fanin   (or this file: python tools/bench/fanin.py --senders 1,4,16)

K processes with a ``confirm=True`` PUSH each send their share of the
messages (100 B) into one journaled PULL over ipc, at the same time, so
their messages reach it interleaved. The table gives the receiver's rate and
the CPU time of its receiving thread per message (median of ``--repeat``
runs), and that CPU time against one sender's in the same run: about 1 when
the cost does not grow with the senders.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import zmq
from common import rate, summary, table


def _sender(addr: str, path: str, count: int, ready: Any) -> None:
    import zjournal

    ctx = zmq.Context()
    journal = zjournal.open(path)
    sock = journal.wrap(ctx.socket(zmq.PUSH), name="bench-out", confirm=True)
    sock.sndhwm = 10_000
    sock.connect(addr)
    ready.wait()
    payload = b"x" * 100
    for _ in range(count):
        sock.send(payload)
    sock.wait_confirmed(60)
    sock.close()
    journal.close()
    ctx.term()


def _receiver(addr: str, path: str, count: int, result: Any) -> None:
    import zjournal

    ctx = zmq.Context()
    journal = zjournal.open(path)
    sock = journal.wrap(ctx.socket(zmq.PULL), name="bench-in")
    sock.rcvhwm = 10_000
    sock.bind(addr)
    result.put("bound")
    sock.recv()
    start, cpu = time.perf_counter(), time.thread_time()
    for _ in range(count - 1):
        sock.recv()
    elapsed, cpu = time.perf_counter() - start, time.thread_time() - cpu
    sock.close()
    journal.close()
    ctx.term()
    result.put(((count - 1) / elapsed, cpu / (count - 1) * 1e6))


def run_once(senders: int, messages: int, workdir: Path, index: int) -> tuple[float, float]:
    """(msg/s, receiver CPU µs per message) of one run; processes spawned (RocksDB opens after no fork)."""
    spawn = mp.get_context("spawn")
    addr = f"ipc://{workdir}/fanin-{index}.sock"
    share = messages // senders
    result, ready = spawn.Queue(), spawn.Event()
    receiving = spawn.Process(target=_receiver, args=(addr, str(workdir / f"in-{index}"), share * senders, result))
    receiving.start()
    result.get(timeout=30)
    sending = [
        spawn.Process(target=_sender, args=(addr, str(workdir / f"out-{index}-{k}"), share, ready))
        for k in range(senders)
    ]
    for process in sending:
        process.start()
    time.sleep(0.5 + 0.1 * senders)  # every sender connected before any sends: their messages interleave
    ready.set()
    measured = result.get(timeout=600)
    for process in (*sending, receiving):
        process.join(60)
    return measured


def run(senders: Sequence[int] = (1, 4, 16), messages: int = 160_000, repeat: int = 3) -> dict[str, Any]:
    rates: dict[int, list[float]] = {k: [] for k in senders}
    cpu: dict[int, list[float]] = {k: [] for k in senders}
    with tempfile.TemporaryDirectory(prefix="zjournal-bench-") as tmp:
        index = 0
        for _ in range(repeat):
            for k in senders:  # in turn, so machine noise hits them alike
                index += 1
                measured_rate, measured_cpu = run_once(k, messages, Path(tmp), index)
                rates[k].append(measured_rate)
                cpu[k].append(measured_cpu)
    one = statistics.median(cpu[senders[0]])
    rows = []
    for k in senders:
        row = {"senders": k, **summary(rates[k]), "receiver_cpu_us": statistics.median(cpu[k])}
        row["cpu_ratio_to_first"] = row["receiver_cpu_us"] / one
        rows.append(row)
    return {
        "title": f"confirm senders into one journaled PULL (ipc, 100 B), median of {repeat}",
        "unit": "msg/s",
        "messages": messages,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (
            r["senders"],
            rate(r["median"]),
            f"{r['receiver_cpu_us']:.2f}",
            f"{r['cpu_ratio_to_first']:.2f}",
        )
        for r in result["rows"]
    ]
    first = result["rows"][0]["senders"]
    return table(("senders", "msg/s (median)", "receiver CPU µs/msg", f"/ {first} sender(s)"), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--senders", default="1,4,16")
    parser.add_argument("--messages", type=int, default=160_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = run([int(k) for k in args.senders.split(",")], args.messages, args.repeat)
    print(result["title"])
    print(markdown(result))


if __name__ == "__main__":
    main()
