"""The layout: layers import one way, the public API and the old import paths stay as they were."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import zjournal

ROOT = Path(__file__).resolve().parent.parent


def _checker():
    spec = importlib.util.spec_from_file_location("check_imports", ROOT / "tools" / "check_imports.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_product_modules_have_no_import_cycle_and_keep_their_layers(capsys) -> None:
    assert _checker().main() == 0, capsys.readouterr().out


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "zjournal" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return tmp_path


def test_the_checker_finds_a_cycle_hidden_in_a_function_or_under_type_checking(tmp_path) -> None:
    checker = _checker()
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from zjournal import b\n",
            "b.py": "def f():\n    from zjournal.c import thing\n",
            "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from zjournal.a import X\n",
            "d.py": "import zjournal.a\n",
        },
    )
    assert checker.cycles(checker.graph(root)) == [["zjournal.a", "zjournal.b", "zjournal.c"]]


def test_the_checker_finds_a_lower_layer_importing_a_higher_one(tmp_path) -> None:
    checker = _checker()
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "journal/__init__.py": "",
            "journal/core.py": "from ..sockets import socket\n",  # relative, as a reader might write it
            "sockets/__init__.py": "",
            "sockets/socket.py": "from zjournal.journal import core\n",
        },
    )
    edges = checker.graph(root)
    assert checker.breaches(edges) == ["zjournal.journal.core -> zjournal.sockets.socket"]
    assert checker.cycles(edges) == [["zjournal.journal.core", "zjournal.sockets.socket"]]


PUBLIC_NAMES = [
    "SCHEMA_VERSION",
    "AckHandler",
    "AckPolicy",
    "AlreadyRestoredError",
    "AsyncJournaledSocket",
    "Batch",
    "Direction",
    "Durability",
    "Entry",
    "IncompatibleJournalError",
    "InvalidArgumentError",
    "InvalidFramesError",
    "InvalidTransitionError",
    "Journal",
    "JournalClosedError",
    "JournalCorruptError",
    "JournalFencedError",
    "JournalForkedError",
    "JournalLockedError",
    "JournalOpenError",
    "JournaledContext",
    "JournaledSocket",
    "MemoryStore",
    "MessageClass",
    "MessageTooLargeError",
    "NotAJournalError",
    "Plugin",
    "Queue",
    "QueueStats",
    "ReadOnlyJournalError",
    "ReplicationError",
    "RocksStore",
    "State",
    "StopReport",
    "Store",
    "StoreError",
    "UnknownEntryError",
    "ZJournalError",
    "__version__",
    "materialise",
    "open",
    "remote_list",
    "standby",
    "stop_on_signals",
    "takeover",
]

# Journal's public methods and their parameters: the layout by layers changed none (confirm came after;
# restore's ``once`` later still).
JOURNAL_METHODS = {
    "abandon": "parent",
    "ack": "entry_id",
    "add_observer": "observer",
    "append": "name frames direction attempts envelope_size",
    "attempt": "entry_id max_attempts",
    "close": "",
    "compact": "",
    "context": "ctx options",
    "count": "name state direction",
    "count_ephemeral": "name",
    "dead": "entry_id reason",
    "entries": "name state direction after",
    "expire": "now",
    "get": "entry_id",
    "info": "",
    "nack": "entry_id",
    "names": "",
    "oldest_pending": "",
    "pending_attempts": "name",
    "purge": "state before",
    "record_replay": "entry_ids endpoint socket_type run",
    "refresh": "",
    "replay": "name into older_than",
    "replays": "",
    "restore": "entries once",
    "size_on_disk": "",
    "socket": "ctx socket_type name options",
    "sync": "",
    "wrap": "sock name ack classify max_attempts prefetch confirm confirm_timeout resend_after",
}
JOURNAL_ATTRIBUTES = [
    "closed",
    "durability",
    "fsync_interval",
    "max_attempts",
    "max_message_size",
    "path",
    "read_only",
    "recovered",
    "replication",
    "retention",
]


def test_the_public_api_is_exactly_the_listed_names() -> None:
    assert zjournal.__all__ == PUBLIC_NAMES
    for name in PUBLIC_NAMES:
        assert getattr(zjournal, name) is not None


def test_the_journal_keeps_its_methods_and_attributes() -> None:
    with zjournal.Journal() as journal:
        public = sorted(n for n in dir(journal) if not n.startswith("_"))
        assert public == sorted([*JOURNAL_METHODS, *JOURNAL_ATTRIBUTES])
    methods = {
        name: " ".join(p for p in inspect.signature(getattr(zjournal.Journal, name)).parameters if p != "self")
        for name in JOURNAL_METHODS
    }
    assert methods == JOURNAL_METHODS


@pytest.mark.parametrize(
    "statement",
    [
        "from zjournal.socket import JournaledSocket; assert JournaledSocket is zjournal.JournaledSocket",
        "import zjournal.socket; assert zjournal.socket.JournaledSocket is zjournal.JournaledSocket",
        "from zjournal.journal import Journal, open; assert Journal is zjournal.Journal and open is zjournal.open",
        "import zjournal.journal; assert zjournal.journal.Journal is zjournal.Journal",
        "from zjournal.journal import DEFAULT_MAX_MESSAGE_SIZE; assert DEFAULT_MAX_MESSAGE_SIZE > 0",
        "from zjournal.store import Batch, MemoryStore, RocksStore, Store; assert RocksStore is zjournal.RocksStore",
        "from zjournal.store.rocks import RocksStore; from zjournal.store.memory import MemoryStore",
        "from zjournal.aio import AsyncJournaledSocket; assert AsyncJournaledSocket is zjournal.AsyncJournaledSocket",
        "from zjournal.wrapping import JournaledContext; assert JournaledContext is zjournal.JournaledContext",
        "from zjournal.policy import AckPolicy, compile_classifier; assert AckPolicy is zjournal.AckPolicy",
        "from zjournal.entry import Entry, encode_key; assert Entry is zjournal.Entry",
        "from zjournal.durability import Durability; assert Durability is zjournal.Durability",
        "from zjournal import inflight; assert inflight.SlotFile is zjournal.journal.inflight.SlotFile",
        "import zjournal.inflight, zjournal.counters, zjournal.redelivery, zjournal.prefetch, zjournal.pollhook",
    ],
)
def test_old_import_paths_keep_working_in_a_fresh_process(statement: str) -> None:
    # A fresh interpreter: the statement is the first import, as in a user's program.
    code = statement if statement.startswith("import zjournal") else f"import zjournal\n{statement}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_an_unknown_attribute_of_the_package_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError):
        zjournal.no_such_module  # noqa: B018
