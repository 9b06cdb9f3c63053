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
from collections.abc import Iterator
from types import CodeType, FunctionType, ModuleType
from typing import Any

from threadcheck._races import _access
from threadcheck._races._rewrite import GLOBALS, HELPERS, compile_user, helper

_DONE = "__tc_rewritten__"


def rewrite_loaded(module: ModuleType) -> int:
    """Rewrite ``module``'s functions in place; how many were."""
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str) or vars(module).get(_DONE):
        return 0
    try:
        with open(filename, "rb") as file:
            rewritten = compile_user(file.read(), filename)
    except (OSError, SyntaxError, ValueError):
        return 0
    codes = {(code.co_name, code.co_firstlineno): code for code in _codes(rewritten)}
    namespace = vars(module)
    for name in HELPERS:
        namespace[helper(name)] = getattr(_access, name)
    namespace[GLOBALS] = namespace
    namespace[_DONE] = True
    swapped = 0
    for function in _functions(module):
        old = function.__code__
        new = codes.get((old.co_name, old.co_firstlineno))
        if new is not None and new.co_freevars == old.co_freevars:
            function.__code__ = new
            swapped += 1
    return swapped


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
