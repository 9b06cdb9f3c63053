"""Twisted's thread-pool team, on the scheduler's lock and queues.

Still Twisted's own ``Team``, ``LockWorker`` and ``ThreadWorker``: only the
coordinator's lock and the workers' queues are the scheduler's, and workers
hash by creation order, since ``Team`` keeps idle workers in a set and
``set.pop()`` would otherwise pick by identity, differently on every run.

Thread safety: as Twisted's ``Team``; built and used by controlled threads.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from twisted._threads import LockWorker, Team, ThreadWorker
from twisted.python.log import err

from threadcheck._sched import _primitives


class OrderedThreadWorker(ThreadWorker):  # type: ignore[misc]
    def __init__(self, order: int, startThread: Callable[..., object], queue: Any) -> None:
        super().__init__(startThread, queue)
        self._order = order

    def __hash__(self) -> int:
        return self._order


def scheduled_team(currentLimit: Callable[[], int], threadFactory: Callable[..., Any]) -> Team:
    """What ``twisted._threads.pool`` builds, on scheduler-aware primitives."""
    order = itertools.count()

    def startThread(target: Callable[..., object]) -> None:
        threadFactory(target=target).start()

    def createWorker() -> Any:
        stats = team.statistics()
        if stats.busyWorkerCount + stats.idleWorkerCount >= currentLimit():
            return None
        return OrderedThreadWorker(next(order), startThread, _primitives.Queue())

    team = Team(
        coordinator=LockWorker(_primitives.Lock(), threading.local()),  # type: ignore[arg-type]
        createWorker=createWorker,
        logException=err,
    )
    return team
