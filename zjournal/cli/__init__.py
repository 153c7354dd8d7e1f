"""The ``zjournal`` command line (typer).

Each command opens a journal, calls the library, and prints; errors under
``ZJournalError`` become one line on stderr and exit code 1 (see ``common``).
"""

from __future__ import annotations

from typing import Any

import typer
import typer.core

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


class _PlainHelpCommand(typer.core.TyperCommand):
    """typer's command, whose help names an argument by its metavar alone (typer writes ``{PATH}``, ``PATH <str>``)."""

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = (param.metavar or param.name or "").upper() + ("..." if param.nargs == -1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        arguments, options = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((record[0].split(" <", 1)[0], record[1]))
            elif param.param_type_name == "option":
                options.append(record)
        for title, records in (("Arguments", arguments), ("Options", options)):
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def _plain_help(typer_app: typer.Typer) -> None:
    for info in typer_app.registered_commands:
        if info.cls in (None, typer.core.TyperCommand):
            info.cls = _PlainHelpCommand
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            _plain_help(group.typer_instance)


_plain_help(app)


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
