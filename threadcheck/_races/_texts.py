"""Code the program compiles from text, rewritten as its modules are.

A rule set loaded with ``compile(text, "<rules>", "exec")`` ran whole,
touching nothing, and proofs claimed it. Its rewritten code must still behave
as the text would: it runs in the namespace the program gave ``exec`` (or the
caller's, given none), which must not gain our names (a plugin loader lists
what the text defined). So it has no preamble: it finds the access helpers
among the builtins, where :func:`install` puts them under names no program
uses, and its globals through :func:`gns`. Text run with builtins of its own
(``{"__builtins__": {}}``, a sandbox) could not find them: it runs as written.

Thread safety: the cache of rewritten text is filled by whichever thread
compiles first; a race there compiles the same text twice, harmlessly.
"""

from __future__ import annotations

import builtins
import sys
from types import CodeType, FrameType
from typing import Any

from threadcheck._races._rewrite import compile_user

_CO_OPTIMIZED = 0x1

_texts: dict[tuple[str | bytes, str], CodeType] = {}
"""Text the program compiled, rewritten once: each schedule (and a program that
compiles in a loop) gets the same code, its sites numbered once."""

_sources: dict[CodeType, tuple[str | bytes, str]] = {}
"""Each rewritten code's text and file name: compiled as written for a sandbox."""


def install(helpers: dict[str, Any]) -> None:
    """Make the access helpers (by their rewritten names) builtins, for text."""
    for name, function in helpers.items():
        setattr(builtins, name, function)
    builtins.__tc_gns__ = gns  # type: ignore[attr-defined]


def gns() -> dict[str, Any]:
    """The calling code's globals: the scope of the text's shared variables."""
    return sys._getframe(1).f_globals


def rewritten_exec(source: Any, *namespaces: Any, **options: Any) -> Any:
    """``exec`` as the program calls it: text rewritten, in the same namespaces."""
    if len(namespaces) > 2:
        return builtins.exec(source, *namespaces, **options)  # its own TypeError
    globals_ = namespaces[0] if namespaces else options.pop("globals", None)
    locals_ = namespaces[1] if len(namespaces) > 1 else options.pop("locals", None)
    if globals_ is None:  # the caller's, as a plain exec's (not this function's)
        caller = sys._getframe(1)
        globals_ = caller.f_globals
        if locals_ is None:
            locals_ = _locals_of(caller)
    code = _rewritten(source, globals_)
    return builtins.exec(code, globals_, locals_, **options)


def rewritten_compile(source: Any, filename: Any, mode: str, *rest: Any, **options: Any) -> Any:
    """``compile`` as the program calls it: text for ``exec`` rewritten."""
    if mode == "exec" and isinstance(source, str | bytes) and not rest and not options:
        return _compiled_text(source, str(filename))
    return builtins.compile(source, filename, mode, *rest, **options)


def _locals_of(caller: FrameType) -> Any:
    """What a plain ``exec`` in ``caller`` takes as its locals: a function's a
    snapshot on 3.13 (PEP 667), its frame's dict before; a module's its globals."""
    if sys.version_info >= (3, 13) and caller.f_code.co_flags & _CO_OPTIMIZED:
        return dict(caller.f_locals)
    return caller.f_locals


def _rewritten(source: Any, globals_: Any) -> Any:
    """The code to run for ``source`` in ``globals_``: as written in a sandbox."""
    if not _real_builtins(globals_):
        if isinstance(source, CodeType) and source in _sources:
            text, filename = _sources[source]
            return builtins.compile(text, filename, "exec")
        return source
    if isinstance(source, str | bytes):
        return _compiled_text(source, "<string>")
    return source


def _real_builtins(globals_: Any) -> bool:
    """Whether code run in ``globals_`` sees the interpreter's builtins."""
    if not isinstance(globals_, dict):
        return False
    own = globals_.get("__builtins__", builtins)
    return own is builtins or own is builtins.__dict__


def _compiled_text(source: str | bytes, filename: str) -> CodeType:
    code = _texts.get((source, filename))
    if code is None:
        if len(_texts) >= 256:  # a program that makes its text each time: not kept for ever
            _texts.clear()
            _sources.clear()
        code = _texts[source, filename] = compile_user(source, filename, embedded=True)
        _sources[code] = (source, filename)
    return code
