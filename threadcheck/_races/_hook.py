"""The import hook that rewrites user modules as they are imported, and the
runner of a script rewritten the same way.

Rewritten code is never written to a bytecode cache: a later run without
``--races`` must not find it.

Thread safety: :func:`install` and :func:`uninstall` are called by one
thread, before and after the program; imports are serialised by Python.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Sequence
from types import CodeType, ModuleType
from typing import Any

from threadcheck._races._rewrite import compile_user


class RewritingLoader(importlib.machinery.SourceFileLoader):
    def get_code(self, fullname: str) -> CodeType:
        source = self.get_data(self.path)
        known = _modules.get(self.path)
        if known is None or known[0] != source:
            known = _modules[self.path] = (source, compile_user(source, self.path))
        return known[1]


_modules: dict[str, tuple[bytes, CodeType]] = {}
"""Each module's source and its rewritten code: compiled once, not at each import
(an exploration of a whole program imports its modules afresh each schedule)."""


class RewritingFinder(importlib.abc.MetaPathFinder):
    """Finds what the path finder finds, and rewrites it if it is user code."""

    def __init__(self, is_user_file: Callable[[str], bool]) -> None:
        self.is_user_file = is_user_file

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or spec.origin is None:
            return None
        if not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
            return None
        if not self.is_user_file(spec.origin):
            return None
        spec.loader = RewritingLoader(fullname, spec.origin)
        return spec


_finder: list[RewritingFinder] = []


def install(is_user_file: Callable[[str], bool]) -> None:
    """Rewrite user modules imported from now on."""
    uninstall()
    finder = RewritingFinder(is_user_file)
    _finder.append(finder)
    sys.meta_path.insert(0, finder)
    importlib.util.spec_from_file_location = _rewriting_spec(is_user_file)  # type: ignore[assignment]


def file_loader(
    is_user_file: Callable[[str], bool],
) -> Callable[[str, str], importlib.machinery.SourceFileLoader]:
    """``SourceFileLoader`` as a runner that loads files by hand calls it
    (trial's ``loadFile``, for ``trial tests/test_x.py``): a user file's loader
    rewrites it."""

    def loader(name: str, path: str) -> importlib.machinery.SourceFileLoader:
        if is_user_file(path):
            return RewritingLoader(name, path)
        return importlib.machinery.SourceFileLoader(name, path)

    return loader


_spec_from_file_location = importlib.util.spec_from_file_location


def _rewriting_spec(is_user_file: Callable[[str], bool]) -> Any:
    """``importlib.util.spec_from_file_location``, whose source file of user code
    is loaded rewritten: ``trial tests/test_x.py`` loads its test module so,
    when the file is not an importable module (it was run unrewritten, and
    its races were silently not looked for)."""

    @functools.wraps(_spec_from_file_location)
    def spec_from_file_location(name: str, location: Any = None, **options: Any) -> Any:
        spec = _spec_from_file_location(name, location, **options)
        if (
            spec is not None
            and type(spec.loader) is importlib.machinery.SourceFileLoader
            and spec.origin is not None
            and is_user_file(spec.origin)
        ):
            spec.loader = RewritingLoader(name, spec.origin)
        return spec

    return spec_from_file_location


def move_after(hook_type: str) -> None:
    """Put the finder just after the import hook of that class name, if there is
    one: the modules that hook takes are rewritten by it (pytest's test modules)."""
    for finder in _finder:
        sys.meta_path.remove(finder)
        names = [type(hook).__name__ for hook in sys.meta_path]
        at = names.index(hook_type) + 1 if hook_type in names else 0
        sys.meta_path.insert(at, finder)


def installed() -> bool:
    return bool(_finder)


def uninstall() -> None:
    importlib.util.spec_from_file_location = _spec_from_file_location
    while _finder:
        finder = _finder.pop()
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)


_scripts: dict[str, tuple[bytes, CodeType]] = {}
"""Each script's source and its rewritten code: compiled once, not once a
schedule (each compile numbers its sites anew)."""


def run_script(path: str) -> dict[str, Any]:
    """Run the script at ``path`` as ``__main__`` (as ``runpy.run_path`` does), rewritten."""
    with open(path, "rb") as file:
        source = file.read()
    known = _scripts.get(path)
    if known is None or known[0] != source:
        known = _scripts[path] = (source, compile_user(source, path))
    code = known[1]
    main = ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = __builtins__  # type: ignore[attr-defined]
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = main
    try:
        exec(code, main.__dict__)
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved
    return main.__dict__
