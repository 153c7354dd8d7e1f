"""Commands on the engine's copies of journals: ``takeover`` and ``remote list`` (zjournal.replication)."""

from __future__ import annotations

import json
import os
import re
import sys

import typer

import zjournal
from zjournal.cli.common import age, handle_errors, out, shown

FROM_HELP = "The NATS JetStream servers, nats://HOST:PORT (comma-separated)."


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def takeover(
        path: str = typer.Argument(..., metavar="PATH", help="A new journal directory to carry the journal on in."),
        source: str = typer.Option(..., "--from", metavar="URL", help=FROM_HELP),
        name: str = typer.Option(..., "--journal", metavar="NAME", help="The journal's name in the engine."),
        timeout: float = typer.Option(5.0, "--timeout", metavar="SECONDS", min=0.1, help="Bound on each engine call."),
        expect_epoch: int = typer.Option(
            None, "--expect-epoch", metavar="N", min=0, help="Only take over from the owner at this fence epoch."
        ),
        as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
    ) -> None:
        """Fence a journal's owner (a dead host) and carry its pending entries on in a new local journal.

        Start the service on PATH (with replicate= and the same name): its
        redelivery hands the entries over, and it ships from the next epoch.
        """
        result = zjournal.takeover(source, name, path, timeout=timeout, expected_epoch=expect_epoch)
        if as_json:
            out(json.dumps(result))
            return
        previous = shown(result["previous_owner"] or "nobody")
        out(
            f"took journal {shown(name)} over from {previous} at epoch {result['epoch']}: "
            f"{result['pending']} pending, {result['dead']} dead entries in {shown(path)}"
        )

    @app.command(context_settings={"allow_interspersed_args": False})
    @handle_errors
    def standby(
        path: str = typer.Argument(..., metavar="PATH", help="A new journal directory to take the journal over into."),
        command: list[str] = typer.Argument(None, metavar="-- COMMAND...", help="The service to run on PATH then."),
        source: str = typer.Option(..., "--from", metavar="URL", help=FROM_HELP),
        name: str = typer.Option(..., "--journal", metavar="NAME", help="The journal's name in the engine."),
        after: str = typer.Option(
            "10s", "--after", metavar="DURATION", help="Take over once the owner was quiet this long (10s, 1m)."
        ),
    ) -> None:
        """Watch a journal's owner; once it has been quiet for --after, take the journal over, then run COMMAND.

        COMMAND replaces this process (its signals, its exit code): start it on
        PATH with replicate= and the same name. Of standbys racing, one wins;
        the others go on watching the new owner.
        """
        result = zjournal.standby(source, name, path, _duration(after))
        assert result is not None
        previous = shown(result["previous_owner"] or "nobody")
        out(f"took journal {shown(name)} over from {previous} at epoch {result['epoch']}: {result['pending']} pending")
        command = list(command or [])
        if command and command[0] == "--":
            command = command[1:]
        if command:
            sys.stdout.flush()
            try:
                os.execvp(command[0], command)
            except OSError as e:  # the journal is taken over already: say so, and what did not start
                why = f"took the journal over, but cannot run {command[0]}: {e.strerror}"
                raise zjournal.ZJournalError(why) from None

    remote = typer.Typer(help="The journals a replication engine holds.", no_args_is_help=True)
    app.add_typer(remote, name="remote")

    @remote.command(name="list")
    @handle_errors
    def list_(
        source: str = typer.Option(..., "--from", metavar="URL", help=FROM_HELP),
        timeout: float = typer.Option(5.0, "--timeout", metavar="SECONDS", min=0.1, help="Bound on each engine call."),
        as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
    ) -> None:
        """List the journals in the engine: owner, fence epoch, heartbeat age, pending count."""
        rows = zjournal.remote_list(source, timeout=timeout)
        if as_json:
            out(json.dumps({"journals": rows}))
            return
        if not rows:
            out("no journals")
            return
        for row in rows:
            beat = "never" if row["heartbeat_age"] is None else f"{age(row['heartbeat_age'])} ago"
            out(
                f"{shown(row['journal'])}: owner {shown(row['owner'] or '-')} epoch {row['epoch']}, "
                f"heartbeat {beat}, {row['pending']} pending ({row['entries']} entries, {row['messages']} messages)"
            )


def _duration(text: str) -> float:
    """``10s``, ``500ms``, ``2m``, ``1h`` or plain seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if found is None:
        raise zjournal.InvalidArgumentError(f"--after takes a duration such as 10s, 500ms or 2m, not {text!r}")
    value, unit = float(found.group(1)), found.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]
