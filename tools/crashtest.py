"""Crash harness: SIGKILL a process of a journaled system under load, restart it, repeat; count what was lost.

Run:  python tools/crashtest.py [--system device|pipeline] [--rounds 50] [--target ...] [--json crash.json]
      python tools/crashtest.py --short        # what CI runs: a few rounds, well under two minutes

The system is real processes on ipc sockets: client processes (DEALER,
pipelining unique requests) -> a journaled queue device (``zjournal.Queue``)
-> worker processes (REP). Each round the harness waits a random moment, kills
the target with SIGKILL, restarts it and times how long it takes to be ready
again. Workers append every request they process to a file of their own
(fsynced every 100 lines, and os.write survives SIGKILL). The device keeps
acked entries for an hour (``retention``), so at the end its journal holds
every request it ever accepted: lost = accepted - processed, which must be 0.

``--system pipeline`` runs a PUSH/PULL pipeline with both ends journaled
instead: a producer (journaled PUSH, ``confirm=True``) and a consumer (a
journaled PULL, no option). Each producer entry stays pending until the
consumer's journal confirms it has the message, and zjournal resends what
stays unconfirmed (it may have died in a killed consumer's queue). The
producer or the consumer is killed. The producer's journal keeps acked
entries, so lost = accepted - processed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


# -- roles (each runs in its own process) -------------------------------------------


def role_device(workdir: Path) -> None:
    import zmq

    import zjournal

    journal = zjournal.open(str(workdir / "device.journal"), retention=3600)
    ctx = zmq.Context()
    frontend = ctx.socket(zmq.ROUTER)
    frontend.bind(f"ipc://{workdir}/front")
    backend = ctx.socket(zmq.DEALER)
    backend.bind(f"ipc://{workdir}/back")
    # A request whose worker was killed is sent again after a second without a reply.
    queue = zjournal.Queue(frontend, backend, journal, name="requests", redeliver_after=1.0)
    zjournal.stop_on_signals(queue, drain_timeout=1.0)
    print("ready", flush=True)
    queue.run()
    journal.close()


def role_worker(workdir: Path, index: int) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.REP)
    sock.connect(f"ipc://{workdir}/back")
    from zjournal.crashlog import append_whole_lines  # (a kill may have torn the last line)

    out = append_whole_lines(workdir / f"worker-{index}.log")
    signal.signal(signal.SIGTERM, lambda *_: (os.fsync(out), os._exit(0)))
    print("ready", flush=True)
    count = 0
    while True:
        body = sock.recv_multipart()[-1]
        os.write(out, body + b"\n")
        count += 1
        if count % 100 == 0:
            os.fsync(out)
        sock.send(b"ok")


def role_producer(workdir: Path, rate: float) -> None:
    import zmq

    import zjournal

    journal = zjournal.open(str(workdir / "producer.journal"), retention=3600)
    ctx = zmq.Context()
    # confirm=True: each entry stays pending until the consumer's journal has the message, and is
    # sent again by zjournal itself until then (the hand-written confirm channel is gone).
    push = journal.wrap(ctx.socket(zmq.PUSH), name="pipeline", confirm=True, confirm_timeout=1.0)
    push.connect(f"ipc://{workdir}/pipe")
    # Keys are never reused: acked entries stay in the journal (retention), so it knows the last one.
    seq = max((int(e.frames[0]) + 1 for e in journal.entries(name="pipeline")), default=0)
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    print("ready", flush=True)
    interval = 1.0 / rate
    next_send = time.monotonic()
    while running[0]:
        if time.monotonic() >= next_send:
            push.send(b"%09d" % seq)
            seq += 1
            next_send += interval
        time.sleep(max(0.0, min(next_send - time.monotonic(), 0.01)))
    push.wait_confirmed()  # stopping: done once every message is confirmed
    (workdir / "producer.next").write_text(str(seq))
    push.close()
    journal.close()


def role_consumer(workdir: Path) -> None:
    import zmq

    import zjournal

    journal = zjournal.open(str(workdir / "consumer.journal"))
    ctx = zmq.Context()
    pull = journal.wrap(ctx.socket(zmq.PULL), name="pipeline")  # no option: it confirms by itself
    pull.bind(f"ipc://{workdir}/pipe")
    from zjournal.crashlog import append_whole_lines  # (a kill may have torn the last line)

    out = append_whole_lines(workdir / "consumer.log")
    signal.signal(signal.SIGTERM, lambda *_: (os.fsync(out), os._exit(0)))
    print("ready", flush=True)
    count = 0
    while True:
        key = pull.recv()  # asking for the next acks the previous one
        os.write(out, key + b"\n")
        count += 1
        if count % 100 == 0:
            os.fsync(out)


def role_client(workdir: Path, index: int, rate: float) -> None:
    import zmq

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(f"ipc://{workdir}/front")
    running = [True]
    signal.signal(signal.SIGTERM, lambda *_: running.__setitem__(0, False))
    print("ready", flush=True)
    seq = 0
    interval = 1.0 / rate
    next_send = time.monotonic()
    while running[0]:
        now = time.monotonic()
        if now >= next_send:
            sock.send_multipart([b"", b"c%d-%07d" % (index, seq)])
            seq += 1
            next_send += interval
        if sock.poll(max(0, int((next_send - time.monotonic()) * 1000))):
            while sock.poll(0):
                sock.recv_multipart()
    (workdir / f"client-{index}.sent").write_text(str(seq))
    ctx.destroy(0)


# -- the harness -------------------------------------------------------------------------


class Proc:
    def __init__(self, workdir: Path, role: str, *args: str) -> None:
        self.workdir, self.role, self.args = workdir, role, args
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start the process; seconds until it said it was ready."""
        started = time.monotonic()
        cmd = [sys.executable, str(HERE), "--role", self.role, "--workdir", str(self.workdir), *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"{self.role} did not start: {line!r}")
        return time.monotonic() - started

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 30) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def pending_in(journal_path: str) -> int:
    import zjournal

    with zjournal.open(journal_path, read_only=True) as j:
        return j.count(state="pending")


def run_pipeline(args: argparse.Namespace) -> dict:
    import zjournal

    workdir = Path(tempfile.mkdtemp(prefix="zjpipe-"))
    rng = random.Random(args.seed)
    producer = Proc(workdir, "producer", "--rate", str(args.rate))
    consumer = Proc(workdir, "consumer")
    consumer.start()
    producer.start()
    recoveries: list[float] = []
    kills = {"producer": 0, "consumer": 0}
    deadline = time.monotonic() + args.seconds if args.seconds else None
    rounds = 0
    while rounds < args.rounds and (deadline is None or time.monotonic() < deadline):
        time.sleep(rng.uniform(args.min_wait, args.max_wait))
        target = rng.choice(["producer", "consumer"])
        victim = producer if target == "producer" else consumer
        victim.kill()
        kills[target] += 1
        recoveries.append(victim.start())
        rounds += 1
        print(f"round {rounds}: killed the {target}, back in {recoveries[-1] * 1000:.0f} ms", file=sys.stderr)
    producer.stop(timeout=90)  # it finishes once every message is confirmed
    consumer.stop()
    processed = (workdir / "consumer.log").read_bytes().split()
    with zjournal.open(str(workdir / "producer.journal"), read_only=True) as j:
        entries = list(j.entries())
    sent = int((workdir / "producer.next").read_text())
    return summarize(
        "pipeline", rounds, kills, sent, {e.frames[0] for e in entries}, processed, entries, recoveries, workdir
    )


def summarize(
    system: str,
    rounds: int,
    kills: dict[str, int],
    sent: int,
    accepted: set[bytes],
    processed: list[bytes],
    entries: list,
    recoveries: list[float],
    workdir: Path,
) -> dict:
    """The report: what the journal accepted against what was processed."""
    unique = set(processed)
    return {
        "system": system,
        "rounds": rounds,
        "kills": kills,
        "sent": sent,
        "accepted": len(accepted),
        "processed": len(unique),
        "lost": len(accepted - unique),
        "duplicates": len(processed) - len(unique),
        "redeliveries": sum(max(0, e.attempts - 1) for e in entries),
        "dead": sum(1 for e in entries if e.state == "dead"),
        "left_pending": sum(1 for e in entries if e.state == "pending"),
        "recovery_ms_p50": round(statistics.median(recoveries) * 1000, 1) if recoveries else None,
        "recovery_ms_max": round(max(recoveries) * 1000, 1) if recoveries else None,
        "workdir": str(workdir),
    }


def run(args: argparse.Namespace) -> dict:
    import zjournal

    workdir = Path(tempfile.mkdtemp(prefix="zjcrash-"))
    rng = random.Random(args.seed)
    device = Proc(workdir, "device")
    workers = [Proc(workdir, "worker", "--index", str(i)) for i in range(args.workers)]
    clients = [Proc(workdir, "client", "--index", str(i), "--rate", str(args.rate)) for i in range(args.clients)]
    device.start()
    for p in workers + clients:
        p.start()
    recoveries: list[float] = []
    kills: dict[str, int] = {"device": 0, "worker": 0}
    deadline = time.monotonic() + args.seconds if args.seconds else None
    rounds = 0
    while rounds < args.rounds and (deadline is None or time.monotonic() < deadline):
        time.sleep(rng.uniform(args.min_wait, args.max_wait))
        target = args.target if args.target != "random" else rng.choice(["device", "worker"])
        victim = device if target == "device" else rng.choice(workers)
        victim.kill()
        kills[target] += 1
        recoveries.append(victim.start())
        rounds += 1
        print(f"round {rounds}: killed the {target}, back in {recoveries[-1] * 1000:.0f} ms", file=sys.stderr)
    for p in clients:
        p.stop()
    journal_path = str(workdir / "device.journal")
    drain_deadline = time.monotonic() + 60
    while pending_in(journal_path) and time.monotonic() < drain_deadline:
        time.sleep(0.2)
    device.stop()
    for p in workers:
        p.stop()

    processed: list[bytes] = []
    for i in range(args.workers):
        processed += (workdir / f"worker-{i}.log").read_bytes().split()
    with zjournal.open(journal_path, read_only=True) as j:
        entries = list(j.entries())
    accepted = {e.body[-1] for e in entries}
    sent = sum(int((workdir / f"client-{i}.sent").read_text()) for i in range(args.clients))
    result = summarize("device", rounds, kills, sent, accepted, processed, entries, recoveries, workdir)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--role", choices=["device", "worker", "client", "producer", "consumer"], help=argparse.SUPPRESS
    )
    parser.add_argument("--system", choices=["device", "pipeline"], default="device")
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=None, help="time budget (stops earlier than --rounds)")
    parser.add_argument("--target", choices=["device", "worker", "random"], default="random")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second per client")
    parser.add_argument("--min-wait", type=float, default=0.2)
    parser.add_argument("--max-wait", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--short", action="store_true", help="a few quick rounds (CI)")
    parser.add_argument("--json", help="write the result here too")
    args = parser.parse_args()
    if args.role == "device":
        return role_device(Path(args.workdir))
    if args.role == "worker":
        return role_worker(Path(args.workdir), args.index)
    if args.role == "client":
        return role_client(Path(args.workdir), args.index, args.rate)
    if args.role == "producer":
        return role_producer(Path(args.workdir), args.rate)
    if args.role == "consumer":
        return role_consumer(Path(args.workdir))
    if args.short:
        args.rounds, args.min_wait, args.max_wait = 6, 0.1, 0.4
    result = run(args) if args.system == "device" else run_pipeline(args)
    print(
        f"| system | rounds | kills ({'/'.join(result['kills'])}) | sent | accepted | processed | lost | duplicates "
        "| redeliveries | dead | recovery p50 / max |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {result['system']} | {result['rounds']} | {'/'.join(str(v) for v in result['kills'].values())} "
        f"| {result['sent']} | {result['accepted']} | {result['processed']} | **{result['lost']}** "
        f"| {result['duplicates']} | {result['redeliveries']} | {result['dead']} "
        f"| {result['recovery_ms_p50']} / {result['recovery_ms_max']} ms |"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    sys.exit(1 if result["lost"] else 0)


if __name__ == "__main__":
    main()
