"""``zjournal demo``: a busy queue device stopped (or killed) mid-load and restarted, nothing lost.

The scenario of DESIGN.md: clients -> journaled queue device -> worker
threads. Halfway through, the workers leave and the device is shut down
gracefully (or, with ``--crash``, the device process is killed with SIGKILL);
the pending requests are counted and read from the journal; a new device on
the same journal replays them to new workers; the last line compares what the
clients sent, what the journal accepted, what the workers processed, and what
was lost.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import zjournal
from zjournal.cli.common import entry_record
from zjournal.store.rocks import check_journal_path


@dataclass
class Tally:
    sent: set[bytes] = field(default_factory=set)
    answered: set[bytes] = field(default_factory=set)
    processed: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class WorkerPool:
    """REP workers: each request takes ``work_ms`` to handle."""

    def __init__(self, ctx: zmq.Context, addr: str, count: int, tally: Tally, work_ms: float) -> None:
        self.stop_event = threading.Event()
        self.threads = [
            threading.Thread(target=self._work, args=(ctx, addr, tally, work_ms), daemon=True) for _ in range(count)
        ]
        for t in self.threads:
            t.start()

    def _work(self, ctx: zmq.Context, addr: str, tally: Tally, work_ms: float) -> None:
        sock = ctx.socket(zmq.REP)
        sock.connect(addr)
        while not self.stop_event.is_set():
            if sock.poll(20):
                body = sock.recv_multipart()[-1]
                time.sleep(work_ms / 1000)
                with tally.lock:
                    tally.processed.append(body)
                sock.send(b"done:" + body)
        sock.close(0)

    def leave(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(5)


def _clients(ctx: zmq.Context, addr: str, count: int, per_client: int, tally: Tally, stop: threading.Event) -> list:
    def run(index: int) -> None:
        sock = ctx.socket(zmq.DEALER)
        sock.connect(addr)
        sent = 0
        in_flight = 0
        while not stop.is_set():
            while sent < per_client and in_flight < 20:
                body = b"order-%d-%05d" % (index, sent)
                sock.send_multipart([b"", body])
                with tally.lock:
                    tally.sent.add(body)
                sent += 1
                in_flight += 1
            if sock.poll(20):
                reply = sock.recv_multipart()[-1]
                with tally.lock:
                    tally.answered.add(reply.removeprefix(b"done:"))
                in_flight -= 1
        sock.close(0)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    return threads


_DEMO = "zjournal demo"


def claim_for_the_demo(path: str) -> None:
    """Make ``path`` the demo's journal; refuse a journal the demo did not create.

    The demo consumes and acks every pending entry of its journal: run on a
    real service's journal, it would hand that service's work to its own
    workers and throw it away.
    """
    existed = check_journal_path(path)
    with zjournal.open(path, plugins=False) as journal:
        if existed and journal._created_by() != _DEMO:
            raise zjournal.InvalidArgumentError(
                f"{path} holds a journal the demo did not create; the demo would consume its pending entries: "
                "give --path a new directory"
            )
        journal._created_by(_DEMO)


def run_demo(
    path: str | None = None,
    *,
    requests: int = 4000,
    clients: int = 8,
    workers: int = 4,
    work_ms: float = 1.0,
    crash: bool = False,
    console: Console | None = None,
) -> dict[str, int]:
    """Run the scenario; returns the final tally (``lost`` must be 0).

    Leaves the journal (``path``, or a new directory under the temporary one)
    and, beside it, the requests that were pending at the stop as ``zjournal
    export`` writes them; the ipc endpoints go with the run.
    """
    console = console or Console()
    if path is not None:
        claim_for_the_demo(path)
    journal_path = path or str(Path(tempfile.mkdtemp(prefix="zjdemo")) / "orders.journal")
    endpoints = tempfile.mkdtemp(prefix="zjdemo-ipc")
    try:
        return _run(journal_path, endpoints, requests, clients, workers, work_ms, crash, console)
    finally:
        shutil.rmtree(endpoints, ignore_errors=True)


def _run(
    journal_path: str,
    endpoints: str,
    requests: int,
    clients: int,
    workers: int,
    work_ms: float,
    crash: bool,
    console: Console,
) -> dict[str, int]:
    front, back = f"ipc://{endpoints}/front", f"ipc://{endpoints}/back"
    ctx = zmq.Context()
    tally = Tally()
    stop_clients = threading.Event()
    per_client = requests // clients
    total = per_client * clients

    console.rule("[bold]zjournal demo: a busy queue device, stopped mid-load and restarted")
    console.print(
        f"{clients} clients send up to {total} requests (they stop once the device stops taking them) through a "
        f"journaled queue device to {workers} worker threads ({work_ms:g} ms each). Journal: {journal_path}"
    )
    device_proc: subprocess.Popen | None = None
    queue: zjournal.Queue | None = None
    journal: zjournal.Journal | None = None
    if crash:
        device_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "zjournal.cli",
                "device",
                journal_path,
                "--frontend",
                front,
                "--backend",
                back,
                "--name",
                "orders",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert device_proc.stdout is not None and device_proc.stdout.readline().strip() == "ready"
    else:
        journal = zjournal.open(journal_path)
        frontend = ctx.socket(zmq.ROUTER)
        frontend.bind(front)
        backend = ctx.socket(zmq.DEALER)
        backend.bind(back)
        queue = zjournal.Queue(frontend, backend, journal, name="orders")
        queue.start()
    pool = WorkerPool(ctx, back, workers, tally, work_ms)
    client_threads = _clients(ctx, front, clients, per_client, tally, stop_clients)

    # 1. Under load until about half the requests are answered.
    with _progress(console) as progress:
        task = progress.add_task("answering requests", total=total)
        while len(tally.answered) < total // 2:
            progress.update(task, completed=len(tally.answered))
            time.sleep(0.05)
        progress.update(task, completed=len(tally.answered))

    # 2. The shutdown: the workers leave, then the device stops (or dies).
    pool.leave()
    time.sleep(0.2)  # the clients keep sending: requests pile up in the device
    if crash:
        assert device_proc is not None
        console.print("[bold red]kill -9[/] of the device process while requests are in flight")
        device_proc.send_signal(signal.SIGKILL)
        device_proc.wait()
        journal = zjournal.open(journal_path)
    else:
        assert queue is not None and journal is not None
        report = queue.stop(drain_timeout=0.5)
        console.print(f"[bold]queue.stop()[/]: intake stopped; {report}")
    stop_clients.set()
    for t in client_threads:
        t.join(5)
    assert journal is not None
    pending = list(journal.entries(name="orders", state="pending"))
    console.print(f"[bold yellow]{len(pending)} requests pending[/] in the journal — durable, countable, readable:")
    table = Table("id", "client envelope", "body", "attempts")
    for entry in pending[:3]:
        table.add_row(str(entry.id), entry.envelope[0].hex()[:12], entry.body[-1].decode(), str(entry.attempts))
    console.print(table)
    kept = _keep_pending_at_stop(journal_path, pending)
    accepted = {e.body[-1] for e in pending} | tally.answered

    # 3. The restart: a new device on the same journal replays them to new workers.
    if crash:
        journal.close()
        journal = zjournal.open(journal_path)
    frontend = ctx.socket(zmq.ROUTER)
    frontend.bind(front.replace("front", "front2"))  # the old clients are gone
    backend = ctx.socket(zmq.DEALER)
    backend.bind(back.replace("back", "back2"))
    queue = zjournal.Queue(frontend, backend, journal, name="orders")
    queue.start()
    pool = WorkerPool(ctx, back.replace("back", "back2"), workers, tally, work_ms)
    with _progress(console) as progress:
        task = progress.add_task("replaying after restart", total=len(pending))
        deadline = time.monotonic() + 60
        while queue.pending and time.monotonic() < deadline:
            progress.update(task, completed=len(pending) - queue.pending)
            time.sleep(0.05)
        progress.update(task, completed=len(pending) - queue.pending)
    report = queue.stop(drain_timeout=1.0)
    pool.leave()
    left = journal.count(name="orders", state="pending")
    journal.close()
    ctx.destroy(0)

    processed = set(tally.processed)
    result = {
        "sent": len(tally.sent),
        "accepted": len(accepted),
        "not_accepted": len(tally.sent - accepted),
        "processed": len(processed),
        "duplicates": len(tally.processed) - len(processed),
        "redelivered": queue.stats.redelivered,
        "left": left,
        "lost": len(accepted - processed),
    }
    colour = "green" if result["lost"] == 0 else "red"
    console.print(
        f"[bold {colour}]clients sent {result['sent']}; the journal accepted {result['accepted']} "
        f"({result['not_accepted']} were still in the socket when intake stopped); workers processed "
        f"{result['processed']} ({result['duplicates']} duplicates, {result['redelivered']} redelivered); "
        f"left pending {result['left']}; lost {result['lost']}[/]"
    )
    console.print("Look at what it did:", highlight=False)
    console.print(f"  zjournal inspect {journal_path}", markup=False, highlight=False)
    console.print(
        f"      the journal now: {result['left']} pending (each request is gone once processed)", highlight=False
    )
    console.print(f"  head -3 {kept}", markup=False, highlight=False)
    console.print(
        f"      the {len(pending)} requests pending at the stop, as read from the journal then (export's format)",
        highlight=False,
    )
    return result


def _keep_pending_at_stop(journal_path: str, pending: list[zjournal.Entry]) -> str:
    """Write the entries pending at the stop beside the journal (export's format), readable by the owner only."""
    where = str(Path(journal_path).with_name(Path(journal_path).name + ".pending-at-stop.jsonl"))
    fd = os.open(where, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(fd, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(entry_record(e)) + "\n" for e in pending)
    return where


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
