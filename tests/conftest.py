"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from threadcheck import Mode

from support import RunningReactor

pytest_plugins = ("pytester",)


@pytest.fixture
def running_reactor() -> Iterator[Callable[[Mode | str], RunningReactor]]:
    """Factory: ``running_reactor(mode)`` starts one; all are stopped afterwards."""
    made: list[RunningReactor] = []

    def make(mode: Mode | str = Mode.RECORD) -> RunningReactor:
        running = RunningReactor(mode)
        made.append(running)
        return running

    yield make
    for running in made:
        running.stop()


def _swappable() -> tuple[object, ...]:
    """What an exploration swaps in while it runs: all of it must be back after."""
    import queue
    import threading
    import time

    import twisted.internet.threads
    from twisted.logger import LogPublisher
    from twisted.python import log, threadable
    from twisted.python.threadpool import ThreadPool

    return (
        threading.Lock,
        threading.RLock,
        threading.Condition,
        threading.Event,
        threading.Semaphore,
        queue.Queue,
        queue.SimpleQueue,
        time.sleep,
        threadable.XLock,
        twisted.internet.threads.Queue,
        log.msg,
        LogPublisher.__call__,
        vars(ThreadPool)["_pool"],  # a staticmethod: must come back as one
        # threadable.synchronize makes this lock on first use: if that use was
        # inside a schedule, every later log.msg would take a scheduled lock.
        type(log.theLogPublisher.__dict__.get("_threadable_lock")).__module__.startswith(
            "threadcheck"
        ),
    )


@pytest.fixture(autouse=True)
def nothing_stays_swapped() -> Iterator[None]:
    before = _swappable()
    yield
    assert _swappable() == before, "an exploration left a primitive swapped"
