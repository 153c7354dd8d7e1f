"""The engine: NATS JetStream through nats-py, run on an event loop of its own, called from plain threads.

nats-py is asyncio; zjournal's callers are not. An :class:`Engine` owns a
thread with its own loop and one connection, and each method runs one
coroutine there and waits for it, bounded by ``timeout``. Every failure of
the engine comes out as ReplicationError (or JournalFencedError / FenceLost
for a refused compare-and-set), never as one of nats-py's own exceptions.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

from zjournal.errors import InvalidArgumentError, JournalFencedError, ReplicationError
from zjournal.replication import wire

log = logging.getLogger("zjournal")

WRONG_LAST_SEQUENCE = 10071  # JetStream: a compare-and-set header did not match
NOT_CLUSTERED = 10074  # JetStream: "replicas > 1 not supported in non-clustered mode"
_CONNECT_ATTEMPTS_PER_SERVER = 1


class FenceLost(ReplicationError):
    """A takeover's compare-and-set on the fence lost: another process took the journal first."""


def parse_servers(url: str) -> list[str]:
    """``nats://h1:4222,nats://h2:4222`` as a list; InvalidArgumentError for anything else."""
    servers = [part.strip() for part in url.split(",")] if isinstance(url, str) else []
    if not servers or not all(s.startswith(("nats://", "tls://")) and len(s) > 7 for s in servers):
        raise InvalidArgumentError(f"replicate= takes nats://HOST:PORT addresses, comma-separated, not {url!r}")
    return servers


def _nats() -> Any:
    try:
        import nats
        import nats.js.api
    except ImportError:
        raise ReplicationError("replication needs nats-py: pip install 'zjournal[replicate]'") from None
    return nats


class Engine:
    """One connection to a JetStream cluster, usable from any thread."""

    def __init__(self, url: str, timeout: float, *, keep_trying: bool = False) -> None:
        self.servers = parse_servers(url)
        self.url = url
        self.timeout = float(timeout)
        self._nats = _nats()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="zjournal-nats", daemon=True)
        self._thread.start()
        self._nc: Any = None
        self._js: Any = None
        self._keep_trying = keep_trying
        try:
            self._run(self._connect())
        except BaseException:
            self.close()
            raise

    # -- plumbing ------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, Any], timeout: float | None = None) -> Any:
        if self._loop.is_closed():
            coro.close()
            raise ReplicationError(f"connection to {self.url} is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        wait = (timeout or self.timeout) + 1.0
        try:
            return future.result(wait)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ReplicationError(f"{self.url}: no answer within {wait:.1f} s") from None
        except ReplicationError:
            raise
        except InvalidArgumentError:
            raise
        except Exception as e:  # nats-py's own errors: one line, ours
            raise ReplicationError(f"{self.url}: {_describe(e)}") from None

    async def _connect(self) -> None:
        last: list[BaseException] = []

        async def quiet(e: Exception) -> None:  # nats-py would print every reconnect attempt
            last[:] = [e]
            log.debug("zjournal: NATS %s: %s", self.url, _describe(e))

        try:
            self._nc = await self._nats.connect(
                servers=self.servers,
                connect_timeout=min(self.timeout, 2.0),
                allow_reconnect=True,
                max_reconnect_attempts=_CONNECT_ATTEMPTS_PER_SERVER,  # at first: fail, and say so
                reconnect_time_wait=0.2,
                error_cb=quiet,
                name="zjournal",
            )
        except Exception as e:
            why = _describe(last[0]) if last else _describe(e)
            raise ReplicationError(f"cannot reach NATS at {self.url}: {why}") from None
        self._nc.options["max_reconnect_attempts"] = -1  # once connected, ride out an outage (the lag grows)
        self._js = self._nc.jetstream(timeout=self.timeout)

    @property
    def max_payload(self) -> int:
        return int(self._nc.max_payload)

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(self.timeout + 1)
        except Exception as e:  # closing a connection that is gone: nothing to keep
            log.debug("zjournal: closing the NATS connection: %s", _describe(e))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _shutdown(self) -> None:
        """Close the connection, then end what nats-py left running, so the loop closes clean."""
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception as e:
                log.debug("zjournal: closing the NATS connection: %s", _describe(e))
        current = asyncio.current_task()
        rest = [task for task in asyncio.all_tasks() if task is not current]
        for task in rest:
            task.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    # -- streams -------------------------------------------------------------

    def ensure_stream(self, alias: str, replicas: int | None = None) -> None:
        """The journal's stream, created if it is not there (replicas: as many servers as we know, up to 3)."""
        self._run(self._ensure_stream(alias, replicas))

    async def _ensure_stream(self, alias: str, replicas: int | None) -> None:
        api = self._nats.js.api
        name = wire.stream_of(alias)
        try:
            await self._js.stream_info(name)
            return
        except self._nats.js.errors.NotFoundError:
            pass
        for count in (replicas,) if replicas is not None else (3, 1):
            config = api.StreamConfig(
                name=name,
                subjects=[f"zj.{alias}.>"],
                storage=api.StorageType.FILE,
                num_replicas=count,
                allow_direct=True,
            )
            try:
                await self._js.add_stream(config)
                return
            except self._nats.js.errors.APIError as e:
                if count == 1 or replicas is not None or e.err_code != NOT_CLUSTERED:
                    raise  # (a cluster that cannot place 3 now is retried, never quietly given 1 replica)
                log.info("zjournal: stream %s: one server, so 1 replica (%s)", name, _describe(e))

    def streams(self) -> list[Any]:
        """Every zjournal stream in the engine (their StreamInfo)."""
        return self._run(self._streams())

    async def _streams(self) -> list[Any]:
        infos = await self._js.streams_info()
        return [info for info in infos if wire.alias_of_stream(info.config.name) is not None]

    def stream_info(self, alias: str) -> Any | None:
        return self._run(self._stream_info(alias))

    async def _stream_info(self, alias: str) -> Any | None:
        try:
            return await self._js.stream_info(wire.stream_of(alias))
        except self._nats.js.errors.NotFoundError:
            return None

    # -- fences --------------------------------------------------------------

    def last_fence(self, alias: str) -> tuple[int, wire.Fence] | None:
        """(its stream sequence, the record) of the journal's last fence; None when nobody ever owned it."""
        return self._run(self._last_fence(alias))

    async def _last_fence(self, alias: str) -> tuple[int, wire.Fence] | None:
        try:
            msg = await self._js.get_last_msg(wire.stream_of(alias), wire.fence_subject(alias))
        except self._nats.js.errors.NotFoundError:
            return None
        return msg.seq, wire.decode_fence(msg.data or b"", f"fence of journal {alias!r}")

    def put_fence(self, alias: str, expected: int, fence: wire.Fence) -> int:
        """Append a fence if the last one is still at sequence ``expected`` (0: none); its sequence."""
        return self._run(self._put_fence(alias, expected, fence))

    async def _put_fence(self, alias: str, expected: int, fence: wire.Fence) -> int:
        headers = {"Nats-Expected-Last-Subject-Sequence": str(expected)}
        try:
            ack = await self._js.publish(wire.fence_subject(alias), wire.encode_fence(fence), headers=headers)
        except self._nats.js.errors.APIError as e:
            if e.err_code == WRONG_LAST_SEQUENCE:
                raise FenceLost(f"journal {alias!r} was taken over by another process meanwhile") from None
            raise
        return ack.seq

    # -- batches -------------------------------------------------------------

    def ship(self, alias: str, payload: bytes, fence_seq: int, msg_id: str, timeout: float | None = None) -> int:
        """Publish one batch, fenced on ``fence_seq``; its stream sequence. JournalFencedError if refused."""
        return self._run(self._ship(alias, payload, fence_seq, msg_id, timeout), timeout)

    async def _ship(self, alias: str, payload: bytes, fence_seq: int, msg_id: str, timeout: float | None) -> int:
        headers = {
            "Nats-Msg-Id": msg_id,
            "Nats-Expected-Last-Subject-Sequence": str(fence_seq),
            "Nats-Expected-Last-Subject-Sequence-Subject": wire.fence_subject(alias),
        }
        try:
            ack = await self._js.publish(
                wire.log_subject(alias), payload, headers=headers, timeout=timeout or self.timeout
            )
        except self._nats.js.errors.APIError as e:
            if e.err_code == WRONG_LAST_SEQUENCE:
                refused = f"journal {alias!r} was taken over: the engine refused this owner's batch"
                raise JournalFencedError(refused) from None
            raise
        return ack.seq

    def read(self, alias: str, first: int, last: int) -> Iterator[tuple[int, str, bytes]]:
        """(sequence, subject, data) of the stream's messages from ``first`` to ``last``, in order."""
        seq = first
        while seq <= last:
            found = self._run(self._next_msg(alias, seq))
            if found is None:
                return
            seq, subject, data = found
            if seq > last:
                return
            yield seq, subject, data
            seq += 1

    async def _next_msg(self, alias: str, seq: int) -> tuple[int, str, bytes] | None:
        try:
            # From the stream's leader: a direct get may be answered by a follower that lags behind it.
            msg = await self._js.get_msg(wire.stream_of(alias), seq=seq, next=True)
        except self._nats.js.errors.NotFoundError:
            return None
        return msg.seq, msg.subject, msg.data or b""

    def purge_log_before(self, alias: str, seq: int) -> None:
        """Drop the log's batches below ``seq`` (a snapshot starting there superseded them)."""
        self._run(self._js.purge_stream(wire.stream_of(alias), seq=seq, subject=wire.log_subject(alias)))


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text.strip().splitlines()[0] if text.strip() else type(e).__name__
