"""The scheduler's modules import in one direction: no module imports one that
imports it back, lazily or not (core < patches < runner < shrink < explore)."""

from __future__ import annotations

import ast
from pathlib import Path

import threadcheck._sched

PACKAGE = Path(threadcheck._sched.__file__).parent


def _imports(path: Path) -> set[str]:
    """The ``threadcheck._sched`` modules ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "threadcheck._sched":
                found.update(f"threadcheck._sched.{alias.name}" for alias in node.names)
            elif node.module.startswith("threadcheck._sched."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("threadcheck._sched."))
    return found


def _graph() -> dict[str, set[str]]:
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).with_suffix("")
        name = ".".join(("threadcheck._sched", *relative.parts)).removesuffix(".__init__")
        graph[name] = _imports(path)
    return graph


def test_no_module_of_the_scheduler_imports_one_that_imports_it() -> None:
    graph = _graph()
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        for imported in sorted(graph.get(module, ())):
            if imported in path:
                cycles.append(" -> ".join([*path[path.index(imported) :], imported]))
            elif imported in graph:
                visit(imported, [*path, imported])

    for module in sorted(graph):
        visit(module, [module])
    assert cycles == []


def test_the_drivers_sit_on_top() -> None:
    graph = _graph()
    below = ("_core", "_report", "_runner", "_shrink", "_patch", "_points", "_primitives")
    for name in below:
        assert "threadcheck._sched._explore" not in graph[f"threadcheck._sched.{name}"], name
