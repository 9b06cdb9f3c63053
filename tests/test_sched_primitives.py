"""The scheduler's locks, conditions, events, semaphores, queues, sleep and join:
correct programs stay correct on every schedule, and waits happen in the scheduler."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest
from twisted.internet import threads
from twisted.internet.defer import Deferred, gatherResults

import threadcheck

BUDGET = 150


def in_pool(reactor: Any, job: Any, *args: Any) -> Deferred[Any]:
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), job, *args)


def explore_clean(scenario: Any, budget: int = BUDGET, **options: Any) -> None:
    result = threadcheck.explore(scenario, budget=budget, **options)
    result.assert_clean()
    assert result.schedules == budget or result.proof  # the DPOR phase may explore all
    assert result.distinct > 1  # the schedules really differed


def test_lock_makes_read_modify_write_atomic() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        lock = threading.Lock()
        state = {"n": 0}

        def add() -> None:
            with lock:
                state["n"] += 1

        jobs = [in_pool(reactor, add) for _ in range(3)]
        return gatherResults(jobs).addCallback(lambda _: _expect(state["n"] == 3, state))

    explore_clean(scenario)


def test_rlock_is_reentrant_and_condition_hands_items_over() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        condition = threading.Condition(threading.RLock())
        items: list[int] = []
        taken: list[int] = []

        def produce() -> None:
            for n in range(3):
                with condition, condition:  # re-entered
                    items.append(n)
                    condition.notify()

        def consume() -> None:
            for _ in range(3):
                with condition:
                    condition.wait_for(lambda: items)
                    taken.append(items.pop(0))

        jobs = [in_pool(reactor, consume), in_pool(reactor, produce)]
        return gatherResults(jobs).addCallback(lambda _: _expect(taken == [0, 1, 2], taken))

    explore_clean(scenario)


def test_event_semaphore_and_bounded_queue() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        ready = threading.Event()
        slots = threading.BoundedSemaphore(1)
        channel: queue.Queue[int] = queue.Queue(maxsize=1)
        inside: list[int] = []

        def worker(n: int) -> int:
            ready.wait()
            with slots:
                inside.append(n)
                assert len(inside) == 1, "two threads inside the semaphore"
                inside.pop()
            channel.put(n)
            return n

        def drain() -> list[int]:
            return sorted(channel.get() for _ in range(2))

        jobs = [in_pool(reactor, worker, 1), in_pool(reactor, worker, 2), in_pool(reactor, drain)]
        reactor.callLater(0, ready.set)
        return gatherResults(jobs).addCallback(
            lambda results: _expect(results[2] == [1, 2], results)
        )

    explore_clean(scenario)


def test_sleep_and_timeouts_are_virtual() -> None:
    seen: list[float] = []

    def scenario(reactor: Any) -> Deferred[Any]:
        start = reactor.seconds()

        def slow() -> float:
            time.sleep(3600)  # an hour, in virtual time
            assert not threading.Event().wait(60)  # a wait that times out
            return reactor.seconds() - start

        return in_pool(reactor, slow).addCallback(seen.append)

    started = time.monotonic()
    threadcheck.explore(scenario, budget=20).assert_clean()
    assert time.monotonic() - started < 60  # not an hour of wall time per schedule
    assert seen and all(elapsed >= 3660 for elapsed in seen)


def test_thread_start_and_join_are_controlled() -> None:
    def scenario(reactor: Any) -> None:
        state = {"n": 0}
        lock = threading.Lock()

        def add() -> None:
            with lock:
                state["n"] += 1

        workers = [threading.Thread(target=add) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert state["n"] == 2, state

    explore_clean(scenario)


def test_blocking_call_from_thread_returns_the_value_or_raises() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        def fails() -> None:
            raise KeyError("missing")

        def work() -> str:
            value = threads.blockingCallFromThread(reactor, lambda: "value")
            with pytest.raises(KeyError):
                threads.blockingCallFromThread(reactor, fails)
            return str(value)

        return in_pool(reactor, work).addCallback(lambda v: _expect(v == "value", v))

    explore_clean(scenario)


def test_unlocking_an_unlocked_lock_is_an_error_as_in_threading() -> None:
    def scenario(reactor: Any) -> None:
        threading.Lock().release()

    result = threadcheck.explore(scenario, budget=5)
    assert result.found
    assert result.failure is not None
    assert result.failure.message == "RuntimeError: release unlocked lock"


def _expect(condition: bool, value: object) -> None:
    assert condition, value


def test_a_user_log_observer_does_not_block_other_threads_logging() -> None:
    from twisted.python import log

    seen: list[str] = []

    class Observer:
        def __init__(self) -> None:
            self.count = 0

        def __call__(self, event: dict[str, Any]) -> None:
            self.count += 1  # an access point inside Twisted's log lock

    observer = Observer()

    def scenario(reactor: Any) -> Deferred[Any]:
        def job(n: int) -> None:
            log.msg(f"job {n}")

        return gatherResults([in_pool(reactor, job, n) for n in range(2)]).addCallback(seen.append)

    log.addObserver(observer)
    try:
        explore_clean(scenario, budget=100, strategy="random")
    finally:
        log.removeObserver(observer)
    assert observer.count >= 200
