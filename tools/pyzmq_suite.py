"""Run pyzmq's own test suite twice: on plain pyzmq, and with every socket journaled.

Run:  python tools/pyzmq_suite.py [--keep DIR] [-- extra pytest args]

Downloads the sdist of the installed pyzmq with pip (``pip download
--no-binary :all: --no-deps pyzmq==<version>``), unpacks its ``tests/`` into
a temporary directory and runs ``pytest tests -m "not large"`` there twice.
The second run loads ``zjournal_everywhere`` (below) as a pytest plugin: it
opens one journal per test process and makes ``zmq.Context.socket`` return
``journal.wrap(...)`` of every socket pyzmq's tests create, sync, asyncio
and tornado alike. Prints both runs' closing lines; the journaled run should
pass exactly as the plain one does, apart from ``test_socket.py::test_repr``
(the repr names zjournal's class, as pyzmq's own subclasses do). Not run in
CI: it needs the network and several minutes.
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
import atexit, shutil, tempfile
import zmq
import zjournal

_dir = tempfile.mkdtemp(prefix="zj-everywhere-")
_journal = zjournal.open(_dir + "/all.journal", plugins=False)
_plain_socket = zmq.Context.socket


def _journaled_socket(self, socket_type, socket_class=None, **kwargs):
    sock = _plain_socket(self, socket_type, socket_class=socket_class, **kwargs)
    return _journal.wrap(sock)


zmq.Context.socket = _journaled_socket
atexit.register(lambda: shutil.rmtree(_dir, ignore_errors=True))
'''


def closing_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="unpack and run here instead of a temporary directory")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    import zmq

    version = zmq.__version__
    where = Path(args.keep or tempfile.mkdtemp(prefix="zj-pyzmq-suite-"))
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            f"pyzmq=={version}",
            "-d",
            str(where),
        ],
        check=True,
    )
    (sdist,) = where.glob(f"pyzmq-{version}.tar.gz")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/tests/" in m.name or m.name.endswith(("pytest.ini", "setup.cfg"))]
        tar.extractall(where, members=members, filter="data")
    root = where / f"pyzmq-{version}"
    (root / "zjournal_everywhere.py").write_text(PLUGIN)
    env = {**os.environ, "PYTHONPATH": str(root)}
    base = [
        sys.executable,
        "-m",
        "pytest",
        "tests",
        "-q",
        "-m",
        "not large",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        *args.pytest_args,
    ]
    results = {}
    for label, extra in (("plain", []), ("journaled", ["-p", "zjournal_everywhere"])):
        done = subprocess.run([*base, *extra], cwd=root, env=env, capture_output=True, text=True)
        (where / f"{label}.log").write_text(done.stdout + done.stderr)
        results[label] = closing_line(done.stdout)
        print(f"{label:>9}: {results[label]}   (log: {where / f'{label}.log'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
