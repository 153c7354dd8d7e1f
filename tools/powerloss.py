"""Power-loss simulation for the ``interval`` and ``always`` durability modes, in-flight slots and confirms.

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
too), and of the journal's log mark (zjournal.store.logmark) what a power cut
leaves: a new boot, and a synced mark no further than those bytes.

``slots`` (``interval`` durability, a journaled PULL receiving what the same
process pushes): each message sits in the socket's in-flight slot until the
next one is asked for. The image copies the slot file while the socket keeps
writing it, so images catch slots torn mid-write; opening the image must keep
either a message exactly as it was received under its id or nothing, never
garbage (the ``garbage`` column; any makes the run fail).

``spill`` (``interval``, the same PULL, but every 50th message is kept
pending by a failing handler): a kept message moves from its slot to the
store when the next one arrives. Images keep each log only up to its last
fsync and each slot file only as of its last fdatasync (not as of "now"),
and the writer checks every image as it is taken, since each is a state a
power cut could leave: a moved message that is neither in the durable log
nor still in its durable slot is lost in that state (the ``lost`` column;
any makes the run fail). This is the order "the store record is durable
before the slot overwrite is".

``confirm-receiver`` (``interval``, a journaled PULL with explicit acks, fed by a
``confirm=True`` sender in a process of its own, whose host keeps its
power): the receiver's power goes out, a new receiver opens the last image
on the same endpoint, the sender stops and waits for its confirmations.
Every message sent must be acked by the worker before the cut or after it
(the ``lost`` column counts those that were not; any makes the run fail):
a confirmation must never go out for a message the image could lack.

``confirm-sender`` (``interval``, the confirm sender loses its power; its
receiver, slower than it, keeps its own): the restarted sender opens the
last image, resends what it holds unconfirmed and sends 1,000 new messages.
Those sent after the image was taken may be lost with the sender's ZeroMQ
queue (``lost``, and how long before the cut the oldest returned); any sent
before it, or after the restart, that does not arrive fails the run
(``lost_after_durable`` in the JSON).

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
import os, shutil, sys, threading, time, zjournal
from zjournal.journal import inflight
from zjournal.store import logmark
path, image, log, mode, interval = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
journal = zjournal.open(path, durability=mode if mode in ("interval", "always") else "interval",
                        fsync_interval=interval)
store = journal._store
out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

def wal_sizes():
    return {n: os.path.getsize(os.path.join(path, n)) for n in os.listdir(path) if n.endswith(".log")}

# What the fsyncs made durable so far: each log up to the bytes written before its last fsync
# started, each slot file as it was at its last fdatasync. Nothing else survives a power cut.
durable_wal = wal_sizes()  # opening ends with a synced write
durable_seq = [store._db.latest_sequence_number()]  # the store's sequence number those bytes reach
durable_slots = {}
durable_at = {}  # confirm-sender: when the durable copy of each outbox was read
lock = threading.RLock()  # fsyncs come from the maintainer thread and from the application's
# spill mode: entries moved from a slot to the store, with the log and the size that hold them.
# At every image each must be in the durable log or still in its durable slot: in neither, a power
# cut at that instant loses a message that had been durable.
spilled = []

def check_spills():
    held = {i for data in durable_slots.values() for i, _record in inflight._records_of(data)}
    for spill in list(spilled):
        entry_id, log_name, size = spill
        if durable_wal.get(log_name, 0) >= size:
            spilled.remove(spill)  # the store's copy is durable
        elif entry_id not in held:
            spilled.remove(spill)
            os.write(out, b"lost-at-image %d %.6f\n" % (entry_id, time.time()))

def snapshot():
    with lock:
        if spilled:
            check_spills()
        tmp = image + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(path, tmp, ignore=shutil.ignore_patterns("LOCK", inflight.DIRECTORY))
        for name in os.listdir(tmp):  # cut the logs back to what the fsyncs covered
            if name.endswith(".log"):
                copy = os.path.join(tmp, name)
                os.truncate(copy, min(os.path.getsize(copy), durable_wal.get(name, 0)))
        logmark.after_a_power_cut(tmp, durable_seq[0])  # a new boot; the mark no further than the logs
        os.makedirs(os.path.join(tmp, inflight.DIRECTORY))
        for name, data in durable_slots.items():
            with open(os.path.join(tmp, inflight.DIRECTORY, name), "wb") as f:
                f.write(data)
        # Two renames, never a half-deleted image: a kill in between leaves image.old whole.
        shutil.rmtree(image + ".old", ignore_errors=True)
        if os.path.exists(image):
            os.rename(image, image + ".old")
        os.rename(tmp, image)
        if mode == "confirm-sender":  # every send that returned before this time is in the image
            os.write(out, b"image %.6f\n" % min(durable_at.values(), default=0.0))

real_sync = store.sync
def sync_and_snapshot():
    with lock:
        # Everything written before the fsync started is durable once it returns. The number first,
        # as above: sizes taken first would miss appends that the number taken after counts.
        before_seq = store._db.latest_sequence_number()
        before = wal_sizes()
        real_sync()
        durable_wal.update(before)
        durable_seq[0] = max(durable_seq[0], before_seq)
        snapshot()
store.sync = sync_and_snapshot
real_write = store.write
def write(batch, *, sync=False):
    real_write(batch, sync=sync)
    if sync:  # a synced write: the log is durable up to here
        with lock:
            # The number before the sizes: the main thread may append in between, and the sizes must
            # hold every write the number counts (RocksDB publishes a number after its log write).
            seq = store._db.latest_sequence_number()
            durable_wal.update(wal_sizes())
            durable_seq[0] = max(durable_seq[0], seq)
            snapshot()
store.write = write
if mode in ("slots", "spill", "confirm-receiver", "confirm-sender"):
    # A journaled PULL: each message sits in its in-flight slot until the next one is asked for.
    # 'slots': the image copies the slot file while the socket keeps writing it, so torn slots are
    # likely: opening the image must reject them, never read garbage. 'spill': every 50th message is
    # kept pending (its handler fails), so it moves from its slot to the store when the next one comes.
    # 'confirm-*': a confirm sender and its receiver in two processes, this one losing its power.
    import zmq
    from zjournal.journal import outbox
    exact = mode.startswith("confirm")

    def sync_and_snapshot(real_sync):
        def sync(self):
            with lock:
                # confirm-*: the file as it was before the fdatasync began (all of it durable once it
                # returns), no more: then a confirmation of a message the image lacks is a loss.
                read_at = time.time()
                before = os.pread(self.fd, os.fstat(self.fd).st_size, 0) if exact and self.fd >= 0 else None
                if before is not None and isinstance(self, outbox.Outbox):
                    durable_at[os.path.basename(self.path)] = read_at
                real_sync(self)
                if mode == "slots":  # copied while the socket may be writing it
                    with open(self.path, "rb") as f:
                        durable_slots[os.path.basename(self.path)] = f.read()
                elif before is not None or self.fd >= 0:
                    durable_slots[os.path.basename(self.path)] = before or os.pread(
                        self.fd, os.fstat(self.fd).st_size, 0
                    )
                snapshot()
        return sync

    inflight.SlotFile.sync = sync_and_snapshot(inflight.SlotFile.sync)
    outbox.Outbox.sync = sync_and_snapshot(outbox.Outbox.sync)  # a confirm sender's unconfirmed messages
    real_spill = journal._ledger.spill
    def spill(slot):
        entry_id = slot.entry_id
        real_spill(slot)
        with lock:
            log_name, size = max(wal_sizes().items())
            spilled.append((entry_id, log_name, size))
    journal._ledger.spill = spill
    ctx = zmq.Context()
    if mode == "confirm-sender":
        # No high-water mark: what the slow receiver has not taken waits in this process's ZeroMQ queue
        # (lost with the power, the image holds it) and, once the outbox is full, in the store.
        push = journal.wrap(ctx.socket(zmq.PUSH), name="s", confirm=True, confirm_timeout=0.5)
        push.sndhwm = 0
        push.connect(sys.argv[6])
        print("ready", flush=True)
        i = 0
        while True:
            push.send(b"old%08d" % i)
            os.write(out, b"%d %.6f\n" % (i, time.time()))
            i += 1
    if mode == "confirm-receiver":
        # A worker that acks each message once it has received 1,000 more (explicit acks, a lag): what it
        # did not ack must come back after the cut. "acking" is logged before the ack: never counted late.
        import collections
        pull = journal.wrap(ctx.socket(zmq.PULL), name="p", ack="explicit")
        pull.bind(sys.argv[6])
        print("ready", flush=True)
        unacked = collections.deque()
        while True:
            unacked.append((pull.recv(), pull.last_id))
            if len(unacked) > 1000:
                body, entry_id = unacked.popleft()
                os.write(out, b"acking %s\n" % body)
                pull.ack(entry_id)
    pull = journal.wrap(ctx.socket(zmq.PULL), name="p")
    pull.bind("inproc://p")
    push = ctx.socket(zmq.PUSH)
    push.connect("inproc://p")
    print("ready", flush=True)
    i = 0
    while True:
        push.send(b"%08d" % i)
        if mode == "spill" and i % 50 == 0:
            try:
                with pull.receiving():
                    raise RuntimeError("the handler failed: kept pending")
            except RuntimeError:
                pass
        else:
            pull.recv()
        os.write(out, b"%d %d %.6f\n" % (i, pull.last_id, time.time()))
        i += 1
print("ready", flush=True)
i = 0
while True:
    entry_id = journal.append("p", [b"%08d" % i], direction="in")
    os.write(out, b"%d %d %.6f\n" % (i, entry_id, time.time()))
    i += 1
"""


# 'confirm': a confirm sender in a process of its own (its host keeps its power). It sends numbered
# messages as fast as it can until the harness creates the stop file, then waits for every message to
# be confirmed and prints: how many sends returned, whether all were confirmed, how many are pending.
SENDER = r"""
import os, sys, zmq, zjournal
path, endpoint, stop = sys.argv[1:4]
journal = zjournal.open(path)
ctx = zmq.Context()
push = journal.wrap(ctx.socket(zmq.PUSH), name="s", confirm=True, confirm_timeout=0.5)
push.connect(endpoint)
print("ready", flush=True)
sent = 0
while sent % 256 or not os.path.exists(stop):
    push.send(b"%08d" % sent)
    sent += 1
confirmed = push.wait_confirmed(timeout=60)
print(sent, int(confirmed), journal.count(name="s", state="pending", direction="out"), flush=True)
push.close()
journal.close()
ctx.term()
"""


def _started(script: str, *args: str) -> subprocess.Popen:
    """``script`` run in a new Python process with ``args``, once it printed "ready"."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _acked(log: Path) -> list[int]:
    """The numbers of the messages the writer's worker was acking, from its log (a torn last line: not whole)."""
    *whole, _torn = log.read_text().split("\n")
    return [int(line.split()[1]) for line in whole]


def run_confirm_receiver(seconds: float, interval_ms: float, workdir: Path, rng: random.Random) -> dict:
    """The receiver of a confirm sender loses its power; a new one starts from the image; nothing is lost.

    Every message whose ``send`` returned must be acked by the worker before
    the cut, or reach the worker that opens the image after it (the image's
    pending entries, then the sender's resends of what it was not told is
    journaled). A confirmation sent for a message the image lacks would lose
    it: the sender never resends a confirmed message.
    """
    path, image, log = workdir / "confirm.journal", workdir / "confirm.image", workdir / "confirm.log"
    endpoint, stop = f"ipc://{workdir}/confirm.ipc", workdir / "confirm.stop"
    receiver = _started(WRITER, str(path), str(image), str(log), "confirm-receiver", str(interval_ms), endpoint)
    sender = _started(SENDER, str(workdir / "sender.journal"), endpoint, str(stop))
    time.sleep(rng.uniform(seconds / 2, seconds))
    receiver.send_signal(signal.SIGKILL)  # the receiver's host loses its power
    receiver.wait()
    before = _acked(log)
    import zmq

    import zjournal

    if not image.exists():
        image = image.with_name(image.name + ".old")
    after: list[int] = []
    ctx = zmq.Context()
    with zjournal.open(str(image), durability="interval", fsync_interval=interval_ms) as journal:
        pull = journal.wrap(ctx.socket(zmq.PULL), name="p", ack="explicit")
        pull.bind(endpoint)
        pull.rcvtimeo = 300
        stop.touch()  # the sender sends no more, and waits for its confirmations
        while True:
            try:
                after.append(int(pull.recv()))
                pull.ack()
            except zmq.Again:
                if sender.poll() is not None:
                    break
        pull.close()
    ctx.term()
    sent, confirmed, pending = (int(word) for word in sender.stdout.read().split())
    delivered = set(before) | set(after)
    lost = [n for n in range(sent) if n not in delivered]
    return {
        "mode": "confirm-receiver",
        "returned": sent,
        "kept": len(delivered),
        "lost": len(lost),
        "duplicates": len(before) + len(after) - len(delivered),
        "after_restart": len(after),
        "all_confirmed": bool(confirmed) and pending == 0,
        "lost_window_ms": 0.0,
        "interval_ms": interval_ms,
    }


# 'confirm-sender': the receiver (its host keeps its power) logs every message it is handed, until
# the stop file exists and nothing came for 300 ms; slower than the sender while the slow file exists.
RECEIVER = r"""
import os, sys, time, zmq, zjournal
path, endpoint, log, stop, slow_file = sys.argv[1:6]
journal = zjournal.open(path)
ctx = zmq.Context()
pull = journal.wrap(ctx.socket(zmq.PULL), name="r")
pull.rcvtimeo = 300
pull.bind(endpoint)
print("ready", flush=True)
slow, n = True, 0
with open(log, "wb") as out:
    while True:
        try:
            out.write(pull.recv() + b"\n")
        except zmq.Again:
            if os.path.exists(stop):
                break
            continue
        n += 1
        if n % 1000 == 0:
            slow = os.path.exists(slow_file)
        if slow and n % 10 == 0:
            time.sleep(0.001)
pull.close()
journal.close()
ctx.term()
"""

# 'confirm-sender': the sender after the power cut, from the image: it resends what the image holds
# unconfirmed, sends 1,000 new messages and waits for every confirmation.
RESTARTED = r"""
import sys, zmq, zjournal
path, endpoint = sys.argv[1:3]
journal = zjournal.open(path, durability="interval")
ctx = zmq.Context()
push = journal.wrap(ctx.socket(zmq.PUSH), name="s", confirm=True, confirm_timeout=0.5)
push.connect(endpoint)
for i in range(1000):
    push.send(b"new%08d" % i)
confirmed = push.wait_confirmed(timeout=60)
print(int(confirmed), journal.count(name="s", state="pending", direction="out"), flush=True)
push.close()
journal.close()
ctx.term()
"""


def run_confirm_sender(seconds: float, interval_ms: float, workdir: Path, rng: random.Random) -> dict:
    """A confirm sender loses its power and restarts from the image; what the image holds is not lost.

    Its receiver is slower than it, so messages wait in the sender's ZeroMQ
    queue and go with the power. Those sent after the last image was taken
    may be lost (the ``interval`` window, as for appends); every one sent
    before must arrive (the image holds it unconfirmed: resent), and so
    must the 1,000 messages the restarted sender sends: its ids may repeat
    ids it handed out before the cut (the image lost their reservation), and
    the receiver must not take them for resends of those.
    """
    path, image, log = workdir / "sender.journal", workdir / "sender.image", workdir / "sender.log"
    endpoint, stop, got = f"ipc://{workdir}/sender.ipc", workdir / "sender.stop", workdir / "received.log"
    slow = workdir / "receiver.slow"
    slow.touch()
    receiver = _started(RECEIVER, str(workdir / "receiver.journal"), endpoint, str(got), str(stop), str(slow))
    sender = _started(WRITER, str(path), str(image), str(log), "confirm-sender", str(interval_ms), endpoint)
    time.sleep(rng.uniform(seconds / 2, seconds))
    sender.send_signal(signal.SIGKILL)  # the sender's host loses its power
    killed_at = time.time()
    sender.wait()
    slow.unlink()  # the receiver takes the backlog at full speed
    *whole, _torn = log.read_text().split("\n")
    sent = [(int(first), float(at)) for first, at in (line.split() for line in whole) if first != "image"]
    images = [float(at) for first, at in (line.split() for line in whole) if first == "image"]
    image_at = images[-1] if images else 0.0  # (a kill between an image's renames leaves the one before)
    import zjournal

    if not image.exists():
        image = image.with_name(image.name + ".old")
    with zjournal.open(str(image)) as journal:
        held = {bytes(e.frames[0]) for e in journal.entries(name="s", state="pending")}
    restarted = subprocess.run(
        [sys.executable, "-c", RESTARTED, str(image), endpoint], capture_output=True, text=True, timeout=120
    )
    confirmed, pending = (int(word) for word in restarted.stdout.split())
    stop.touch()
    receiver.wait(timeout=60)
    delivered = got.read_bytes().split(b"\n")[:-1]
    arrived = set(delivered)
    lost_old = [(seq, at) for seq, at in sent if b"old%08d" % seq not in arrived]
    lost_new = [i for i in range(1000) if b"new%08d" % i not in arrived]
    return {
        "mode": "confirm-sender",
        "returned": len(sent) + 1000,
        "kept": len(held),
        "lost": len(lost_old) + len(lost_new),
        # sent before the image was taken (so in it), or after the restart: none of them may be lost
        "lost_after_durable": sum(at < image_at for _, at in lost_old) + len(lost_new),
        "image_age_ms": round((killed_at - image_at) * 1000, 1),
        "duplicates": len(delivered) - len(arrived),
        "all_confirmed": bool(confirmed) and pending == 0,
        # how long before the power cut the oldest lost send had returned
        "lost_window_ms": round((killed_at - min(at for _, at in lost_old)) * 1000, 1) if lost_old else 0.0,
        "interval_ms": interval_ms,
    }


def run_mode(mode: str, seconds: float, interval_ms: float, workdir: Path, rng: random.Random) -> dict:
    path, image, log = workdir / f"{mode}.journal", workdir / f"{mode}.image", workdir / f"{mode}.log"
    proc = _started(WRITER, str(path), str(image), str(log), mode, str(interval_ms))
    time.sleep(rng.uniform(seconds / 2, seconds))
    proc.send_signal(signal.SIGKILL)  # the power goes out
    killed_at = time.time()
    proc.wait()
    returned: list[tuple[int, int, float]] = []
    lost_at_image = []  # spill mode: power-cut states that had lost a message after it was durable
    *whole, torn = log.read_text().split("\n")
    for line in whole:
        if line.startswith("lost-at-image"):
            lost_at_image.append(int(line.split()[1]))
            continue
        seq, entry_id, at = line.split()
        returned.append((int(seq), int(entry_id), float(at)))
    # The kill can tear the last line (a write across a page boundary stops between the pages): its
    # append returned, after the line before; its time is cut ("… 17"), its id whole once the time began.
    if len(torn.split()) == 3 and not torn.startswith("lost-at-image") and returned:
        seq, entry_id, _at = torn.split()
        returned.append((int(seq), int(entry_id), returned[-1][2]))
    import zjournal

    if not image.exists():
        image = image.with_name(image.name + ".old")
    if not image.exists():
        # The cut came before the first fsync (a loaded machine): nothing was durable yet.
        return {
            "mode": mode,
            "returned": len(returned),
            "kept": 0,
            "lost": len(returned),
            "lost_window_ms": None,
            "note": "no fsync yet",
        }
    with zjournal.open(str(image)) as journal:
        found = {e.id: e.frames for e in journal.entries()}
    kept = set(found)
    if mode == "spill":
        return {
            "mode": mode,
            "returned": len(returned),
            "kept": len(kept),
            "lost": len(lost_at_image),
            "garbage": 0,
            "lost_window_ms": 0.0,
            "interval_ms": interval_ms,
        }
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
            roundir = workdir / f"r{round_}"
            roundir.mkdir(exist_ok=True)
            for mode in ("interval", "always", "slots", "spill"):
                results.append(run_mode(mode, args.seconds, args.interval_ms, roundir, rng))
            results.append(run_confirm_receiver(args.seconds, args.interval_ms, roundir, rng))
            results.append(run_confirm_sender(args.seconds, args.interval_ms, roundir, rng))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(
        "| mode | appends returned | kept after the power cut | lost | oldest lost append returned before the cut "
        "| garbage |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        garbage = r.get("garbage", "-")
        window = "-" if r["lost_window_ms"] is None else f"{r['lost_window_ms']} ms"
        print(f"| {r['mode']} | {r['returned']} | {r['kept']} | {r['lost']} | {window} | {garbage} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    # always: nothing that returned may be lost; spill: no power-cut state may lose a durable message;
    # confirm-receiver: every message sent is acked before the cut or after it, all confirmed;
    # confirm-sender: every message the image holds, and every one sent after the restart, arrives.
    must_keep = sum(r["lost"] for r in results if r["mode"] in ("always", "spill", "confirm-receiver"))
    must_keep += sum(r.get("lost_after_durable", 0) for r in results)
    must_keep += sum(not r.get("all_confirmed", True) for r in results)
    garbage = sum(r.get("garbage", 0) for r in results)
    sys.exit(1 if must_keep or garbage else 0)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
