"""``zjournal inspect``: what is in a journal, live or stopped. It never writes to the journal."""

from __future__ import annotations

import collections
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import rich.markup
import typer
from rich.console import Console

import zjournal
from zjournal.cli.common import (
    MAX_ID,
    age,
    engine_copy_asked,
    entry_record,
    err_console,
    fail,
    handle_errors,
    out,
    parse_time,
    require_journal,
    shown,
)
from zjournal.decode import available, decode, preview, printable

console = Console(highlight=False, soft_wrap=True)  # never wrapped: a long line stays one line


def is_live(path: str) -> bool | None:
    """Whether a process holds the journal open (its RocksDB LOCK); None when it cannot be told."""
    try:
        fd = os.open(os.path.join(path, "LOCK"), os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def summary(journal: zjournal.Journal, path: str) -> dict[str, Any]:
    """The summary of ``inspect`` as a JSON-ready dict (field names are documented in the README)."""
    names: dict[str, dict[str, Any]] = {}
    for name in journal.names():
        row: dict[str, Any] = {s: journal.count(name=name, state=s) for s in ("pending", "acked", "dead")}
        for direction in ("in", "out"):
            row[direction] = {
                s: journal.count(name=name, state=s, direction=direction) for s in ("pending", "acked", "dead")
            }
        names[name] = row
    attempts = journal.pending_attempts()
    oldest = journal.oldest_pending()
    info = journal.info()
    now = time.time()
    return {
        "path": path,
        "live": is_live(path),
        "schema": info["schema"],
        "durability": info["durability"],
        "created": info["created"],
        "size_on_disk": info["size_on_disk"],
        "pending": journal.count(state="pending"),
        "acked": journal.count(state="acked"),
        "dead": journal.count(state="dead"),
        "names": names,
        "oldest_pending": None
        if oldest is None
        else {
            "id": oldest.id,
            "name": oldest.name,
            "direction": str(oldest.direction),
            "created": oldest.created,
            "age_seconds": round(now - oldest.created, 3),
        },
        "pending_attempts": {str(k): n for k, n in attempts.items()},
        "replays": journal.replays(),
        "confirm": info["confirm"],
    }


def print_summary(data: dict[str, Any]) -> None:
    if "engine" in data:  # inspect --from: the engine's copy
        beat = "never" if data["heartbeat_age"] is None else f"{age(data['heartbeat_age'])} ago"
        console.print(
            f"[bold]journal[/] {shown(data['journal'])} in the engine at {shown(data['engine'])} — owner "
            f"{shown(data['owner'] or '-')}, epoch {data['epoch']}, heartbeat {beat}, {data['messages']} messages"
        )
        console.print(f"pending [bold]{data['pending']}[/] · acked {data['acked']} · dead {data['dead']}")
    else:
        live = {True: "[bold green]live[/] (held open by a running process)", False: "stopped", None: "unknown"}
        console.print(f"[bold]journal[/] {shown(data['path'])} — {live[data['live']]}")
        size_kib = data["size_on_disk"] / 1024
        console.print(
            f"schema {data['schema']} · durability {data['durability']} · {size_kib:,.0f} KiB on disk · "
            f"pending [bold]{data['pending']}[/] · acked {data['acked']} · dead {data['dead']}"
        )
    if data["names"]:
        rows = [
            [name, direction, str(row[direction]["pending"]), str(row[direction]["acked"]), str(row[direction]["dead"])]
            for name, row in data["names"].items()
            for direction in ("in", "out")
            if any(row[direction].values())
        ]
        for line in aligned(["name", "direction", "pending", "acked", "dead"], rows):
            console.print(line)
    else:
        console.print("no entries")
    oldest = data["oldest_pending"]
    if oldest:
        console.print(
            f"oldest pending: id {oldest['id']} ({shown(oldest['name'])}, {oldest['direction']}), "
            f"{age(oldest['age_seconds'])} ago"
        )
        histogram = ", ".join(f"{k}: {v}" for k, v in data["pending_attempts"].items())
        console.print(f"attempts of pending entries: {histogram}")
    confirm = data["confirm"]
    if confirm["senders"] or confirm["duplicates_dropped"]:
        console.print(
            f"confirm=True senders: {confirm['senders']} · dedup keys kept {confirm['dedup_keys']:,} · "
            f"resends dropped as duplicates {confirm['duplicates_dropped']:,}"
        )
    if data["replays"]:
        last = data["replays"][-1]
        console.print(
            f"replays: {len(data['replays'])} (last: {last['count']} entries to {shown(last['endpoint'])}, "
            f"{age(time.time() - last['at'])} ago)"
        )


@dataclass(frozen=True)
class EntryFilter:
    """The listing's filters: ``select`` reads the journal with them, ``wants`` tests one entry."""

    name: str | None
    state: str | None
    direction: str | None
    since: float | None
    until: float | None
    min_attempts: int

    def select(self, journal: zjournal.Journal, after_id: int = 0) -> Iterator[zjournal.Entry]:
        """Matching entries above ``after_id``, oldest first (name, state and direction read by the journal)."""
        for entry in journal.entries(name=self.name, state=self.state, direction=self.direction, after=after_id):
            if self._wants_time_and_attempts(entry):
                yield entry

    def wants(self, entry: zjournal.Entry) -> bool:
        """Whether ``entry`` matches (state and direction as the journal parsed them in a first select)."""
        return (
            (self.name is None or entry.name == self.name)
            and (self.state is None or entry.state == zjournal.State(self.state.lower()))
            and (self.direction is None or entry.direction == zjournal.Direction(self.direction.lower()))
            and self._wants_time_and_attempts(entry)
        )

    def _wants_time_and_attempts(self, entry: zjournal.Entry) -> bool:
        return (
            (self.since is None or entry.created >= self.since)
            and (self.until is None or entry.created <= self.until)
            and entry.attempts >= self.min_attempts
        )


def aligned(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A plain table (no boxes, no wrapping: the same in a terminal and in a pipe), data escaped."""
    texts = [[printable(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(row[i]) for row in texts]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return [f"[bold]{line(headers)}[/]", *(rich.markup.escape(line(row)) for row in texts)]


# (width, right-aligned) of the listing's columns; the last takes what is left
_COLUMNS = ((8, True), (16, False), (3, False), (7, False), (8, True), (7, True), (8, True), (0, False))


_DEFAULT_LIMIT = 100  # a listing of a million entries is not what an operator who typed no --limit wants


class Listing:
    """Entries, one line each as they are found (a listing of a million starts at once, in flat memory)."""

    HEADERS = ("id", "name", "dir", "state", "attempts", "age", "size", "preview")

    def __init__(self, as_json: bool, dead: bool, how: str = "auto") -> None:
        self.as_json = as_json
        self.how = how  # --decode: the preview column uses it too
        self.dead = dead  # dead letters: their reason is what an operator looks for
        self.shown = 0
        self._headed = False
        self._preview = max(20, console.width - 72) if console.is_terminal else 60

    def _row(self, e: zjournal.Entry, now: float) -> list[str]:
        row = [
            str(e.id).rjust(8),
            _clip(e.name, 16).ljust(16),
            str(e.direction).ljust(3),
            str(e.state).ljust(7),
            str(e.attempts).rjust(8),
            age(now - e.created).rjust(7),
            str(e.size).rjust(8),
        ]
        row.append(_clip(e.reason or "-", 40) if self.dead else preview(e.body, self._preview, self.how))
        return row

    def print(self, entry: zjournal.Entry) -> None:
        if self.as_json:
            out(json.dumps(entry_record(entry)))
        else:
            if not self._headed:
                self._headed = True
                names = [*self.HEADERS[:-1], "reason" if self.dead else "preview"]
                cells = [n.rjust(w) if right else n.ljust(w) for n, (w, right) in zip(names, _COLUMNS, strict=True)]
                console.print(f"[bold]{'  '.join(cells).rstrip()}[/]")
            row = "  ".join(self._row(entry, time.time())).rstrip()
            console.print(rich.markup.escape(printable(row)), soft_wrap=True)
        self.shown += 1


def _clip(text: str, width: int) -> str:
    text = printable(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def print_entry(entry: zjournal.Entry, how: str, as_json: bool) -> None:
    if as_json:
        record = entry_record(entry)
        record["decoded"] = [dict(zip(("decoder", "text"), decode(f, how), strict=True)) for f in entry.body]
        out(json.dumps(record))
        return
    console.print(
        f"[bold]entry {entry.id}[/] · {shown(entry.name)} · {entry.direction} · [bold]{entry.state}[/] · "
        f"attempts {entry.attempts} · created {time.strftime('%Y-%m-%d %H:%M:%S %z', time.localtime(entry.created))} "
        f"({age(time.time() - entry.created)} ago) · {entry.size} bytes"
    )
    if entry.reason:
        console.print(f"reason: {shown(entry.reason)}")
    if entry.envelope:
        console.print("[bold]routing envelope[/]")
        for index, frame in enumerate(entry.envelope):
            console.print(f"  [{index}] {frame.hex() if frame else '(empty delimiter)'}", markup=False)
    console.print(f"[bold]body[/] ({len(entry.body)} frame{'s' if len(entry.body) != 1 else ''})")
    for index, frame in enumerate(entry.body):
        used, text = decode(frame, how)
        console.print(f"  [{index}] {len(frame)} bytes, {used}:", markup=False)
        for line in text.splitlines() or [""]:
            console.print(f"      {line}", markup=False)


def _remote(source: str | None, name: str | None, path: str | None, follow: bool) -> Any:
    """The engine's copy of journal ``name`` (None: a local journal at ``path``); one line for a wrong mix."""
    if not engine_copy_asked("inspect", source, name, path):
        return None
    assert source is not None and name is not None
    if follow:
        raise fail("--follow is for a local journal, not --from. (see zjournal inspect --help)", 2)
    from zjournal.replication.engine import Engine

    engine = Engine(source, 5.0)
    try:
        return zjournal.materialise(engine, name)
    finally:
        engine.close()


def _remote_summary(journal: zjournal.Journal, remote: Any, source: str) -> dict[str, Any]:
    """The summary of the engine's copy: a local one's fields, and who owns it."""
    data = summary(journal, f"{remote.alias} at {source}")
    fence = remote.fence
    data.update(
        live=None,
        durability=None,
        created=None,
        engine=source,
        journal=remote.alias,
        owner=None if fence is None else fence.owner,
        epoch=0 if fence is None else fence.epoch,
        heartbeat_age=None if remote.last_batch_at is None else round(max(0.0, time.time() - remote.last_batch_at), 3),
        messages=remote.messages,
    )
    return data


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def inspect(
        path: str = typer.Argument(None, metavar="PATH", help="The journal directory (or --from and --journal)."),
        name: str = typer.Option(None, "--name", metavar="NAME", help="Only entries of this stream."),
        state: str = typer.Option(None, "--state", metavar="STATE", help="pending, acked or dead."),
        direction: str = typer.Option(None, "--direction", metavar="DIR", help="in or out."),
        since: str = typer.Option(
            None, "--since", metavar="TIME", help="Created at or after: epoch, ISO 8601, or an age (10m)."
        ),
        until: str = typer.Option(
            None, "--until", metavar="TIME", help="Created at or before (same forms as --since)."
        ),
        min_attempts: int = typer.Option(
            0, "--min-attempts", metavar="N", min=0, help="Delivered at least this often."
        ),
        limit: int = typer.Option(
            None, "--limit", metavar="N", min=1, help="List at most this many entries (default 100)."
        ),
        every: bool = typer.Option(False, "--all", help="List every matching entry (no limit)."),
        entry_id: int = typer.Option(None, "--id", metavar="ID", min=1, max=MAX_ID, help="Show one entry in full."),
        how: str = typer.Option(
            "auto",
            "--decode",
            metavar="DECODER",
            help="How to show frames: auto, json, text, msgpack, hex, or a plugin's.",
        ),
        as_json: bool = typer.Option(False, "--json", help="JSON for scripts (documented fields)."),
        follow: bool = typer.Option(
            False, "--follow", help="The newest --limit entries (default 100), then each one as it arrives."
        ),
        source: str = typer.Option(
            None, "--from", metavar="URL", help="Show the copy a NATS JetStream engine holds (nats://HOST:PORT)."
        ),
        remote_name: str = typer.Option(None, "--journal", metavar="NAME", help="With --from: the journal's name."),
    ) -> None:
        """Show what is in a journal: a summary, a listing, or one entry in full.

        Works on a journal that a running service holds open (read-only, from a
        RocksDB secondary instance) and on a stopped one; it never writes to it.
        With --from and --journal: the engine's copy of a replicated journal.
        """
        if how != "auto" and how not in available():
            names = ", ".join(sorted(available()))
            raise zjournal.InvalidArgumentError(f"unknown decoder {how!r}: expected auto, {names}")
        since_t, until_t = parse_time(since), parse_time(until)
        remote = _remote(source, remote_name, path, follow)
        if remote is None:
            require_journal(path)
        else:
            path = f"{remote_name} at {source}"
        with zjournal.open(path, read_only=True) if remote is None else remote.as_journal() as journal:
            if entry_id is not None:
                entry = journal.get(entry_id)
                if entry is None:
                    raise zjournal.UnknownEntryError(entry_id, f"in {path}")
                print_entry(entry, how, as_json)
                return
            listing = (
                follow
                or any(v is not None for v in (name, state, direction, since, until))
                or min_attempts > 0
                or limit is not None
                or every
            )
            if not listing:
                data = summary(journal, path) if remote is None else _remote_summary(journal, remote, source)
                if as_json:
                    out(json.dumps(data))
                else:
                    print_summary(data)
                return
            if every and limit is not None:
                raise fail("--all lists every entry, --limit N at most N: give one. (see zjournal inspect --help)", 2)
            limit = None if every else limit or _DEFAULT_LIMIT
            listing_out = Listing(as_json, dead=state == "dead", how=how)
            filters = EntryFilter(name, state, direction, since_t, until_t, min_attempts)
            found = filters.select(journal)
            if follow and limit:  # as tail -f: the newest entries, then what arrives
                newest: collections.deque[int] = collections.deque(maxlen=limit)  # ids: frames may be large
                earlier = 0
                for entry in found:
                    earlier += len(newest) == limit
                    newest.append(entry.id)
                if earlier:
                    err_console.print(f"{earlier} earlier not shown — use --all for all")
                found = iter(())  # (read again from the first of them: only the tail)
                if newest:
                    found = filters.select(journal, newest[0] - 1)
            last = 0
            more = False
            for entry in found:
                if limit and listing_out.shown >= limit and not follow:
                    more = True
                    break
                listing_out.print(entry)
                last = entry.id
            if more:
                hint = ""
                if since_t is None and until_t is None and not min_attempts:  # the counters say how many, no scan
                    hint = f"{journal.count(name=name, state=state, direction=direction) - limit} "
                message = f"{hint}more — use --all for all"
                (err_console.print(message) if as_json else console.print(message))
            elif not listing_out.shown and not as_json:
                console.print("no entries match")
            if not follow:
                return
            while True:
                # Every entry after the last one read, matching or not: the next look starts after it, so
                # a filter that matches little never has the same entries read again at each look.
                for entry in journal.entries(after=last):
                    last = entry.id
                    if filters.wants(entry):
                        listing_out.print(entry)
                time.sleep(0.5)
                journal.refresh()
