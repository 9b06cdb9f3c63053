"""threadcheck: thread-safety testing for Twisted programs.

Public API; everything in ``_private`` modules may change without notice.

PYTEST_DONT_REWRITE: the package holds a pytest plugin, and is often imported
before pytest starts (``threadcheck run -m pytest``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Collection, Hashable, Sequence
from typing import TYPE_CHECKING, Any

from threadcheck import _arguments
from threadcheck._affinity import AffinityChecker
from threadcheck._confine import any_thread, assert_reactor_thread, confine, reactor_only
from threadcheck._modes import DEFAULT_MODE, Mode
from threadcheck._recorder import Recorder
from threadcheck._report import SCHEMA_VERSION, format_report, to_json, write_json
from threadcheck._stacks import Frame, Stack
from threadcheck._testrun import (
    MissingViolationError,
    ThreadAffinityViolationsError,
    ThreadCheckFixture,
)
from threadcheck._threads import spawn_site, track_thread_starts
from threadcheck._violation import (
    BlockingCallAfterStopError,
    BlockingCallInReactorThreadError,
    Kind,
    TestContext,
    ThreadAffinityError,
    ThreadAffinityWarning,
    ThreadInfo,
    Violation,
)

if TYPE_CHECKING:
    from threadcheck._sched._once import Schedule
    from threadcheck._sched._report import ExplorationFailedError, ExploreResult
    from threadcheck._sched.strategies import ReplayDivergenceError
    from threadcheck._stress import StressFailedError, StressResult
    from threadcheck_reactor import ThreadCheckMixin

__version__ = "0.1.0"


def install(mode: Mode | str = DEFAULT_MODE, recorder: Recorder | None = None) -> ThreadCheckMixin:
    """Install the instrumented reactor as Twisted's global reactor and return it.

    See :func:`threadcheck_reactor.install`. Imports the reactor only when
    called, so importing threadcheck stays cheap.
    """
    import threadcheck_reactor

    return threadcheck_reactor.install(mode, recorder)


_LAZY = {
    # The scheduler's public names, imported on first use: `import threadcheck`
    # stays cheap for the pytest plugin and the affinity checks.
    "ExplorationFailedError": "threadcheck._sched._report",
    "ReplayDivergenceError": "threadcheck._sched.strategies",
    "Schedule": "threadcheck._sched._once",
    "StressFailedError": "threadcheck._stress",
    "StressResult": "threadcheck._stress",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'threadcheck' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "SCHEMA_VERSION",
    "AffinityChecker",
    "BlockingCallAfterStopError",
    "BlockingCallInReactorThreadError",
    "ExplorationFailedError",
    "Frame",
    "Kind",
    "MissingViolationError",
    "Mode",
    "Recorder",
    "ReplayDivergenceError",
    "Schedule",
    "Stack",
    "StressFailedError",
    "StressResult",
    "TestContext",
    "ThreadAffinityError",
    "ThreadAffinityViolationsError",
    "ThreadAffinityWarning",
    "ThreadCheckFixture",
    "ThreadInfo",
    "Violation",
    "any_thread",
    "assert_reactor_thread",
    "confine",
    "explore",
    "format_report",
    "install",
    "reactor_only",
    "replay",
    "run",
    "spawn_site",
    "stress",
    "to_json",
    "track_thread_starts",
    "write_json",
]


class _DefaultBudget(int):
    """The budget ``explore`` takes unless told: 2000 schedules, none once
    ``seconds=`` is given (time alone then bounds it)."""


def explore(
    scenario: Callable[[Any], Any],
    budget: int | None = _DefaultBudget(2000),
    strategy: str | None = None,
    seed: int | None = None,
    *,
    seconds: float | None = None,
    granularity: str = "access",
    include: Sequence[str] = (),
    max_delay: float = 1.0,
    races: bool = False,
) -> ExploreResult:
    """Explore the thread interleavings of ``scenario(reactor)`` under the controlled scheduler.

    ``scenario`` takes a fresh reactor (a real Twisted reactor, instrumented
    and scheduled) and returns None or a Deferred. Each schedule runs it until
    the Deferred fires; a schedule fails on an exception or failed assert in
    any thread, a failed Deferred, an unhandled error, a thread-affinity
    violation, a deadlock or a step bound. The first failure is shrunk to its
    fewest preemptions. ``budget`` counts schedules (2000 unless ``seconds``
    is given), ``seconds`` bounds time (both: whichever comes first);
    ``strategy`` is ``portfolio`` (default), ``random``, ``pct:D`` or
    ``bounded:N``. The result's ``assert_clean()`` raises with the report.
    A scenario that uses no reactor may take no argument. ``include`` puts
    scheduling points in library code too, as ``--include`` does: files,
    folders or importable module names (``include=["mylib"]``). Time passes
    while threads could run (a sleep ends, a timeout fires, a timer comes due
    before a preempted thread goes on), holding them at most ``max_delay``
    virtual seconds (0: only when every thread waits). ``races=True``: a data
    race in user code (the scenario's module included) fails the schedule it
    happens in, even when nothing else does.
    """
    from threadcheck._sched._explore import Budget
    from threadcheck._sched._explore import explore as explore_target
    from threadcheck._sched._progress import Progress
    from threadcheck._sched._runner import Settings
    from threadcheck._sched._targets import ScenarioTarget
    from threadcheck._sched._token import python_replay
    from threadcheck._stacks import include_paths

    _arguments.require("include", include, _arguments.names)
    settings = Settings(
        granularity=granularity, include=include_paths(include), max_delay=max_delay, races=races
    )
    # Ctrl-C ends the schedule running, then raises KeyboardInterrupt here: in
    # the middle of one, the reactor thread's mainLoop swallowed it, and the
    # schedule was reported as a deadlock with a token.
    with Progress(sys.stderr) as progress:
        progress.visible = False
        return explore_target(
            ScenarioTarget(scenario),
            budget=Budget(
                None if seconds is not None and isinstance(budget, _DefaultBudget) else budget,
                seconds,
            ),
            strategy=strategy,
            seed=0 if seed is None else seed,
            settings=settings,
            replay_command=lambda token: python_replay(_called(scenario), token),
            progress=progress,
            shrink_progress=progress.shrinking,
        )


def _called(scenario: Callable[..., Any]) -> str:
    """The scenario as its replay command names it. A lambda or a partial has no
    name to call it by (``threadcheck.replay(<lambda>, ...)`` is no Python), and
    may hold this run's values (a Hypothesis example's): it is called
    ``scenario``, and a comment says which it is (the user's own ``scenario``
    may be another function, taking other arguments)."""
    name = getattr(scenario, "__name__", "")
    if name.isidentifier():
        return name
    code = getattr(scenario, "__code__", None)
    what = "the callable given"
    if code is not None:
        what = f"the lambda at {os.path.basename(code.co_filename)}:{code.co_firstlineno}"
    return f"scenario  # scenario: {what}, with this run's values"


def replay(scenario: Callable[[Any], Any], token: str) -> ExploreResult:
    """Rerun exactly the schedule ``token`` names; raises ``ReplayDivergenceError`` if it
    goes anywhere else."""
    from threadcheck._sched._explore import replay as replay_target
    from threadcheck._sched._targets import ScenarioTarget

    if not isinstance(token, str):
        raise TypeError(f"token={token!r}: give the tc1. token a failure printed")
    return replay_target(ScenarioTarget(scenario), token, warn=_warn_of_replay)


def _warn_of_replay(message: str) -> None:
    """What makes a replay best effort (another Python, the code moved since)."""
    import warnings

    warnings.warn(f"threadcheck: {message}", stacklevel=4)  # at the caller of replay()


def run(
    scenario: Callable[[Any], Any],
    schedule: Schedule | None = None,
    *,
    granularity: str = "access",
    include: Sequence[str] = (),
    max_delay: float = 1.0,
) -> ExploreResult:
    """Run ``scenario(reactor)`` once under the controlled scheduler; raise on failure.

    Outside a Hypothesis example it runs the scenario once before, with no
    preemption, and forgets that run: what the scenario fills on first use (a
    library's lazy cache) is then filled, as it is before a replay in a fresh
    process. In an example it does not, so that each draw is drawn once.

    ``schedule`` (from :func:`threadcheck.hypothesis.schedules`, or
    ``Schedule.of([(decision, thread), ...])``) is a preemption plan; without
    one the schedule is a random walk, in a Hypothesis example seeded from the
    example's data (the database replays it, the shrinker shrinks it). A
    failing schedule raises ``ExplorationFailedError`` (an AssertionError)
    with the step table and its replay token; a clean one returns the result.
    """
    from threadcheck._sched._once import Schedule, run_once
    from threadcheck._sched._runner import Settings
    from threadcheck._sched._targets import ScenarioTarget
    from threadcheck._stacks import include_paths

    _arguments.require("include", include, _arguments.names)
    if schedule is not None and not isinstance(schedule, Schedule):
        raise TypeError(
            f"schedule={schedule!r}: give a Schedule (Schedule.of, threadcheck.hypothesis."
            "schedules()); a token replays with threadcheck.replay"
        )
    result = run_once(
        ScenarioTarget(scenario),
        schedule,
        Settings(granularity=granularity, include=include_paths(include), max_delay=max_delay),
        replay_hint=_called(scenario),
    )
    result.assert_clean()
    return result


def stress(
    scenario: Callable[[Any], Any],
    runs: int | None = 1000,
    *,
    seconds: float | None = None,
    acceptable: Collection[Hashable] | None = None,
    forbidden: Collection[Hashable] = (),
    seed: int | None = None,
    yield_probability: float = 0.05,
) -> StressResult:
    """Run ``scenario(reactor)`` many times on real threads; return the outcome histogram.

    For what the scheduler cannot control (C extensions, real sockets). Each
    run has a fresh instrumented reactor; threads switch every microsecond and
    yield at random (``yield_probability``) at the scheduler's points in user code. The scenario's
    result (its Deferred's value) is the outcome. An outcome in ``forbidden``,
    or not in ``acceptable`` when that is given, is forbidden; so are an
    exception, a thread-affinity violation and a run that never ends, unless
    listed as acceptable. ``result.assert_clean()`` raises with the histogram and
    an example of each forbidden outcome. Runs are not reproducible one by one.
    """
    from threadcheck._stress import stress as stress_runs

    return stress_runs(
        scenario,
        runs,
        seconds=seconds,
        acceptable=acceptable,
        forbidden=forbidden,
        seed=seed,
        yield_probability=yield_probability,
    )
