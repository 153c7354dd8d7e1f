"""Check that zjournal's modules import each other in one direction: no cycles, layers respected.

Run:  python tools/check_imports.py        (exit 0: clean; 1: prints every cycle and layer breach)

Every import statement counts, wherever it is: at the top, inside a function,
under ``if TYPE_CHECKING:`` (a cycle hidden in a function is still a cycle for
the reader). An import of ``a.b.c`` is an edge to that module only, not to the
packages above it (Python runs their ``__init__`` first, but they do not
depend on ``c``). The layers, lowest first, and what each may not import:

- ``zjournal.store``: nothing of the journal or above;
- ``zjournal.journal``: not ``zjournal.sockets`` or anything above it;
- ``zjournal.sockets``: not the device, the CLI, the demo or replication;
- ``zjournal.device``: not the CLI or the demo.

The test suite runs this (``tests/test_layout.py``).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "zjournal"

# A module of the first package may import none of the others (prefix match).
FORBIDDEN = {
    "zjournal.store": ("zjournal.journal", "zjournal.sockets", "zjournal.device", "zjournal.cli", "zjournal.demo"),
    "zjournal.journal": (
        "zjournal.sockets",
        "zjournal.device",
        "zjournal.cli",
        "zjournal.demo",
        "zjournal.replication",
    ),
    "zjournal.sockets": ("zjournal.device", "zjournal.cli", "zjournal.demo", "zjournal.replication"),
    "zjournal.device": ("zjournal.cli", "zjournal.demo"),
}


def module_names(root: Path = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its name, for its ``__init__``)."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _inside(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in its code."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package up
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            for alias in node.names:
                child = f"{base}.{alias.name}"
                targets.add(child if child in modules else base)
    return {t for t in targets if t in modules and t != name}


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = module_names(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def breaches(edges: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of a layer it may not use."""
    found = []
    for source, targets in sorted(edges.items()):
        for layer, forbidden in FORBIDDEN.items():
            if not _inside(source, layer):
                continue
            found += [f"{source} -> {t}" for t in sorted(targets) if any(_inside(t, f) for f in forbidden)]
    return found


def main() -> int:
    edges = graph()
    problems = [f"import cycle: {' <-> '.join(group)}" for group in cycles(edges)]
    problems += [f"layer breach: {b}" for b in breaches(edges)]
    for problem in problems:
        print(problem)
    if not problems:
        print(f"{len(edges)} modules, {sum(map(len, edges.values()))} imports: no cycle, layers respected")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
