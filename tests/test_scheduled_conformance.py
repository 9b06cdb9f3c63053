"""Twisted's own reactor and thread-pool suites, run under the controlled scheduler.

Each Twisted test method runs as one schedule: the Explorer adopts the test's
thread as controlled thread T0, and ``reactorFactory`` hands the test a
scheduled reactor of the class under test (virtual time, idle waits parked in
the scheduler, the pool on the scheduler's lock and queues). Every test runs
with no preemption (the default schedule); the tests that start threads also
run under a few random walks, which preempt at any scheduling point, so the
reactor and the pool must stay correct under interleavings.

Twisted's thread-pool tests build ``twisted.python.threadpool.ThreadPool``
inside the schedule. As shipped they cannot run under the scheduler: the pool
binds the real ``Lock`` and ``Queue`` at import (``twisted._threads._pool``),
and the tests' own locks and events are made in Twisted's files, which the
scheduler's patches leave real (only user code gets scheduled primitives). A
real wait in a controlled thread blocks outside the scheduler's control. So
for the duration of each schedule those names are pointed at the scheduler's
primitives (see ``_THREADPOOL_SWAPS``): Twisted's own ``Team``, ``LockWorker``
and ``ThreadWorker`` then run on them unchanged.

Virtual time breaks none of these tests: the one that measures time
(``test_delayedCallFromThread``) reads ``reactor.seconds()``, which is virtual,
and TCP tests poll their real sockets. Known scheduler bugs are listed in
``KNOWN_BUGS`` with their cause: such a test xfails on exactly that failure
and fails once it passes (drop the entry then). ``RACY_TWISTED_TESTS`` are
races in Twisted's own tests, which random schedules find. Errors Twisted logs
while a test runs are trial's to judge (a test may expect and flush them), so
they do not fail the schedule on their own.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import twisted._threads._pool as twisted_pool
import twisted.test.test_threadpool as twisted_threadpool_tests
from twisted._threads.test import test_convenience, test_memory, test_team, test_threadworker
from twisted.internet.test.test_core import SystemEventTestsBuilder
from twisted.internet.test.test_tcp import (
    TCP4ConnectorTestsBuilder,
    TCPConnectionTestsBuilder,
    TCPPortTestsBuilder,
)
from twisted.internet.test.test_threads import ThreadTestsBuilder
from twisted.internet.test.test_time import TimeTestsBuilder
from twisted.logger import globalLogPublisher
from twisted.python import log as twisted_log
from twisted.python import threadable
from twisted.trial import runner
from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SynchronousTestCase

from threadcheck._sched import _primitives
from threadcheck._sched._core import Failure, Strategy
from threadcheck._sched._report import ScheduleRun
from threadcheck._sched._runner import Explorer, Settings
from threadcheck._sched.strategies import Plan, RandomWalk
from threadcheck_reactor._scheduled import SCHEDULED_CLASSES

REACTOR_BUILDERS = [
    SystemEventTestsBuilder,
    TimeTestsBuilder,
    ThreadTestsBuilder,
    TCPConnectionTestsBuilder,
    TCP4ConnectorTestsBuilder,
    TCPPortTestsBuilder,
]
THREADED_BUILDERS = [ThreadTestsBuilder]
"""The builders whose tests start threads: random walks only matter there (the
others run one controlled thread, so every schedule is the default one)."""

THREADPOOL_MODULES = [
    twisted_threadpool_tests,
    test_team,
    test_threadworker,
    test_memory,
    test_convenience,
]
THREADED_POOL_CLASSES = ("ThreadPoolTests", "RaceConditionTests")
"""Twisted's pool tests with real threads; the rest use in-memory workers."""

RANDOM_SCHEDULES = 5
SETTINGS = Settings(max_steps=5_000)
"""The longest test passes a few hundred scheduling points: a livelock ends fast."""

KNOWN_BUGS: dict[tuple[str, str, str], tuple[str, str]] = {}
"""(builder, reactor class, method) under no preemption -> (failure kind, cause)."""

RACY_TWISTED_TESTS = {
    "test_threadCreationArgumentsCallInThreadWithCallback": (
        "Twisted's test races: onResult sets onResultDone before returning, and the "
        "pool drops its reference to onResult only after it returned, so the test "
        "thread may find onResult still alive (a real, narrow race in the test)"
    ),
}


class _ScheduledThreading(types.ModuleType):
    """``threading`` as a Twisted test module sees it inside a schedule."""

    Lock = _primitives.Lock
    RLock = _primitives.RLock
    Condition = _primitives.Condition
    Event = _primitives.Event
    Semaphore = _primitives.Semaphore
    BoundedSemaphore = _primitives.BoundedSemaphore

    def __getattr__(self, name: str) -> Any:
        return getattr(threading, name)


_THREADPOOL_SWAPS: list[tuple[Any, str, Any]] = [
    # Twisted's ThreadPool._pool: Team(LockWorker(Lock(), local()), ThreadWorker(.., Queue()))
    (twisted_pool, "Lock", _primitives.Lock),
    (twisted_pool, "Queue", _primitives.Queue),
    # The tests' own locks and events, and threadable.synchronize's per-instance lock.
    (twisted_threadpool_tests, "threading", _ScheduledThreading("threading")),
    (threadable, "XLock", _primitives.RLock),
]


@contextmanager
def _swapped(swaps: list[tuple[Any, str, Any]]) -> Iterator[None]:
    # The legacy log publisher makes its XLock on first use: make it now, a
    # real one, so that first use is never inside a schedule.
    twisted_log.theLogPublisher.__dict__.setdefault("_threadable_lock", threadable.XLock())
    undo = [(owner, name, getattr(owner, name)) for owner, name, _ in swaps]
    for owner, name, value in swaps:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in reversed(undo):
            setattr(owner, name, value)


def _discard(reactor: Any) -> None:
    """Close the waker of a reactor nobody will run."""
    for reader in list(reactor._internalReaders):
        reactor.removeReader(reader)
        reader.connectionLost(None)
    reactor._internalReaders.clear()


class TrialTarget:
    """One Twisted test method as a schedule's target, run in controlled thread T0.

    ``make_case`` builds a fresh test case for each schedule; ReactorBuilder
    cases get ``reactorFactory``, returning a scheduled reactor of
    ``reactor_class`` on the schedule's scheduler.
    """

    def __init__(
        self,
        make_case: Callable[[], SynchronousTestCase],
        reactor_class: type[Any] | None = None,
        swaps: list[tuple[Any, str, Any]] | None = None,
    ) -> None:
        self.make_case = make_case
        self.reactor_class = reactor_class
        self.swaps = swaps or []
        self.description = make_case().id()
        self.result: TestResult | None = None
        self.built: list[Any] = []
        self.events: list[dict[str, Any]] = []

    def run(self, reactor: Any) -> Failure | None:
        self.result, self.built, self.events = None, [], []
        scheduler = reactor.scheduler
        spare = reactor if type(reactor) is self.reactor_class else None
        if spare is None:
            _discard(reactor)

        def reactor_factory() -> Any:
            nonlocal spare
            made, spare = spare, None
            if made is None:
                assert self.reactor_class is not None
                made = self.reactor_class(scheduler, "record")
            self.built.append(made)
            return made

        case = self.make_case()
        case.reactorFactory = reactor_factory  # type: ignore[attr-defined]
        result = TestResult()
        # A builtin observer: no scheduling point while Twisted's log lock is held.
        globalLogPublisher.addObserver(self.events.append)
        try:
            with _swapped(self.swaps):
                case.run(result)
        finally:
            globalLogPublisher.removeObserver(self.events.append)
        self.result = result
        problems = [*result.errors, *result.failures]
        if not problems:
            return None
        error = problems[0][1]
        return Failure(
            "exception",
            f"{error.type.__name__}: {error.value}",
            thread=threading.current_thread().name,
            details=error.getTraceback(),
            what=error.type.__name__,
        )

    def logged_while_running(self, failure: Failure) -> bool:
        """Whether ``failure`` (an unhandled error) was logged while trial ran the test."""
        for event in self.events:
            logged = event.get("log_failure", event.get("failure"))
            if logged is not None and logged.type.__name__ == failure.what:
                return True
        return False


def _run(target: TrialTarget, strategy: Strategy, schedules: int) -> list[ScheduleRun]:
    """Up to ``schedules`` schedules of ``target``; one if it starts no other thread
    (then every schedule is the default one)."""
    runs = []
    with Explorer(target, SETTINGS) as explorer:
        for index in range(schedules):
            run = explorer.run(strategy, index)
            assert run is not None
            runs.append(run)
            _check(target, run)
            if len(run.thread_names) == 1:
                break
    return runs


def _run_randomly(target: TrialTarget, schedules: int) -> None:
    runs = _run(target, RandomWalk(seed=1), schedules)
    if len(runs) > 1:  # it started threads: the walks must have interleaved them
        assert len({tuple(run.decisions) for run in runs}) > 1


def _check(target: TrialTarget, run: ScheduleRun) -> None:
    failure = run.failure
    if (
        failure is not None
        and failure.kind == "unhandled-error"
        and target.result is not None
        and target.logged_while_running(failure)
    ):
        failure = None  # trial saw it: flushed as expected, or already a test error
    if failure is not None:
        raise ScheduleFailedError(target, run, failure)
    assert target.result is not None, "the test never finished"
    for reactor in target.built:
        reactor.threadcheck.flush_pending()
        assert [v.summary() for v in reactor.threadcheck.recorder.violations()] == []
    if target.result.skips:
        pytest.skip(f"Twisted skips it: {target.result.skips[0][1]}")
    assert target.result.successes == 1, target.result


class ScheduleFailedError(AssertionError):
    def __init__(self, target: TrialTarget, run: ScheduleRun, failure: Failure) -> None:
        super().__init__(
            f"{target.description}, schedule {run.index} ({run.steps} points, "
            f"decisions {run.decisions[:40]}): {failure.kind}: {failure.message}\n"
            f"{failure.details}"
        )
        self.failure = failure


def _expecting(known: tuple[str, str] | None, run: Callable[[], object]) -> None:
    """Run, xfailing on exactly the known failure; a fixed bug fails loudly."""
    if known is None:
        run()
        return
    kind, cause = known
    try:
        run()
    except ScheduleFailedError as error:
        if error.failure.kind != kind:
            raise
        pytest.xfail(cause)
    pytest.fail(f"passes now: drop its KNOWN_BUGS entry ({cause})")


# -- the reactor suites ------------------------------------------------------------


def _methods(case_class: type[SynchronousTestCase]) -> list[str]:
    loader = runner.TestLoader()  # trial's names come without their prefix
    return [loader.methodPrefix + name for name in loader.getTestCaseNames(case_class)]


_CASE_CLASSES = {
    builder: type(builder.__name__.removesuffix("Builder"), (builder, SynchronousTestCase), {})
    for builder in REACTOR_BUILDERS
}


def _reactor_params(builders: list[type[Any]]) -> list[Any]:
    return [
        pytest.param(
            builder,
            reactor_class,
            method,
            id=f"{builder.__name__.removesuffix('TestsBuilder')}-"
            f"{reactor_class.__name__.removeprefix('Scheduled')}-{method}",
        )
        for builder in builders
        for reactor_class in SCHEDULED_CLASSES
        for method in _methods(_CASE_CLASSES[builder])
    ]


def _reactor_target(builder: type[Any], reactor_class: type[Any], method: str) -> TrialTarget:
    case_class = _CASE_CLASSES[builder]
    return TrialTarget(lambda: case_class(method), reactor_class)


@pytest.mark.parametrize(("builder", "reactor_class", "method"), _reactor_params(REACTOR_BUILDERS))
def test_reactor_suite_without_preemption(
    builder: type[Any], reactor_class: type[Any], method: str
) -> None:
    target = _reactor_target(builder, reactor_class, method)
    known = KNOWN_BUGS.get((builder.__name__, reactor_class.__name__, method))
    _expecting(known, lambda: _run(target, Plan([]), 1))


@pytest.mark.parametrize(
    ("builder", "reactor_class", "method"), _reactor_params(THREADED_BUILDERS)
)
def test_reactor_suite_under_random_schedules(
    builder: type[Any], reactor_class: type[Any], method: str
) -> None:
    _run_randomly(_reactor_target(builder, reactor_class, method), RANDOM_SCHEDULES)


# -- the thread-pool suites -----------------------------------------------------------


def _pool_cases() -> list[Any]:
    found: list[Any] = []

    def walk(suite: Any) -> None:
        for test in suite:
            if isinstance(test, SynchronousTestCase):
                found.append(test)
            else:
                walk(test)

    for module in THREADPOOL_MODULES:
        walk(runner.TestLoader().loadModule(module))
    return found


_POOL_CASES = {case.id().removeprefix("twisted."): case for case in _pool_cases()}


def _pool_target(name: str) -> TrialTarget:
    case = _POOL_CASES[name]
    return TrialTarget(lambda: type(case)(case._testMethodName), swaps=_THREADPOOL_SWAPS)


@pytest.mark.parametrize("name", sorted(_POOL_CASES))
def test_threadpool_suite_without_preemption(name: str) -> None:
    _run(_pool_target(name), Plan([]), 1)


@pytest.mark.parametrize(
    "name",
    sorted(
        name
        for name, case in _POOL_CASES.items()
        if type(case).__name__ in THREADED_POOL_CLASSES
        and case._testMethodName not in RACY_TWISTED_TESTS
    ),
)
def test_threadpool_suite_under_random_schedules(name: str) -> None:
    _run_randomly(_pool_target(name), RANDOM_SCHEDULES * 2)


@pytest.mark.parametrize("method", sorted(RACY_TWISTED_TESTS))
def test_random_schedules_find_the_race_in_twisteds_own_test(method: str) -> None:
    """The race is real (narrow on a real machine); a few random schedules hit it."""
    name = f"test.test_threadpool.ThreadPoolTests.{method}"
    with pytest.raises(ScheduleFailedError) as caught:
        _run(_pool_target(name), RandomWalk(seed=1), 20)
    assert caught.value.failure.kind == "exception"
    assert caught.value.failure.what == "FailTest"
