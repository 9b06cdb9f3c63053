"""Planted thread bugs in Twisted programs, each with its fixed twin.

Each is a scenario for ``threadcheck.explore``: it takes a fresh reactor and
returns a Deferred that fires when the program is done, after checking what
it promises. The buggy ones fail only under some interleavings; their twins
never do.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred, gatherResults


class Counter:
    total = 0


def _in_thread(reactor: Any, job: Any, *args: Any) -> Deferred[Any]:
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), job, *args)


# 1. Lost update: `x += 1` in a worker and in a reactor callback.


def lost_update(reactor: Any) -> Deferred[Any]:
    counter = Counter()

    def work() -> None:
        counter.total += 1

    def tick() -> None:
        counter.total += 10

    reactor.callLater(0, tick)
    done = _in_thread(reactor, work)
    done.addCallback(lambda _: _in_thread(reactor, lambda: None))  # let tick run first or not
    return done.addCallback(lambda _: _check(counter.total == 11, f"total is {counter.total}"))


def lost_update_fixed(reactor: Any) -> Deferred[Any]:
    counter = Counter()

    def work() -> None:
        reactor.callFromThread(add, 1)  # the update happens in the reactor thread

    def add(n: int) -> None:
        counter.total += n

    reactor.callLater(0, add, 10)
    done = _in_thread(reactor, work)
    done.addCallback(lambda _: _in_thread(reactor, lambda: None))
    done.addCallback(lambda _: _in_thread(reactor, lambda: None))
    return done.addCallback(lambda _: _check(counter.total == 11, f"total is {counter.total}"))


# 2. Check-then-act on a cache, with a blocking step in between.


class Cache:
    def __init__(self, lock: Any = None) -> None:
        self.values: dict[str, str] = {}
        self.computed = 0
        self.lock = lock

    def get(self, key: str) -> str:
        if key not in self.values:
            time.sleep(0.01)  # the slow computation
            self.computed += 1
            self.values[key] = key.upper()
        return self.values[key]

    def get_locked(self, key: str) -> str:
        with self.lock:
            return self.get(key)


def check_then_act(reactor: Any) -> Deferred[Any]:
    cache = Cache()
    lookups = [_in_thread(reactor, cache.get, "k") for _ in range(2)]
    return gatherResults(lookups).addCallback(
        lambda _: _check(cache.computed == 1, f"computed {cache.computed} times")
    )


def check_then_act_fixed(reactor: Any) -> Deferred[Any]:
    cache = Cache(threading.Lock())
    lookups = [_in_thread(reactor, cache.get_locked, "k") for _ in range(2)]
    return gatherResults(lookups).addCallback(
        lambda _: _check(cache.computed == 1, f"computed {cache.computed} times")
    )


# 3. ABBA: a worker holds a lock while it waits for the reactor; the reactor
#    waits for the lock.


def abba_deadlock(reactor: Any) -> Deferred[Any]:
    lock = threading.Lock()
    seen: list[str] = []

    def in_reactor() -> None:
        with lock:  # blocks the reactor thread while the worker holds it
            seen.append("reactor")

    def work() -> None:
        with lock:
            threads.blockingCallFromThread(reactor, seen.append, "worker")

    reactor.callLater(0, in_reactor)
    return _in_thread(reactor, work)


def abba_deadlock_fixed(reactor: Any) -> Deferred[Any]:
    lock = threading.Lock()
    seen: list[str] = []

    def in_reactor() -> None:
        with lock:
            seen.append("reactor")

    def work() -> None:
        with lock:
            seen.append("worker")
        threads.blockingCallFromThread(reactor, seen.append, "worker done")  # lock released

    reactor.callLater(0, in_reactor)
    return _in_thread(reactor, work)


# 4. Ordering assumption across two workers.


def ordering(reactor: Any) -> Deferred[Any]:
    arrived: list[str] = []
    first = _in_thread(reactor, lambda: "first").addCallback(arrived.append)
    second = _in_thread(reactor, lambda: "second").addCallback(arrived.append)
    return gatherResults([first, second]).addCallback(
        lambda _: _check(arrived == ["first", "second"], f"arrived in order {arrived}")
    )


def ordering_fixed(reactor: Any) -> Deferred[Any]:
    first = _in_thread(reactor, lambda: "first")
    second = _in_thread(reactor, lambda: "second")
    return gatherResults([first, second]).addCallback(
        lambda results: _check(results == ["first", "second"], f"results {results}")
    )


# 5. reactor.stop() before every result arrived.


def early_stop(reactor: Any) -> Deferred[Any]:
    results: list[int] = []

    def work(n: int) -> int:
        return n

    def arrived(n: int) -> None:
        results.append(n)
        if n == 2:  # BUG: assumes job 2 always finishes last
            reactor.stop()

    jobs = [_in_thread(reactor, work, n).addCallback(arrived) for n in (1, 2)]
    return gatherResults(jobs)


def early_stop_fixed(reactor: Any) -> Deferred[Any]:
    results: list[int] = []

    def work(n: int) -> int:
        return n

    jobs = [_in_thread(reactor, work, n).addCallback(results.append) for n in (1, 2)]
    return gatherResults(jobs).addCallback(lambda _: _check(len(results) == 2, str(results)))


def _check(condition: bool, message: str) -> None:
    assert condition, message


BUGGY = {
    "lost_update": lost_update,
    "check_then_act": check_then_act,
    "abba_deadlock": abba_deadlock,
    "ordering": ordering,
    "early_stop": early_stop,
}
FIXED = {
    "lost_update": lost_update_fixed,
    "check_then_act": check_then_act_fixed,
    "abba_deadlock": abba_deadlock_fixed,
    "ordering": ordering_fixed,
    "early_stop": early_stop_fixed,
}
