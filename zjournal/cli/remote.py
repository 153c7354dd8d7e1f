"""Commands on the engine's copies of journals: ``takeover`` and ``remote list`` (zjournal.replication)."""

from __future__ import annotations

import json

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
