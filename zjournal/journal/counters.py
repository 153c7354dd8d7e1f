"""How many entries a journal holds, by stream, direction and state: kept in memory, never a scan.

One counter per ``(name, direction code, state code)``, plus the same
counts summed over all names, so that :meth:`Counters.count` costs the same
with one stream or a hundred thousand (at most six counters are read).
"""

from __future__ import annotations

CounterKey = tuple[str, int, int]  # (name, direction code, state code)

_DIRECTIONS = (0, 1)
_STATES = (0, 1, 2)


class Counters:
    """The journal's counters (the journal's lock guards every change)."""

    __slots__ = ("_by_key", "_names", "_totals")

    def __init__(self) -> None:
        self._by_key: dict[CounterKey, int] = {}
        self._totals: dict[tuple[int, int], int] = {}  # (direction, state) over every name
        self._names: dict[str, int] = {}  # entries per name; a name whose count drops to 0 is forgotten

    def add(self, key: CounterKey, delta: int) -> None:
        _bump(self._by_key, key, delta)
        name, dcode, scode = key
        totals = self._totals
        totals[dcode, scode] = totals.get((dcode, scode), 0) + delta
        _bump(self._names, name, delta)

    def count(self, name: str | None, dcode: int | None, scode: int | None) -> int:
        directions = _DIRECTIONS if dcode is None else (dcode,)
        states = _STATES if scode is None else (scode,)
        if name is None:
            totals = self._totals
            return sum(totals.get((d, s), 0) for d in directions for s in states)
        by_key = self._by_key
        return sum(by_key.get((name, d, s), 0) for d in directions for s in states)

    def __len__(self) -> int:
        """How many counters are held: one per (name, direction, state) that has entries."""
        return len(self._by_key)

    def names(self) -> list[str]:
        """The names that have entries, sorted."""
        return sorted(self._names)


def _bump(table: dict, key: object, delta: int) -> None:
    """Add ``delta`` to ``table[key]``, dropping the key at 0 (a name used once costs nothing later)."""
    value = table.get(key, 0) + delta
    if value:
        table[key] = value
    else:
        table.pop(key, None)
