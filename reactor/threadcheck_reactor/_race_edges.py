"""Twisted's hand-offs as happens-before edges, for reactors and thread pools
that are not threadcheck's own: a reactor a test builds itself (as Twisted's
ReactorBuilder tests do), the asyncio reactor's ``callFromThread``, a
``ThreadPool`` the program makes.

Thread safety: :func:`install` and its undo are called by one thread, before
and after the program; the wrappers run in any thread.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from threadcheck._races import _access
from threadcheck._races._clocks import run_received, send
from threadcheck._races._tac import rewriting_compile


def edges(is_user_file: Callable[[str], bool]) -> list[Callable[[], Callable[[], None]]]:
    """What the race detector installs of Twisted's: the hand-offs, and the
    rewriting of twistd's application files."""
    return [install, functools.partial(rewrite_tac_files, is_user_file)]


def rewrite_tac_files(is_user_file: Callable[[str], bool]) -> Callable[[], None]:
    """twistd compiles a ``.tac`` itself, past the import hook: its ``compile``
    rewrites a user file's first (see ``threadcheck._races._tac``)."""
    from twisted.persisted import sob

    compile_application = rewriting_compile(is_user_file)
    sob.compile = compile_application  # type: ignore[attr-defined]  # before the builtin

    def undo() -> None:
        if vars(sob).get("compile") is compile_application:
            del sob.compile  # type: ignore[attr-defined]

    return undo


def install() -> Callable[[], None]:
    """Wrap the hand-offs; returns what undoes it."""
    from twisted._threads import _pool
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor
    from twisted.internet.base import ReactorBase
    from twisted.python.threadpool import ThreadPool

    undo: list[tuple[Any, str, Any]] = []

    def swap(target: Any, name: str, replacement: Any) -> None:
        undo.append((target, name, vars(target)[name]))
        setattr(target, name, replacement)

    for reactor_class in (ReactorBase, AsyncioSelectorReactor):
        swap(reactor_class, "callFromThread", _carrying(vars(reactor_class)["callFromThread"]))
    swap(
        ThreadPool, "callInThreadWithCallback", _pool_carrying(ThreadPool.callInThreadWithCallback)
    )
    # Its coordinator's lock orders a queued job after its submission: bound at
    # import (from threading import Lock), before the detector's Lock existed.
    swap(_pool, "Lock", threading.Lock)

    def restore() -> None:
        while undo:
            target, name, original = undo.pop()
            setattr(target, name, original)

    return restore


def _carrying(call_from_thread: Callable[..., None]) -> Callable[..., None]:
    def callFromThread(self: Any, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        if _access.enabled:  # f happens after what this thread did so far
            f, args, kwargs = run_received, (send(), f, args, kwargs), {}
        call_from_thread(self, f, *args, **kwargs)

    return callFromThread


def _pool_carrying(call_in_thread: Callable[..., None]) -> Callable[..., None]:
    def callInThreadWithCallback(
        self: Any, onResult: Any, func: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        if _access.enabled:  # the job happens after what this thread did so far
            func, args, kw = run_received, (send(), func, args, kw), {}
        call_in_thread(self, onResult, func, *args, **kw)

    return callInThreadWithCallback
