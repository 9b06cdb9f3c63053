"""Wrappers with their wrapped function's own signature.

A ``def wrapper(*args, **kwargs)`` packs a tuple and a dict on every call and
unpacks them again to call on: several times the cost of a thread-affinity
check. A wrapper written with the original's parameter list passes the
arguments straight through. This writes that wrapper's source from the
signature (as dataclasses and attrs write ``__init__``) around a body given as
text, and compiles it once, when the check is patched in.

Thread safety: none needed; called while patching.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from threadcheck import _stacks

_KIND = inspect.Parameter
_FILENAME = "<threadcheck wrapper of "

# Their frames are threadcheck's, left out of reports like the rest of it.
_stacks.register_library_path(_FILENAME, "threadcheck")


def same_signature(original: Callable[..., Any], body: str, **names: Any) -> Callable[..., Any]:
    """``body`` (indented four spaces; ``{call}`` stands for the arguments passed
    on, ``{first}`` for the first parameter) as a function with ``original``'s
    parameters, its names resolved in ``names`` and ``original``."""
    parameters = list(inspect.signature(original).parameters.values())
    declared, passed, defaults = _parameter_lists(parameters)
    first = parameters[0].name if parameters else "None"
    source = (
        f"def {original.__name__}({', '.join(declared)}):\n"
        + body.strip("\n").format(call=", ".join(passed), first=first)
        + "\n"
    )
    namespace: dict[str, Any] = {**names, **defaults, "original": original}
    filename = f"{_FILENAME}{original.__qualname__}>"
    exec(compile(source, filename, "exec"), namespace)  # our own template, not input
    wrapper: Callable[..., Any] = namespace[original.__name__]
    return functools.update_wrapper(wrapper, original)


def _parameter_lists(
    parameters: list[inspect.Parameter],
) -> tuple[list[str], list[str], dict[str, Any]]:
    declared: list[str] = []
    passed: list[str] = []
    defaults: dict[str, Any] = {}
    keyword_only_started = False
    for index, parameter in enumerate(parameters):
        name = parameter.name
        text = name
        if parameter.default is not _KIND.empty:
            defaults[f"_default_{index}"] = parameter.default
            text = f"{name}=_default_{index}"
        if parameter.kind is _KIND.VAR_POSITIONAL:
            text, keyword_only_started = f"*{name}", True
            passed.append(f"*{name}")
        elif parameter.kind is _KIND.VAR_KEYWORD:
            text = f"**{name}"
            passed.append(f"**{name}")
        elif parameter.kind is _KIND.KEYWORD_ONLY:
            if not keyword_only_started:
                declared.append("*")
                keyword_only_started = True
            passed.append(f"{name}={name}")
        else:
            passed.append(name)
        declared.append(text)
        if parameter.kind is _KIND.POSITIONAL_ONLY and (
            index + 1 == len(parameters) or parameters[index + 1].kind is not _KIND.POSITIONAL_ONLY
        ):
            declared.append("/")
    return declared, passed, defaults
