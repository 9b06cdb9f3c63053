"""Twisted's thread-pool team, on the scheduler's lock and queues.

Still Twisted's own ``Team``, ``LockWorker`` and ``ThreadWorker``: only the
coordinator's lock and the workers' queues are the scheduler's, and workers
hash by creation order, since ``Team`` keeps idle workers in a set and
``set.pop()`` would otherwise pick by identity, differently on every run.
The scheduler is told when a worker runs a job and when it is between jobs,
in the team's own code (see ``Scheduler.settle``).

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
from threadcheck._sched._core import here
from threadcheck._sched._program import CONTROLLED_ATTR


class OrderedThreadWorker(ThreadWorker):  # type: ignore[misc]
    def __init__(self, order: int, startThread: Callable[..., object], queue: Any) -> None:
        super().__init__(startThread, queue)
        self._order = order

    def __hash__(self) -> int:
        return self._order


class _ScheduledTeam(Team):  # type: ignore[misc]
    def do(self, task: Callable[[], object]) -> None:
        super().do(lambda: _job(task))


def _job(task: Callable[[], object]) -> None:
    found = here()
    if found is None:  # the schedule is being torn down
        task()
        return
    scheduler, thread = found
    scheduler.between_jobs(thread, False)
    try:
        task()
    finally:
        scheduler.between_jobs(thread, True)


def scheduled_team(currentLimit: Callable[[], int], threadFactory: Callable[..., Any]) -> Team:
    """What ``twisted._threads.pool`` builds, on scheduler-aware primitives."""
    order = itertools.count()

    def startThread(target: Callable[..., object]) -> None:
        thread = threadFactory(target=target)
        thread.start()
        controlled = getattr(thread, CONTROLLED_ATTR, None)
        if controlled is not None:  # from its first step, until it takes a job
            controlled[1].settles = True

    def createWorker() -> Any:
        stats = team.statistics()
        if stats.busyWorkerCount + stats.idleWorkerCount >= currentLimit():
            return None
        return OrderedThreadWorker(next(order), startThread, _primitives.Queue())

    team = _ScheduledTeam(
        coordinator=LockWorker(_primitives.Lock(), threading.local()),  # type: ignore[arg-type]
        createWorker=createWorker,
        logException=err,
    )
    return team
