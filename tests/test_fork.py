"""fork(): a child never touches its parent's journals, exits normally, and says clearly what it cannot do."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import zjournal

CHILD_OF_A_JOURNAL = r"""
import json, os, sys, zmq, zjournal
path = sys.argv[1]
j = zjournal.open(path, plugins=False)
ctx = zmq.Context()
pull = j.wrap(ctx.socket(zmq.PULL), name="work")
for i in range(10):
    j.append("s", [b"before-%d" % i], direction="in")
r, w = os.pipe()

def own(child_path):  # a journal of the child's own: RocksDB's flush and compaction threads must run
    with zjournal.open(child_path, plugins=False) as mine:
        for i in range(500):
            mine.append("s", [b"child-%d" % i * 100], direction="in")
        mine.compact()
    with zjournal.open(child_path, plugins=False) as mine:
        assert mine.count() == 500

pid = os.fork()
if pid == 0:
    seen = {}
    for name, use in [("append", lambda: j.append("s", [b"x"], direction="in")),
                      ("count", lambda: j.count()),
                      ("recv", lambda: pull.recv(zmq.NOBLOCK)),
                      ("open", lambda: own(path + "-child"))]:
        try:
            use()
            seen[name] = "ok"
        except zjournal.ZJournalError as e:
            seen[name] = type(e).__name__
        except zmq.ZMQError as e:
            seen[name] = "zmq:" + type(e).__name__
    os.write(w, json.dumps(seen).encode())
    sys.exit(0)   # a normal exit: atexit, garbage collection, module teardown
os.close(w)
before = {n: os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)}
for i in range(100):
    j.append("s", [b"after-%d" % i], direction="in")
_, status = os.waitpid(pid, 0)
child = json.loads(os.read(r, 4096))
created = sorted(set(os.listdir(path)) - set(before))
pull.close()
ctx.term()
j.close()
print(json.dumps({"status": status, "child": child, "created": created}))
"""


def run_script(*args: str) -> str:
    """Run a script in a session of its own: a forked child that hangs is killed with it."""
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    return out.strip().splitlines()[-1]


def test_a_child_forked_after_open_exits_normally_and_leaves_the_journal_alone(tmp_path) -> None:
    path = str(tmp_path / "j.journal")
    result = json.loads(run_script("-c", CHILD_OF_A_JOURNAL, path))
    assert result["status"] == 0  # exited, did not hang
    assert result["created"] == []  # wrote no file into the parent's live journal
    assert result["child"] == {
        "append": "JournalForkedError",
        "count": "JournalForkedError",
        "recv": "JournalForkedError",
        "open": "ok",  # a journal of its own: RocksDB's pools were emptied for the fork and refilled
    }
    with zjournal.open(path, plugins=False) as j:
        assert j.count() == 110


POOL = r"""
import json, multiprocessing, sys, zjournal
root = sys.argv[1]

def work(i):
    with zjournal.open(f"{root}/worker-{i}", plugins=False) as j:
        for k in range(100):
            j.append("s", [b"m%d" % k], direction="in")
        return j.count()

if __name__ == "__main__":
    parent = zjournal.open(f"{root}/parent", plugins=False) if sys.argv[2] == "open" else None
    if parent is not None:
        parent.append("s", [b"the parent's"], direction="in")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        counts = pool.map(work, range(4))
    if parent is not None:
        parent.append("s", [b"the parent's, after"], direction="in")
        counts.append(parent.count())
        parent.close()
    print(json.dumps(counts))
"""


def test_forked_workers_of_a_parent_without_journals_open_their_own(tmp_path) -> None:
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    assert json.loads(run_script(str(script), str(tmp_path), "none")) == [100] * 4
    assert os.path.isdir(tmp_path / "worker-3")


def test_forked_workers_of_a_parent_with_a_journal_open_their_own(tmp_path) -> None:
    """The pre-fork server that opened its journal first (gunicorn's preload): workers open theirs."""
    script = tmp_path / "pool.py"
    script.write_text(POOL)
    assert json.loads(run_script(str(script), str(tmp_path), "open")) == [100] * 4 + [2]
