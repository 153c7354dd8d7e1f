"""The journal's own calls, no sockets: append, get, ack and dead, against RocksDB's own put, get and delete.

Run:  python tools/bench --only api

One journal (``process`` mode, no plugins) in a temporary directory: ``count``
entries of 100 bytes appended one call each, each read back with ``get``,
acked; as many again appended and made dead letters. Beside it, in the same
run, rocksdict alone in another directory: a put of a value the size of an
entry's record under an 8-byte key, a get, a delete (and a put again, for
``dead``, which rewrites the record). Each figure is µs per call, the median
of ``--repeat`` runs; the ratio says how many times RocksDB's own cost a
journal call is (each of these is one write: the rest is the journal's
bookkeeping).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

from common import table

CALLS = ("append", "get", "ack", "dead")
_BODY = [b"x" * 100]


def _per_call(call: Callable[[Any], Any], arguments: Iterable[Any], count: int) -> float:
    start = time.perf_counter()
    for argument in arguments:
        call(argument)
    return (time.perf_counter() - start) / count * 1e6


def _journal_calls(workdir: str, count: int) -> dict[str, float]:
    import zjournal

    journal = zjournal.open(f"{workdir}/api.journal", plugins=False)
    ids: list[int] = []
    append = journal.append
    costs = {"append": _per_call(lambda _: ids.append(append("api", _BODY, direction="in")), range(count), count)}
    costs["get"] = _per_call(journal.get, ids, count)
    costs["ack"] = _per_call(journal.ack, ids, count)
    more = [journal.append("api", _BODY, direction="in") for _ in range(count)]
    costs["dead"] = _per_call(lambda entry_id: journal.dead(entry_id, "bench"), more, count)
    journal.close()
    return costs


def _raw_calls(workdir: str, count: int) -> dict[str, float]:
    import rocksdict

    options = rocksdict.Options(raw_mode=True)
    options.create_if_missing(True)
    db = rocksdict.Rdict(f"{workdir}/raw", options)
    write = rocksdict.WriteOptions()
    keys = [i.to_bytes(8, "big") for i in range(1, count + 1)]
    value = b"x" * 140  # about an entry's record: the message and its header fields
    costs = {"append": _per_call(lambda key: db.put(key, value, write), keys, count)}
    costs["get"] = _per_call(db.get, keys, count)
    costs["ack"] = _per_call(lambda key: db.delete(key, write), keys, count)
    costs["dead"] = _per_call(lambda key: db.put(key, value, write), keys, count)
    db.close()
    return costs


def run(count: int = 50_000, repeat: int = 3) -> dict[str, Any]:
    samples: dict[tuple[str, str], list[float]] = {}
    for index in range(repeat):
        with tempfile.TemporaryDirectory(prefix="zjournal-bench-api-") as tmp:
            # alternated, so that machine noise hits both alike
            for variant, measure in (("rocksdb", _raw_calls), ("journal", _journal_calls)):
                workdir = f"{tmp}/{variant}-{index}"
                for call, us in measure(workdir, count).items():
                    samples.setdefault((call, variant), []).append(us)
    rows = []
    for call in CALLS:
        raw = statistics.median(samples[(call, "rocksdb")])
        journaled = statistics.median(samples[(call, "journal")])
        rows.append({"call": call, "rocksdb_us": raw, "journal_us": journaled, "ratio_to_rocksdb": journaled / raw})
    return {
        "title": f"Journal calls against RocksDB's own (µs per call, {count} entries, median of {repeat})",
        "count": count,
        "rows": rows,
        "samples": {f"{c}/{v}": s for (c, v), s in samples.items()},
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        (r["call"], f"{r['rocksdb_us']:.2f}", f"{r['journal_us']:.2f}", f"{r['ratio_to_rocksdb']:.2f}")
        for r in result["rows"]
    ]
    return table(("call", "rocksdb (µs)", "journal (µs)", "/ rocksdb"), rows)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = run(args.count, args.repeat)
    print(result["title"])
    print(markdown(result))
