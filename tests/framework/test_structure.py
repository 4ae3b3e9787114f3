"""The data flow stays one-directional (ARCHITECTURE.md): a package imports only from its own
floor or the floors below it, and no two modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

# Floors, lowest first: a module may import from its own floor and from lower ones.
FLOORS = {"layers": 0, "datasets": 1, "models": 1, "engine": 2, "analysis": 3, "benchmarks": 3}


def module_files() -> dict[str, Path]:
    """`{"engine.cli": Path(...), "layers.box": Path(.../__init__.py), ...}` for every floor."""
    files = {}
    for package in FLOORS:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports anywhere in its body (inside functions too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names & known


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports. Imports of a package (its `__init__`
    re-exports, e.g. `from layers.box import BoxConv2d` inside `layers/box/`) are left out:
    they are the package's public face, not a dependency between two of its modules."""
    files = module_files()
    packages = {name for name, path in files.items() if path.name == "__init__.py"}
    return {name: imported_modules(path, set(files)) - packages - {name} for name, path in files.items()}


def test_packages_import_only_downward():
    upward = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if FLOORS[target.split(".")[0]] > FLOORS[module.split(".")[0]]
    ]
    assert not upward, upward


def test_no_two_modules_import_each_other():
    graph = import_graph()
    cycles = []
    state: dict[str, str] = {}  # "open" while on the current path, "done" after

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles
