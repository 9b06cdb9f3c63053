"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from threadcheck import Mode

from support import RunningReactor

pytest_plugins = ("pytester",)


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, its runs without the plugins the suite installs only to be
    tested beside: pytest-asyncio warns in every run that its loop scope is
    unset, and Hypothesis's plugin imports Hypothesis in every session's summary
    (1 s of CPU, two thirds of a small run's). A test that wants one asks for
    it (``-p asyncio``, ``-p repeat``, ``-p hypothesispytest``, ``-p anyio``)."""
    monkeypatch.setenv(
        "PYTEST_ADDOPTS", "-p no:asyncio -p no:repeat -p no:hypothesispytest -p no:anyio"
    )
    return pytester


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow",
        action="store_true",
        help="also run the slow tier (tests marked slow: end to end, Twisted's own suites)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without --run-slow (or a -m of one's own), the slow tier is deselected."""
    if config.getoption("--run-slow") or config.option.markexpr:
        return
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if item.get_closest_marker("slow") is None]


def pytest_report_header(config: pytest.Config) -> str | None:
    if config.getoption("--run-slow") or config.option.markexpr:
        return None
    return "threadcheck's tests: fast tiers only; --run-slow adds the slow tier (CI runs it)"


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


@pytest.fixture
def asyncio_reactor() -> Iterator[Callable[[Mode], RunningReactor]]:
    """:func:`running_reactor` for Twisted's asyncio reactor, instrumented."""
    from threadcheck_reactor._asyncio import ThreadCheckAsyncioReactor

    made: list[RunningReactor] = []

    def make(mode: Mode) -> RunningReactor:
        made.append(RunningReactor(mode, ThreadCheckAsyncioReactor))
        return made[-1]

    yield make
    for running in made:
        running.stop()


def _swappable() -> tuple[object, ...]:
    """What an exploration swaps in while it runs: all of it must be back after."""
    import _thread
    import datetime
    import queue
    import signal
    import threading
    import time

    import twisted.internet.threads
    from twisted.logger import LogPublisher
    from twisted.python import log, threadable
    from twisted.python.threadpool import ThreadPool

    from threadcheck._sched._core import active

    return (
        active(),  # a schedule left running: every later test on its virtual clock
        time.monotonic,
        time.time,
        time.perf_counter,
        datetime.datetime,
        datetime.date,
        signal.signal,
        threadable._synchPre,
        _thread.allocate_lock,
        vars(threading._RLock)["__init__"],
        ThreadPool.callInThreadWithCallback,
        ThreadPool.start,
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


@pytest.fixture(scope="module")
def found() -> Any:
    """A failing exploration (the lost update of tests/races.py), shrunk: for the views."""
    from test_view import lost_update

    return lost_update()


@pytest.fixture(scope="module")
def held() -> Any:
    """A failing exploration that needed time to pass while a thread was held."""
    from test_view import late_fetch

    import threadcheck

    result = threadcheck.explore(late_fetch, budget=2000)
    assert result.found and result.run is not None
    assert any(note.startswith("time +") for note in result.run.preemptions.values())
    return result
