"""Test modules pytest imports itself: its assertion rewriting, then ours.

pytest's import hook comes first on ``sys.meta_path`` and compiles test
modules and conftests itself, so the race detector's hook never saw them: a
race in a test's own code went unreported (``threadcheck run --races -m pytest``
passed a racy test). Its compile step is replaced by one that rewrites the
module's assertions, then (when it is user code) its accesses; its bytecode
cache is bypassed, so that a later run without races does not load code
rewritten for one.

Thread safety: called once, by the thread starting the detector, before any
test module is imported.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Callable
from typing import Any

from threadcheck._races import _hook
from threadcheck._races._rewrite import rewrite

_REPLACED = ("_rewrite_test", "_read_pyc", "_write_pyc")


def rewrite_test_modules(is_user_file: Callable[[str], bool]) -> Callable[[], None] | str:
    """Rewrite what pytest's assertion rewriting compiles; returns the undo, or
    one line saying why not (a pytest whose rewriting is not the one known)."""
    from _pytest.assertion import rewrite as assertion_rewrite

    originals = {name: getattr(assertion_rewrite, name, None) for name in _REPLACED}
    if None in originals.values():
        return "this pytest's assertion rewriting is not one threadcheck knows"

    def rewrite_test(fn: Any, pytest_config: Any) -> tuple[bytes, Any]:
        source = fn.read_bytes()
        tree = ast.parse(source, filename=str(fn))
        assertion_rewrite.rewrite_asserts(tree, source, str(fn), pytest_config)
        if is_user_file(str(fn)):
            rewrite(tree, str(fn))
        code = compile(tree, str(fn), "exec", dont_inherit=True)
        return importlib.util.source_hash(source), code

    setattr(assertion_rewrite, "_rewrite_test", rewrite_test)  # noqa: B010
    setattr(assertion_rewrite, "_read_pyc", lambda *args, **kwargs: None)  # noqa: B010
    setattr(assertion_rewrite, "_write_pyc", lambda *args, **kwargs: False)  # noqa: B010
    # After pytest's own hook: test modules and conftests are its, rewritten above.
    _hook.move_after("AssertionRewritingHook")

    def undo() -> None:
        for name, original in originals.items():
            setattr(assertion_rewrite, name, original)

    return undo
