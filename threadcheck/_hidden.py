"""threadcheck's own threads, hidden from the program it checks.

A service's shutdown check (``threading.active_count() == 1``, a leaked-thread
list from ``threading.enumerate()``) failed under threadcheck alone, naming
``threadcheck-watchdog`` or ``threadcheck-stall-watch``. Once :func:`hide` is
first called, those two functions of ``threading`` leave out the threads it
was given, for the rest of the process (they stay in ``threading``'s own
books: joins, ``current_thread`` and shutdown are untouched).

Thread safety: :func:`hide` may be called from any thread; the weak set is
read by whichever thread enumerates.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable
from typing import Any

_ours: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_installed = threading.Lock()


def hide(thread: threading.Thread) -> None:
    """Leave ``thread`` (one of ours) out of what the program enumerates."""
    _ours.add(thread)
    if _installed.acquire(blocking=False):  # the first call, for good
        threading.enumerate = _without_ours(threading.enumerate)  # type: ignore[assignment]
        threading.active_count = _counted_without_ours(threading.active_count)  # type: ignore[assignment]


def is_ours(ident: int) -> bool:
    """Whether the thread ``ident`` is one of ours (as it exits too, when
    ``threading.current_thread()`` no longer knows it: a dummy thread)."""
    # Alive, or still starting (the collector may run a program's __del__ in
    # it before Thread.start returns): an ended thread's ident is given to the
    # next thread started.
    return any(
        thread.ident == ident and (thread.is_alive() or not thread._started.is_set())  # type: ignore[attr-defined]
        for thread in list(_ours)
    )


def _without_ours(enumerate_: Callable[[], list[threading.Thread]]) -> Any:
    @functools.wraps(enumerate_)
    def enumerate() -> list[threading.Thread]:
        return [thread for thread in enumerate_() if thread not in _ours]

    return enumerate


def _counted_without_ours(active_count: Callable[[], int]) -> Any:
    @functools.wraps(active_count)
    def counted() -> int:
        return active_count() - sum(1 for thread in list(_ours) if thread.is_alive())

    return counted
