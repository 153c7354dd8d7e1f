"""The ``zjournal`` command line (typer). Commands call the public library API;
errors under ``ZJournalError`` become one line on stderr and exit code 1."""

from __future__ import annotations

import typer

import zjournal

app = typer.Typer(
    name="zjournal",
    help="A message journal for ZeroMQ services.",
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


def main() -> None:
    app()
