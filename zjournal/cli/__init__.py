"""The ``zjournal`` command line (typer).

Each command opens a journal, calls the library, and prints; errors under
``ZJournalError`` become one line on stderr and exit code 1 (see ``common``).
"""

from __future__ import annotations

import typer

import zjournal
from zjournal.cli import inspect, ops, replay
from zjournal.cli.common import handle_errors

app = typer.Typer(
    name="zjournal",
    help="A message journal for ZeroMQ services: inspect, replay and operate journals.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zjournal {zjournal.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """A message journal for ZeroMQ services."""


@app.command()
@handle_errors
def demo(
    crash: bool = typer.Option(False, "--crash", help="Kill the device process with SIGKILL instead of stopping it."),
    requests: int = typer.Option(4000, "--requests", min=100, help="How many requests the clients send."),
    path: str = typer.Option(None, "--path", help="Journal directory (default: a new temporary one)."),
) -> None:
    """Stop a busy journaled queue device mid-load, restart it, and show that nothing was lost."""
    from zjournal.demo import run_demo

    result = run_demo(path, requests=requests, crash=crash)
    if result["lost"]:
        raise typer.Exit(1)


inspect.register(app)
replay.register(app)
ops.register(app)


def main() -> None:
    app()
