"""``multiprocessing``'s thread-side machinery under the scheduler: its
``ThreadPool`` (``multiprocessing.dummy.Pool``) and its connections' waits.

Its workers and its three handler threads are threads, so they are controlled;
its queues and its results' Events are the scheduler's (the standard library's
machinery, :func:`~threadcheck._sched._patch._stdlib_machinery`). One wait is
left real: its worker handler sleeps on a pipe (the pool's change notifier,
a ``multiprocessing`` queue) until the pool closes or a result set empties.
That wait is made on the scheduler's terms here, as a wait on a real file,
while the other threads run. A process pool stays refused
(:mod:`~threadcheck._sched._children`).

``multiprocessing.connection.wait`` (``Connection.poll``, a pool's sentinels)
loops until the clock passes its deadline: a poll, or a wait that timed out
at exactly its deadline, found the virtual clock standing still, and looped
for ever. In a controlled thread it is one selector's wait (the scheduler's:
:mod:`~threadcheck._sched._sockets`), which counts its timeout itself.

Thread safety: the replacement acts only in a controlled thread, holding its
turn; elsewhere it is the real wait.
"""

from __future__ import annotations

import functools
import multiprocessing.pool
import select
import selectors
import weakref
from collections.abc import Callable
from multiprocessing import connection
from multiprocessing.process import BaseProcess
from typing import Any

from threadcheck._sched._core import here

_made: weakref.WeakSet[Any] = weakref.WeakSet()
"""The pools made in controlled threads since the last :func:`forget`."""


def forget() -> None:
    """As a schedule starts, and as exploring ends: the pools the schedules
    made are not terminated again at the interpreter's exit (their threads
    ended with their schedule; ``multiprocessing``'s exit handler asserted
    they were alive, a traceback for each). A process pool's workers end now."""
    for pool in list(_made):
        finalizer = getattr(pool, "_terminate", None)
        if finalizer is not None:
            finalizer.cancel()
        for worker in getattr(pool, "_pool", []):
            if isinstance(worker, BaseProcess) and worker.is_alive():
                worker.terminate()
    _made.clear()


def replacements() -> list[tuple[Any, str, Any]]:
    """(target, name, replacement) for :class:`~threadcheck._sched._patch.Patches`."""
    pool = multiprocessing.pool.Pool
    real = pool._wait_for_updates  # type: ignore[attr-defined]
    return [
        (pool, "_wait_for_updates", staticmethod(_waiting_in_turn(real))),
        (pool, "__init__", _noting(pool.__init__)),
        (connection, "wait", _one_wait(connection.wait)),
    ]


def _one_wait(wait: Callable[..., list[Any]]) -> Callable[..., list[Any]]:
    @functools.wraps(wait)
    def one_wait(object_list: Any, timeout: float | None = None) -> list[Any]:
        if here() is None:
            return wait(object_list, timeout)
        with selectors.DefaultSelector() as selector:
            for obj in object_list:
                selector.register(obj, selectors.EVENT_READ)
            return [key.fileobj for key, _ in selector.select(timeout)]

    return one_wait


def _noting(init: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(init)
    def init_noted(pool: Any, *args: Any, **kwargs: Any) -> None:
        if here() is not None:
            _made.add(pool)
        init(pool, *args, **kwargs)

    return init_noted


def _waiting_in_turn(wait: Callable[..., None]) -> Callable[..., None]:
    def _wait_for_updates(sentinels: list[Any], change_notifier: Any, timeout: Any = None) -> None:
        place = here()
        # A process pool's sentinels include its children's: not ours to wait on.
        if place is None or sentinels != [change_notifier._reader]:
            wait(sentinels, change_notifier, timeout)
            return
        scheduler, _ = place
        deadline = None if timeout is None else scheduler.now + timeout
        why = "ThreadPool's worker handler (a real pipe)"
        scheduler.wait_for_io(change_notifier._reader, True, why, deadline)
        # Not change_notifier.empty(): its poll loops until the clock passes
        # its deadline, and the virtual clock stands still while it loops.
        while select.select([change_notifier._reader], [], [], 0)[0]:
            change_notifier.get()

    return _wait_for_updates
