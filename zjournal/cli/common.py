"""What the commands share: error handling, opening journals, times, JSON records."""

from __future__ import annotations

import base64
import functools
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import rich.markup
import typer
import zmq
from rich.console import Console

import zjournal
from zjournal.decode import printable

F = TypeVar("F", bound=Callable[..., Any])

err_console = Console(stderr=True, highlight=False)


def shown(text: object) -> str:
    """Data, paths and arguments as rich prints them: never markup, never a terminal control."""
    return rich.markup.escape(printable(str(text)))


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one line on stderr; return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {shown(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def engine_copy_asked(command: str, source: str | None, name: str | None, path: str | None) -> bool:
    """Whether ``--from URL --journal NAME`` names the engine's copy (False: a local PATH); one line for a wrong mix.

    Usage errors exit 2, as click's own.
    """
    usage = f" (see zjournal {command} --help)"
    if source is None and name is None:
        if path is None:
            raise fail("Missing argument 'PATH' (or --from URL --journal NAME)." + usage, 2)
        return False
    if source is None or name is None or path is not None:
        raise fail("--from and --journal go together, without a PATH." + usage, 2)
    return True


DEBUG = False  # zjournal --debug: let unexpected errors show their traceback
MAX_ID = (1 << 64) - 1  # the largest entry id (for typer's bounds)
MAX_SECONDS = 86_400.0  # the longest wait an option takes (ZeroMQ's timeouts are int32 milliseconds)


def handle_errors(fn: F) -> F:
    """Turn every error into one line and a non-zero exit: never a traceback (unless --debug)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BrokenPipeError:  # `zjournal export J | head -1`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
            raise typer.Exit(141) from None  # as a process ended by SIGPIPE, and as quietly
        except zjournal.ZJournalError as e:
            raise fail(str(e)) from None
        except zmq.ZMQError as e:
            raise fail(f"ZeroMQ: {e}") from None
        except OSError as e:
            raise fail(f"{e.strerror or e}: {e.filename}" if e.filename else str(e)) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as e:  # a bug: one line, and the way to see more
            if DEBUG:
                raise
            bug = f"unexpected {type(e).__name__}: {e} (a bug in zjournal: rerun with --debug for the traceback)"
            raise fail(bug) from None

    return wrapper  # type: ignore[return-value]


def open_for_change(path: str, **options: Any) -> zjournal.Journal:
    """Open a journal to change it; a journal held by a running process is refused, saying why."""
    try:
        return zjournal.open(path, **options)
    except zjournal.JournalLockedError:
        raise zjournal.JournalLockedError(
            f"journal {path} is held open by a running process: its own redelivery handles its pending "
            "entries; stop that process first (this command is for journals whose owner is gone)",
            path=path,
        ) from None


_TCP = re.compile(r"^tcp://(?P<host>[^\s/]+):(?P<port>[^:\s/]+)$")


def check_endpoint(endpoint: str, what: str) -> None:
    """Refuse an endpoint libzmq would misread (a port over 65535 binds a random one) or a process cannot share."""
    match = _TCP.match(endpoint)
    if match:
        port = match.group("port")
        if port == "*" or (port.isdigit() and int(port) <= 65535):
            return
        raise zjournal.InvalidArgumentError(f"{what} {endpoint!r}: the port must be * or a number from 0 to 65535")
    if endpoint.startswith("ipc://") and len(endpoint) > len("ipc://") and endpoint.isprintable():
        return
    raise zjournal.InvalidArgumentError(
        f"{what} {endpoint!r} is not an endpoint other processes can reach: use tcp://host:port or ipc://path"
    )


def require_journal(path: str) -> None:
    """Refuse a path that holds no journal: only zjournal.open (and commands that say so) create one."""
    from zjournal.store.rocks import check_journal_path

    if not os.path.exists(path):
        raise zjournal.NotAJournalError(f"no journal at {path}", path=path)
    if not check_journal_path(path):
        raise zjournal.NotAJournalError(f"{path} is empty: not a journal (this command never creates one)", path=path)


_LATEST_TIME = 4102444800.0  # 2100-01-01
_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str | None) -> float | None:
    """A point in time: epoch seconds, ISO 8601, or an age such as 30s, 10m, 2h, 7d (ago)."""
    if text is None:
        return None
    value = text.strip()
    invalid = zjournal.InvalidArgumentError(
        f"invalid time {text!r}: use epoch seconds, ISO 8601 (2026-11-27T10:00) or an age (30s, 10m, 2h, 7d) "
        "between 1970 and 2100"
    )
    match = _RELATIVE.match(value)
    try:
        if match:
            moment = time.time() - float(match.group(1)) * _UNITS[match.group(2)]
        else:
            try:
                moment = float(value)
            except ValueError:
                moment = datetime.fromisoformat(value).timestamp()
    except (ValueError, OverflowError, OSError):
        raise invalid from None
    if not 0 <= moment <= _LATEST_TIME:  # NaN fails this too
        raise invalid
    return moment


def age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{seconds % 86400 // 3600:02.0f}h"


def entry_record(entry: zjournal.Entry) -> dict[str, Any]:
    """An entry as a JSON object: the format of ``inspect --json`` listings and ``export``."""
    return {
        "id": entry.id,
        "name": entry.name,
        "direction": str(entry.direction),
        "state": str(entry.state),
        "attempts": entry.attempts,
        "created": entry.created,
        "updated": entry.updated or None,  # null: never changed since it was journaled
        "reason": entry.reason,
        "envelope_size": entry.envelope_size,
        "close_returns": entry.close_returns,
        "frames": [base64.b64encode(f).decode("ascii") for f in entry.frames],
    }


def entry_from_json(obj: Any, where: str) -> zjournal.Entry:
    """The inverse of :func:`entry_record` (the id is not kept: imports get new ids)."""
    try:
        return zjournal.Entry(
            id=0,
            name=str(obj["name"]),
            direction=zjournal.Direction(obj["direction"]),
            frames=[base64.b64decode(f, validate=True) for f in obj["frames"]],
            state=zjournal.State(obj["state"]),
            attempts=int(obj.get("attempts", 0)),
            created=float(obj.get("created", time.time())),
            updated=float(obj.get("updated") or 0.0),
            reason=str(obj.get("reason", "")),
            envelope_size=int(obj.get("envelope_size", 0)),
            close_returns=int(obj.get("close_returns", 0)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise zjournal.InvalidArgumentError(f"{where}: not a zjournal entry ({e})") from None


def out(text: str) -> None:
    """One line on stdout, with any terminal control in it escaped."""
    sys.stdout.write(printable(text) + "\n")
