"""Explorations of Twisted's thread hand-offs, as pytest tests (threadcheck_explore).

Each runs under the controlled scheduler on a fresh reactor per schedule; the
CI stress job runs them by time (``--threadcheck-explore=60s``), sharded, and
on real threads (``--threadcheck-stress=60s``). Each must stay clean: a
failure is a bug in Twisted's guarantee, or in threadcheck.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from twisted.internet import threads
from twisted.internet.defer import Deferred, DeferredLock, gatherResults

BUDGET = 300  # per test in the quick run; the stress job overrides it


@pytest.mark.threadcheck_explore(budget=BUDGET)
def test_call_from_thread_keeps_each_threads_order(threadcheck_reactor: Any) -> Deferred[Any]:
    reactor = threadcheck_reactor
    seen: dict[str, list[int]] = {"a": [], "b": []}
    reactor_thread = threading.get_ident()

    def post(name: str, n: int) -> None:
        assert threading.get_ident() == reactor_thread, "callFromThread ran off the reactor"
        seen[name].append(n)

    def work(name: str) -> None:
        for n in range(3):
            reactor.callFromThread(post, name, n)

    pool = reactor.getThreadPool()
    jobs = [threads.deferToThreadPool(reactor, pool, work, name) for name in seen]
    # A callFromThread made before a job returned runs before its result arrives.
    return gatherResults(jobs).addCallback(
        lambda _: _check(seen == {"a": [0, 1, 2], "b": [0, 1, 2]}, seen)
    )


@pytest.mark.threadcheck_explore(budget=BUDGET)
def test_blocking_call_from_thread_returns_the_reactors_answer(
    threadcheck_reactor: Any,
) -> Deferred[Any]:
    reactor = threadcheck_reactor
    lock = DeferredLock()  # reactor-thread only: the workers reach it through the reactor
    order: list[int] = []

    def in_reactor(n: int) -> Deferred[int]:
        return lock.run(lambda: order.append(n) or n * 10)

    def work(n: int) -> int:
        value: int = threads.blockingCallFromThread(reactor, in_reactor, n)
        return value

    pool = reactor.getThreadPool()
    jobs = [threads.deferToThreadPool(reactor, pool, work, n) for n in (1, 2)]
    return gatherResults(jobs).addCallback(
        lambda values: _check(values == [10, 20] and sorted(order) == [1, 2], (values, order))
    )


@pytest.mark.threadcheck_explore(budget=BUDGET)
def test_a_lock_shared_by_workers_and_the_reactor_loses_no_update(
    threadcheck_reactor: Any,
) -> Deferred[Any]:
    reactor = threadcheck_reactor
    lock = threading.Lock()
    totals = {"n": 0}

    def add(n: int) -> None:
        with lock:
            totals["n"] += n

    reactor.callLater(0, add, 100)
    pool = reactor.getThreadPool()
    jobs = [threads.deferToThreadPool(reactor, pool, add, n) for n in (1, 2)]
    done = gatherResults(jobs)
    done.addCallback(lambda _: threads.deferToThreadPool(reactor, pool, lambda: None))
    return done.addCallback(lambda _: _check(totals["n"] == 103, totals))


def _check(condition: bool, shown: object) -> None:
    assert condition, shown
