"""Deferreds and Twisted's Deferred-based primitives fired from the wrong thread.

A Deferred fired in a worker runs its callbacks in that worker. That is a bug
when the Deferred is *shared with the reactor thread*: created there, given
callbacks there, or chained to one that is (Buildbot's ``DeferredQueue.put``
from a pool thread; twisted#9469, a Deferred fired in a worker while the
reactor chains it into a DeferredList). A Deferred a worker makes and uses on
its own is fine and is not reported.

How "private to a worker" is known at no cost to the reactor thread: a
Deferred (or ``DeferredQueue``, ``DeferredLock``, ``DeferredSemaphore``)
created in a thread other than the reactor's gets a *private twin* class, a
subclass that adds nothing but methods that turn it back into the shared class
as soon as the reactor thread adds callbacks, puts, gets, acquires or
releases. The reactor thread's own Deferreds are never touched beyond the one
ident comparison in ``__init__`` and ``callback``/``errback``. A Deferred the
reactor waits on, returned from one of its callbacks, is found through the
continuation Twisted appends to it.

Thread safety: as Twisted's classes (none); the checks run in any thread.
"""

from __future__ import annotations

import contextlib
import functools
import traceback
from collections.abc import Callable
from threading import get_ident
from typing import Any

from twisted.internet import defer

from threadcheck_reactor import _running
from threadcheck_reactor._running import STATE, Patch

_CONTINUE = defer._CONTINUE

DEFERRED_APIS = ("Deferred.callback", "Deferred.errback", "Deferred.cancel")
PRIMITIVE_APIS = (
    "DeferredQueue.put",
    "DeferredQueue.get",
    "DeferredLock.acquire",
    "DeferredLock.release",
    "DeferredLock.run",
    "DeferredSemaphore.acquire",
    "DeferredSemaphore.release",
    "DeferredSemaphore.run",
)

_ADDING = ("addCallbacks", "addCallback", "addErrback", "addBoth")
"""What the reactor thread does to a Deferred that makes it shared."""

_PRIMITIVES: tuple[tuple[type, str, tuple[str, ...]], ...] = (
    (defer.DeferredQueue, "DeferredQueue", ("put", "get")),
    (defer.DeferredLock, "DeferredLock", ("acquire", "release")),
    (defer.DeferredSemaphore, "DeferredSemaphore", ("acquire", "release")),
)

_twins: dict[type, type] = {}


def _twin(cls: type, touching: tuple[str, ...]) -> type:
    """``cls``'s private twin: each of ``touching``, called in the reactor
    thread, makes the object ``cls`` (shared) again before it runs."""
    twin = _twins.get(cls)
    if twin is not None:
        return twin

    def shared_when_touched(name: str) -> Callable[..., Any]:
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            if get_ident() == STATE.owner:
                self.__class__ = cls
            return getattr(cls, name)(self, *args, **kwargs)

        method.__name__ = name
        return method

    namespace: dict[str, Any] = {name: shared_when_touched(name) for name in touching}
    namespace.update(__qualname__=cls.__qualname__, __module__=cls.__module__)
    namespace["_threadcheck_private"] = True
    twin = _twins[cls] = type(cls.__name__, (cls,), namespace)
    return twin


def _is_private(obj: Any) -> bool:
    """Whether ``obj`` is a private twin: made off the reactor thread, never touched there."""
    return getattr(type(obj), "_threadcheck_private", False)


def _made(touching: tuple[str, ...]) -> Callable[[Any], None]:
    def made_off_thread(obj: Any) -> None:
        if STATE.checker is None or get_ident() in STATE.owners:
            return  # no reactor runs (nothing to share with), or another one's own object
        if _is_private(obj):
            return  # a subclass's __init__ chaining up
        with contextlib.suppress(TypeError):  # a layout __class__ cannot change: shared
            obj.__class__ = _twin(type(obj), touching)

    return made_off_thread


_deferred_made = _made(_ADDING)


def _private(d: Any) -> bool:
    """Whether ``d`` and every Deferred waiting on it are private to workers.

    A Deferred a callback returned has the waiting Deferred's continuation
    appended to its callbacks (``Deferred._continuation``), not added.
    """
    if not _is_private(d):
        return False
    for (callback, args, _), _errback in d._callbacks:
        if callback is _CONTINUE and not _private(args[0]):
            return False
    return True


def _checked_init(original: Callable[..., None], made: Callable[[Any], None]) -> Any:
    @functools.wraps(original)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:  # noqa: N807 - the hook itself
        original(self, *args, **kwargs)
        if get_ident() != STATE.owner:
            made(self)

    return __init__


# Deferred.__init__ and callback are the hot paths (every Deferred the reactor
# makes and fires). Where Twisted's bodies are the ones below, checked by the
# names they use, they are inlined: a second frame would cost more than the
# check itself (Deferred chains 1.13 -> 1.04 in tests/benchmarks/overhead.py).
# Otherwise the original is wrapped.
_INIT_NAMES = (
    "_callbacks",
    "_canceller",
    "debug",
    "DebugInfo",
    "_debugInfo",
    "traceback",
    "format_stack",
    "creator",
)
_CALLBACK_NAMES = ("_startRunCallbacks",)


def _deferred_init() -> Callable[..., None]:
    original = defer.Deferred.__init__
    if original.__code__.co_names != _INIT_NAMES:
        return _checked_init(original, _deferred_made)  # type: ignore[no-any-return]
    debug_info = defer.DebugInfo
    format_stack = traceback.format_stack

    @functools.wraps(original)
    def __init__(self: Any, canceller: Any = None) -> None:  # noqa: N807 - the hook itself
        self._callbacks = []
        self._canceller = canceller
        if self.debug:
            self._debugInfo = debug_info()
            self._debugInfo.creator = format_stack()[:-1]
        if get_ident() != STATE.owner:
            _deferred_made(self)

    return __init__


def _deferred_callback() -> Callable[..., None]:
    original = defer.Deferred.callback
    if original.__code__.co_names != _CALLBACK_NAMES:
        return _running.checked("Deferred.callback", original, _private)

    @functools.wraps(original)
    def callback(self: Any, result: Any) -> None:
        if get_ident() != STATE.owner and not _private(self):
            checker = _running.foreign_checker("Deferred.callback")
            if checker is not None:
                with checker.exempt():  # one mistake, one violation
                    self._startRunCallbacks(result)
                return
        self._startRunCallbacks(result)

    return callback


def patches() -> list[Patch]:
    """The checks on Deferreds and Twisted's primitives, for :func:`_running.register`."""
    deferred = defer.Deferred
    patches: list[Patch] = [
        (deferred, "__init__", _deferred_init()),
        (deferred, "callback", _deferred_callback()),
    ]
    for api in DEFERRED_APIS[1:]:
        name = api.split(".")[1]
        patches.append((deferred, name, _running.checked(api, getattr(deferred, name), _private)))
    patches.append(
        (
            defer._ConcurrencyPrimitive,
            "__init__",
            _checked_init(defer._ConcurrencyPrimitive.__init__, _made(("acquire", "release"))),
        )
    )
    patches.append(
        (
            defer.DeferredQueue,
            "__init__",
            _checked_init(defer.DeferredQueue.__init__, _made(("put", "get"))),
        )
    )
    for cls, prefix, names in _PRIMITIVES:
        patches += _running.checked_methods(cls, prefix, names, _is_private)
    # run() acquires, calls and releases: checked as the one call the user made,
    # not as an acquire and a release (two violations for one line).
    run = defer._ConcurrencyPrimitive.run
    for cls, prefix in (
        (defer.DeferredLock, "DeferredLock"),
        (defer.DeferredSemaphore, "DeferredSemaphore"),
    ):
        patches.append((cls, "run", _running.checked(f"{prefix}.run", run, _is_private)))
    return patches
