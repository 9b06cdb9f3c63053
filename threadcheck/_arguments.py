"""Checks of the numbers and outcome lists users give explorations and stress
runs, shared by the Python API and the pytest markers. Each check returns None,
or what is wrong, in words that end "give ...\"."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], "str | None"]


def require(name: str, value: Any, check: Check) -> None:
    """Raise ``ValueError("name=value: what to give")`` when ``check`` finds a problem."""
    problem = check(value)
    if problem is not None:
        raise ValueError(f"{name}={value!r}: {problem}")


def is_number(value: Any, kinds: type | tuple[type, ...] = (int, float)) -> bool:
    return isinstance(value, kinds) and not isinstance(value, bool)  # True is no count


def count(value: Any) -> str | None:
    return None if is_number(value, int) and value >= 0 else "give a whole number, 0 or more"


def seconds(value: Any) -> str | None:
    if value is None or (is_number(value) and math.isfinite(value) and value >= 0):
        return None
    return "give seconds: a finite number, 0 or more"


def seed(value: Any) -> str | None:
    return None if value is None or is_number(value, int) else "give a whole number"


def outcomes(value: Any) -> str | None:
    collection = isinstance(value, list | tuple | set | frozenset)
    return None if value is None or collection else "give a list of outcomes"


def probability(value: Any) -> str | None:
    return None if is_number(value) and 0 <= value <= 1 else "give a probability, from 0 to 1"


def names(value: Any) -> str | None:
    """Files, folders or module names (``include``): a list, not one string."""
    listed = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    return None if listed else "give a list of files, folders or module names"
