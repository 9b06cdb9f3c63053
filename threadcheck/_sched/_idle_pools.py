"""Twisted thread pools given work while not started, noted while exploring.

A scenario that hands jobs to a ``ThreadPool`` it never starts (one made by
hand, not the reactor's) waits on them for ever: reported as a deadlock, it
would be a false one. Noting such pools lets the scenario's target say what
happened instead (:class:`~threadcheck._sched._targets.ScenarioTarget`).

Thread safety: the replacements may run in any thread (a pool is given work
from anywhere); appends and rebinds of one list are atomic. :func:`restart`
is called by the exploring thread as a schedule starts.
"""

from __future__ import annotations

import functools
from typing import Any

_idle: list[Any] = []


def restart() -> None:
    """As a schedule starts: pools of the last one are forgotten."""
    _idle.clear()


def given_work() -> list[Any]:
    """This schedule's pools given work that are still not started."""
    return list(_idle)


def replacements() -> list[tuple[Any, str, Any]]:
    """(target, name, replacement) for :class:`~threadcheck._sched._patch.Patches`."""
    from twisted.python.threadpool import ThreadPool

    return [
        (ThreadPool, "callInThreadWithCallback", _noting(ThreadPool.callInThreadWithCallback)),
        (ThreadPool, "start", _forgetting(ThreadPool.start)),
    ]


def _noting(given_work: Any) -> Any:
    @functools.wraps(given_work)
    def noted(pool: Any, *args: Any, **kwargs: Any) -> None:
        if not pool.started and all(pool is not seen for seen in _idle):
            _idle.append(pool)
        given_work(pool, *args, **kwargs)

    return noted


def _forgetting(start: Any) -> Any:
    @functools.wraps(start)
    def started(pool: Any) -> None:
        _idle[:] = [seen for seen in _idle if seen is not pool]  # (stopped with the reactor)
        start(pool)

    return started
