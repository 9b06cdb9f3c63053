"""``.tac`` files twistd loads: rewritten as the program's modules are.

twistd runs a ``.tac`` file with ``compile`` and ``eval``
(``twisted.persisted.sob.loadValueFromFile``), past the race detector's
import hook: a race in an application's own ``.tac`` went unreported. While
detecting, that module's ``compile`` rewrites a user file's accesses first.

Thread safety: installed by the thread starting the detector, before twistd
loads the application.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable
from typing import Any

from threadcheck._races._rewrite import rewrite


def rewrite_tac_files(is_user_file: Callable[[str], bool]) -> Callable[[], None]:
    """Rewrite what twistd compiles of an application file; returns the undo."""
    from twisted.persisted import sob

    def compile_application(source: Any, filename: str, mode: str, *args: Any) -> Any:
        if mode == "exec" and isinstance(source, str) and is_user_file(filename):
            tree = ast.parse(source, filename)
            rewrite(tree, filename)
            return builtins.compile(tree, filename, mode, dont_inherit=True)
        return builtins.compile(source, filename, mode, *args)

    sob.compile = compile_application  # type: ignore[attr-defined]  # before the builtin

    def undo() -> None:
        if vars(sob).get("compile") is compile_application:
            del sob.compile  # type: ignore[attr-defined]

    return undo
