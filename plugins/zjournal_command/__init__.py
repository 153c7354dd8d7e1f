"""The ``zjournal`` command's entry point, kept outside the ``zjournal`` package.

A console script imports its entry point's module before it calls anything,
and importing ``zjournal.cli`` (the library, typer, rich) takes a few tenths
of a second. A Ctrl-C in that time would end in a Python traceback; here it
ends as a Ctrl-C anywhere else in the command does: one line, exit 130.
This module imports nothing of its own, so there is no window left before
the ``try``.
"""

import sys

INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def main() -> None:
    try:
        from zjournal.cli import main as run

        run()
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(INTERRUPTED)
