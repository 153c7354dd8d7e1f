"""zjournal against the peers a user would pick instead, in one run.

Run:  python tools/bench --only peers
Needs: the peers, installed by ``tools/bench/install-peers.sh`` (redis-py and
persist-queue from the ``bench`` extra, Debian's ``redis-server``); a row whose
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

import importlib.util
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pushpull
from common import rate, run_pair, summary, table

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
        return run_pair(_redis_consumer, (server.port, count), _redis_producer, (server.port, count))
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
    path = str(workdir / f"pq-{index}")
    return run_pair(_pq_consumer, (path, count), _pq_producer, (path, count))


RAW, PROCESS, INTERVAL = (
    "raw pyzmq PUSH/PULL (no durability)",
    "zjournal, both ends, process",
    "zjournal, both ends, interval 10 ms",
)


def run(messages: int = 50_000, repeat: int = 3) -> dict[str, Any]:
    """Each system ``repeat`` times in turn; a missing peer's row says what is missing."""
    have_redis = shutil.which("redis-server") is not None and importlib.util.find_spec("redis") is not None
    have_pq = importlib.util.find_spec("persistqueue") is not None
    missing_redis = "not run: redis-server or redis-py is not installed (tools/bench/install-peers.sh)"
    rows: dict[str, list[float] | str] = {
        RAW: [],
        PROCESS: [],
        INTERVAL: [],
        "Redis Streams, AOF everysec": [] if have_redis else missing_redis,
        "Redis Streams, AOF always": [] if have_redis else missing_redis,
        "persist-queue SQLiteAckQueue": [] if have_pq else "not run: persist-queue is not installed",
    }
    small = max(1000, messages // 10)
    fast = messages * 4  # the ZeroMQ rows: long enough that process start-up does not dominate
    with tempfile.TemporaryDirectory(prefix="zjpeers") as tmp:
        workdir = Path(tmp)
        runs: list[tuple[str, Callable[[int], float]]] = [
            (RAW, lambda i: pushpull.run_once("raw", fast, 100, workdir, i)),
            (PROCESS, lambda i: pushpull.run_once("process", fast, 100, workdir, i)),
            (INTERVAL, lambda i: pushpull.run_once("interval", fast, 100, workdir, i)),
            ("Redis Streams, AOF everysec", lambda i: run_redis("everysec", messages // 2, workdir)),
            ("Redis Streams, AOF always", lambda i: run_redis("always", small, workdir)),
            ("persist-queue SQLiteAckQueue", lambda i: run_persist_queue(small, workdir, i)),
        ]
        index = 0
        for _ in range(repeat):
            for label, fn in runs:
                values = rows[label]
                if isinstance(values, list):
                    index += 1
                    try:
                        values.append(fn(index))
                    except Exception as e:  # a peer that fails to run is reported, not fatal
                        if label in (RAW, PROCESS):
                            raise
                        rows[label] = f"failed: {e}"
    raw = statistics.median(rows[RAW])  # type: ignore[arg-type]
    journaled = statistics.median(rows[PROCESS])  # type: ignore[arg-type]
    out = []
    for label, values in rows.items():
        if isinstance(values, str):
            out.append({"system": label, "skipped": values})
            continue
        med = statistics.median(values)
        out.append({"system": label, **summary(values), "ratio_to_raw": med / raw, "zjournal_speedup": journaled / med})
    return {
        "title": f"100-byte messages, producer and consumer processes, every message acked; median of {repeat}",
        "unit": "msg/s",
        "rows": out,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = []
    for r in result["rows"]:
        if "skipped" in r:
            rows.append((r["system"], r["skipped"], "", ""))
        else:
            rows.append((r["system"], rate(r["median"]), f"{r['ratio_to_raw']:.3f}", f"{r['zjournal_speedup']:.1f}x"))
    return table(("system", "msg/s (median)", "/ raw pyzmq", "zjournal process / this"), rows)
