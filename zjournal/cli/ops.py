"""Operations on a stopped journal: ack, dead, purge, compact, export, import."""

from __future__ import annotations

import hashlib
import json
import os
import sys

import typer

import zjournal
from zjournal.cli import curve
from zjournal.cli.common import (
    MAX_ID,
    MAX_SECONDS,
    check_endpoint,
    entry_from_json,
    entry_record,
    handle_errors,
    open_for_change,
    out,
    parse_time,
    require_journal,
)
from zjournal.journal import DEFAULT_MAX_MESSAGE_SIZE


def _require(journal: zjournal.Journal, ids: list[int]) -> list[zjournal.Entry]:
    """Every id must exist before anything changes: one bad id changes nothing."""
    entries = []
    for entry_id in ids:
        entry = journal.get(entry_id)
        if entry is None:
            raise zjournal.UnknownEntryError(entry_id, f"in {journal.path}")
        entries.append(entry)
    return entries


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def ack(
        path: str = typer.Argument(..., metavar="PATH", help="The journal directory."),
        ids: list[int] = typer.Option(
            ..., "--id", metavar="ID", min=1, max=MAX_ID, help="Entry to acknowledge (repeatable)."
        ),
    ) -> None:
        """Mark entries done (a dead letter that was dealt with, a pending one that needs no delivery)."""
        require_journal(path)
        with open_for_change(path) as journal:
            entries = _require(journal, ids)
            changed = sum(journal.ack(e.id) for e in entries)
            out(f"acked {changed} of {len(entries)} entries")

    @app.command()
    @handle_errors
    def dead(
        path: str = typer.Argument(..., metavar="PATH", help="The journal directory."),
        ids: list[int] = typer.Option(
            ..., "--id", metavar="ID", min=1, max=MAX_ID, help="Entry to give up on (repeatable)."
        ),
        reason: str = typer.Option("", "--reason", metavar="TEXT", help="Why, kept with the entry."),
    ) -> None:
        """Move entries to the dead letters: kept, never delivered again unless revived."""
        require_journal(path)
        with open_for_change(path) as journal:
            entries = _require(journal, ids)
            for entry in entries:
                journal.dead(entry.id, reason)
            out(f"marked {len(entries)} entries dead")

    @app.command()
    @handle_errors
    def purge(
        path: str = typer.Argument(..., metavar="PATH", help="The journal directory."),
        state: str = typer.Option(..., "--state", metavar="STATE", help="acked or dead."),
        before: str = typer.Option(
            None, "--before", metavar="TIME", help="Only those last changed before (epoch, ISO, or 7d)."
        ),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    ) -> None:
        """Delete acked or dead entries for good."""
        if state not in ("acked", "dead"):
            raise zjournal.InvalidArgumentError(f"purge takes --state acked or dead, not {state!r}")
        before_t = parse_time(before)
        require_journal(path)
        with open_for_change(path) as journal:
            count = sum(
                1 for e in journal.entries(state=state) if before_t is None or (e.updated or e.created) < before_t
            )
            if count == 0:
                out(f"no {state} entries to purge")
                return
            if not yes and not typer.confirm(f"delete {count} {state} entries from {path} for good?", default=False):
                raise zjournal.ZJournalError("purge not confirmed: nothing deleted")
            out(f"purged {journal.purge(state, before_t)} {state} entries")

    @app.command()
    @handle_errors
    def compact(path: str = typer.Argument(..., metavar="PATH", help="The journal directory.")) -> None:
        """Reclaim the disk space of removed entries now."""
        require_journal(path)
        with open_for_change(path) as journal:
            before = journal.size_on_disk()
            journal.compact()
            after = journal.size_on_disk()
            out(f"compacted {path}: {before:,} -> {after:,} bytes")

    @app.command()
    @handle_errors
    def recover(path: str = typer.Argument(..., metavar="PATH", help="The journal directory.")) -> None:
        """Open a damaged journal keeping everything written before the damage; say what was dropped."""
        require_journal(path)
        try:
            journal = zjournal.open(path, recover=True)
        except zjournal.JournalLockedError:
            raise zjournal.JournalLockedError(
                f"journal {path} is held open by a running process: stop it first", path=path
            ) from None
        with journal:
            for line in journal.recovered:
                out(f"dropped: {line}")
            out(
                f"recovered {path}: {journal.count()} entries "
                f"({journal.count(state='pending')} pending); "
                + ("nothing was dropped" if not journal.recovered else "what followed the damage was dropped")
            )

    @app.command()
    @handle_errors
    def device(
        path: str = typer.Argument(..., metavar="PATH", help="The journal directory (created if missing)."),
        frontend: str = typer.Option(
            ..., "--frontend", metavar="ENDPOINT", help="Endpoint the clients' ROUTER binds, e.g. tcp://*:5555."
        ),
        backend: str = typer.Option(..., "--backend", metavar="ENDPOINT", help="Endpoint the workers' socket binds."),
        name: str = typer.Option("queue", "--name", metavar="NAME", help="The stream name of the requests."),
        balance: bool = typer.Option(False, "--balance", help="ROUTER backend for REQ workers (load-balancing)."),
        redeliver_after: float = typer.Option(
            60.0, "--redeliver-after", metavar="SECONDS", help="Resend unanswered requests after s."
        ),
        max_attempts: int = typer.Option(
            None, "--max-attempts", metavar="N", help="Deliveries before a request goes dead."
        ),
        max_message_size: int = typer.Option(
            DEFAULT_MAX_MESSAGE_SIZE,
            "--max-message-size",
            metavar="BYTES",
            help="Largest request in bytes (larger: dropped).",
        ),
        curve_secret_key_file: str = typer.Option(
            None,
            "--curve-secret-key-file",
            metavar="FILE",
            help="Serve both endpoints with CURVE, with this certificate (zmq.auth format).",
        ),
        drain_timeout: float = typer.Option(
            5.0, "--drain-timeout", metavar="SECONDS", min=0, max=MAX_SECONDS, help="On SIGTERM/SIGINT, wait this long."
        ),
    ) -> None:
        """Run a journaled queue device until SIGTERM/SIGINT.

        Prints `ready` once bound, then `frontend <endpoint>` and `backend <endpoint>` (the bound
        ones: tcp://127.0.0.1:0 picks a free port), and the stop report at the end.
        """
        import zmq

        from zjournal.device import check_settings, frontend_frame_limit

        check_settings(redeliver_after=redeliver_after, max_attempts=max_attempts)
        if not name:
            raise zjournal.InvalidArgumentError("--name must not be empty")
        keys = curve.server_keys(curve_secret_key_file)
        check_endpoint(frontend, "frontend")
        check_endpoint(backend, "backend")
        if max_message_size < 1:
            raise zjournal.InvalidArgumentError(f"--max-message-size must be >= 1, not {max_message_size}")
        ctx = zmq.Context()
        try:
            # Bound before the journal is opened: a bad or busy endpoint creates no journal.
            front = ctx.socket(zmq.ROUTER)
            back = ctx.socket(zmq.ROUTER if balance else zmq.DEALER)
            if keys is not None:  # clients and workers then need the certificate's public key
                keys.apply(front)
                keys.apply(back)
            # (before the bind: libzmq applies it to endpoints bound afterwards; the Queue sets it too late)
            front.setsockopt(zmq.MAXMSGSIZE, frontend_frame_limit(max_message_size))
            front.bind(frontend)
            back.bind(backend)
            with open_for_change(path, max_message_size=max_message_size) as journal:
                queue = zjournal.Queue(
                    front, back, journal, name=name, redeliver_after=redeliver_after, max_attempts=max_attempts
                )
                zjournal.stop_on_signals(queue, drain_timeout)
                out("ready")
                out(f"frontend {front.getsockopt_string(zmq.LAST_ENDPOINT)}")
                out(f"backend {back.getsockopt_string(zmq.LAST_ENDPOINT)}")
                sys.stdout.flush()
                report = queue.run()
                out(f"stopped: {report}")
        finally:
            ctx.destroy(linger=0)

    @app.command(name="export")
    @handle_errors
    def export_(
        path: str = typer.Argument(..., metavar="PATH", help="The journal directory."),
        output: str = typer.Option("-", "--output", "-o", metavar="FILE", help="File to write (default: stdout)."),
        name: str = typer.Option(None, "--name", metavar="NAME", help="Only entries of this stream."),
        state: str = typer.Option(None, "--state", metavar="STATE", help="pending, acked or dead."),
        direction: str = typer.Option(None, "--direction", metavar="DIR", help="in or out."),
    ) -> None:
        """Write entries as JSON lines (the format of `inspect --json`), restorable with `import`."""
        require_journal(path)
        with zjournal.open(path, read_only=True) as journal:
            lines = (
                json.dumps(entry_record(e)) + "\n" for e in journal.entries(name=name, state=state, direction=direction)
            )
            if output == "-":
                count = sum(1 for line in lines if sys.stdout.write(line) is not None)
            else:
                # Only the owner may read it: the entries' payloads are in it (as in the journal).
                fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with open(fd, "w", encoding="utf-8") as f:
                    count = sum(1 for line in lines if f.write(line) is not None)
                out(f"exported {count} entries to {output}")

    @app.command(name="import")
    @handle_errors
    def import_(
        path: str = typer.Argument(..., metavar="PATH", help="The journal directory (created if missing)."),
        source: str = typer.Argument(..., metavar="FILE", help="A file of JSON lines from export, or - for stdin."),
        again: bool = typer.Option(False, "--again", help="Import entries this journal imported before, again."),
    ) -> None:
        """Add the entries of an export to a journal, with their states, under new ids.

        The same entries imported twice would be there twice: a second import
        of them is refused unless --again says it is meant.
        """
        stream = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115
        digest = hashlib.sha256()  # of the entries (blank lines aside): the key of this import
        with stream:
            entries = []
            number = 0
            try:
                for number, line in enumerate(stream, 1):
                    if not line.strip():
                        continue
                    digest.update(line.strip().encode() + b"\n")
                    try:
                        obj = json.loads(line)
                    except (ValueError, RecursionError):  # RecursionError: nested deeper than any export
                        bad = f"{source}:{number}: not JSON (not an exported entry)"
                        raise zjournal.InvalidArgumentError(bad) from None
                    entries.append(entry_from_json(obj, f"{source}:{number}"))
            except UnicodeDecodeError:
                raise zjournal.InvalidArgumentError(f"{source}:{number + 1}: not UTF-8 text: not an export") from None
        key = None if again else f"import {digest.hexdigest()[:32]}"
        with open_for_change(path) as journal:
            try:
                ids = journal.restore(entries, once=key)
            except zjournal.AlreadyRestoredError as e:
                what = "these entries" if source == "-" else source
                raise zjournal.InvalidArgumentError(
                    f"{what}: imported into {path} before ({e.earlier}): nothing imported; "
                    "--again imports them once more"
                ) from None
        span = f" (ids {ids[0]}..{ids[-1]})" if ids else ""
        out(f"imported {len(ids)} entries{span}")
