"""The reactor's hand-offs, timed calls and thread-pool jobs, reported to an
:class:`~threadcheck._activity.Activity` (``threadcheck run --trace``).

Like :mod:`threadcheck_reactor._race_edges`: the methods are swapped on the
classes for the program's run and swapped back after, so a run without a
trace pays nothing. Thread safety: :func:`install` and its undo are called by
one thread, before and after the program; the wrappers run in any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from threadcheck._activity import Activity
from threadcheck._threads import run_submitted


def install(activity: Activity) -> Callable[[], None]:
    """Wrap the hand-offs; returns what undoes it."""
    from twisted.python.threadpool import ThreadPool

    from threadcheck_reactor import _threadpool
    from threadcheck_reactor._asyncio import ThreadCheckAsyncioReactor
    from threadcheck_reactor._reactor import ThreadCheckMixin
    from threadcheck_reactor._threadpool import SubmissionTrackingThreadPool

    undo: list[tuple[Any, str, Any]] = []

    def swap(target: Any, name: str, replacement: Any) -> None:
        undo.append((target, name, vars(target)[name]))
        setattr(target, name, replacement)

    for reactor_class in (ThreadCheckMixin, ThreadCheckAsyncioReactor):
        methods = vars(reactor_class)
        swap(reactor_class, "callFromThread", _handing(methods["callFromThread"], activity))
        swap(reactor_class, "callLater", _timing(methods["callLater"], activity))
    # Ours hands Twisted's the job wrapped in run_submitted: traced at ours, passed
    # through at Twisted's (which a program's own ThreadPool reaches directly).
    for pool_class in (SubmissionTrackingThreadPool, ThreadPool):
        pooled = vars(pool_class)["callInThreadWithCallback"]
        wrapper = _pooling(pooled, activity)
        swap(pool_class, "callInThreadWithCallback", wrapper)
    _threadpool.passed_through = wrapper.__code__  # one code for both classes' wrappers

    def restore() -> None:
        _threadpool.passed_through = None
        while undo:
            target, name, original = undo.pop()
            setattr(target, name, original)

    return restore


def _handing(call_from_thread: Callable[..., None], activity: Activity) -> Callable[..., None]:
    def callFromThread(self: Any, f: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        call_from_thread(self, activity.submit("callFromThread", f), *args, **kwargs)

    return callFromThread


def _timing(call_later: Callable[..., Any], activity: Activity) -> Callable[..., Any]:
    def callLater(self: Any, delay: float, f: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        return call_later(self, delay, activity.submit("callLater", f), *args, **kw)

    return callLater


def _pooling(call_in_thread: Callable[..., None], activity: Activity) -> Callable[..., None]:
    def callInThreadWithCallback(
        self: Any, onResult: Any, func: Callable[..., Any], *args: Any, **kw: Any
    ) -> None:
        if func is not run_submitted:
            func = activity.submit("callInThread", func)
        call_in_thread(self, onResult, func, *args, **kw)

    return callInThreadWithCallback
