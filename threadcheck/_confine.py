"""Your own objects that belong to the reactor thread.

``@reactor_only`` (a function, a method, or every public method of a class),
``@any_thread`` (exempts a method of a ``reactor_only`` class),
``confine(obj)`` (one object: its public methods and its attribute writes) and
``assert_reactor_thread()`` report a call from another thread like a
non-thread-safe Twisted API: same rule (the owner is the thread that runs the
installed instrumented reactor, see :mod:`threadcheck._affinity`), same modes,
same report.

They check against the reactor installed when they are applied. With no
instrumented reactor installed (plain ``python``, production), ``reactor_only``
and ``any_thread`` return what they were given and ``confine`` leaves the
object alone: they cost nothing. So install first (``pytest --threadcheck``,
``threadcheck run`` and ``--reactor=threadcheck`` do, before your code is
imported).

Thread safety: the decorators run at import time; the checks run in any thread.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Callable
from threading import get_ident
from typing import Any, TypeVar

from threadcheck._affinity import AffinityChecker

_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])

_ANY_THREAD = "__threadcheck_any_thread__"
_CONFINED: dict[tuple[type, int, int], type] = {}


def active_checker() -> AffinityChecker | None:
    """The checker of the installed instrumented reactor, if one is installed."""
    reactor = sys.modules.get("twisted.internet.reactor")
    checker = getattr(reactor, "_threadcheck", None)
    return checker if isinstance(checker, AffinityChecker) else None


def any_thread(function: _F) -> _F:
    """This method of a ``reactor_only`` class may be called from any thread."""
    setattr(function, _ANY_THREAD, True)
    return function


def reactor_only(target: _T) -> _T:
    """Calls from a thread other than the reactor's are violations.

    On a class: each public method defined in it (not ``_private`` ones, not
    those marked ``@any_thread``) and each public property's setter and
    deleter; on a function or method: that one.
    """
    checker = active_checker()
    if checker is None:
        return target
    if isinstance(target, type):
        for name, value in list(vars(target).items()):
            checked = _checked_member(value, checker, f"{target.__qualname__}.{name}", name)
            if checked is not value:
                setattr(target, name, checked)
        return target
    if not callable(target):
        raise TypeError(f"reactor_only takes a function, a method or a class, not {target!r}")
    return _checked(target, checker, _qualified(target))  # type: ignore[return-value]


def confine(obj: _T, thread: threading.Thread | None = None) -> _T:
    """``obj``'s public methods and attribute writes belong to the reactor thread,
    or to ``thread`` (a worker that owns a state machine, say).

    Changes ``obj``'s class to a checking subclass (made once per class and
    owner); returns ``obj``.
    """
    checker = active_checker()
    if checker is None:
        return obj
    if thread is not None and not isinstance(thread, threading.Thread):
        raise TypeError(f"confine(thread=...) takes a threading.Thread, not {thread!r}")
    cls = type(obj)
    key = (cls, id(checker), id(thread))
    confined = _CONFINED.get(key)
    if confined is None:
        confined = _CONFINED[key] = _confined_class(cls, checker, thread)
    try:
        obj.__class__ = confined
    except TypeError as error:
        raise TypeError(f"confine() cannot confine a {cls.__qualname__}: {error}") from None
    return obj


def assert_reactor_thread() -> None:
    """A violation (per the mode) unless called in the reactor thread."""
    checker = active_checker()
    if checker is not None and get_ident() != checker.owner:
        __tracebackhide__ = True  # pytest shows the user's line
        checker.violation("assert_reactor_thread")


def _checked(
    function: _F, checker: AffinityChecker, api: str, thread: threading.Thread | None = None
) -> _F:
    if getattr(function, _ANY_THREAD, False):
        return function
    if thread is not None:
        return _checked_for_thread(function, checker, api, thread)

    @functools.wraps(function)
    def check_then_call(*args: Any, **kwargs: Any) -> Any:
        if get_ident() != checker.owner:
            __tracebackhide__ = True  # pytest shows the user's call, not this wrapper
            if checker.violation(api):
                with checker.exempt():  # one mistake, one violation: not the calls inside
                    return function(*args, **kwargs)
        return function(*args, **kwargs)

    return check_then_call  # type: ignore[return-value]


def _checked_for_thread(
    function: _F, checker: AffinityChecker, api: str, thread: threading.Thread
) -> _F:
    @functools.wraps(function)
    def check_then_call(*args: Any, **kwargs: Any) -> Any:
        # The ident is read at each call: the thread may not have started when confined.
        if get_ident() != thread.ident:
            __tracebackhide__ = True
            if checker.confined_elsewhere(api, thread):
                with checker.exempt():
                    return function(*args, **kwargs)
        return function(*args, **kwargs)

    return check_then_call  # type: ignore[return-value]


def _checked_member(
    value: Any,
    checker: AffinityChecker,
    api: str,
    name: str,
    thread: threading.Thread | None = None,
) -> Any:
    if name.startswith("_") or getattr(value, _ANY_THREAD, False):
        return value
    if isinstance(value, (staticmethod, classmethod)):
        inner = value.__func__
        if getattr(inner, _ANY_THREAD, False):
            return value
        return type(value)(_checked(inner, checker, api, thread))
    if isinstance(value, property) and (value.fset or value.fdel):
        # A setter is a method called by `obj.state = v`: its write is checked.
        write = f"{api} (write)"
        setter, deleter = value.fset, value.fdel
        return property(
            value.fget,
            None if setter is None else _checked(setter, checker, write, thread),
            None if deleter is None else _checked(deleter, checker, write, thread),
            value.__doc__,
        )
    if callable(value):
        return _checked(value, checker, api, thread)
    return value


def _confined_class(cls: type, checker: AffinityChecker, thread: threading.Thread | None) -> type:
    namespace: dict[str, Any] = {"__qualname__": cls.__qualname__, "__module__": cls.__module__}
    for klass in reversed(cls.__mro__[:-1]):  # outermost first, so overrides win
        for name, value in vars(klass).items():
            checked = _checked_member(value, checker, f"{cls.__qualname__}.{name}", name, thread)
            if checked is not value:
                namespace[name] = checked
    namespace["__setattr__"] = _checked_write(cls, checker, thread)
    return type(cls.__name__, (cls,), namespace)


def _checked_write(
    cls: type, checker: AffinityChecker, thread: threading.Thread | None
) -> Callable[[Any, str, Any], None]:
    original_setattr: Any = cls.__setattr__
    owner = cls.__qualname__

    def __setattr__(self: Any, name: str, value: Any) -> None:  # noqa: N807 - the hook itself
        if thread is None:
            reported = get_ident() != checker.owner and checker.violation(
                f"{owner}.{name} (write)"
            )
        else:
            reported = get_ident() != thread.ident and checker.confined_elsewhere(
                f"{owner}.{name} (write)", thread
            )
        if reported:
            with checker.exempt():
                original_setattr(self, name, value)
            return
        original_setattr(self, name, value)

    return __setattr__


def _qualified(function: Callable[..., Any]) -> str:
    return getattr(function, "__qualname__", None) or repr(function)
