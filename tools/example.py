"""A short working example: journal messages, "crash", reopen, get them back.

Run: python tools/example.py [JOURNAL_DIR]
It journals five inbound messages, acknowledges two, kills a child process
that holds the journal with SIGKILL, reopens it and prints what survived.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import zjournal

CHILD = """
import os, sys, zjournal
journal = zjournal.open(sys.argv[1])
ids = [journal.append("orders", [b"order", str(n).encode()], direction="in") for n in range(5)]
journal.ack(ids[0])
journal.ack(ids[1])
print("child journaled", len(ids), "messages, acked 2, now dies without closing", flush=True)
os.kill(os.getpid(), 9)
"""


def main() -> None:
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.mkdtemp(), "orders.journal")
    child = subprocess.run([sys.executable, "-c", CHILD, path], check=False)
    assert child.returncode == -signal.SIGKILL
    with zjournal.open(path) as journal:
        print(f"reopened {path}: {journal.count(state='pending')} pending")
        for entry in journal.entries(state="pending"):
            print(f"  id={entry.id} name={entry.name} frames={entry.frames} attempts={entry.attempts}")
            journal.ack(entry.id)
        print(f"after handling them: {journal.count(state='pending')} pending")


if __name__ == "__main__":
    main()
