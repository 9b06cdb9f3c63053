"""The inline fast-path check shared by every instrumented reactor method."""

from __future__ import annotations

from collections.abc import Callable
from threading import get_ident
from typing import Any, TypeVar

from threadcheck._affinity import AffinityChecker
from threadcheck_reactor._signature import same_signature

_F = TypeVar("_F", bound=Callable[..., Any])

_CHECK_THEN_CALL = """
    if get_ident() != checker.owner:
        __tracebackhide__ = True  # pytest shows the user's call, not this wrapper
        if checker.violation(api):
            with checker.exempt():
                return original({call})
    return original({call})
"""
_OWN_CHECKER = "\n    checker = {first}._threadcheck"


def checked(api: str, method: _F) -> _F:
    """Wrap ``method`` so that a call from a thread other than the owner is reported.

    The fast path is one ident comparison: nothing is allocated or captured
    unless the threads differ, and the wrapper has ``method``'s own signature
    (no argument packing: ``addWriter`` runs on every write). A reported call
    goes on exempt from further checks, so one mistake is one violation, not
    one per API Twisted calls inside it.
    """
    body = _OWN_CHECKER + _CHECK_THEN_CALL
    wrapper = same_signature(method, body, api=api, get_ident=get_ident)
    return wrapper  # type: ignore[return-value]


def checked_by(checker: AffinityChecker, api: str, method: _F) -> _F:
    """:func:`checked` for a bound ``method`` of an object that is not a
    reactor (asyncio's loop), checked by the reactor's ``checker``."""
    wrapper = same_signature(
        method, _CHECK_THEN_CALL, api=api, checker=checker, get_ident=get_ident
    )
    return wrapper  # type: ignore[return-value]
