"""The scenario's end waits for the thread pool's own bookkeeping, not for jobs.

When a scenario's Deferred fires, the harness stops the reactor. A worker that
has just delivered its job's result is still returning itself to the pool's
idle set then; when that ends relative to the harness's stop is no choice of
the program's, so the stop waits for it (``Scheduler.settle``). A job still
running its own code is not waited for: its steps and the shutdown's stay
interleaved.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import threads
from twisted.internet.defer import Deferred

import threadcheck


def _pool_at_shutdown(seen: list[tuple[int, int]]) -> Any:
    def scenario(reactor: Any) -> Deferred[Any]:
        pool = reactor.getThreadPool()

        def at_shutdown() -> None:
            stats = pool._team.statistics()
            seen.append((stats.busyWorkerCount, stats.idleWorkerCount))

        reactor.addSystemEventTrigger("before", "shutdown", at_shutdown)
        first = threads.deferToThreadPool(reactor, pool, lambda: 1)
        return first.addCallback(lambda _: threads.deferToThreadPool(reactor, pool, lambda: 2))

    return scenario


@pytest.mark.parametrize("strategy", ["dpor", "random", "bounded:2"])
def test_every_worker_is_idle_when_the_scenario_stops_the_reactor(strategy: str) -> None:
    seen: list[tuple[int, int]] = []
    result = threadcheck.explore(_pool_at_shutdown(seen), strategy=strategy, budget=300)
    assert not result.found, result.report()
    assert result.schedules > 0 and len(seen) > result.schedules  # the warm-up run too
    assert {busy for busy, _ in seen} == {0}
    # The second job reused the first worker or started another: both stay explored.
    assert {idle for _, idle in seen} == {1, 2}


def test_a_job_still_running_is_not_waited_for() -> None:
    shutdown_saw: list[bool] = []

    class Job:
        done = False

    def scenario(reactor: Any) -> None:
        job = Job()

        def run() -> None:
            job.done = True

        reactor.addSystemEventTrigger("before", "shutdown", lambda: shutdown_saw.append(job.done))
        reactor.callInThread(run)  # not awaited: the scenario ends at once

    result = threadcheck.explore(scenario, strategy="dpor", budget=300)
    assert result.exhausted, result.report()
    assert set(shutdown_saw) == {True, False}
