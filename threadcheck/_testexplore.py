"""Explorations as pytest tests: the ``threadcheck_explore`` marker and its options.

A test marked ``@pytest.mark.threadcheck_explore(budget=..., strategy=...)``
that takes the ``threadcheck_reactor`` fixture is run once per schedule, each
time with a fresh scheduled reactor (never the global one, so pytest-twisted's
reactor is left alone); it returns None, a Deferred or a coroutine. Its other
fixtures are set up once for the whole exploration.

The plugin's hooks (``_pytest_plugin``) call into this module only when a
marked test runs, so the scheduler is imported only then.

Thread safety: everything here runs in pytest's main thread.
"""

from __future__ import annotations

import inspect
import shlex
import sys
from dataclasses import dataclass, field
from typing import Any

import pytest

from threadcheck._sched._explore import Budget, ExploreResult, Settings, Shard

MARKER = "threadcheck_explore"
SHARD_ARGUMENT = "_threadcheck_shard"
TOKEN_PROPERTY = "threadcheck_token"
STATS_PROPERTY = "threadcheck_schedules"
_MARKER_ARGUMENTS = {"budget", "seconds", "strategy", "seed", "granularity"}


@dataclass(frozen=True)
class Options:
    """The command line's say over every exploration of the session."""

    budget: Budget | None = None
    replay: str | None = None
    seed: int | None = None
    shard: Shard = field(default_factory=Shard)


def parse_budget(text: str) -> Budget:
    """``2000`` schedules, or ``30s`` of exploring."""
    try:
        if text.endswith("s"):
            seconds = float(text[:-1])
            if seconds > 0:
                return Budget(None, seconds)
        elif int(text) > 0:
            return Budget(int(text))
    except ValueError:
        pass
    raise ValueError(
        f"--threadcheck-explore={text}: give a schedule count (2000) or seconds (30s)"
    )


def parse_shard(text: str) -> Shard:
    """``i/n``, counted from 1 as CI matrices count."""
    number, _, count = text.partition("/")
    try:
        return Shard(int(number) - 1, int(count))
    except ValueError:
        raise ValueError(
            f"--threadcheck-shard={text}: give i/n with 1 <= i <= n, e.g. 1/4"
        ) from None


def options_from(config: pytest.Config) -> Options:
    """The exploration options; ValueError with a one-line message when one is bad."""
    option = config.option
    token = option.threadcheck_replay
    if token is not None:
        from threadcheck._sched import _token

        _token.decode(token)  # a mangled token fails here, before any test runs
    return Options(
        budget=parse_budget(option.threadcheck_explore) if option.threadcheck_explore else None,
        replay=token,
        seed=option.threadcheck_seed,
        shard=parse_shard(option.threadcheck_shard) if option.threadcheck_shard else Shard(),
    )


def xdist_parts(config: pytest.Config) -> int:
    """How many parts each exploration is split into: one per pytest-xdist worker."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or config.option.threadcheck_replay:
        return 1
    return int(workerinput.get("workercount", 1))


def marker_settings(item: pytest.Item) -> dict[str, Any]:
    marker = item.get_closest_marker(MARKER)
    assert marker is not None
    if marker.args:
        raise pytest.UsageError(f"{item.nodeid}: {MARKER} takes keyword arguments only")
    unknown = set(marker.kwargs) - _MARKER_ARGUMENTS
    if unknown:
        raise pytest.UsageError(
            f"{item.nodeid}: {MARKER} has no argument {', '.join(sorted(unknown))} "
            f"(it takes {', '.join(sorted(_MARKER_ARGUMENTS))})"
        )
    return dict(marker.kwargs)


def run_item(item: pytest.Function, options: Options) -> None:
    """Explore (or replay) ``item``; fail it with the report when a schedule fails."""
    from threadcheck._sched._explore import explore, replay
    from threadcheck._sched._progress import Progress
    from threadcheck._sched._targets import ScenarioTarget
    from threadcheck._sched.strategies import ReplayDivergenceError

    settings = marker_settings(item)
    nodeid = _unsharded_nodeid(item)
    target = ScenarioTarget(_scenario(item))
    target.description = nodeid
    explore_settings = Settings(granularity=settings.get("granularity", "access"))
    if options.replay is not None:
        diverged: str | None = None
        try:
            result = replay(target, options.replay, warn=_warn)
        except ReplayDivergenceError as error:
            diverged = str(error)
        if diverged is not None:
            pytest.fail(f"threadcheck: {diverged}", pytrace=False)
        result.replay_command = replay_command(nodeid, options.replay)
        _record(item, result)
        if result.found:
            pytest.fail(result.report(), pytrace=False)
        return
    strategy = settings.get("strategy")
    shard = _shard_of(item, options.shard, strategy)
    if shard is None:
        pytest.skip("a bounded search runs whole, in the first shard")
    budget = options.budget or Budget(settings.get("budget", 2000), settings.get("seconds"))
    seed = options.seed if options.seed is not None else settings.get("seed", 0)
    with Progress(sys.__stderr__ or sys.stderr) as progress:
        result = explore(
            target,
            budget=budget,
            strategy=strategy,
            seed=seed,
            settings=explore_settings,
            replay_command=lambda token: replay_command(nodeid, token),
            progress=progress,
            shard=shard,
        )
    _record(item, result)
    if result.found:
        pytest.fail(result.report(), pytrace=False)


def replay_command(nodeid: str, token: str) -> str:
    return f"pytest {shlex.quote(nodeid)} --threadcheck-replay={token}"


def _scenario(item: pytest.Function) -> Any:
    """``scenario(reactor)``: the test function with this schedule's reactor."""
    from twisted.internet.defer import Deferred

    function = item.obj
    arguments = {name: item.funcargs[name] for name in item._fixtureinfo.argnames}

    def scenario(reactor: Any) -> Any:
        result = function(**{**arguments, "threadcheck_reactor": reactor})
        if inspect.iscoroutine(result):
            return Deferred.fromCoroutine(result)
        return result

    scenario.__name__ = item.name
    return scenario


def _shard_of(item: pytest.Function, shard: Shard, strategy: str | None) -> Shard | None:
    """This item's shard: the command line's, split again among xdist workers."""
    part = _part(item)
    if part is not None:
        shard = shard.split(part[1], part[0])
    if shard.count > 1 and (strategy or "").startswith("bounded"):
        return Shard() if shard.number == 0 else None
    return shard


def _part(item: pytest.Function) -> tuple[int, int] | None:
    part = item.funcargs.get(SHARD_ARGUMENT)
    return part if isinstance(part, tuple) else None


def shard_id(part: int, parts: int) -> str:
    return f"threadcheck-part{part + 1}of{parts}"


def _unsharded_nodeid(item: pytest.Function) -> str:
    """The node id a user would type: without the part an xdist worker ran."""
    part = _part(item)
    if part is None:
        return item.nodeid
    name = shard_id(*part)
    for spelled, plain in ((f"[{name}]", ""), (f"-{name}]", "]"), (f"[{name}-", "[")):
        if spelled in item.nodeid:
            return item.nodeid.replace(spelled, plain)
    return item.nodeid


def _record(item: pytest.Item, result: ExploreResult) -> None:
    # user_properties travel with the report: to junitxml, and from xdist workers.
    item.user_properties.append(
        (STATS_PROPERTY, f"{result.schedules} {result.seconds:.3f} {int(result.found)}")
    )
    if result.token is not None:
        item.user_properties.append((TOKEN_PROPERTY, result.token))


def _warn(message: str) -> None:
    import warnings

    warnings.warn(f"threadcheck: {message}", stacklevel=1)


@dataclass
class Totals:
    """The session's explorations, for the terminal summary."""

    tests: int = 0
    schedules: int = 0
    seconds: float = 0.0
    failed: int = 0

    def add(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == STATS_PROPERTY:
                schedules, seconds, found = str(value).split()
                self.tests += 1
                self.schedules += int(schedules)
                self.seconds += float(seconds)
                self.failed += int(found)

    def line(self) -> str:
        rate = self.schedules / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.tests} exploration{'s' if self.tests != 1 else ''}: "
            f"{self.schedules} schedules in {self.seconds:.1f} s of exploring "
            f"({rate:.0f}/s), {self.failed} failing"
        )
