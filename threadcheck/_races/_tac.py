"""``.tac`` files twistd loads: rewritten as the program's modules are.

twistd runs a ``.tac`` file with ``compile`` and ``eval``
(``twisted.persisted.sob.loadValueFromFile``), past the race detector's
import hook: a race in an application's own ``.tac`` went unreported. The
reactor package puts :func:`rewriting_compile` in that module's namespace,
where it comes before the builtin.

Thread safety: stateless.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable
from typing import Any

from threadcheck._races._rewrite import rewrite


def rewriting_compile(is_user_file: Callable[[str], bool]) -> Callable[..., Any]:
    """``compile``, which first rewrites the accesses of a user file's source."""

    def compile_application(source: Any, filename: str, mode: str, *args: Any) -> Any:
        if mode == "exec" and isinstance(source, str) and is_user_file(filename):
            tree = ast.parse(source, filename)
            rewrite(tree, filename)
            return builtins.compile(tree, filename, mode, dont_inherit=True)
        return builtins.compile(source, filename, mode, *args)

    return compile_application
