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
    unless the threads differ. A reported call goes on exempt from further
    checks, so one mistake is one violation, not one per API Twisted calls
    inside it.
    """

    @functools.wraps(method)
    def wrapper(self: HasChecker, *args: Any, **kwargs: Any) -> Any:
        checker = self._threadcheck
        if get_ident() != checker.owner and checker.violation(api):
            with checker.exempt():
                return method(self, *args, **kwargs)
        return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
