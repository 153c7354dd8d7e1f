"""Line logs that processes killed with SIGKILL write, read back whole lines only.

The pipeline demo, ``tools/crashtest.py`` and the crash tests log what their processes did, one
line per event, and kill those processes. SIGKILL can tear a ``write()``: one that crosses a page
boundary of the file stops between the two pages (a writer of 3 KB lines killed 300 times left a
torn last line 52 times). A torn line reads as a shorter one ("4711 1796490962.1" cut to "4711 17"),
and the next run's first line is glued to it. A writer opens its log with
:func:`append_whole_lines`, which cuts off a line the last kill tore; a reader takes
:func:`whole_lines`, which leaves out a torn last line.
"""

from __future__ import annotations

import os

_TAIL = 4096  # the lines are shorter than this: the last newline is within the tail


def append_whole_lines(path: str | os.PathLike[str]) -> int:
    """A descriptor appending to ``path`` (one ``os.write`` per line), a line torn by a kill cut off first."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
    size = os.fstat(fd).st_size
    tail = os.pread(fd, min(size, _TAIL), max(0, size - _TAIL))
    if tail and not tail.endswith(b"\n"):
        os.ftruncate(fd, size - len(tail) + tail.rfind(b"\n") + 1)
    return fd


def whole_lines(path: str | os.PathLike[str]) -> list[str]:
    """The lines of ``path`` written whole (none when there is no such file)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return f.read().split("\n")[:-1]  # (the last item: "" after a whole line, else a torn one)
