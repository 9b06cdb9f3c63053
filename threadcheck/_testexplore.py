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
import json
import math
import os
import re
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pytest

from threadcheck import _arguments
from threadcheck._sched._core import DEFAULT_MAX_DELAY
from threadcheck._sched._explore import Budget, Shard
from threadcheck._sched._report import ExploreResult
from threadcheck._sched._runner import Settings
from threadcheck._stress import PYTEST_OUTCOMES
from threadcheck._text import internal_error, plural

MARKER = "threadcheck_explore"
STRESS_MARKER = "threadcheck_stress"
MARKERS = (MARKER, STRESS_MARKER)
SHARD_ARGUMENT = "_threadcheck_shard"
TOKEN_PROPERTY = "threadcheck_token"
SCHEDULE_PROPERTY = "threadcheck_schedule"
"""A failing schedule as JSON, for the session page (``--threadcheck-html``)."""
STATS_PROPERTY = "threadcheck_schedules"
STRESS_PROPERTY = "threadcheck_stress_runs"
_ARGUMENTS = {
    MARKER: {
        "budget",
        "seconds",
        "strategy",
        "seed",
        "granularity",
        "max_delay",
        "races",
        "include",
    },
    STRESS_MARKER: {"runs", "seconds", "acceptable", "forbidden", "yield_probability", "seed"},
}


@dataclass(frozen=True)
class Options:
    """The command line's say over every exploration of the session."""

    budget: Budget | None = None
    replay: str | None = None
    seed: int | None = None
    shard: Shard = field(default_factory=Shard)
    stress: Budget | None = None
    """--threadcheck-stress: explorations run on real threads instead."""


def parse_budget(text: str, option: str = "--threadcheck-explore") -> Budget:
    """``2000`` schedules (or runs), or ``30s``."""
    try:
        if text.endswith("s"):
            seconds = float(text[:-1])
            if seconds > 0 and math.isfinite(seconds):
                return Budget(None, seconds)
        elif int(text) > 0:
            return Budget(int(text))
    except ValueError:
        pass
    raise ValueError(f"{option}={text}: give a count (2000) or seconds (30s)")


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
        stress=(
            parse_budget(option.threadcheck_stress, "--threadcheck-stress")
            if option.threadcheck_stress
            else None
        ),
    )


def recorded_target(token: str) -> str:
    """What ``token`` was recorded from: a test's node id, a program's command
    line, a scenario's ``module:name``."""
    from threadcheck._sched import _token

    return str(_token.decode(token).get("target", ""))


def replayed_test(token: str) -> str | None:
    """The node id of the test ``token`` was recorded from; None for a token
    that is not a test's (a program's, a scenario's)."""
    target = recorded_target(token)
    return target if "::" in target else None


def same_test(recorded: str, nodeid: str) -> bool:
    """Whether node ids name the same test from two folders pytest was run in
    (``test_lost.py::t`` from its folder, ``tests/test_lost.py::t`` from the
    project's root): equal, or one a path ending of the other."""
    return (
        recorded == nodeid
        or f"/{recorded}".endswith(f"/{nodeid}")
        or (f"/{nodeid}".endswith(f"/{recorded}"))
    )


def xdist_parts(config: pytest.Config) -> int:
    """How many parts each exploration is split into: one per pytest-xdist worker."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None or config.option.threadcheck_replay:
        return 1
    return int(workerinput.get("workercount", 1))


def marker_settings(item: pytest.Item, name: str) -> dict[str, Any] | None:
    """The marker's arguments, checked: a bad one fails the test in one line."""
    marker = item.get_closest_marker(name)
    if marker is None:
        return None
    if marker.args:
        _bad_marker(item, name, "takes keyword arguments only")
    unknown = set(marker.kwargs) - _ARGUMENTS[name]
    if unknown:
        _bad_marker(
            item,
            name,
            f"has no argument {', '.join(sorted(unknown))} "
            f"(it takes {', '.join(sorted(_ARGUMENTS[name]))})",
        )
    settings = dict(marker.kwargs)
    for argument, value in settings.items():
        problem = _CHECKS.get(argument, _anything)(value)
        if problem is not None:
            _bad_marker(item, name, f"{argument}={value!r}: {problem}")
    return settings


def _bad_marker(item: pytest.Item, name: str, problem: str) -> NoReturn:
    try:
        pytest.fail(f"{item.nodeid}: {name} {problem}", pytrace=False)
    except pytest.fail.Exception as failed:
        raise failed from None  # one line: not the ValueError it was raised while handling


def _strategy(value: Any) -> str | None:
    if value is None:
        return None
    from threadcheck._sched.strategies import parse

    try:
        parse(value, 0)
    except (TypeError, ValueError, AttributeError) as error:
        return str(error) if isinstance(value, str) else "give a strategy's name"
    return None


def _granularity(value: Any) -> str | None:
    from threadcheck._sched._points import GRANULARITIES

    return None if value in GRANULARITIES else f"choose one of {', '.join(GRANULARITIES)}"


def _anything(value: Any) -> str | None:
    return None


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "give True or False"


_CHECKS = {
    "budget": _arguments.count,
    "runs": _arguments.count,
    "seconds": _arguments.seconds,
    "seed": _arguments.seed,
    "strategy": _strategy,
    "granularity": _granularity,
    "acceptable": _arguments.outcomes,
    "forbidden": _arguments.outcomes,
    "yield_probability": _arguments.probability,
    "include": _arguments.names,
    "races": _boolean,
}
"""Each marker argument's check: None, or what is wrong (max_delay is checked
by :class:`Settings`)."""


def _explore_settings(item: pytest.Item, settings: dict[str, Any]) -> Settings:
    from threadcheck._stacks import include_paths

    try:
        return Settings(
            granularity=settings.get("granularity", "access"),
            max_delay=settings.get("max_delay", DEFAULT_MAX_DELAY),
            races=bool(settings.get("races", False)),
            include=include_paths(settings.get("include", ())),
        )
    except (TypeError, ValueError) as error:
        _bad_marker(item, MARKER, str(error))


def run_item(item: pytest.Function, options: Options) -> None:
    """Explore, replay or stress ``item``; fail it with the report when a run fails."""
    # A rerun (pytest-rerunfailures) starts with the figures of its attempt alone:
    # each earlier attempt's report holds its own, counted once.
    ours = (STATS_PROPERTY, STRESS_PROPERTY, SCHEDULE_PROPERTY)
    item.user_properties[:] = [p for p in item.user_properties if p[0] not in ours]
    stressed = marker_settings(item, STRESS_MARKER)
    if stressed is not None or (options.stress is not None and options.replay is None):
        _stress_item(item, options, stressed or {})
    else:
        _explore_item(item, options, marker_settings(item, MARKER) or {})


def _explore_item(item: pytest.Function, options: Options, settings: dict[str, Any]) -> None:
    began = time.monotonic()
    try:
        _explore_or_replay(item, options, settings)
        return
    except Exception as error:  # ours: the test's own errors are schedule failures
        said = internal_error(error, options.replay)
    if not any(name == STATS_PROPERTY for name, _ in item.user_properties):
        # Ended in one line (a pool never started, the global reactor as imported):
        # an exploration all the same, failing, in the session's summary.
        item.user_properties.append(_stats(0, time.monotonic() - began, True, proof=False))
    pytest.fail(said, pytrace=False)  # out of the except: one line, not the chain


def _explore_or_replay(item: pytest.Function, options: Options, settings: dict[str, Any]) -> None:
    from threadcheck._sched._explore import checked_strategy, explore, replay
    from threadcheck._sched._progress import Progress
    from threadcheck._sched._targets import ScenarioTarget
    from threadcheck._sched.strategies import ReplayDivergenceError

    nodeid = _unsharded_nodeid(item)
    target = ScenarioTarget(_scenario(item))
    target.description = nodeid
    typed = shlex.quote(_as_typed_here(item, nodeid)) + _collected_with(item)  # where pytest ran
    explore_settings = _explore_settings(item, settings)
    if options.replay is not None:
        recorded = replayed_test(options.replay)
        if recorded is not None and not same_test(recorded, nodeid):
            # Its decisions are another test's: replayed here, a correct test failed.
            _skip(f"--threadcheck-replay: the token is of {recorded}")
        diverged: str | None = None
        began = time.monotonic()
        try:
            result = replay(target, options.replay, warn=_warn)
        except ReplayDivergenceError as error:
            diverged = str(error)
        if diverged is not None:  # one schedule, failing: counted in the summary
            seconds = time.monotonic() - began
            item.user_properties.append(_stats(1, seconds, found=True, proof=False))
            pytest.fail(f"threadcheck: {diverged}", pytrace=False)
        result.replay_command = replay_command(typed, options.replay)
        _decided_by_the_test(result)
        _record(item, result)
        if result.found:
            pytest.fail(result.report(), pytrace=False)
        return
    strategy = settings.get("strategy")
    shard = _shard_of(item, options.shard, strategy)
    if shard is None:
        _skip(f"a {strategy} search runs whole, in the first part")
    budget = options.budget or marker_budget(settings)
    if budget.seconds is None and 0 < (budget.schedules or 0) <= next(shard.indices()):
        _skip(f"budget {budget.schedules}: each of its schedules falls to an earlier part")
    seed = options.seed if options.seed is not None else settings.get("seed", 0)
    try:
        checked_strategy(strategy, seed, explore_settings.granularity, shard.count)
    except ValueError as error:
        _bad_marker(item, MARKER, str(error))
    with Progress(sys.__stderr__ or sys.stderr) as progress:
        result = explore(
            target,
            budget=budget,
            strategy=strategy,
            seed=seed,
            settings=explore_settings,
            replay_command=lambda token: replay_command(typed, token),
            progress=progress,
            shrink_progress=progress.shrinking,
            shard=shard,
        )
    _decided_by_the_test(result)
    _record(item, result)
    if result.found or result.inconclusive:
        pytest.fail(result.report(), pytrace=False)


def _skip(reason: str) -> NoReturn:
    """Skip the test, shown at the test's own line (not at this module's)."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


def _decided_by_the_test(result: ExploreResult) -> None:
    """The scenario called ``pytest.skip``, ``importorskip``, ``xfail`` or ``exit``
    (a module not installed, a service not there): the test's outcome, raised
    again for pytest, not an interleaving's failure."""
    failure = result.failure
    if failure is None or failure.kind != "exception" or failure.what not in PYTEST_OUTCOMES:
        return
    if os.path.join("_pytest", "outcomes.py") not in (failure.details or ""):
        return  # the program's own class of that name
    reason = failure.message.partition(": ")[2]
    if failure.what == "Skipped":  # shown at the test, as a skip marker's is
        raise pytest.skip.Exception(reason, _use_item_location=True)
    if failure.what == "XFailed":
        pytest.xfail(reason)
    pytest.exit(reason)


def _stress_item(item: pytest.Function, options: Options, settings: dict[str, Any]) -> None:
    """Run the test many times on real threads; fail on a forbidden outcome."""
    from threadcheck._sched._progress import Progress
    from threadcheck._stress import DEFAULT_RUNS, DEFAULT_YIELD_PROBABILITY, stress

    budget = options.stress or Budget(settings.get("runs", DEFAULT_RUNS), settings.get("seconds"))
    runs = budget.schedules
    part = _part(item)
    if part is not None and runs is not None:  # xdist workers share the runs
        runs = runs // part[1] + (1 if part[0] < runs % part[1] else 0)
        if runs == 0 and budget.schedules:
            _skip(f"runs={budget.schedules}: fewer runs than parts, run by the first")
    seed = options.seed if options.seed is not None else settings.get("seed")
    with Progress(sys.__stderr__ or sys.stderr) as progress:
        result = stress(
            _scenario(item),
            runs,
            seconds=budget.seconds,
            acceptable=settings.get("acceptable"),
            forbidden=settings.get("forbidden", ()),
            yield_probability=settings.get("yield_probability", DEFAULT_YIELD_PROBABILITY),
            seed=None if seed is None else seed + (part[0] if part else 0),
            progress=progress,
        )
    failures = sum(n for o, n in result.histogram.items() if result.is_forbidden(o))
    item.user_properties.append(
        (STRESS_PROPERTY, f"{result.runs} {result.seconds:.3f} {int(result.failed)} {failures}")
    )
    if result.failed or result.inconclusive:
        pytest.fail(result.report(), pytrace=False)


def _as_typed_here(item: pytest.Item, nodeid: str) -> str:
    """``nodeid`` (relative to the rootdir) as typed in the directory pytest was
    run from: ``tests/test_x.py::t`` is ``test_x.py::t`` from ``tests/``."""
    path, sep, rest = nodeid.partition("::")
    here = item.config.invocation_params.dir
    try:
        relative = os.path.relpath(item.config.rootpath / path, here)
    except ValueError:  # another drive (Windows)
        return nodeid
    return relative + sep + rest


def replay_command(test: str, token: str) -> str:
    """``test``: the test's node id, quoted for the shell, and the options it is
    collected with (see :func:`_collected_with`)."""
    return f"pytest {test} --threadcheck-replay={token}"


REPEAT_PARAMETER = "__pytest_repeat_step_number"
"""pytest-repeat's parameter: ``--count 2`` collects ``test[1-2]`` and ``test[2-2]``."""


def _collected_with(item: pytest.Item) -> str:
    """The options without which the test's node id is not collected again: the
    count of pytest-repeat's ``--count`` (its ``repeat`` marker is in the code)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or REPEAT_PARAMETER not in callspec.params:
        return ""
    if item.get_closest_marker("repeat") is not None:
        return ""
    count = item.config.getoption("count", None)
    return f" --count {count}" if count else ""


def _scenario(item: pytest.Function) -> Any:
    """``scenario(reactor)``: the test function with this schedule's reactor."""
    from twisted.internet.defer import Deferred

    function = _test_function(item)
    arguments = {name: item.funcargs[name] for name in item._fixtureinfo.argnames}
    shared = item.funcargs.get("threadcheck_reactor")

    def scenario(reactor: Any) -> Any:
        if isinstance(shared, ScheduleReactor):
            shared.running = reactor
        result = function(**{**arguments, "threadcheck_reactor": reactor})
        if inspect.iscoroutine(result):
            return Deferred.fromCoroutine(result)
        return result

    scenario.__name__ = item.name
    scenario.__module__ = function.__module__  # where races=True finds the code to rewrite
    scenario.__wrapped__ = function  # type: ignore[attr-defined]  # ... and the test's own
    # Its own signature, not the test's that __wrapped__ would give: a test with
    # other fixtures (tmp_path, caplog) would read as a scenario taking no reactor.
    scenario.__signature__ = _SCENARIO_SIGNATURE  # type: ignore[attr-defined]
    return scenario


def _test_function(item: pytest.Function) -> Any:
    """The test's function. pytest-asyncio (``asyncio_mode=auto``, or its marker)
    runs an ``async def`` test through a wrapper of its own, which would run the
    coroutine on an asyncio loop: its awaits of Deferreds fail there ("Task got
    bad yield"). An explored one runs on the schedule's reactor, as any other."""
    function = item.obj
    wrapped = getattr(function, "__wrapped__", None)
    if type(item).__module__.startswith("pytest_asyncio") and inspect.iscoroutinefunction(wrapped):
        return wrapped
    return function


class ScheduleReactor:
    """What fixtures that take ``threadcheck_reactor`` get: set up once for the
    whole exploration, they reach the running schedule's reactor through it
    (``Service(threadcheck_reactor)``, then ``self.reactor.callLater``)."""

    running: Any = None

    def __getattr__(self, name: str) -> Any:
        if self.running is None:  # AttributeError: hasattr() and copy's look-ups go on
            raise AttributeError(
                f"threadcheck_reactor.{name}: a fixture's reactor is each schedule's, "
                "there only while the test runs: use it from the test, not while "
                "the fixture is set up"
            )
        return getattr(self.running, name)

    def __repr__(self) -> str:
        return f"<the running schedule's reactor: {self.running!r}>"


_SCENARIO_SIGNATURE = inspect.Signature(
    [inspect.Parameter("reactor", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
)


_IN_ORDER = ("bounded", "dpor")
"""Strategies that search in order: one part runs each whole, the others skip."""


def marker_budget(settings: Mapping[str, Any]) -> Budget:
    """The marker's ``budget=`` schedules (2000, unless ``seconds=`` alone is
    given: it was capped at 2000 schedules, 3 s of the 20 asked) and ``seconds=``."""
    seconds = settings.get("seconds")
    return Budget(settings.get("budget", 2000 if seconds is None else None), seconds)


def _shard_of(item: pytest.Function, shard: Shard, strategy: str | None) -> Shard | None:
    """This item's shard: the command line's, split again among xdist workers."""
    part = _part(item)
    if part is not None:
        shard = shard.split(part[1], part[0])
    if shard.count > 1 and (strategy or "").startswith(_IN_ORDER):
        return Shard() if shard.number == 0 else None
    return shard


def _part(item: pytest.Function) -> tuple[int, int] | None:
    part = item.funcargs.get(SHARD_ARGUMENT)
    return part if isinstance(part, tuple) else None


def shard_id(part: int, parts: int) -> str:
    return f"threadcheck-part{part + 1}of{parts}"


def _unsharded_nodeid(item: pytest.Function) -> str:
    """The node id a user would type: without the part an xdist worker ran."""
    return without_part(item.nodeid)


_PART_ID = re.compile(r"\[threadcheck-part\d+of\d+\]|-threadcheck-part\d+of\d+(?=\])")
_PART_FIRST = re.compile(r"(?<=\[)threadcheck-part\d+of\d+-")


def without_part(nodeid: str) -> str:
    """``nodeid`` without the part of an exploration an xdist worker ran."""
    return _PART_FIRST.sub("", _PART_ID.sub("", nodeid))


def _stats(schedules: int, seconds: float, found: bool, proof: bool) -> tuple[str, str]:
    """An exploration's figures, as the user property :class:`Totals` adds up."""
    return STATS_PROPERTY, f"{schedules} {seconds:.3f} {int(found)} {int(proof)}"


def _record(item: pytest.Item, result: ExploreResult) -> None:
    # user_properties travel with the report: to junitxml, and from xdist workers.
    item.user_properties.append(
        _stats(result.schedules, result.seconds, result.found, result.proof)
    )
    if result.token is not None:
        item.user_properties.append((TOKEN_PROPERTY, result.token))
    if item.config.getoption("threadcheck_html", None):
        item.user_properties.extend(schedule_property(result))


def schedule_property(result: ExploreResult) -> list[tuple[str, str]]:
    """The failing schedule of ``result`` as a user property for the session page."""
    if not result.found or result.run is None:
        return []
    from threadcheck._view._schedule import schedule_view, to_json

    view = to_json(schedule_view(result))
    return [(SCHEDULE_PROPERTY, json.dumps(view, separators=(",", ":")))]


def _warn(message: str) -> None:
    import warnings

    warnings.warn(f"threadcheck: {message}", stacklevel=1)


def _strict_xpass(report: pytest.TestReport) -> bool:
    return str(report.longrepr).startswith("[XPASS(strict)]")


@dataclass
class Totals:
    """The session's explorations (or stress runs), for the terminal summary.
    An exploration split into parts (one per xdist worker) counts once; each
    part that finds a failure fails its own item."""

    kind: str = STATS_PROPERTY
    runs: int = 0
    seconds: float = 0.0
    forbidden_runs: int = 0
    _tests: set[str] = field(default_factory=set)
    _failed: set[str] = field(default_factory=set)
    _proved: set[str] = field(default_factory=set)
    """Explorations whose every interleaving was explored (dpor, or portfolio's phase)."""

    @property
    def tests(self) -> int:
        return len(self._tests)

    @property
    def failed(self) -> int:
        return len(self._failed)

    @property
    def proved(self) -> int:
        return len(self._proved)

    def add(self, report: pytest.TestReport) -> None:
        test = without_part(report.nodeid)
        for name, value in report.user_properties:
            if name == self.kind:
                runs, seconds, failed, *more = str(value).split()
                self._tests.add(test)
                self.runs += int(runs)
                self.seconds += float(seconds)
                # A test failed by something else (a data race, a violation)
                # fails here too, and proved nothing; xfail(strict=True) fails
                # a test whose exploration found nothing: that one passed.
                other = report.failed and not _strict_xpass(report)
                if int(failed) or other:
                    self._failed.add(test)
                extra = int(more[0]) if more else 0
                if self.kind == STRESS_PROPERTY:
                    self.forbidden_runs += extra
                elif not other and extra:
                    self._proved.add(test)

    def line(self) -> str:
        rate = self.runs / self.seconds if self.seconds > 0 else 0.0
        if self.kind == STRESS_PROPERTY:
            return (
                f"{plural(self.tests, 'stress test')}: {plural(self.runs, 'run')} "
                f"on real threads in {self.seconds:.1f} s ({rate:.0f}/s), "
                f"{self.forbidden_runs} with a forbidden outcome, {self.failed} failing"
            )
        return (
            f"{plural(self.tests, 'exploration')}: "
            f"{plural(self.runs, 'schedule')} in {self.seconds:.1f} s of exploring "
            f"({rate:.0f}/s), {self.proved} proved exhaustively, {self.failed} failing"
        )
