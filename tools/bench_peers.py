"""zjournal against the peers a user would pick instead, in one run.

Run:  python tools/bench_peers.py [--messages 50000] [--repeat 3]
Needs: ``pip install -e '.[bench]'`` (redis-py, persist-queue) and, for the Redis
rows, Debian's ``redis-server`` (``apt-get install redis-server``); a row whose
peer is missing says so instead of failing.

Every row moves 100-byte messages from a producer process to a consumer
process that acknowledges each one, as a service would, and reports the
consumer's rate (median of the repetitions):

* raw pyzmq PUSH -> PULL (no durability: the reference);
* zjournal, both ends journaled, ``process`` and ``interval`` (10 ms) durability;
* Redis Streams (XADD; XREADGROUP + XACK per message), AOF ``everysec`` and ``always``,
  a redis-server started on 127.0.0.1 by this script;
* persist-queue's ``SQLiteAckQueue`` (put; get + ack).
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _pushpull():
    """tools/bench_pushpull.py, imported by name so that spawned processes find its functions."""
    import sys

    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import bench_pushpull

    return bench_pushpull


# -- Redis Streams -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, fsync: str, workdir: Path) -> None:
        self.port = _free_port()
        self.dir = workdir / f"redis-{fsync}-{self.port}"
        self.dir.mkdir()
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                fsync,
                "--save",
                "",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _redis_producer(port: int, count: int, ready) -> None:
    import redis

    r = redis.Redis(port=port)
    ready.wait()
    payload = b"x" * 100
    for _ in range(count):
        r.xadd("bench", {b"m": payload})


def _redis_consumer(port: int, count: int, result) -> None:
    import redis

    r = redis.Redis(port=port)
    r.xgroup_create("bench", "g", id="0", mkstream=True)
    result.put("ready")
    got = 0
    start = None
    while got < count:
        for _stream, messages in r.xreadgroup("g", "c", {"bench": ">"}, count=1, block=1000) or []:
            for message_id, _fields in messages:
                if start is None:
                    start = time.perf_counter()
                r.xack("bench", "g", message_id)
                got += 1
    result.put((got - 1) / (time.perf_counter() - start))


def run_redis(fsync: str, count: int, workdir: Path) -> float:
    server = RedisServer(fsync, workdir)
    try:
        spawn = mp.get_context("spawn")
        result, ready = spawn.Queue(), spawn.Event()
        consumer = spawn.Process(target=_redis_consumer, args=(server.port, count, result))
        consumer.start()
        assert result.get(timeout=30) == "ready"
        producer = spawn.Process(target=_redis_producer, args=(server.port, count, ready))
        producer.start()
        ready.set()
        rate = result.get(timeout=600)
        producer.join(30)
        consumer.join(30)
        return rate
    finally:
        server.stop()


# -- persist-queue ---------------------------------------------------------------------


def _pq_producer(path: str, count: int, ready) -> None:
    from persistqueue import SQLiteAckQueue

    q = SQLiteAckQueue(path, multithreading=True, auto_commit=True)
    ready.wait()
    payload = b"x" * 100
    for _ in range(count):
        q.put(payload)


def _pq_consumer(path: str, count: int, result) -> None:
    from persistqueue import SQLiteAckQueue

    q = SQLiteAckQueue(path, multithreading=True, auto_commit=True)
    result.put("ready")
    got = 0
    start = None
    while got < count:
        try:
            item = q.get(block=True, timeout=1)
        except Exception:  # persistqueue.Empty
            continue
        if start is None:
            start = time.perf_counter()
        q.ack(item)
        got += 1
    result.put((got - 1) / (time.perf_counter() - start))


def run_persist_queue(count: int, workdir: Path, index: int) -> float:
    spawn = mp.get_context("spawn")
    path = str(workdir / f"pq-{index}")
    result, ready = spawn.Queue(), spawn.Event()
    consumer = spawn.Process(target=_pq_consumer, args=(path, count, result))
    consumer.start()
    assert result.get(timeout=30) == "ready"
    producer = spawn.Process(target=_pq_producer, args=(path, count, ready))
    producer.start()
    ready.set()
    rate = result.get(timeout=600)
    producer.join(30)
    consumer.join(30)
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    pushpull = _pushpull()
    have_redis = shutil.which("redis-server") is not None and importlib.util.find_spec("redis") is not None
    have_pq = importlib.util.find_spec("persistqueue") is not None
    rows: dict[str, list[float] | str] = {
        "raw pyzmq PUSH/PULL (no durability)": [],
        "zjournal, both ends, process": [],
        "zjournal, both ends, interval 10 ms": [],
        "Redis Streams, AOF everysec": [] if have_redis else "redis-server or redis-py not installed",
        "Redis Streams, AOF always": [] if have_redis else "redis-server or redis-py not installed",
        "persist-queue SQLiteAckQueue": [] if have_pq else "persist-queue not installed",
    }
    small = max(1000, args.messages // 10)
    with tempfile.TemporaryDirectory(prefix="zjpeers") as tmp:
        workdir = Path(tmp)
        index = 0
        for _ in range(args.repeat):
            index += 1
            runs = [
                (
                    "raw pyzmq PUSH/PULL (no durability)",
                    lambda i: pushpull.run_once("raw", args.messages, 100, workdir, i),
                ),
                (
                    "zjournal, both ends, process",
                    lambda i: pushpull.run_once("process", args.messages, 100, workdir, i),
                ),
                (
                    "zjournal, both ends, interval 10 ms",
                    lambda i: pushpull.run_once("interval", args.messages, 100, workdir, i),
                ),
                ("Redis Streams, AOF everysec", lambda i: run_redis("everysec", args.messages // 2, workdir)),
                ("Redis Streams, AOF always", lambda i: run_redis("always", small, workdir)),
                ("persist-queue SQLiteAckQueue", lambda i: run_persist_queue(small, workdir, i)),
            ]
            for label, fn in runs:
                if isinstance(rows[label], list):
                    index += 1
                    rows[label].append(fn(index))  # type: ignore[union-attr]
    raw = statistics.median(rows["raw pyzmq PUSH/PULL (no durability)"])  # type: ignore[arg-type]
    journaled = statistics.median(rows["zjournal, both ends, process"])  # type: ignore[arg-type]
    print(f"100-byte messages, producer and consumer processes, every message acked; median of {args.repeat}")
    print("| system | msg/s (median) | / raw pyzmq | zjournal process / this |")
    print("|---|---:|---:|---:|")
    for label, values in rows.items():
        if isinstance(values, str):
            print(f"| {label} | {values} | | |")
            continue
        med = statistics.median(values)
        print(f"| {label} | {med:,.0f} | {med / raw:.3f} | {journaled / med:.1f}x |")


if __name__ == "__main__":
    main()
