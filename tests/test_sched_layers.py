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


def test_the_race_detector_is_core() -> None:
    """threadcheck._races sits with the core: no Twisted, no reactor package, no
    scheduler or drivers (the reactor's hand-offs are passed in)."""
    import threadcheck._races

    races = Path(threadcheck._races.__file__).parent
    above = ("twisted", "threadcheck_reactor", "threadcheck._sched", "threadcheck._cli")
    above += ("threadcheck._pytest_plugin", "threadcheck._testrun", "threadcheck._report")
    for path in races.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                assert not name.startswith(above), f"{path.name} imports {name}"


DRIVER_MODULES = ("_pytest_plugin.py", "_testexplore.py")
"""The pytest plugin and its explorations' glue: drivers, as the commands are."""


def test_the_views_are_drivers() -> None:
    """Pages and traces are drawn from what the explorer and the recorder return:
    only the commands and the pytest plugin's modules import threadcheck._view, never the
    scheduler, the detectors or the reactor."""
    import threadcheck
    import threadcheck_reactor

    roots = [Path(threadcheck.__file__).parent, Path(threadcheck_reactor.__file__).parent]
    for path in (p for root in roots for p in root.rglob("*.py")):
        if path.parent.name in ("_view", "_cli") or path.name in DRIVER_MODULES:
            continue
        source = path.read_text()
        assert "threadcheck._view" not in source, f"{path.name} imports the views"


CORE = (
    "threadcheck._stacks",
    "threadcheck._threads",
    "threadcheck._hidden",
    "threadcheck._violation",
    "threadcheck._recorder",
    "threadcheck._affinity",
    "threadcheck._modes",
    "threadcheck._activity",
    "threadcheck._fixes",
    "threadcheck._races",
    "threadcheck._sched._core",
    "threadcheck._sched._pool",
)
"""What the reactor package may import of threadcheck: its core (the scheduler's
core and primitives included); never the reports, the test-run glue or a driver."""


def _threadcheck_imports(path: Path, package: str = "threadcheck") -> set[str]:
    """The modules of ``package`` that ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if base == package:
                found.update(f"{package}.{alias.name}" for alias in node.names)
            elif base.startswith(f"{package}."):
                found.add(base)  # and its modules, if these are: from a.b import c
                found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.partition(".")[0] == package)
    return found


def test_the_reactor_package_imports_only_the_core() -> None:
    import threadcheck_reactor

    package = Path(threadcheck_reactor.__file__).parent
    above = {
        f"{path.name} imports {name}"
        for path in package.rglob("*.py")
        for name in _threadcheck_imports(path)
        if not any(name == core or name.startswith(f"{core}.") for core in CORE)
    }
    assert above == set()


def test_no_module_the_reactor_package_reaches_imports_it_back() -> None:
    """The scheduler's core and primitives sit below the reactor; its drivers
    (the runner, explore, replay) above it. Whatever the reactor package imports
    of threadcheck, and all that imports in turn, never imports the reactor
    package (lazily or not): no cycle through the layers."""
    import threadcheck
    import threadcheck_reactor

    root = Path(threadcheck.__file__).parent
    package = Path(threadcheck_reactor.__file__).parent

    def path_of(module: str) -> Path | None:
        relative = Path(*module.split(".")[1:])
        for candidate in (root / relative / "__init__.py", root / f"{relative}.py"):
            if candidate.exists():
                return candidate
        return None

    seen: dict[str, Path] = {}
    todo = [name for path in package.rglob("*.py") for name in _threadcheck_imports(path)]
    while todo:
        name = todo.pop()
        path = path_of(name)
        if name in seen or path is None:
            continue
        seen[name] = path
        todo.extend(_threadcheck_imports(path))
    back = sorted(name for name, path in seen.items() if _threadcheck_imports(path, package.name))
    assert back == []
