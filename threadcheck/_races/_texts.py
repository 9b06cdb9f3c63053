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
frame of ours in their tracebacks, nor in a warning's stack level (called
with keywords or ``*args``, they go through :func:`run_wrapper`). ``compile``
returns the plain code, which a program may marshal to a cache or inspect.

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
"""The text, file name and future flags of each code ``compile`` made of text
for ``exec``: what ``exec`` or ``eval`` of that code runs rewritten."""


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
    from ``caller``), its text, or code ``compile`` made of text, swapped for
    its rewritten code where the helpers can be found."""
    if (builtin is not builtins.exec and builtin is not builtins.eval) or len(namespaces) > 2:
        return (source, *namespaces)  # the program's own exec, or its TypeError
    globals_, locals_ = _namespaces(
        namespaces[0] if namespaces else None,
        namespaces[1] if len(namespaces) > 1 else None,
        caller,
    )
    return (_rewritten(builtin, source, globals_, locals_, caller), *namespaces)


def run_wrapper(builtin: Any) -> Any:
    """``builtin`` (``exec`` or ``eval``) for a call whose arguments could not
    be rewritten as :func:`code_args`'s (keywords, ``*args``): called through
    this frame, so given the caller's namespaces when it named none."""

    def run(source: Any, *args: Any, **kwargs: Any) -> Any:
        named = "globals" in kwargs or "locals" in kwargs
        if len(args) > 2 or (named and sys.version_info < (3, 13)):
            return builtin(source, *args, **kwargs)  # its own TypeError
        caller = sys._getframe(1)
        globals_, locals_ = _namespaces(
            args[0] if args else kwargs.pop("globals", None),
            args[1] if len(args) > 1 else kwargs.pop("locals", None),
            caller,
        )
        code = _rewritten(builtin, source, globals_, locals_, caller)
        return builtin(code, globals_, locals_, **kwargs)

    return run


def _namespaces(globals_: Any, locals_: Any, caller: FrameType) -> tuple[Any, Any]:
    """The namespaces a plain ``exec`` in ``caller`` runs in, given these:
    without globals, the caller's, and its locals (a function's a snapshot
    on 3.13, PEP 667; its frame's dict before; a module's its globals)."""
    if globals_ is not None:
        return globals_, locals_
    if locals_ is None:
        if sys.version_info >= (3, 13) and caller.f_code.co_flags & _CO_OPTIMIZED:
            locals_ = dict(caller.f_locals)
        else:
            locals_ = caller.f_locals
    return caller.f_globals, locals_


def rewritten_compile(
    source: Any,
    filename: Any,
    mode: str,
    flags: int = 0,
    dont_inherit: bool = False,
    optimize: int = -1,
    **options: Any,
) -> Any:
    """``compile`` as the program calls it. Its code is the plain one (a rule
    cache may marshal it, a rules engine check its names); text for ``exec``
    is noted, and its rewritten code run in its place by ``exec``/``eval``."""
    inherited = 0 if dont_inherit else _futures(sys._getframe(1))
    code = builtins.compile(source, filename, mode, flags | inherited, True, optimize, **options)
    if (
        isinstance(code, CodeType)
        and mode == "exec"
        and isinstance(source, str | bytes)
        and not flags & ~_FUTURE_FLAGS
        and optimize == -1
    ):
        if len(_sources) >= 256:  # a program that compiles afresh each time
            _sources.clear()
        _sources[code] = (source, str(filename), flags | inherited)
    return code


def _rewritten(builtin: Any, source: Any, globals_: Any, locals_: Any, caller: FrameType) -> Any:
    """The code to run for ``source``: rewritten text, or the rewritten code of
    a plain code ``compile`` made; as written where the helpers cannot be
    found (a sandbox's builtins, locals with ``__missing__`` that a module's
    names are looked up in first)."""
    if not _real_builtins(globals_) or not (locals_ is None or type(locals_) is dict):
        return source
    if builtin is builtins.exec and isinstance(source, str | bytes):
        text, filename, flags = source, "<string>", _futures(caller)
    elif isinstance(source, CodeType) and source in _sources:
        text, filename, flags = _sources[source]
    else:
        return source
    try:
        return _compiled_text(text, filename, flags)
    except SyntaxError:  # raised by exec itself, from the user's line
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
        code = _texts[source, filename, flags] = compile_user(
            source, filename, embedded=True, flags=flags
        )
    return code
