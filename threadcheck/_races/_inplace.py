"""Rewriting a module that is already imported: its functions' code swapped
for the rewritten code of the same functions.

For a scenario handed to ``explore(..., races=True)``: its module was imported
long before. Functions and methods defined at the module's top level get the
rewritten code (functions defined inside them are made from it, so are
rewritten too); the module's own top-level code has run already and is not
watched. A function whose rewritten code needs other closure variables is
left as it was.

Thread safety: called by one thread, before the program's threads start.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from types import CodeType, FunctionType, ModuleType
from typing import Any

from threadcheck._races import _access
from threadcheck._races._rewrite import GLOBALS, HELPERS, compile_user, helper
from threadcheck._races._shadow import Site, add_site

_DONE = "__tc_rewritten__"


def rewrite_loaded(
    module: ModuleType,
    also: Sequence[FunctionType] = (),
    keep: Callable[[FunctionType], bool] = lambda function: False,
) -> int:
    """Rewrite ``module``'s functions in place, and the functions ``also`` (made
    in it, say a scenario defined inside a test, whose module-level parent is
    already running); not those ``keep`` picks. How many were rewritten."""
    namespace = vars(module)
    codes = namespace.get(_DONE)
    first = codes is None
    if codes is None:
        codes = _rewritten_codes(module)
        if codes is None:
            return 0
        for name in HELPERS:
            namespace[helper(name)] = getattr(_access, name)
        namespace[GLOBALS] = namespace
        namespace[_DONE] = codes
        _wrap_caches(module)
    chosen = [f for f in (_functions(module) if first else ()) if not keep(f)]
    swapped = 0
    for function in [*chosen, *also]:
        old = function.__code__
        new = codes.get(_key(old))
        if new is not None and new is not old and new.co_freevars == old.co_freevars:
            function.__code__ = new
            swapped += 1
    return swapped


_Key = tuple[str, int, tuple[str, ...], tuple[str, ...]]


def _key(code: CodeType) -> _Key:
    """What tells a function's code from the rest of its module's: its name and
    line, and its parameters and free variables (two lambdas on one line,
    ``lambda reactor: threads.deferToThread(lambda: job())``, share the others)."""
    parameters = code.co_argcount + code.co_kwonlyargcount
    return code.co_name, code.co_firstlineno, code.co_varnames[:parameters], code.co_freevars


def _wrap_caches(module: ModuleType) -> None:
    """The module's ``@functools.lru_cache`` (or ``@cache``) functions, made
    when it was imported, wrapped as rewritten code wraps them (module
    functions and methods of its classes: where the cache is shared)."""
    holders: list[Any] = [module]
    holders += [v for v in vars(module).values() if _defined_in(v, module) and isinstance(v, type)]
    for holder in holders:
        for name, value in list(vars(holder).items()):
            code = getattr(getattr(value, "__wrapped__", None), "__code__", None)
            if type(value) is _access.LRU_WRAPPER and _defined_in(value, module) and code:
                where = Site(code.co_filename, code.co_firstlineno, name, "method", f"{name}()")
                setattr(holder, name, _access.cached(add_site(where))(value))


def _defined_in(value: Any, module: ModuleType) -> bool:
    return getattr(value, "__module__", None) == module.__name__


def is_test(function: FunctionType) -> bool:
    """A test pytest collects: kept as pytest rewrote it, when a module is rewritten."""
    return function.__name__.startswith("test")


def _rewritten_codes(module: ModuleType) -> dict[_Key, CodeType] | None:
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str):
        return None
    try:
        with open(filename, "rb") as file:
            source = file.read()
        rewritten = compile_user(source, filename, _as_pytest_did(module, source))
    except (OSError, SyntaxError, ValueError):
        return None
    keys = Counter(_key(code) for code in _codes(rewritten))
    # Two codes alike (lambdas on one line, taking the same): which is which is
    # not known, and a function is better left as written than given the other's.
    return {_key(code): code for code in _codes(rewritten) if keys[_key(code)] == 1}


def _as_pytest_did(module: ModuleType, source: bytes) -> Callable[[Any], None]:
    """A test module pytest imported had its asserts rewritten (their messages
    show the values): so is its rewritten code."""
    if type(getattr(module, "__loader__", None)).__name__ != "AssertionRewritingHook":
        return lambda tree: None
    from _pytest.assertion.rewrite import rewrite_asserts

    return lambda tree: rewrite_asserts(tree, source, module.__file__, None)


def _codes(code: CodeType) -> Iterator[CodeType]:
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            yield constant
            yield from _codes(constant)


def _functions(module: ModuleType) -> Iterator[FunctionType]:
    """The functions and methods ``module`` defines at its top level."""
    seen: set[int] = set()
    todo: list[Any] = list(vars(module).values())
    while todo:
        value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, (staticmethod, classmethod)):
            todo.append(value.__func__)
        elif isinstance(value, property):
            todo.extend(f for f in (value.fget, value.fset, value.fdel) if f is not None)
        elif isinstance(value, type) and value.__module__ == module.__name__:
            todo.extend(vars(value).values())
        elif inspect.isfunction(value):
            wrapped = getattr(value, "__wrapped__", None)
            if wrapped is not None:
                todo.append(wrapped)
            if value.__module__ == module.__name__:
                yield value
