"""Power-loss simulation for the ``interval`` and ``always`` durability modes and in-flight slots.

Run:  python tools/powerloss.py [--seconds 3] [--interval-ms 20] [--json out.json]

The model: power loss keeps exactly what was fsynced. A writer process appends
entries as fast as it can and records, in an unsynced log of its own, every
append that *returned* and when. Each time zjournal fsyncs the journal (the
background thread in ``interval`` mode; every write in ``always`` mode), the
writer copies the journal directory as it is at that moment: that copy is what
a power cut would leave. The harness kills the writer with SIGKILL at a random
moment, opens the last copy and compares: ``always`` must have every append
that returned; ``interval`` may lose the appends of the last ``interval`` ms
(plus the time the fsync itself takes), and the report gives the worst case.
The copy keeps of each write-ahead log only the bytes written before the fsync
started (a conservative image: bytes written during the fsync may be durable
too).

``slots`` (``interval`` durability, a journaled PULL receiving what the same
process pushes): each message sits in the socket's in-flight slot until the
next one is asked for. The image copies the slot file while the socket keeps
writing it, so images catch slots torn mid-write; opening the image must keep
either a message exactly as it was received under its id or nothing, never
garbage (the ``garbage`` column; any makes the run fail).

What this does not model: a disk that lies about fsync, or a torn write inside
a RocksDB file (``tests/test_faults.py`` covers torn and damaged files).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRITER = r"""
import os, shutil, sys, time, zjournal
path, image, log, mode, interval = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
journal = zjournal.open(path, durability="interval" if mode == "slots" else mode, fsync_interval=interval)
store = journal._store

def wal_sizes():
    return {n: os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".log")}

def snapshot(durable_wal):
    tmp = image + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(path, tmp, ignore=shutil.ignore_patterns("LOCK"))
    for name, size in durable_wal.items():  # cut the logs back to what the fsync covered
        copy = os.path.join(tmp, name)
        if os.path.exists(copy) and os.path.getsize(copy) > size:
            os.truncate(copy, size)
    # Two renames, never a half-deleted image: a kill in between leaves image.old whole.
    shutil.rmtree(image + ".old", ignore_errors=True)
    if os.path.exists(image):
        os.rename(image, image + ".old")
    os.rename(tmp, image)

real_sync = store.sync
def sync_and_snapshot():
    before = wal_sizes()  # everything written before the fsync started is durable once it returns
    real_sync()
    snapshot(before)
store.sync = sync_and_snapshot
out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
if mode == "slots":
    # A journaled PULL: each message sits in its in-flight slot until the next one is asked for.
    # The image copies the slot file while the socket keeps writing it: torn slots are likely, and
    # opening the image must reject them, never read garbage.
    import zmq
    from zjournal import inflight
    real_slot_sync = inflight.SlotFile.sync
    def slot_sync_and_snapshot(self):
        real_slot_sync(self)
        snapshot(wal_sizes())
    inflight.SlotFile.sync = slot_sync_and_snapshot
    ctx = zmq.Context()
    pull = journal.wrap(ctx.socket(zmq.PULL), name="p")
    pull.bind("inproc://p")
    push = ctx.socket(zmq.PUSH)
    push.connect("inproc://p")
    print("ready", flush=True)
    i = 0
    while True:
        push.send(b"%08d" % i)
        pull.recv()
        os.write(out, b"%d %d %.6f\n" % (i, pull.last_id, time.time()))
        i += 1
print("ready", flush=True)
i = 0
while True:
    entry_id = journal.append("p", [b"%08d" % i], direction="in")
    if mode == "always":
        snapshot(wal_sizes())  # the write that just returned was fsynced before it returned
    os.write(out, b"%d %d %.6f\n" % (i, entry_id, time.time()))
    i += 1
"""


def run_mode(mode: str, seconds: float, interval_ms: float, workdir: Path, rng: random.Random) -> dict:
    path, image, log = workdir / f"{mode}.journal", workdir / f"{mode}.image", workdir / f"{mode}.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(image), str(log), mode, str(interval_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    time.sleep(rng.uniform(seconds / 2, seconds))
    proc.send_signal(signal.SIGKILL)  # the power goes out
    killed_at = time.time()
    proc.wait()
    returned = []
    for line in log.read_text().splitlines():
        seq, entry_id, at = line.split()
        returned.append((int(seq), int(entry_id), float(at)))
    import zjournal

    if not image.exists():
        image = image.with_name(image.name + ".old")
    if not image.exists():
        return {"mode": mode, "returned": len(returned), "kept": 0, "lost": len(returned), "note": "no fsync yet"}
    with zjournal.open(str(image)) as journal:
        found = {e.id: e.frames for e in journal.entries()}
    kept = set(found)
    if mode == "slots":
        # Every message but the last was acked by asking for the next: only the one in hand may be
        # pending, and what opening the image found must be exactly what was received under that id.
        received = {entry_id: [b"%08d" % seq] for seq, entry_id, _at in returned}
        garbage = [entry_id for entry_id, frames in found.items() if received.get(entry_id) != frames]
        _seq, last_id, last_at = returned[-1]  # in hand when the power went: the only one not acked
        lost = last_id not in kept
        return {
            "mode": mode,
            "returned": len(returned),
            "kept": len(kept),
            "lost": int(lost),
            "garbage": len(garbage),
            "lost_window_ms": round((killed_at - last_at) * 1000, 1) if lost else 0.0,
            "interval_ms": interval_ms,
        }
    lost = [(seq, entry_id, at) for seq, entry_id, at in returned if entry_id not in kept]
    return {
        "mode": mode,
        "returned": len(returned),
        "kept": len(kept),
        "lost": len(lost),
        # how long before the power cut the oldest lost append had returned
        "lost_window_ms": round((killed_at - min(at for _, _, at in lost)) * 1000, 1) if lost else 0.0,
        "interval_ms": interval_ms if mode == "interval" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="zjpower-"))
    results = []
    try:
        for round_ in range(args.rounds):
            for mode in ("interval", "always", "slots"):
                roundir = workdir / f"r{round_}"
                roundir.mkdir(exist_ok=True)
                results.append(run_mode(mode, args.seconds, args.interval_ms, roundir, rng))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        "| mode | appends returned | kept after the power cut | lost | oldest lost append returned before the cut "
        "| garbage |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        garbage = r.get("garbage", "-")
        print(f"| {r['mode']} | {r['returned']} | {r['kept']} | {r['lost']} | {r['lost_window_ms']} ms | {garbage} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    always_lost = sum(r["lost"] for r in results if r["mode"] == "always")
    garbage = sum(r.get("garbage", 0) for r in results)
    sys.exit(1 if always_lost or garbage else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
