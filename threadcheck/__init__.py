"""threadcheck: thread-safety testing for Twisted programs.

Public API; everything in ``_private`` modules may change without notice.

PYTEST_DONT_REWRITE: the package holds a pytest plugin, and is often imported
before pytest starts (``threadcheck run -m pytest``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from threadcheck._affinity import AffinityChecker
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
    BlockingCallInReactorThreadError,
    Kind,
    TestContext,
    ThreadAffinityError,
    ThreadAffinityWarning,
    ThreadInfo,
    Violation,
)

if TYPE_CHECKING:
    from threadcheck._sched._explore import ExploreResult
    from threadcheck_reactor import ThreadCheckMixin

__version__ = "0.1.0"


def install(mode: Mode | str = DEFAULT_MODE, recorder: Recorder | None = None) -> ThreadCheckMixin:
    """Install the instrumented reactor as Twisted's global reactor and return it.

    See :func:`threadcheck_reactor.install`. Imports the reactor only when
    called, so importing threadcheck stays cheap.
    """
    import threadcheck_reactor

    return threadcheck_reactor.install(mode, recorder)


__all__ = [
    "SCHEMA_VERSION",
    "AffinityChecker",
    "BlockingCallInReactorThreadError",
    "Frame",
    "Kind",
    "MissingViolationError",
    "Mode",
    "Recorder",
    "Stack",
    "TestContext",
    "ThreadAffinityError",
    "ThreadAffinityViolationsError",
    "ThreadAffinityWarning",
    "ThreadCheckFixture",
    "ThreadInfo",
    "Violation",
    "explore",
    "format_report",
    "install",
    "replay",
    "spawn_site",
    "to_json",
    "track_thread_starts",
    "write_json",
]


def explore(
    scenario: Callable[[Any], Any],
    budget: int | None = 2000,
    strategy: str | None = None,
    seed: int | None = None,
    *,
    seconds: float | None = None,
    granularity: str = "access",
) -> ExploreResult:
    """Explore the thread interleavings of ``scenario(reactor)`` under the controlled scheduler.

    ``scenario`` takes a fresh reactor (a real Twisted reactor, instrumented
    and scheduled) and returns None or a Deferred. Each schedule runs it until
    the Deferred fires; a schedule fails on an exception or failed assert in
    any thread, a failed Deferred, an unhandled error, a thread-affinity
    violation, a deadlock or a step bound. The first failure is shrunk to its
    fewest preemptions. ``budget`` counts schedules, ``seconds`` bounds time;
    ``strategy`` is ``portfolio`` (default), ``random``, ``pct:D`` or
    ``bounded:N``. The result's ``assert_clean()`` raises with the report.
    """
    from threadcheck._sched._explore import Budget, Settings
    from threadcheck._sched._explore import explore as explore_target
    from threadcheck._sched._targets import ScenarioTarget

    return explore_target(
        ScenarioTarget(scenario),
        budget=Budget(budget, seconds),
        strategy=strategy,
        seed=0 if seed is None else seed,
        settings=Settings(granularity=granularity),
        replay_command=lambda token: f"threadcheck.replay({scenario.__name__}, {token!r})",
    )


def replay(scenario: Callable[[Any], Any], token: str) -> ExploreResult:
    """Rerun exactly the schedule ``token`` names; raises ``ReplayDivergenceError`` if it
    goes anywhere else."""
    from threadcheck._sched._explore import replay as replay_target
    from threadcheck._sched._targets import ScenarioTarget

    return replay_target(ScenarioTarget(scenario), token)
