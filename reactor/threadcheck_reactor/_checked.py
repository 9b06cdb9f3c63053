"""The inline fast-path check shared by every instrumented method."""

from __future__ import annotations

import functools
from collections.abc import Callable
from threading import get_ident
from typing import Any, Protocol, TypeVar

from threadcheck._affinity import AffinityChecker

_F = TypeVar("_F", bound=Callable[..., Any])


class HasChecker(Protocol):
    _threadcheck: AffinityChecker


def checked(api: str, method: _F) -> _F:
    """Wrap ``method`` so that a call from a thread other than the owner is reported.

    The fast path is one ident comparison: nothing is allocated or captured
    unless the threads differ.
    """

    @functools.wraps(method)
    def wrapper(self: HasChecker, *args: Any, **kwargs: Any) -> Any:
        if get_ident() != self._threadcheck.owner:
            self._threadcheck.violation(api)
        return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
