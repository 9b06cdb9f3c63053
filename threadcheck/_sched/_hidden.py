"""The exploration's own threads, hidden from the program it explores.

A service's shutdown check (``threading.active_count() == 1``, a leaked-thread
list from ``threading.enumerate()``) failed under ``explore`` alone, naming
``threadcheck-watchdog``. While exploring, those two leave out the threads
:func:`hide` was given.

Thread safety: :func:`hide` is called before the thread starts; the weak set
is only read afterwards.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

_ours: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def hide(thread: threading.Thread) -> None:
    """Leave ``thread`` (one of ours) out of what the program enumerates."""
    _ours.add(thread)


def replacements() -> list[tuple[Any, str, Any]]:
    """(target, name, replacement) for :class:`~threadcheck._sched._patch.Patches`."""
    return [
        (threading, "enumerate", _without_ours(threading.enumerate)),
        (threading, "active_count", _counted_without_ours(threading.active_count)),
    ]


def _without_ours(enumerate_: Callable[[], list[threading.Thread]]) -> Any:
    @functools.wraps(enumerate_)
    def enumerate() -> list[threading.Thread]:
        return [thread for thread in enumerate_() if thread not in _ours]

    return enumerate


def _counted_without_ours(active_count: Callable[[], int]) -> Any:
    @functools.wraps(active_count)
    def counted() -> int:
        return active_count() - sum(1 for thread in _ours if thread.is_alive())

    return counted
