"""The plugin API: extend zjournal without forking it.

A plugin is a :class:`Plugin` object that a distribution exposes under the
``zjournal.plugins`` entry-point group, e.g. in its ``pyproject.toml``::

    [project.entry-points."zjournal.plugins"]
    protobuf = "my_package:plugin"

What a plugin can provide:

* ``decoders``: name -> ``Callable[[bytes], str]`` for ``zjournal inspect --decode NAME``
  (raise :class:`zjournal.decode.NotDecodable` when the bytes are not theirs);
* ``classifiers``: name -> ``Callable[[Sequence[bytes]], str | bool]``, usable as
  ``journal.wrap(sock, classify="NAME")``;
* ``ack_policies``: name -> a factory ``(socket_type: int) -> AckHandler``, usable as
  ``journal.wrap(sock, ack="NAME")`` (see :class:`AckHandler`);
* ``observers``: objects with any of ``on_append``, ``on_ack``, ``on_dead``,
  ``on_redelivery`` and ``attach`` (see :class:`Observer`); ``attach(journal)``
  returning False declines that journal, so an observer that is switched off
  costs the hot path nothing;
* ``commands``: callables that add commands to the ``zjournal`` typer app.

Plugins are loaded lazily, once, the first time something asks for them.
``ZJOURNAL_PLUGINS`` restricts them: a comma-separated list of the names to
load, or ``none``. ``zjournal.open(..., plugins=False)`` attaches no observers.
A plugin that fails to load is reported with a warning naming it and skipped:
it never stops a journal or the CLI.
"""

from __future__ import annotations

import importlib.metadata
import os
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

ENTRY_POINT_GROUP = "zjournal.plugins"
ENV_VAR = "ZJOURNAL_PLUGINS"

Decoder = Callable[[bytes], str]
ClassifierFunc = Callable[[Sequence[bytes]], Any]


@runtime_checkable
class AckHandler(Protocol):
    """A named ack policy, one instance per wrapped socket.

    The socket journals every message as usual and leaves acknowledging the
    inbound ones to the handler, which calls ``sock.ack(entry_id)`` when its
    protocol says a message is done.
    """

    def on_inbound(self, sock: Any, entry_id: int, frames: list[bytes]) -> None:
        """A whole inbound message was journaled as ``entry_id``."""

    def on_outbound(self, sock: Any, frames: list[bytes]) -> None:
        """The application sent a whole message through the socket."""


class Observer(Protocol):
    """Told about what happens in a journal (all methods optional).

    Called on the journal's hot path while it holds its lock: keep them cheap
    (count; do no I/O). An observer that raises is logged, never propagated.
    """

    def attach(self, journal: Any) -> bool | None: ...
    def on_append(self, name: str, direction: str, count: int) -> None: ...
    def on_ack(self, name: str, direction: str, count: int) -> None: ...
    def on_dead(self, name: str, direction: str, entry_id: int, reason: str) -> None: ...
    def on_redelivery(self, name: str, direction: str, entry_id: int, attempts: int) -> None: ...


@dataclass
class Plugin:
    """What a plugin provides (every field optional)."""

    name: str
    version: str = ""
    description: str = ""
    decoders: dict[str, Decoder] = field(default_factory=dict)
    classifiers: dict[str, ClassifierFunc] = field(default_factory=dict)
    ack_policies: dict[str, Callable[[int], AckHandler]] = field(default_factory=dict)
    observers: list[Any] = field(default_factory=list)
    commands: list[Callable[[Any], None]] = field(default_factory=list)

    def provides(self) -> list[str]:
        parts = []
        for label, items in (
            ("decoders", self.decoders),
            ("classifiers", self.classifiers),
            ("ack policies", self.ack_policies),
        ):
            if items:
                parts.append(f"{label}: {', '.join(sorted(items))}")
        if self.observers:
            parts.append(f"observers: {len(self.observers)}")
        if self.commands:
            parts.append(f"commands: {len(self.commands)}")
        return parts


@dataclass
class Registry:
    """The plugins that loaded, and the ones that failed (name -> why)."""

    plugins: list[Plugin] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def decoders(self) -> dict[str, Decoder]:
        return {k: v for p in self.plugins for k, v in p.decoders.items()}

    def classifiers(self) -> dict[str, ClassifierFunc]:
        return {k: v for p in self.plugins for k, v in p.classifiers.items()}

    def ack_policies(self) -> dict[str, Callable[[int], AckHandler]]:
        return {k: v for p in self.plugins for k, v in p.ack_policies.items()}

    def observers(self) -> list[Any]:
        return [o for p in self.plugins for o in p.observers]

    def commands(self) -> list[Callable[[Any], None]]:
        return [c for p in self.plugins for c in p.commands]


_registry: Registry | None = None


def allowed_names() -> set[str] | None:
    """The names ``ZJOURNAL_PLUGINS`` allows; None: all."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return None
    value = value.strip()
    if value.lower() in ("", "none", "0", "off"):
        return set()
    return {part.strip() for part in value.split(",") if part.strip()}


def _entry_points() -> Iterable[importlib.metadata.EntryPoint]:
    return importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)


def load(*, reload: bool = False) -> Registry:
    """Load the plugins (once; ``reload=True`` loads them again)."""
    global _registry
    if _registry is not None and not reload:
        return _registry
    registry = Registry()
    allowed = allowed_names()
    installed = sorted(_entry_points(), key=lambda e: e.name)
    unknown = sorted((allowed or set()) - {ep.name for ep in installed})
    if unknown:  # a typo would otherwise quietly load nothing of what was meant
        known = ", ".join(ep.name for ep in installed) or "none"
        warnings.warn(
            f"{ENV_VAR} names plugins that are not installed: {', '.join(map(repr, unknown))} (installed: {known})",
            stacklevel=2,
        )
    for ep in installed:
        if allowed is not None and ep.name not in allowed:
            continue
        try:
            obj = ep.load()
            plugin = obj() if callable(obj) and not isinstance(obj, Plugin) else obj
            if not isinstance(plugin, Plugin):
                raise TypeError(f"{ep.value} is a {type(plugin).__name__}, not a zjournal.Plugin")
            if not plugin.version and ep.dist is not None:
                plugin.version = ep.dist.version
        except Exception as e:  # a broken plugin must never stop zjournal
            registry.failed[ep.name] = f"{type(e).__name__}: {e}"
            warnings.warn(f"zjournal plugin {ep.name!r} failed to load and is skipped: {e}", stacklevel=2)
            continue
        registry.plugins.append(plugin)
    _registry = registry
    return registry
