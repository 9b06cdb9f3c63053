"""Exploring and replaying: schedules until one fails, then shrunk and reported.

:func:`explore` runs a strategy's schedules through an
:class:`~threadcheck._sched._runner.Explorer` within a budget (sharded over
processes if asked); a failure is checked against the no-preemption schedule,
shrunk and given a replay token. :func:`replay` reruns a token's schedule
exactly. The drivers of the scheduler: they import the runner, the shrinker
and the report, never the other way round.

Thread safety: one exploration at a time per thread.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from threadcheck import _arguments
from threadcheck._sched import _token
from threadcheck._sched._core import BLOCKED, REAL_IO, OutOfTime, Strategy, format_seconds
from threadcheck._sched._points import DEFAULT_GRANULARITY
from threadcheck._sched._report import ExploreResult, ScheduleRun
from threadcheck._sched._runner import (
    DEFAULT_STALL_TIMEOUT,
    Explorer,
    Settings,
    Target,
    environment,
    make_token,
    rewritten_at_access,
    run_plan,
)
from threadcheck._sched._seed import hash_seed
from threadcheck._sched._shrink import shrink_failure
from threadcheck._sched.strategies import Replay, ReplayDivergenceError
from threadcheck._sched.strategies import parse as parse_strategy
from threadcheck._sched.strategies.dpor import DIVERGED, DIVERGED_BY_REAL_IO

DEFAULT_BUDGET = 2000


@dataclass
class Budget:
    schedules: int | None = DEFAULT_BUDGET
    """Schedule indices 0 to ``schedules - 1`` (over every shard together)."""
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.schedules is not None:  # None: bounded by time alone
            _arguments.require("budget", self.schedules, _arguments.count)
        _arguments.require("seconds", self.seconds, _arguments.seconds)

    def allows(self, index: int, started: float) -> bool:
        if self.schedules is not None and index >= self.schedules:
            return False
        return self.seconds is None or time.monotonic() - started < self.seconds

    def describe(self) -> str:
        """As a report says it: ``budget 2000``, ``budget 30 s``."""
        if self.seconds is not None:
            return f"budget {self.seconds:g} s"
        return f"budget {self.schedules}"


SHARD_BLOCK = 3
"""Consecutive indices that go to one shard: the portfolio's members take
turns by index, so every shard gets each member in turn."""


@dataclass(frozen=True)
class Shard:
    """Shard ``number`` of ``count`` (from 0) runs the blocks of schedule indices
    ``number``, ``number + count``, ...: shards never run the same schedule, and
    together they run the indices one unsharded exploration would."""

    number: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.number < self.count:
            raise ValueError(f"shard {self.number + 1}/{self.count} does not exist")

    def indices(self) -> Iterator[int]:
        for block in itertools.count(self.number, self.count):
            yield from range(block * SHARD_BLOCK, (block + 1) * SHARD_BLOCK)

    def split(self, parts: int, part: int) -> Shard:
        """Part ``part`` of ``parts`` of this shard (pytest-xdist workers split one)."""
        return Shard(self.number * parts + part, self.count * parts)


def explore(
    target: Target,
    *,
    budget: Budget,
    strategy: str | None = None,
    seed: int = 0,
    settings: Settings = Settings(),
    shrink: bool = True,
    replay_command: Callable[[str], str] = lambda token: token,
    progress: Callable[[int, int, float], None] | None = None,
    shrink_progress: Callable[[int, int], None] | None = None,
    shard: Shard = Shard(),
) -> ExploreResult:
    """Run schedules of ``target`` until one fails or the budget is spent.

    ``progress(schedules, failures, seconds)`` is called after each schedule and
    ``shrink_progress(attempts, preemptions)`` before each shrinking attempt;
    either may raise KeyboardInterrupt (Ctrl-C while shrinking keeps the failure).
    """
    chosen = checked_strategy(strategy, seed, settings.granularity, shard.count)
    settings = rewritten_at_access(settings)
    proving = False  # set once the strategy says its search is over (dpor's)
    env = environment(settings)
    started = time.monotonic()
    about = _About(target, strategy or "portfolio", seed, budget, env, started, replay_command)
    digests: set[str] = set()
    ran = 0
    exhausted = False
    spent_before_any = False
    thinned: set[str] = set()
    left_out: tuple[str, ...] = ()  # by a search that finished, and the budget went on
    with Explorer(target, settings, random_seed=seed) as explorer:
        if budget.seconds is not None:
            explorer.watchdog.deadline = started + budget.seconds
        try:
            warm = explorer.warm_up()
        except OutOfTime:
            warm = None
        if warm is None:
            spent_before_any = True
        elif warm.failure is not None and warm.failure.hangs:
            digests.add(_decisions_key(warm))
            return _found(explorer, warm, 1, digests, about, shrink, shrink_progress)
        elif progress is not None:  # Ctrl-C during a long warm-up: no schedule begins
            progress(0, 0, time.monotonic() - started)
        for index in shard.indices() if warm is not None else ():
            if not budget.allows(index, started):
                spent_before_any = ran == 0
                break
            try:
                run = explorer.run(chosen, index, record_trace=False)
            except OutOfTime:  # cut short: the budget was spent during it
                spent_before_any = ran == 0
                break
            if run is None and thinned and getattr(chosen, "go_on_unproved", _no)():
                # The default's search finished, but is no proof (a daemon held
                # while time passed, a loop's steps past the bound): what it left
                # out, its members may still find, with the rest of the budget.
                left_out = tuple(sorted(thinned))
                run = explorer.run(chosen, index, record_trace=False)
            if run is None:
                exhausted = True
                proving = getattr(chosen, "exhausted", False) is True
                break
            ran += 1
            thinned |= run.thinned | _caveats(chosen, run.thinned)
            digests.add(_decisions_key(run))
            if run.failure is not None:  # before progress, whose Ctrl-C would lose it
                return _found(explorer, run, ran, digests, about, shrink, shrink_progress)
            if progress is not None:
                progress(ran, 0, time.monotonic() - started)
    return ExploreResult(
        found=False,
        schedules=ran,
        distinct=len(digests),
        seconds=time.monotonic() - started,
        exhausted=exhausted,
        proof=proving and not thinned,
        thinned=tuple(sorted(thinned)) if proving else left_out,
        scope=_scope(settings, seed),
        strategy=about.strategy,
        seed=seed,
        target=target.description,
        budget=budget.describe(),
        environment=env,
        budget_spent_before_any=spent_before_any,
    )


def _no() -> bool:
    return False


def _scope(settings: Settings, seed: int) -> str:
    """What "every interleaving" is within, as the proof says it: a program that
    draws random numbers, or hashes strings, takes one path per seed."""
    held = (
        f"threads held at most {format_seconds(settings.max_delay)} while time passes"
        if settings.max_delay
        else "time passing only when every thread waits"
    )
    hashes = hash_seed()
    seeds = f"random draws of seed {seed}, string hashes of " + (
        "this process" if hashes == "random" else f"PYTHONHASHSEED={hashes}"
    )
    stripped = ", assert statements stripped (python -O)" if sys.flags.optimize else ""
    return f"points at granularity {settings.granularity!r}, {held}, {seeds}{stripped}"


def asserts_stripped(optimize: int) -> str:
    """How a run with ``sys.flags.optimize`` at ``optimize`` treats asserts."""
    return "assert statements stripped (python -O)" if optimize else "assert statements kept"


@dataclass(frozen=True)
class _About:
    """What an exploration's result says besides its schedules."""

    target: Target
    strategy: str
    seed: int
    budget: Budget
    environment: dict[str, Any]
    started: float
    replay_command: Callable[[str], str]


def _found(
    explorer: Explorer,
    run: ScheduleRun,
    ran: int,
    digests: set[str],
    about: _About,
    shrink: bool,
    shrink_progress: Callable[[int, int], None] | None,
) -> ExploreResult:
    """Schedule ``ran`` failed: whether every schedule fails so, shrunk, reported."""
    assert run.failure is not None
    explorer.watchdog.deadline = None  # the time budget bounds the search, not its report
    explorer.alarm.reporting = True  # a test timeout now stops the shrinking, not the report
    found_at = ran
    original = run.preemption_count
    every_schedule = False
    rechecked = True
    if ran == 1 and not run.failure.hangs:
        try:
            extra, plain = _on_every_schedule(explorer, run, shrink_progress)
        except KeyboardInterrupt:  # Ctrl-C: the failure as found, neither checked nor shrunk
            extra, plain, rechecked = [], None, False
        ran += len(extra)
        digests.update(_decisions_key(other) for other in extra)
        every_schedule = plain is not None
        run = plain or run
    shown, interrupted, unshrunk = _shown(
        explorer, run, shrink and rechecked and not every_schedule, shrink_progress
    )
    interrupted = interrupted or not rechecked
    token = make_token(
        shown,
        about.environment,
        about.strategy,
        about.seed,
        about.target,
        rerun_diverged=(unshrunk or "").startswith(WENT_ELSEWHERE),
    )
    found_run = None
    if shown is not run and not interrupted and shown.decisions != run.decisions:
        found_run = _traced_or_none(explorer, run)
    result = ExploreResult(
        found=True,
        schedules=ran,
        distinct=len(digests),
        seconds=time.monotonic() - about.started,
        failure=shown.failure,
        run=shown,
        found_run=found_run,
        found_at=found_at,
        original_preemptions=original,
        every_schedule=every_schedule,
        shrink_interrupted=interrupted,
        unshrunk=unshrunk,
        token=token,
        replay_command=about.replay_command(token),
        strategy=about.strategy,
        seed=about.seed,
        target=about.target.description,
        budget=about.budget.describe(),
        environment=about.environment,
    )
    if explorer.alarm.stopped_reporting:
        result.interrupted_by = "the test's timeout"
    return result


def checked_strategy(strategy: str | None, seed: int, granularity: str, shards: int) -> Strategy:
    """The strategy ``strategy`` names, for ``granularity`` in ``shards``; a
    ValueError that says what to change when they do not go together (a
    user's choice, not an internal error)."""
    chosen = parse_strategy(
        strategy, seed, prove=shards == 1 and granularity == DEFAULT_GRANULARITY
    )
    if getattr(chosen, "rewrites_code", False) and granularity != DEFAULT_GRANULARITY:
        raise ValueError(
            f"the dpor strategy reasons on accesses: it needs granularity "
            f"{DEFAULT_GRANULARITY!r}, not {granularity!r}"
        )
    if shards > 1 and not getattr(chosen, "shardable", True):
        raise ValueError(f"the {strategy} strategy cannot be sharded: it searches in order")
    return chosen


def _caveats(chosen: Strategy, thinned: frozenset[str]) -> frozenset[str]:
    """Why the strategy's exhaustion would be no proof: runs that did not repeat
    themselves are put down to real I/O when the run waited on some (Z48: to
    state kept between runs, which neither of two programs on sockets kept)."""
    caveats: frozenset[str] = getattr(chosen, "caveats", frozenset())
    if REAL_IO in thinned and caveats & DIVERGED:
        return (caveats - DIVERGED) | DIVERGED_BY_REAL_IO
    return caveats


def _decisions_key(run: ScheduleRun) -> str:
    """Tells schedules apart, for the distinct count."""
    return str(hash(tuple(run.decisions)))


def _on_every_schedule(
    explorer: Explorer, first: ScheduleRun, progress: Callable[[int, int], None] | None
) -> tuple[list[ScheduleRun], ScheduleRun | None]:
    """After a failure on the first schedule: does it fail on the no-preemption
    schedule and on another one too (or is there no other: one thread all along)?

    Returns the extra schedules run, and the no-preemption one when the answer
    is yes: then the failure is not an interleaving bug, and is shown as is.
    ``progress`` is called before each (its KeyboardInterrupt stops the check).
    """
    extra: list[ScheduleRun] = []
    plain = first
    if progress is not None:
        progress(0, first.preemption_count)
    if first.preemption_count:
        plain = run_plan(explorer, [])[0]
        extra.append(plain)
        if not _same_failure(plain, first):
            return extra, None
    if _switched_by_force(plain):
        # Its threads took fair turns (a job spinning 256 points while another
        # waited): switched as a preemption would, it is no proof of a bug that
        # needs no interleaving.
        return extra, None
    for other in _other_schedules(explorer, plain):
        if other is None:  # cut short by time: not known to fail on every schedule
            return extra, None
        if progress is not None:
            progress(0, first.preemption_count)
        extra.append(other)
        if not _same_failure(other, first):
            return extra, None
    return extra, plain


def _switched_by_force(run: ScheduleRun) -> bool:
    """Whether ``run``'s threads were switched by a bound, not by its decisions."""
    return any(why.startswith(("the fairness bound", "the step bound")) for why in run.thinned)


OTHER_SCHEDULES = 40
"""Schedules of the default search tried, besides the no-preemption one and one
preemption at its first choice, before a failure is called one that does not
depend on the interleaving (a lost update that a second job started 200 ms
late avoids: its search found that schedule within 6 to 26)."""

OTHER_SECONDS = 10.0
"""Real seconds those may take in all (schedules that wait on real I/O are slow)."""


def _other_schedules(explorer: Explorer, first: ScheduleRun) -> Iterator[ScheduleRun | None]:
    """After a failure on the no-preemption schedule: different schedules, one
    preemption at its first choice, then the default search's first ones (none
    when one thread ran all along). A failure that needs one thread late (work
    lost at shutdown) passes on one of them, however far into the run it is
    decided; one that a thread held while time passes avoids (a lost update
    whose second job starts 200 ms later) needs the search's time decisions."""
    alternatives = (
        (decision, tid)
        for decision, (_, default, runnable) in enumerate(first.choices)
        for tid in runnable
        if tid != default
    )
    preemption = next(alternatives, None)
    if preemption is None:
        return
    yield run_plan(explorer, [preemption])[0]
    prove = explorer.settings.granularity == DEFAULT_GRANULARITY
    search = parse_strategy("portfolio", explorer.random_seed, prove=prove)
    until = time.monotonic() + OTHER_SECONDS
    for index in range(OTHER_SCHEDULES):
        if time.monotonic() > until:
            yield None  # out of time before the search had its say
            return
        run = explorer.run(search, index, record_trace=False)
        if run is None:
            return  # every interleaving explored
        yield run


def _same_failure(run: ScheduleRun, other: ScheduleRun) -> bool:
    assert other.failure is not None
    return run.failure is not None and run.failure.signature() == other.failure.signature()


WENT_ELSEWHERE = "it went elsewhere when rerun"


def _shown(
    explorer: Explorer,
    run: ScheduleRun,
    shrink: bool,
    progress: Callable[[int, int], None] | None,
) -> tuple[ScheduleRun, bool, str | None]:
    """The failing schedule to report, traced: shrunk unless told not to. Else
    the run as found, and why (its token still replays it)."""
    assert run.failure is not None
    if run.failure.hangs:
        again = "block" if run.failure.kind == BLOCKED else "wait"
        return run, False, f"a rerun would {again} again"
    try:
        shown, interrupted = (
            shrink_failure(explorer, run, progress=progress)
            if shrink
            else (explorer.rerun(run), False)
        )
    except ReplayDivergenceError as error:
        return run, False, f"{WENT_ELSEWHERE} ({error})"
    if not _same_failure(shown, run):
        return run, False, "it did not fail the same way when rerun"
    return shown, interrupted, None


def _traced_or_none(explorer: Explorer, run: ScheduleRun) -> ScheduleRun | None:
    """``run`` again, traced, for the report to show beside its shrunk form; None
    when it does not fail the same way again (the report does not need it)."""
    try:
        again = explorer.rerun(run)
    except ReplayDivergenceError:
        return None
    return again if _same_failure(again, run) else None


def replay(
    target: Target,
    token: str,
    *,
    stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    warn: Callable[[str], None] = lambda message: None,
) -> ExploreResult:
    """Rerun exactly the schedule in ``token``; ReplayDivergenceError if it goes elsewhere."""
    document = _token.decode(token)
    rewritten = bool(document.get("rewritten", False))
    settings = Settings(
        granularity=document.get("granularity", DEFAULT_GRANULARITY),
        include=tuple(document.get("include", ())),
        max_delay=float(document.get("max_delay", 0.0)),
        stall_timeout=stall_timeout,
        races=bool(document.get("races", False)),
        footprints=rewritten,  # its code ran as explored
        helper_points=rewritten,  # and took its points so
    )
    seed = int(document.get("seed", 0))
    env = environment(settings)
    for key in ("python", "twisted", "threadcheck", "hashseed"):
        if document.get(key) != env[key]:
            warn(
                f"the token was recorded with {key} {document.get(key)}, this run has "
                f"{env[key]}: replay is best effort"
            )
    recorded_optimize = int(document.get("optimize", 0))
    if recorded_optimize != env["optimize"]:  # the asserts that fail, or not, differ
        how = (
            f"with PYTHONOPTIMIZE={recorded_optimize} set"
            if recorded_optimize
            else "without -O (PYTHONOPTIMIZE unset)"
        )
        warn(
            f"the token was recorded with {asserts_stripped(recorded_optimize)}, this run "
            f"has {asserts_stripped(env['optimize'])}: replay it {how}"
        )
    started = time.monotonic()
    strategy = Replay(_token.expand(document["decisions"]))
    with Explorer(target, settings, random_seed=seed) as explorer:
        explorer.warm_up()
        try:
            run = explorer.run(strategy, 0, entropy=str(document.get("entropy", "")))
        except ReplayDivergenceError as error:  # noticed in the middle of the run
            raise _diverged(document, [" ".join(str(error).split())]) from None
    assert run is not None
    _check_same_run(document, run, strategy)
    moved = _points_moved(document, run)
    if moved:
        # The same decisions, the same failure, at other lines: the code moved (a
        # scenario's lambda written again elsewhere, a line added). It replayed.
        warn(
            f"the replay's points are at other lines than recorded {moved}: the code "
            "changed since; the same failure replayed"
        )
    return ExploreResult(
        found=run.failure is not None,
        schedules=1,
        distinct=1,
        strategy="replay",
        seed=seed,
        target=target.description,
        seconds=time.monotonic() - started,
        failure=run.failure,
        run=run,
        found_at=1 if run.failure else None,
        token=token,
        environment=env,
    )


def _check_same_run(document: dict[str, Any], run: ScheduleRun, strategy: Replay) -> None:
    signature = run.failure.signature() if run.failure else "no failure"
    problems = []
    if not strategy.exhausted():
        problems.append("it made fewer decisions than recorded")
    if signature != document.get("failure"):
        problems.append(f"it ended in {signature!r}, recorded {document.get('failure')!r}")
        moved = _points_moved(document, run)
        if moved:
            problems.append(f"its points differ {moved}")
    if problems:
        raise _diverged(document, problems)


def _points_moved(document: dict[str, Any], run: ScheduleRun) -> str | None:
    """``(digest ..., recorded ...)`` when ``run``'s points differ from the recorded
    ones (a token recorded untraced has no digest to compare); else None."""
    recorded = document.get("digest")
    if not recorded or run.digest == recorded:
        return None
    return f"(digest {run.digest}, recorded {recorded})"


def _diverged(document: dict[str, Any], problems: list[str]) -> ReplayDivergenceError:
    if document.get("real_io"):  # the likelier cause, said first (Z48)
        problems.append(
            "it waited on real sockets or pipes when it was recorded, whose timing a "
            "replay cannot repeat"
        )
    if document.get("rerun_diverged"):  # in its own process: not the hash seed
        problems.append("so did the exploration's own rerun of it, in the process that found it")
    elif document.get("hashseed") == "random":  # a pytest session's, unless it was set
        problems.append(
            "it was recorded with random string hashes (PYTHONHASHSEED unset), so "
            "sets of strings may iterate in another order here: record it again "
            "with PYTHONHASHSEED=0 set"
        )
    return ReplayDivergenceError("the replay diverged: " + "; ".join(problems))
