"""How many entries a journal holds, by stream, direction and state: kept in memory, never a scan.

One counter per ``(name, direction code, state code)``, plus the same
counts summed over all names, so that :meth:`Counters.count` costs the same
with one stream or a hundred thousand (at most six counters are read).

A confirm sender's outbox counts its own appends and confirmations
(``uncounted``, one integer per message instead of three counters): the
counters add what each outbox holds when they are read (:attr:`Counters.lazy`),
and take it in for good when the outbox closes (:meth:`Counters.take_in`).
"""

from __future__ import annotations

from typing import Any

CounterKey = tuple[str, int, int]  # (name, direction code, state code)

_DIRECTIONS = (0, 1)
_STATES = (0, 1, 2)


class Counters:
    """The journal's counters (the journal's lock guards every change)."""

    __slots__ = ("_by_key", "_names", "_totals", "lazy")

    def __init__(self) -> None:
        self._by_key: dict[CounterKey, int] = {}
        self._totals: dict[tuple[int, int], int] = {}  # (direction, state) over every name
        self._names: dict[str, int] = {}  # entries per name; a name whose count drops to 0 is forgotten
        # Objects that count for one key themselves: ``counter_key`` and ``uncounted`` (open outboxes).
        self.lazy: list[Any] = []

    def take_in(self, counter: Any) -> None:
        """A lazy counter closes: what it counted goes into the counters (journal lock held)."""
        if counter in self.lazy:
            self.lazy.remove(counter)
        if counter.uncounted:
            self.add(counter.counter_key, counter.uncounted)
            counter.uncounted = 0

    def add(self, key: CounterKey, delta: int) -> None:
        # (_bump inlined: this runs once per message)
        by_key = self._by_key
        value = by_key.get(key, 0) + delta
        if value:
            by_key[key] = value
        else:
            by_key.pop(key, None)
        name, dcode, scode = key
        totals = self._totals
        totals[dcode, scode] = totals.get((dcode, scode), 0) + delta
        _bump(self._names, name, delta)

    def count(self, name: str | None, dcode: int | None, scode: int | None) -> int:
        directions = _DIRECTIONS if dcode is None else (dcode,)
        states = _STATES if scode is None else (scode,)
        if name is None:
            totals = self._totals
            found = sum(totals.get((d, s), 0) for d in directions for s in states)
        else:
            by_key = self._by_key
            found = sum(by_key.get((name, d, s), 0) for d in directions for s in states)
        for counter in self.lazy:
            key_name, d, s = counter.counter_key
            if (name is None or key_name == name) and d in directions and s in states:
                found += counter.uncounted
        return found

    def __len__(self) -> int:
        """How many counters are held: one per (name, direction, state) that has entries."""
        return len(self._by_key)

    def recorded(self) -> list[list[Any]]:
        """Every counter as ``[name, direction code, state code, count]`` (what :meth:`from_recorded` takes)."""
        assert not self.lazy, "a lazy counter is taken in first"
        return [[name, dcode, scode, n] for (name, dcode, scode), n in self._by_key.items()]

    @classmethod
    def from_recorded(cls, recorded: Any) -> Counters:
        """Counters from :meth:`recorded`'s list; ValueError when it is not one (a damaged record)."""
        counts = cls()
        try:
            for name, dcode, scode, n in recorded:
                if (
                    type(name) is not str
                    or dcode not in _DIRECTIONS
                    or scode not in _STATES
                    or type(n) is not int
                    or n <= 0
                    or (name, dcode, scode) in counts._by_key
                ):
                    raise ValueError(f"not a counter: {[name, dcode, scode, n]!r}")
                counts.add((name, dcode, scode), n)
        except TypeError as e:
            raise ValueError(f"not a list of counters: {e}") from e
        return counts

    def names(self) -> list[str]:
        """The names that have entries, sorted."""
        if not self.lazy:
            return sorted(self._names)
        names = dict(self._names)
        for counter in self.lazy:
            name = counter.counter_key[0]
            names[name] = names.get(name, 0) + counter.uncounted
        return sorted(name for name, n in names.items() if n)


def _bump(table: dict, key: object, delta: int) -> None:
    """Add ``delta`` to ``table[key]``, dropping the key at 0 (a name used once costs nothing later)."""
    value = table.get(key, 0) + delta
    if value:
        table[key] = value
    else:
        table.pop(key, None)
