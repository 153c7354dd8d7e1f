"""The engine's copy of a journal: read it back, take it over, list what the engine holds.

:func:`materialise` replays a journal's stream: the last complete snapshot,
then the batches after it, each change setting or removing one entry. A
snapshot that was cut off (its owner died while shipping it) is ignored: the
state before it plus what follows still holds.

:func:`takeover` fences the old owner first (compare-and-set on the fence
subject: of two racing takeovers one wins), then materialises the state up to
that fence and writes the pending and dead entries, with their attempts,
names and envelopes, into a new local journal, which becomes the owner: a
service opening it with ``replicate=`` ships from there, at the new epoch.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from zjournal.errors import InvalidArgumentError, ReplicationError
from zjournal.journal import Journal, admin
from zjournal.journal import entry as rec
from zjournal.journal.entry import Entry
from zjournal.replication import wire
from zjournal.replication.engine import Engine, FenceLost

META_REPLICATION = b"replication"  # {alias, epoch, fence_seq}: this journal owns its stream at that fence


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RemoteJournal:
    """A journal as its stream holds it."""

    alias: str
    entries: dict[int, bytes] = field(default_factory=dict)  # id -> record
    fence: wire.Fence | None = None
    fence_seq: int = 0
    last_batch_at: float | None = None  # the owner's last batch (its heartbeat), wall clock
    epoch: int = 0
    messages: int = 0
    bytes: int = 0

    def entry_list(self) -> list[Entry]:
        out = []
        for entry_id in sorted(self.entries):
            try:
                out.append(rec.entry_from_record(entry_id, rec.decode_record(self.entries[entry_id])))
            except Exception as e:  # the engine's copy is input from outside: one clear error
                raise ReplicationError(
                    f"journal {self.alias!r}: entry {entry_id} in the engine is damaged ({e})"
                ) from None
        return out

    def pending(self) -> int:
        return sum(1 for e in self.entry_list() if e.state.value == "pending")

    def as_journal(self) -> Journal:
        """These entries in a journal in memory, under their ids: every journal API reads them (inspect --from)."""
        journal = Journal(plugins=False)
        try:
            admin.adopt(journal._ledger, sorted(self.entries.items()), acked=True)
        except InvalidArgumentError as e:
            journal.close()
            raise ReplicationError(f"journal {self.alias!r} in the engine: {e}") from None
        return journal


class Reader:
    """Reads a journal's stream into a :class:`RemoteJournal`, and can go on reading later from where it stopped."""

    def __init__(self, alias: str) -> None:
        self.remote = RemoteJournal(wire.check_alias(alias))
        self._state: dict[int, bytes] = {}
        self._building: dict[int, bytes] | None = None  # a snapshot being read: replaces the state once complete
        self._building_number: int | None = None
        self._next_part = 0
        self._next_seq = 0

    def read(self, engine: Engine, upto: int | None = None) -> RemoteJournal:
        """Everything up to stream sequence ``upto`` (default: the last), from where the last call stopped."""
        alias = self.remote.alias
        info = engine.stream_info(alias)
        if info is None:
            raise ReplicationError(f"no journal {alias!r} in the engine at {engine.url}")
        last = info.state.last_seq if upto is None else min(upto, info.state.last_seq)
        first = max(1, info.state.first_seq, self._next_seq)
        for seq, subject, data in engine.read(alias, first, last):
            self._take(seq, subject, data)
            self._next_seq = seq + 1
        self.remote.entries = self._state
        return self.remote

    def _take(self, seq: int, subject: str, data: bytes) -> None:
        remote = self.remote
        remote.messages += 1
        remote.bytes += len(data)
        where = f"journal {remote.alias!r}, stream sequence {seq}"
        if subject == wire.fence_subject(remote.alias):
            remote.fence = wire.decode_fence(data, where)
            remote.fence_seq = seq
            return
        if subject != wire.log_subject(remote.alias):
            return  # not ours to read: left alone
        batch = wire.decode_batch(data, where)
        remote.last_batch_at = batch.at
        remote.epoch = max(remote.epoch, batch.epoch)
        if batch.snapshot is None:
            self._building = None  # a batch between a snapshot's parts: that snapshot was cut off
            _apply(self._state, batch.ops)
            return
        number, part, final = batch.snapshot
        if part == 0:
            self._building, self._building_number, self._next_part = {}, number, 0
        if self._building is None or number != self._building_number or part != self._next_part:
            self._building = None  # a snapshot with a part missing: ignored
            return
        _apply(self._building, batch.ops)
        self._next_part += 1
        if final:
            self._state, self._building = self._building, None


def materialise(engine: Engine, alias: str, upto: int | None = None) -> RemoteJournal:
    """The journal ``alias`` as the engine holds it (up to stream sequence ``upto``)."""
    return Reader(alias).read(engine, upto)


def _apply(state: dict[int, bytes], ops: list[wire.Op]) -> None:
    for entry_id, value in ops:
        if value is None:
            state.pop(entry_id, None)
        else:
            state[entry_id] = value


def claim(engine: Engine, alias: str, expected: int, last: wire.Fence | None, path: str) -> tuple[int, int]:
    """Append this process's fence after the one at ``expected``: (its sequence, its epoch)."""
    epoch = (last.epoch if last is not None else 0) + 1
    fence = wire.Fence(epoch=epoch, owner=owner_name(), path=path, at=time.time())
    return engine.put_fence(alias, expected, fence), epoch


def takeover(
    url: str, alias: str, path: str, timeout: float = 5.0, expected_epoch: int | None = None
) -> dict[str, Any]:
    """Fence the owner of ``alias`` and carry its pending and dead entries on in a new journal at ``path``.

    ``expected_epoch``: take over only from the owner at that fence epoch (the
    one a standby saw die); FenceLost if another process took over first.
    """
    from zjournal.journal import open as open_journal  # the public journal API, below this layer

    wire.check_alias(alias)
    path = os.fspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise InvalidArgumentError(f"{path} exists and is not empty: take over into a new directory")
    engine = Engine(url, timeout)
    try:
        reader = Reader(alias)
        reader.read(engine)  # first: a stream that cannot be read is refused before anyone is fenced
        found = engine.last_fence(alias)
        previous = found[1] if found is not None else None
        if expected_epoch is not None and (previous.epoch if previous is not None else 0) != expected_epoch:
            owner = previous.owner if previous is not None else "nobody"
            raise FenceLost(
                f"journal {alias!r} was taken over by another process meanwhile: {owner} has it at epoch "
                f"{previous.epoch if previous is not None else 0}, not {expected_epoch}"
            )
        fence_seq, epoch = claim(engine, alias, found[0] if found else 0, previous, os.path.abspath(path))
        remote = reader.read(engine, upto=fence_seq)  # and what the old owner shipped meanwhile
    finally:
        engine.close()
    kept = [(entry_id, raw) for entry_id, raw in sorted(remote.entries.items()) if _state_of(raw) != rec.ACKED]
    journal = open_journal(path)
    try:
        ledger = journal._ledger
        try:
            admin.adopt(ledger, kept)  # the records as they were, under their ids (a restart, elsewhere)
        except InvalidArgumentError as e:
            raise ReplicationError(f"journal {alias!r} in the engine: {e}") from None
        with ledger.lock:
            ledger.set_meta(META_REPLICATION, {"alias": alias, "epoch": epoch, "fence_seq": fence_seq})
        pending, dead = journal.count(state="pending"), journal.count(state="dead")
    finally:
        journal.close()
    return {
        "journal": alias,
        "path": path,
        "epoch": epoch,
        "previous_owner": previous.owner if previous is not None else None,
        "pending": pending,
        "dead": dead,
    }


def _state_of(raw: bytes) -> int | None:
    try:
        return rec.decode_record(raw)[0]
    except Exception:  # damaged: adopt says which entry, and why
        return None


def remote_list(url: str, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The journals in the engine: owner, fence epoch, heartbeat age, pending count."""
    engine = Engine(url, timeout)
    try:
        rows = []
        now = time.time()
        for info in engine.streams():
            alias = wire.alias_of_stream(info.config.name)
            if alias is None:
                continue
            remote = materialise(engine, alias)
            rows.append(
                {
                    "journal": alias,
                    "owner": remote.fence.owner if remote.fence else None,
                    "path": remote.fence.path if remote.fence else None,
                    "epoch": remote.fence.epoch if remote.fence else 0,
                    "heartbeat_age": None if remote.last_batch_at is None else max(0.0, now - remote.last_batch_at),
                    "pending": remote.pending(),
                    "entries": len(remote.entries),
                    "messages": remote.messages,
                }
            )
        return rows
    finally:
        engine.close()


class Custody:
    """A journal's engine copy, taken over (fenced) by this process for a one-off job: ``replay --from``.

    ``journal`` holds its entries in memory; :meth:`settle` removes entries
    from the engine's copy, fenced as this owner's batches.
    """

    def __init__(self, url: str, alias: str, timeout: float = 5.0) -> None:
        self.alias = wire.check_alias(alias)
        self.engine = Engine(url, timeout)
        try:
            reader = Reader(alias)
            reader.read(self.engine)  # a stream that cannot be read is refused before anyone is fenced
            found = self.engine.last_fence(alias)
            self.fence_seq, self.epoch = claim(
                self.engine, alias, found[0] if found else 0, found[1] if found else None, "(replay)"
            )
            self.previous_owner = found[1].owner if found else None
            self.journal = reader.read(self.engine, upto=self.fence_seq).as_journal()
        except BaseException:
            self.engine.close()
            raise
        self._number = 0

    def settle(self, entry_ids: list[int]) -> None:
        """These entries are done: the engine's copy drops them (what is left stays for a later takeover)."""
        limit = max(64 * 1024, self.engine.max_payload - wire.HEADROOM)
        ops: list[wire.Op] = [[entry_id, None] for entry_id in entry_ids]
        step = max(1, limit // 24)  # a removal packs in well under 24 bytes
        for start in range(0, len(ops), step):
            self._number += 1
            payload = wire.encode_batch(self.epoch, self._number, ops[start : start + step], time.time())
            self.engine.ship(self.alias, payload, self.fence_seq, f"{self.alias}:{self.epoch}:r{self._number}")

    def close(self) -> None:
        self.journal.close()
        self.engine.close()

    def __enter__(self) -> Custody:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
