"""The line logs of killed processes (zjournal.crashlog): a torn last line is never read, nor glued to."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from zjournal.crashlog import append_whole_lines, whole_lines

WRITER = r"""
import os, sys
from zjournal.crashlog import append_whole_lines
log = append_whole_lines(sys.argv[1])
print("ready", flush=True)
n = 0
while True:  # lines of 3 KB: most writes cross a page boundary of the file, where SIGKILL can tear one
    os.write(log, b"%d:%s:%d\n" % (n, b"x" * 3000, n))
    n += 1
"""


def test_a_line_torn_by_a_kill_is_not_read_and_cut_off_before_the_next_run_appends(tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert whole_lines(log) == []
    log.write_bytes(b"1 1796490962.5\n2 1796490962.6\n3 17")  # what a kill tearing the third line leaves
    assert whole_lines(log) == ["1 1796490962.5", "2 1796490962.6"]
    fd = append_whole_lines(log)
    os.write(fd, b"4 1796490963.0\n")
    os.close(fd)
    assert whole_lines(log) == ["1 1796490962.5", "2 1796490962.6", "4 1796490963.0"]
    log.write_bytes(b"only a torn line")
    os.close(append_whole_lines(log))
    assert log.read_bytes() == b""


def test_writers_killed_mid_line_leave_only_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    for _ in range(6):
        child = subprocess.Popen([sys.executable, "-c", WRITER, str(log)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
    lines = whole_lines(log)
    assert lines
    for line in lines:
        first, body, last = line.split(":")
        assert first == last and body == "x" * 3000, line[:40]
