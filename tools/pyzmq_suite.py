"""Run pyzmq's own test suite twice: on plain pyzmq, and with every socket journaled.

Run:  python tools/pyzmq_suite.py [--keep DIR] [--confirm] [-- extra pytest args]

Makes a virtual environment of its own in the work directory (zjournal from
this checkout, the installed pyzmq's version, and what pyzmq's tests need:
pytest-asyncio, tornado, gevent, cython), downloads the sdist of that pyzmq with pip
(``pip download --no-binary pyzmq --no-deps pyzmq==<version>``), unpacks its
``tests/`` and ``pytest.ini``, and runs ``pytest tests -m "not large"`` there
twice. The second run loads ``zjournal_everywhere`` (below) as a pytest
plugin: it opens one journal per test process and makes
``zmq.Context.socket`` return ``journal.wrap(...)`` of every socket pyzmq's
tests create, sync, asyncio and tornado alike. Prints both runs' closing
lines and keeps both logs; the journaled run should pass exactly as the plain
one does (a journaled socket's repr is pyzmq's, so even ``test_repr`` passes).
``--confirm`` runs only the journaled run, with every PUSH, DEALER, ROUTER and
PAIR on ``confirm=True`` and a journal per test (see the README's confirms
section for what differs there, and why).
Not run in CI: it needs the network and several minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PLUGIN = '''
"""pytest plugin: every socket made through a zmq.Context is journaled (tools/pyzmq_suite.py)."""
import atexit, os, shutil, sys, tempfile
import zmq
import zjournal

# ZJOURNAL_SUITE_CONFIRM=1 (--confirm): PUSH, DEALER, ROUTER and PAIR send with confirm=True, and
# each test has a journal of its own: with one per process, a socket of a later test wrapped under
# the same default name would resend the earlier test's unconfirmed messages (as it should).
CONFIRM = os.environ.get("ZJOURNAL_SUITE_CONFIRM") == "1"
_SENDERS = (zmq.PUSH, zmq.DEALER, zmq.ROUTER, zmq.PAIR)
_plain_socket = zmq.Context.socket
_journals = {}  # pid -> journal: a forked child (multiprocessing) opens one of its own


def _journal():
    journal = _journals.get(os.getpid())
    if journal is None:
        where = tempfile.mkdtemp(prefix="zj-everywhere-")
        pid = os.getpid()  # a forked child inherits the handler: only this process removes its journal
        atexit.register(lambda: os.getpid() == pid and shutil.rmtree(where, ignore_errors=True))
        journal = _journals[pid] = zjournal.open(where + "/all.journal", plugins=False)
    return journal


def _journaled_socket(self, socket_type, socket_class=None, **kwargs):
    sock = _plain_socket(self, socket_type, socket_class=socket_class, **kwargs)
    if sys._getframe(1).f_globals.get("__name__", "").startswith(("zjournal", "zmq.utils.garbage")):
        # zjournal's own sockets (a confirm sender's intake, a receiver's confirm return), and those of
        # pyzmq's zero-copy garbage collector: internals, which no application would wrap
        return sock
    return _journal().wrap(sock, confirm=CONFIRM and sock.type in _SENDERS)


def pytest_runtest_setup(item):
    if CONFIRM:
        _journals.pop(os.getpid(), None)  # the next socket opens a new journal (see CONFIRM)


zmq.Context.socket = _journaled_socket
'''


# What pyzmq's tests need beyond pytest (its test-requirements.txt, less linters and coverage).
SUITE_NEEDS = ("pytest", "pytest-asyncio>=0.17", "pytest-rerunfailures", "tornado", "gevent", "cython", "setuptools")


def closing_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="work here instead of in a temporary directory")
    parser.add_argument(
        "--confirm",
        action="store_true",
        help="journaled run only, PUSH/DEALER/ROUTER/PAIR with confirm=True, one journal per test",
    )
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    import zmq

    version = zmq.__version__
    repo = Path(__file__).resolve().parent.parent
    where = Path(args.keep or tempfile.mkdtemp(prefix="zj-pyzmq-suite-"))
    where.mkdir(parents=True, exist_ok=True)
    venv = where / "venv"
    python = venv / "bin" / "python"
    if not python.exists():  # the suite's own needs (pytest-asyncio, tornado, gevent, cython) stay out of yours
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-e", str(repo), f"pyzmq=={version}", *SUITE_NEEDS], check=True)
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            "pyzmq",
            f"pyzmq=={version}",
            "-d",
            str(where),
        ],
        check=True,
    )
    (sdist,) = where.glob(f"pyzmq-{version}.tar.gz")
    top = f"pyzmq-{version}/"
    wanted = (top + "tests/", top + "pytest.ini")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(wanted)]
        tar.extractall(where, members=members, filter="data")
    root = where / top
    (root / "zjournal_everywhere.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(root), "ZJOURNAL_SUITE_CONFIRM": "1" if args.confirm else "0"}
    base = [str(python), "-m", "pytest", "tests", "-q", "-m", "not large", "-p", "no:cacheprovider", *args.pytest_args]
    runs = [("plain", []), ("journaled", ["-p", "zjournal_everywhere"])]
    if args.confirm:
        runs = [("confirm", ["-p", "zjournal_everywhere"])]
    for label, extra in runs:
        done = subprocess.run([*base, *extra], cwd=root, env=env, capture_output=True, text=True)
        (where / f"{label}.log").write_text(done.stdout + done.stderr)
        print(f"{label:>9}: {closing_line(done.stdout)}   (log: {where / f'{label}.log'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
