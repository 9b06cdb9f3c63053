"""Code the program compiles from text, rewritten as its modules are.

A rule set loaded with ``compile(text, "<rules>", "exec")`` ran whole,
touching nothing, and proofs claimed it. Its rewritten code must still behave
as the text would: it runs in the namespace the program gave ``exec`` (or the
caller's, given none), which must not gain our names (a plugin loader lists
what the text defined). So it has no preamble: it finds the access helpers
among the builtins, where :func:`install` puts them under names no program
uses, and its globals through :func:`gns`. Text run with builtins of its own
(``{"__builtins__": {}}``, a sandbox) or locals that make up names (a
``defaultdict``) could not find them: it runs as written. ``exec`` and
``eval`` stay the program's calls, given the code :func:`code_args` chose: no
frame of ours in their tracebacks, nor in a warning's stack level.

Thread safety: the cache of rewritten text is filled by whichever thread
compiles first; a race there compiles the same text twice, harmlessly.
"""

from __future__ import annotations
import __future__

import builtins
import functools
import operator
import sys
from types import CodeType, FrameType
from typing import Any

from threadcheck._races._rewrite import compile_user

_CO_OPTIMIZED = 0x1

_texts: dict[tuple[str | bytes, str, int], CodeType] = {}
"""Text the program compiled, rewritten once: each schedule (and a program that
compiles in a loop) gets the same code, its sites numbered once."""

_sources: dict[CodeType, tuple[str | bytes, str, int]] = {}
"""Each rewritten code's text, file name and future flags: compiled as written
for a sandbox."""


def install(helpers: dict[str, Any]) -> None:
    """Make the access helpers (by their rewritten names) builtins, for text."""
    for name, function in helpers.items():
        setattr(builtins, name, function)
    builtins.__tc_gns__ = gns  # type: ignore[attr-defined]


def gns() -> dict[str, Any]:
    """The calling code's globals: the scope of the text's shared variables."""
    return sys._getframe(1).f_globals


def code_args(
    builtin: Any, source: Any, namespaces: tuple[Any, ...], caller: FrameType
) -> tuple[Any, ...]:
    """``(source, *namespaces)`` for ``builtin`` (``exec`` or ``eval``, called
    from ``caller``), its text or the code ``compile`` rewrote swapped for what
    runs there: rewritten where the helpers can be found, else as written."""
    if (builtin is not builtins.exec and builtin is not builtins.eval) or len(namespaces) > 2:
        return (source, *namespaces)  # the program's own exec, or its TypeError
    globals_ = namespaces[0] if namespaces else None
    locals_ = namespaces[1] if len(namespaces) > 1 else None
    if globals_ is None:
        globals_ = caller.f_globals
        if locals_ is None and not caller.f_code.co_flags & _CO_OPTIMIZED:
            locals_ = caller.f_locals  # a module's or a class body's namespace
    text = builtin is builtins.exec and isinstance(source, str | bytes)
    return (_rewritten(source, globals_, locals_, caller, text), *namespaces)


def rewritten_compile(
    source: Any,
    filename: Any,
    mode: str,
    flags: int = 0,
    dont_inherit: bool = False,
    optimize: int = -1,
    **options: Any,
) -> Any:
    """``compile`` as the program calls it: text for ``exec`` rewritten, with
    the ``from __future__`` features it is given or inherits (other flags, an
    AST asked for, an optimization level: compiled as asked)."""
    if (
        mode == "exec"
        and isinstance(source, str | bytes)
        and not flags & ~_FUTURE_FLAGS
        and optimize == -1
        and not options
    ):
        inherited = 0 if dont_inherit else _futures(sys._getframe(1))
        return _compiled_text(source, str(filename), flags | inherited)
    return builtins.compile(source, filename, mode, flags, dont_inherit, optimize, **options)


def _rewritten(source: Any, globals_: Any, locals_: Any, caller: FrameType, text: bool) -> Any:
    """The code to run for ``source``: as written where the helpers cannot be
    found (a sandbox's builtins, locals with ``__missing__`` that a module's
    names are looked up in first)."""
    if not _real_builtins(globals_) or not (locals_ is None or type(locals_) is dict):
        if isinstance(source, CodeType) and source in _sources:
            text_, filename, flags = _sources[source]
            return builtins.compile(text_, filename, "exec", flags, True)
        return source
    if text:
        try:
            return _compiled_text(source, "<string>", _futures(caller))
        except SyntaxError:  # raised by exec itself, from the user's line
            return source
    return source


def _futures(caller: FrameType) -> int:
    """The ``from __future__`` flags text compiled by ``caller`` inherits."""
    return int(caller.f_code.co_flags & _FUTURE_FLAGS)


_FUTURE_FLAGS = functools.reduce(
    operator.or_,
    (getattr(__future__, name).compiler_flag for name in __future__.all_feature_names),
)


def _real_builtins(globals_: Any) -> bool:
    """Whether code run in ``globals_`` sees the interpreter's builtins."""
    if not isinstance(globals_, dict):
        return False
    own = globals_.get("__builtins__", builtins)
    return own is builtins or own is builtins.__dict__


def _compiled_text(source: str | bytes, filename: str, flags: int) -> CodeType:
    code = _texts.get((source, filename, flags))
    if code is None:
        if len(_texts) >= 256:  # a program that makes its text each time: not kept for ever
            _texts.clear()
            _sources.clear()
        code = compile_user(source, filename, embedded=True, flags=flags)
        _texts[source, filename, flags] = code
        _sources[code] = (source, filename, flags)
    return code
