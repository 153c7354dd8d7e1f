"""The ``zjournal`` command line (typer).

Each command opens a journal, calls the library, and prints; errors under
``ZJournalError`` become one line on stderr and exit code 1 (see ``common``).
"""

from __future__ import annotations

import typer

import zjournal
from zjournal.cli import common, inspect, ops, remote, replay
from zjournal.cli.common import handle_errors

app = typer.Typer(
    name="zjournal",
    help="A message journal for ZeroMQ services: inspect, replay and operate journals.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Plain help and errors, as well-kept command lines print them: metavars in capitals, no boxes
    # (the same on a terminal and in a pipe), -h as well as --help.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
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
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an unexpected error."),
) -> None:
    """A message journal for ZeroMQ services."""
    common.DEBUG = debug


@app.command()
@handle_errors
def demo(
    crash: bool = typer.Option(False, "--crash", help="Kill the device process with SIGKILL instead of stopping it."),
    requests: int = typer.Option(4000, "--requests", metavar="N", min=100, help="How many requests the clients send."),
    path: str = typer.Option(None, "--path", metavar="PATH", help="Journal directory (default: a new temporary one)."),
    pipeline: bool = typer.Option(
        False, "--pipeline", help="Kill -9 a PUSH->PULL pipeline's consumer, without and with confirm=True."
    ),
) -> None:
    """Stop a busy journaled queue device mid-load, restart it, and show that nothing was lost."""
    if pipeline:
        from zjournal.demo_pipeline import run_pipeline_demo

        result = run_pipeline_demo(messages=requests)
    else:
        from zjournal.demo import run_demo

        result = run_demo(path, requests=requests, crash=crash)
    if result["lost"]:
        raise typer.Exit(1)


@app.command(name="plugins")
@handle_errors
def plugins_(as_json: bool = typer.Option(False, "--json", help="JSON for scripts.")) -> None:
    """List the plugins: name, version and what each provides (and any that failed to load)."""
    import json

    from zjournal.plugins import ENV_VAR, load

    registry = load()
    if as_json:
        rows = [
            {"name": p.name, "version": p.version, "description": p.description, "provides": p.provides()}
            for p in registry.plugins
        ]
        typer.echo(json.dumps({"plugins": rows, "failed": registry.failed}))
        return
    for p in registry.plugins:
        typer.echo(f"{p.name} {p.version}: {p.description}" + (f" ({'; '.join(p.provides())})" if p.provides() else ""))
    for name, why in registry.failed.items():
        typer.echo(f"{name}: FAILED to load: {why}")
    if not registry.plugins and not registry.failed:
        typer.echo(f"no plugins (restricted by {ENV_VAR}?)")


inspect.register(app)
replay.register(app)
ops.register(app)
remote.register(app)


def _register_plugin_commands() -> None:
    import warnings

    from zjournal.plugins import load

    for register in load().commands():
        try:
            register(app)
        except Exception as e:  # a broken plugin never stops the CLI
            warnings.warn(f"zjournal plugin command {register!r} failed to register: {e}", stacklevel=1)


_register_plugin_commands()


def main() -> None:
    """The ``zjournal`` command: usage errors are one line too (exit 2), like every other error."""
    import signal
    import sys

    # SIGTERM ends a command as Ctrl-C does: read-only views remove their private directories.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))

    try:
        code = app(standalone_mode=False, prog_name="zjournal")
    except typer.Abort:
        common.fail("interrupted", 130)
        code = 130
    except Exception as e:
        # click's usage errors (typer vendors click in some versions: matched by shape, not by class)
        if not (hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)):
            raise
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `zjournal`: the help, as asked for
            sys.stdout.write(e.format_message() + "\n")
            sys.exit(0)
        ctx = getattr(e, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None and e.exit_code == 2 else ""
        common.fail(e.format_message() + hint, e.exit_code)
        code = e.exit_code
    sys.exit(code if isinstance(code, int) else 0)
