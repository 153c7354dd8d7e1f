"""``zjournal demo --pipeline``: the same kill -9 loop on a PUSH -> PULL pipeline, without and with confirm=True.

A producer process sends numbered messages through a journaled PUSH to a
consumer process (a journaled PULL, no option) that records every message it
is handed, and works a millisecond on each: slower than the producer, so that
messages wait in ZeroMQ's queues. The consumer is killed with SIGKILL a few
times mid-stream and restarted. Without confirms, what sat in ZeroMQ's queues
when it died is lost; with ``confirm=True`` on the producer, nothing is. Both runs end with
"lost": sent (send returned) minus handed over.

The two roles also run as scripts: ``python -m zjournal.demo_pipeline
produce|consume ...`` (the demo starts them).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import zmq
from rich.console import Console
from rich.table import Table

import zjournal
from zjournal.crashlog import append_whole_lines, whole_lines

_NAME = "orders"
# Each message takes the consumer this long (its work): slower than the producer, so that messages wait in
# ZeroMQ's queues when it is killed, as they do in front of any busy worker (a consumer that keeps up has
# nothing queued most of the time, and a run without confirms then loses nothing to show).
_WORK = 0.001


def produce(journal_path: str, endpoint: str, count: int, sent: str, confirm: bool) -> None:
    journal = zjournal.open(journal_path)
    push = journal.wrap(zmq.Context.instance().socket(zmq.PUSH), name=_NAME, confirm=confirm, **_timeout(confirm))
    push.connect(endpoint)
    print("ready", flush=True)
    log = append_whole_lines(sent)
    for n in range(count):
        push.send(b"%d" % n)
        os.write(log, b"%d\n" % n)
        if n % 20 == 0:
            time.sleep(0.01)  # about 2,000 a second: long enough for the kills to land mid-stream
    if confirm:
        push.wait_confirmed()  # until the consumer's journal has every message
    print("done", flush=True)
    time.sleep(3600)  # until the demo kills it: a clean close is not what this shows


def _timeout(confirm: bool) -> dict[str, float]:
    return {"confirm_timeout": 0.5} if confirm else {}


def consume(journal_path: str, endpoint: str, out: str) -> None:
    journal = zjournal.open(journal_path)
    pull = journal.wrap(zmq.Context.instance().socket(zmq.PULL), name=_NAME)
    pull.bind(endpoint)
    print("ready", flush=True)
    log = append_whole_lines(out)  # (a line the last kill tore is cut off: see zjournal.crashlog)
    while True:
        os.write(log, pull.recv() + b"\n")  # in the page cache: SIGKILL keeps it
        time.sleep(_WORK)


class _Process:
    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.lines: queue.Queue[str] = queue.Queue()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zjournal.demo_pipeline", *self.args],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines = queue.Queue()
        threading.Thread(target=_read_lines, args=(self.proc.stdout, self.lines), daemon=True).start()
        self.wait_for("ready", 30)

    def wait_for(self, line: str, timeout: float) -> bool:
        try:
            return self.lines.get(timeout=timeout) == line
        except queue.Empty:
            return False

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def _read_lines(stream, lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line.strip())


def _lines(path: Path) -> list[str]:
    return whole_lines(path)


def run_once(workdir: Path, confirm: bool, messages: int, kills: int) -> dict[str, int]:
    """One pipeline, the consumer killed ``kills`` times; what was sent, handed over and lost."""
    endpoint = f"ipc://{workdir}/pipe"
    out, sent = workdir / "handed", workdir / "sent"
    consumer = _Process("consume", str(workdir / "consumer.journal"), endpoint, str(out))
    producer = _Process(
        "produce", str(workdir / "producer.journal"), endpoint, str(messages), str(sent), "1" if confirm else "0"
    )
    try:
        consumer.start()
        producer.start()
        for _ in range(kills):
            time.sleep(0.3)
            consumer.kill()
            consumer.start()
        finished = producer.wait_for("done", 60)
        last = -1
        while len(_lines(out)) != last:  # until the consumer has nothing more to hand over
            last = len(_lines(out))
            time.sleep(0.5 if confirm else 1.0)
    finally:
        consumer.kill()
        producer.kill()
    returned, handed = _lines(sent), _lines(out)
    lost = len(set(returned) - set(handed))
    return {
        "sent": len(returned),
        "handed": len(set(handed)),
        "duplicates": len(handed) - len(set(handed)),
        "lost": lost,
        "finished": int(finished),
    }


def run_pipeline_demo(messages: int = 4000, kills: int = 5, console: Console | None = None) -> dict[str, int]:
    """Both runs; returns the confirm run's tally (its ``lost`` must be 0)."""
    console = console or Console()
    console.rule("[bold]zjournal demo --pipeline: a PUSH -> PULL pipeline, the consumer killed with SIGKILL")
    console.print(
        f"A producer sends {messages} numbered messages through a journaled PUSH, faster than the consumer (a "
        f"journaled PULL, {_WORK * 1000:g} ms of work per message) handles them, so that they queue in ZeroMQ as "
        f"in front of any busy worker; the consumer is killed {kills} times mid-stream and restarted. Once "
        "without confirms, once with confirm=True on the producer."
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="zjdemo-pipeline") as tmp:
        for confirm in (False, True):
            workdir = Path(tmp) / ("confirm" if confirm else "plain")
            workdir.mkdir()
            label = "confirm=True" if confirm else "without confirm"
            with console.status(f"running {label}…"):
                results[confirm] = run_once(workdir, confirm, messages, kills)
    table = Table("producer", "sent (send returned)", "handed over", "duplicates", "lost")
    for confirm, label in ((False, "journaled, no confirm"), (True, "journaled, confirm=True")):
        r = results[confirm]
        table.add_row(label, str(r["sent"]), str(r["handed"]), str(r["duplicates"]), f"[bold]{r['lost']}[/]")
    console.print(table)
    plain, confirmed = results[False], results[True]
    console.print(
        f"without confirms {plain['lost']} of {plain['sent']} were lost in ZeroMQ's queues when the consumer "
        f"died; with confirm=True lost {confirmed['lost']}"
    )
    if not confirmed["finished"]:
        console.print("[bold red]the confirm=True producer did not see every message confirmed within 60 s")
        confirmed = {**confirmed, "lost": max(confirmed["lost"], 1)}
    return confirmed


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    if role == "produce":
        produce(args[0], args[1], int(args[2]), args[3], args[4] == "1")
    else:
        consume(*args)
