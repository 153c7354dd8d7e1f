"""``zjournal replay``: re-inject a stopped journal's entries into a live ZeroMQ endpoint.

Entries go in chunks, each through a fresh socket: the chunk is sent, the
socket is closed with a linger and its context terminated, and only when that
finished inside the linger (ZeroMQ has handed every message to the peer's
connection) are the chunk's entries marked done, in one write with a record of
the replay. A crash or Ctrl-C leaves the rest pending; a second run sends only
what is left. REQ targets are confirmed per message by their reply.

Routing envelopes: routing ids name peers of the process that journaled the
message and are never replayed. A DEALER keeps the envelope's empty
delimiter, so a ROUTER endpoint receives what a REQ client would have sent; a
REQ sends the body (it adds the delimiter itself) and waits for each reply;
PUSH, PUB and PAIR send the body.

A PUB cannot know its subscribers, and drops what nobody subscribed to: a
replay "through PUB" sends from an XPUB, which sees the subscriptions, and
sends an entry only once a subscription matching its first frame reached it
(within ``--timeout``); otherwise it stops there, and that entry and the
rest stay pending.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import typer
import zmq
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import zjournal
from zjournal import killpoints
from zjournal.cli import curve
from zjournal.cli.common import (
    MAX_ID,
    MAX_SECONDS,
    engine_copy_asked,
    fail,
    handle_errors,
    open_for_change,
    out,
    parse_time,
    require_journal,
)

SOCKET_TYPES = {"push": zmq.PUSH, "dealer": zmq.DEALER, "req": zmq.REQ, "pub": zmq.PUB, "pair": zmq.PAIR}

err_console = Console(stderr=True)


@dataclass
class Tally:
    sent: int = 0
    skipped: int = 0
    failed: int = 0  # tried, not confirmed
    unsent: int = 0  # never tried (the replay stopped before them)


def frames_for(entry: zjournal.Entry, socket_type: int) -> list[bytes]:
    """What to send for an entry through this socket type (see the module docstring)."""
    body = entry.body
    if socket_type == zmq.DEALER and entry.envelope_size >= 2 and entry.envelope[-1] == b"":
        return [b"", *body]
    return body


class ChunkSender:
    """Sends one chunk of entries through a fresh socket and confirms it by terminating the context."""

    def __init__(
        self,
        endpoint: str,
        socket_type: int,
        bind: bool,
        timeout: float,
        rate: float | None,
        keys: curve.Keys | None = None,
    ) -> None:
        self.endpoint, self.socket_type, self.bind = endpoint, socket_type, bind
        self.keys = keys
        self._monitor: zmq.Socket | None = None
        self.timeout_ms = int(timeout * 1000)
        self.interval = 1.0 / rate if rate else 0.0
        self.next_send = 0.0
        self.attempted = 0

    def _socket(self, ctx: zmq.Context) -> zmq.Socket:
        sock = ctx.socket(zmq.XPUB if self.socket_type == zmq.PUB else self.socket_type)
        sock.linger = self.timeout_ms
        sock.sndtimeo = self.timeout_ms
        sock.rcvtimeo = self.timeout_ms
        sock.immediate = True  # queue only on finished connections: an unreachable peer times out
        if self.keys is not None:
            self.keys.apply(sock)
        self._monitor = curve.watch(sock)  # a refused handshake looks like nobody listening otherwise
        try:
            sock.bind(self.endpoint) if self.bind else sock.connect(self.endpoint)
        except zmq.ZMQError as e:
            sock.disable_monitor()
            self._monitor.close(0)
            self._monitor = None
            sock.close(0)
            verb = "bind to" if self.bind else "connect to"
            raise zjournal.InvalidArgumentError(f"cannot {verb} endpoint {self.endpoint!r}: {e}") from None
        return sock

    def _why_not_taken(self) -> str:
        waited = f"{self.timeout_ms / 1000:g}s"
        if self._monitor is not None and curve.handshake_failed(self._monitor):
            return (
                f"the security handshake with {self.endpoint} failed (a CURVE server: give --curve-server-key, "
                "and --curve-secret-key-file if it only admits known clients; or the key given is not its key)"
            )
        return f"{self.endpoint} did not take messages within {waited} (is anything listening there?)"

    def _wait_for_subscriber(self, sock: zmq.Socket, topic: bytes, subscribed: dict[bytes, int]) -> bool:
        """Whether a subscription matching ``topic`` reached the XPUB (waiting up to the timeout)."""
        deadline = time.monotonic() + self.timeout_ms / 1000
        while not any(topic.startswith(prefix) for prefix, n in subscribed.items() if n > 0):
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                return False
            message = sock.recv()
            if message[:1] == b"\x01":
                subscribed[message[1:]] = subscribed.get(message[1:], 0) + 1
            elif message[:1] == b"\x00":
                subscribed[message[1:]] = subscribed.get(message[1:], 0) - 1
        return True

    def _pace(self) -> None:
        if self.interval:
            now = time.monotonic()
            if now < self.next_send:
                time.sleep(self.next_send - now)
            self.next_send = max(now, self.next_send) + self.interval

    def send(self, entries: list[zjournal.Entry]) -> tuple[list[int], str | None]:
        """The ids ZeroMQ took off the socket, and why the rest were not (None: no problem)."""
        ctx = zmq.Context()
        sent: list[int] = []
        problem = None
        self.attempted = 0  # entries this chunk tried to send (the rest were never tried)
        try:
            sock = self._socket(ctx)
        except BaseException:
            ctx.destroy(linger=0)
            raise
        subscribed: dict[bytes, int] = {}  # XPUB: subscription prefix -> subscribers
        try:
            for entry in entries:
                self._pace()
                frames = frames_for(entry, self.socket_type)
                if self.socket_type == zmq.PUB and not self._wait_for_subscriber(sock, frames[0], subscribed):
                    problem = (
                        f"no subscriber of {self.endpoint} subscribed to entry {entry.id}'s topic within "
                        f"{self.timeout_ms / 1000:g}s (a PUB drops what nobody subscribed to)"
                    )
                    break
                self.attempted += 1
                try:
                    sock.send_multipart(frames)
                except zmq.Again:
                    problem = self._why_not_taken()
                    break
                if self.socket_type == zmq.REQ:
                    try:
                        sock.recv_multipart()  # the reply confirms this one
                    except zmq.Again:
                        problem = (
                            f"{self.endpoint} took entry {entry.id} but sent no reply within "
                            f"{self.timeout_ms / 1000:g}s (a REQ replay marks an entry done on its reply)"
                        )
                        break
                sent.append(entry.id)
        except KeyboardInterrupt:
            problem = "interrupted"
        finally:
            if self._monitor is not None:
                sock.disable_monitor()
                self._monitor.close(0)
            sock.close()
            started = time.monotonic()
            ctx.term()  # returns once everything is handed over, or the linger ran out
            if self.socket_type != zmq.REQ and sent and (time.monotonic() - started) * 1000 >= self.timeout_ms:
                problem = problem or f"could not confirm delivery to {self.endpoint} within the linger"
                sent = []
        return sent, problem


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def replay(
        path: str = typer.Argument(
            None, metavar="PATH", help="The journal directory (its owner must be stopped), or --from and --journal."
        ),
        endpoint: str = typer.Option(
            ..., "--endpoint", metavar="ENDPOINT", help="Where to send, e.g. tcp://127.0.0.1:5555."
        ),
        socket_type: str = typer.Option(
            ..., "--socket-type", metavar="TYPE", help="push, dealer, req, pub or pair (any case)."
        ),
        state: str = typer.Option(
            "pending", "--state", metavar="STATE", help="Replay pending entries, or dead letters."
        ),
        name: list[str] = typer.Option(None, "--name", metavar="NAME", help="Only these streams (repeatable)."),
        entry_ids: list[int] = typer.Option(
            None, "--id", metavar="ID", min=1, max=MAX_ID, help="Only these entries (repeatable)."
        ),
        since: str = typer.Option(
            None, "--since", metavar="TIME", help="Only entries created since (epoch, ISO 8601, or 10m)."
        ),
        bind: bool = typer.Option(False, "--bind/--connect", help="Bind to the endpoint instead of connecting."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be sent; send nothing."),
        rate: float = typer.Option(
            None, "--rate", metavar="PER_SECOND", min=0.001, help="At most this many messages per second."
        ),
        limit: int = typer.Option(None, "--limit", metavar="N", min=1, help="Send at most this many entries."),
        timeout: float = typer.Option(
            5.0, "--timeout", metavar="SECONDS", min=0.01, max=MAX_SECONDS, help="Seconds to wait for the endpoint."
        ),
        curve_server_key: str = typer.Option(
            None, "--curve-server-key", metavar="KEY", help="The endpoint's CURVE public key (Z85), if it is a server."
        ),
        curve_secret_key_file: str = typer.Option(
            None, "--curve-secret-key-file", metavar="FILE", help="This client's CURVE certificate (zmq.auth format)."
        ),
        chunk: int = typer.Option(
            100, "--chunk", metavar="N", min=1, max=1_000_000, help="Entries confirmed together."
        ),
        source: str = typer.Option(
            None, "--from", metavar="URL", help="Replay the copy a NATS JetStream engine holds (takes it over)."
        ),
        remote_name: str = typer.Option(None, "--journal", metavar="NAME", help="With --from: the journal's name."),
    ) -> None:
        """Re-inject entries into a live ZeroMQ endpoint; each is marked done once ZeroMQ took it.

        For journals whose owner is gone (a stopped service, a dead host's journal
        copied elsewhere): a journal held open by a running process is refused.
        """
        kind = SOCKET_TYPES.get(socket_type.lower())
        if kind is None:
            raise zjournal.InvalidArgumentError(
                f"unsupported socket type {socket_type!r}: expected one of {', '.join(SOCKET_TYPES)}"
            )
        if state not in ("pending", "dead"):
            raise zjournal.InvalidArgumentError(f"replay takes --state pending or dead, not {state!r}")
        since_t = parse_time(since)
        keys = curve.client_keys(curve_server_key, curve_secret_key_file)
        if name and not all(name):
            raise zjournal.InvalidArgumentError("--name must not be empty")
        custody = _custody(source, remote_name, path, dry_run, timeout)
        if custody is None:
            require_journal(path)
        else:
            path = f"{remote_name} at {source}"
        with open_for_change(path) if custody is None else custody.journal as journal:
            wanted_ids = set(entry_ids or ())
            chosen = [
                e.id
                for e in journal.entries(state=state)
                if (not name or e.name in name)
                and (not wanted_ids or e.id in wanted_ids)
                and (since_t is None or e.created >= since_t)
            ]
            missing = wanted_ids - set(chosen)
            if missing:
                raise zjournal.UnknownEntryError(min(missing), f"not a {state} entry matching the filters")
            if limit:
                chosen = chosen[:limit]
            if dry_run:
                for entry_id in chosen:
                    entry = journal.get(entry_id)
                    assert entry is not None
                    out(f"would send entry {entry.id} ({entry.name}, {len(frames_for(entry, kind))} frames)")
                out(f"dry run: {len(chosen)} entries would be sent to {endpoint}; nothing sent")
                return
            sender = ChunkSender(endpoint, kind, bind, timeout, rate, keys)
            try:
                tally, problem = _replay(journal, chosen, state, sender, chunk)
            finally:
                if custody is not None:  # the engine's copy drops what was sent (the rest stays pending there)
                    custody.settle([i for i in chosen if (e := journal.get(i)) is None or e.state != state])
                    custody.close()
            unsent = f", not tried {tally.unsent}" if tally.unsent else ""
            out(
                f"sent {tally.sent}, skipped {tally.skipped}, failed {tally.failed}{unsent} "
                f"(to {endpoint} via {kind.name})"
            )
            if problem:
                left = tally.failed + tally.unsent
                raise zjournal.ZJournalError(f"replay stopped: {problem}; {left} entries left {state}")


def _custody(source: str | None, name: str | None, path: str | None, dry_run: bool, timeout: float) -> Any:
    """``--from URL --journal NAME``: the engine's copy, taken over for this replay (None: a local PATH)."""
    if not engine_copy_asked("replay", source, name, path):
        return None
    assert source is not None and name is not None
    if dry_run:
        raise fail(
            "--dry-run is for a local journal: zjournal inspect --from shows the engine's copy."
            " (see zjournal replay --help)",
            2,
        )
    from zjournal.replication.remote import Custody

    return Custody(source, name, timeout=max(timeout, 5.0))


def _replay(
    journal: zjournal.Journal, chosen: list[int], state: str, sender: ChunkSender, chunk: int
) -> tuple[Tally, str | None]:
    tally = Tally()
    problem = None
    started = time.time()  # names this replay: its chunks are one record
    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not err_console.is_terminal,  # a bar is for a person watching, not for a log or a pipe
    )
    with progress:
        task = progress.add_task("replay", total=len(chosen))
        for start in range(0, len(chosen), chunk):
            entries = []
            for entry_id in chosen[start : start + chunk]:
                entry = journal.get(entry_id)
                if entry is None or entry.state != state:
                    tally.skipped += 1  # changed since it was chosen
                else:
                    entries.append(entry)
            sent, problem = sender.send(entries)
            if sent and killpoints.ARMED:
                killpoints.reached("replay:after-send")
            if sent:
                journal.record_replay(
                    sent, endpoint=sender.endpoint, socket_type=sender.socket_type.name.lower(), run=started
                )
            tally.sent += len(sent)
            progress.update(task, advance=len(sent) + len(chosen[start : start + chunk]) - len(entries))  # done
            if problem:
                tally.failed = sender.attempted - len(sent)  # tried and not confirmed: left as they were
                tally.unsent = len(chosen) - tally.sent - tally.skipped - tally.failed
                break
    return tally, problem
