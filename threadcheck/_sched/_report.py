"""The result of an exploration and its report: what failed, the shrunk schedule,
how to replay it. Below the explorer, which makes these records."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from threadcheck._sched._core import REAL_IO, Failure, Step, format_seconds
from threadcheck._text import plural

WARM_UP = -1
"""The index of the run made before exploring or replaying (see ``Explorer.warm_up``;
``reactor.schedule_index`` shows it)."""


@dataclass
class ScheduleRun:
    """One schedule: what it decided, where it went, and how it ended."""

    index: int
    failure: Failure | None
    decisions: list[int]
    choices: list[tuple[int, int, tuple[int, ...]]]
    trace: list[Step]
    preemptions: dict[int, str]
    """Step -> how the schedule left the no-preemption default there."""
    steps: int
    digest: str
    thread_names: list[str]
    thinned: frozenset[str] = frozenset()
    """Why some interleavings were left out (see ``Scheduler.thinned``)."""
    longest_hold: tuple[float, str] | None = None
    """The longest a thread was held while time passed: (seconds, the thread)."""
    time_held: float = 0.0
    """Virtual time passed while some thread could run, in all."""
    spawned_at: tuple[int, ...] = ()
    """Per thread, the step that started it (0: not started in the schedule)."""
    entropy: str = ""
    """What seeded the OS randomness it drew (``os.urandom``): a replay draws the same."""
    preemption_count: int = 0
    """Switches away from a thread that could go on, and time passing while
    threads could run (not a choice among threads after one blocked)."""


@dataclass
class ExploreResult:
    """What an exploration found. A spent budget is not a proof: ``found`` is
    False then, and ``exhausted`` tells whether the strategy covered every
    schedule it can produce (bounded search only)."""

    found: bool
    schedules: int
    distinct: int
    strategy: str
    seed: int
    target: str
    seconds: float = 0.0
    exhausted: bool = False
    proof: bool = False
    """Exhausted by the ``dpor`` search with every interleaving of the program's
    points in reach: no schedule within those points fails."""
    thinned: tuple[str, ...] = ()
    """Why some interleavings had no scheduling point (an exhausted search is
    then no proof; the default's, finished so, went on with its budget)."""
    scope: str = ""
    """What "every interleaving" was within: the points and the time bound."""
    failure: Failure | None = None
    run: ScheduleRun | None = None
    """The failing schedule as reported (shrunk)."""
    found_run: ScheduleRun | None = None
    """The failing schedule as found, traced, when ``run`` was shrunk from it."""
    found_at: int | None = None
    original_preemptions: int | None = None
    budget: str = ""
    """How the exploration was bounded (``budget 2000``), for the report."""
    every_schedule: bool = False
    """The failure came on the first schedule, with no preemption, and again on a
    different one (or no other schedule exists): not an interleaving bug."""
    shrink_interrupted: bool = False
    """Ctrl-C stopped the shrink: the schedule shown is the shortest seen so far."""
    interrupted_by: str = "Ctrl-C"
    """What stopped it, as the report says (a driver that knows says SIGTERM)."""
    unshrunk: str | None = None
    """Why the failing schedule is shown as found, not shrunk nor traced."""
    token: str | None = None
    replay_command: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    budget_spent_before_any: bool = False
    """The budget ended the exploration before its first schedule ended (a time
    budget cuts a schedule short, the run before exploring included)."""

    @property
    def inconclusive(self) -> bool:
        """Nothing was explored (a budget spent before the first schedule): not a pass."""
        return not self.found and self.schedules == 0 and self.budget_spent_before_any

    def report(self) -> str:
        return format_result(self)

    def assert_clean(self) -> None:
        """Raise :class:`ExplorationFailedError` with the full report if a schedule failed."""
        __tracebackhide__ = True  # pytest: the failing test's line, then the report
        if self.found or self.inconclusive:
            raise ExplorationFailedError(self)


class ExplorationFailedError(AssertionError):
    __module__ = "threadcheck"  # shown to users by its public name

    def __init__(self, result: ExploreResult) -> None:
        super().__init__(result.report())
        self.result = result


MAX_ROWS = 60  # longer schedules show the steps around each preemption
CONTEXT = 3


def _tried(schedules: int) -> str:
    """The schedules a failure on every schedule was seen on: the first, and
    those run after it to check (which may outnumber a small budget)."""
    if schedules == 1:
        return "1"
    more = schedules - 1
    return f"{schedules}: the first, and {more} more run to check it, outside the budget"


def format_result(result: ExploreResult) -> str:
    if not result.found:
        return _clean_summary(result)
    failure = result.failure
    run = result.run
    assert failure is not None and run is not None
    count = run.preemption_count
    verdict = (
        # happens-before finds a race whichever access runs first: it is one all the same
        "; on every schedule tried: nothing orders the two accesses, whatever the interleaving"
        if failure.accesses
        else f"; fails on every schedule tried ({_tried(result.schedules)}): "
        "not an interleaving bug"
    )
    # After the message's first line: pytest's rewritten assert adds lines.
    first, newline, rest = failure.message.partition("\n")
    lines = [
        f"threadcheck: {failure.kind}: {first}{verdict if result.every_schedule else ''}"
        f"{newline}{rest}"
    ]
    if result.strategy == "replay":
        lines.append(f"  replayed from its token ({plural(count, 'preemption')})")
    else:
        after = (
            "shown without preemptions"
            if result.every_schedule
            else f"not shrunk: {result.unshrunk}"
            if result.unshrunk
            else f"shrunk to {count}"
            if count
            else "shrunk to none: it fails without a preemption"
        )
        lines.append(f"  {_found(result)}; {after}{_interrupted(result)}")
    if failure.location:
        lines.append(
            f"  at {short_location(failure.location)}"
            + (f" in thread {failure.thread!r}" if failure.thread else "")
        )
    held = _held(run)
    if held:
        limit = result.environment.get("max_delay")
        bound = f" (max delay {limit:g} s)" if isinstance(limit, (int, float)) else ""
        lines.append(f"  time passed while threads could run: {held}{bound}")
    if run.trace:
        lines.append("")
        lines.extend(step_table(run))
    if failure.details:
        lines.append("")
        lines.extend("  " + line for line in failure.details.rstrip().splitlines())
    if result.replay_command:
        lines.append("")
        if REAL_IO in run.thinned:  # before the replay line, which stays last
            lines.append(
                "replay is best effort: this schedule waited on real sockets or pipes, "
                "whose timing a replay cannot repeat"
            )
        lines.append(f"replay: {result.replay_command}")
    return "\n".join(lines) + "\n"


def _found(result: ExploreResult) -> str:
    how = ", ".join(part for part in (result.budget, result.strategy) if part)
    preemptions = result.original_preemptions or 0
    if result.run is not None and result.run.index == WARM_UP:
        # A thread blocked for good in the warm-up: no schedule began.
        return f"found in the warm-up run, before the first schedule ({how}, seed {result.seed})"
    found = f"found on schedule {result.found_at} ({how}, seed {result.seed})"
    if result.every_schedule:  # its preemptions made no difference: not worth a word
        return found
    return f"{found} with {plural(preemptions, 'preemption')}"


def _interrupted(result: ExploreResult) -> str:
    return f" (shrinking stopped by {result.interrupted_by})" if result.shrink_interrupted else ""


def _clean_summary(result: ExploreResult) -> str:
    if result.inconclusive:
        return (
            f"threadcheck: inconclusive: no schedule ran ({result.budget} was spent before "
            "the first one ended); nothing was explored\n"
        )
    if result.proof:
        return (
            f"threadcheck: every interleaving explored ({plural(result.schedules, 'schedule')}"
            f", {result.seconds:.1f} s): no failure possible within these points "
            f"({result.scope})\n"
        )
    if result.exhausted and result.thinned:
        return (
            f"threadcheck: {plural(result.schedules, 'schedule')} in {result.seconds:.1f} s, "
            f"no failure; the search finished, but it is not a proof: some interleavings "
            f"were left out, by {'; '.join(result.thinned)}\n"
        )
    bound = strategy_bound(result.strategy)
    what = (
        f"every schedule with {bound} ({result.strategy}), which is not a proof"
        if result.exhausted and bound is not None
        else "every schedule the strategy can produce, which is not a proof"
        if result.exhausted
        else "budget spent: no failure seen, which is not a proof"
    )
    if result.thinned:  # the default's search finished first, and the others went on
        left_out = "; ".join(result.thinned)
        what += (
            f" (its exhaustive phase finished first, but left out interleavings, by {left_out})"
        )
    return (
        f"threadcheck: {plural(result.schedules, 'schedule')} "
        f"({result.distinct} distinct) in {result.seconds:.1f} s, no failure; {what}\n"
    )


def strategy_bound(strategy: str) -> str | None:
    """The bound a strategy searches within (``bounded:2``: at most 2 preemptions)."""
    name, _, argument = strategy.partition(":")
    if name != "bounded" or not argument.isdigit():
        return None
    return f"at most {plural(int(argument), 'preemption')}"


def _held(run: ScheduleRun) -> str:
    """How long threads were held while time passed: the longest, and in all."""
    in_all = f"{format_seconds(run.time_held)} in all"
    if run.longest_hold is None:
        return in_all if run.time_held > 0 else ""
    seconds, thread = run.longest_hold
    longest = f"{thread} held {format_seconds(seconds)}"
    return longest if run.time_held <= seconds else f"{longest}, {in_all}"


def step_table(run: ScheduleRun) -> list[str]:
    """The schedule step by step: thread, user line, what was accessed, and the
    preemptions; and the step the failure names, when it is not the last."""
    failing, exact = _failing_step(run)
    rows = [_row(step, run, step.index == failing, exact) for step in run.trace]
    header = f"  {'step':>5}  {'thread':<22} {'where':<44} point"
    if len(rows) <= MAX_ROWS:
        return [header, *rows]
    marked = [s.index in run.preemptions or s.index == failing for s in run.trace]
    return [header, *_elide(rows, marked, _conflicting(run.trace, marked))]


def _failing_step(run: ScheduleRun) -> tuple[int | None, bool]:
    """The step at the line the failure names, in its thread, unless it is the
    schedule's last: a violation's call, after which the schedule went on (Z48:
    the table showed the main thread's last steps, not the watcher's
    ``reactor.stop()``). Its first such step for a violation (the first one
    is reported; a call's, if one is there), else its last (the pass that raised).
    With whether it is that line's: a call with no point of its own
    (``client.sendMessage(payload)``, into a library) is shown by its thread's
    step before it (Z50: the table showed only the main thread's last steps)."""
    failure = run.failure
    if failure is None or not failure.location or failure.thread not in run.thread_names:
        return None, True
    place, _, function = failure.location.rpartition(" in ")
    path, _, line = place.rpartition(":")
    tid = run.thread_names.index(failure.thread)
    steps = [
        step
        for step in run.trace
        if step.tid == tid
        and step.function == function
        and str(step.lineno) == line
        and os.path.basename(step.filename) == os.path.basename(path)
    ]
    exact = bool(steps)
    if not steps and failure.step is not None:
        steps = [step for step in run.trace if step.tid == tid and step.index <= failure.step][-1:]
    if not steps:
        return None, True
    # A violation is made by a call: its row, not a lock taken by an argument's
    # (d.callback(f.result()) had its future's lock.acquire marked).
    calls = [step for step in steps if step.detail.endswith("(call)")]
    chosen = (calls or steps)[0] if failure.kind == "violation" else steps[-1]
    return (chosen.index if chosen.index != run.trace[-1].index else None), exact


def _conflicting(trace: list[Step], marked: list[bool]) -> set[int]:
    """The rows, after each preemption at an access and before its thread runs
    again, where another thread accesses what it names (``self.pending``): the
    other half of a lost update, which the rows around the preemption may not
    reach (Z47: the planted line of a lost update was folded away)."""
    keep: set[int] = set()
    for at, is_marked in enumerate(marked):
        named = _accessed(trace[at].detail) if is_marked else None
        if named is None:
            continue
        found = 0
        for index in range(at + 1, len(trace)):
            step = trace[index]
            if step.tid == trace[at].tid or found == MAX_CONFLICTING:
                break
            if _accessed(step.detail) == named:
                keep.add(index)
                found += 1
    return keep


MAX_CONFLICTING = 6
"""Rows kept, after one preemption, of other threads' accesses to what it names."""


def _accessed(detail: str) -> str | None:
    """What an access's point names: its attribute or variable (``pending`` of
    ``self.pending (store)``), whatever the object is called where (the pool
    thread's ``progress.pending`` is the reactor's ``self.pending``)."""
    named, _, kind = detail.rpartition(" (")
    if not named or kind not in ("load)", "store)"):
        return None
    base, bracket, key = named.partition("[")  # self.sessions[...]: sessions[...]
    return base.rpartition(".")[2] + bracket + key


def _row(step: Step, run: ScheduleRun, failing: bool = False, exact: bool = True) -> str:
    name = run.thread_names[step.tid] if step.tid < len(run.thread_names) else "?"
    thread = f"T{step.tid} {name}"[:22]
    where = (
        f"{os.path.basename(step.filename)}:{step.lineno} {step.function}"
        if step.filename
        else "-"
    )
    detail = step.detail or step.kind
    notes = [run.preemptions.get(step.index)]
    if failing and run.failure is not None:
        at = short_location(run.failure.location or "")
        notes.append(
            f"the {run.failure.kind}" if exact else f"then the {run.failure.kind}, at {at}"
        )
    mark = "".join(f"   <- {note}" for note in notes if note)
    return f"  {step.index:>5}  {thread:<22} {where:<44} {detail}{mark}"


def _elide(rows: list[str], marked: list[bool], conflicting: set[int]) -> Iterator[str]:
    """The rows of a long table around each preemption, the conflicting ones, and the last."""
    keep = set(range(len(rows) - CONTEXT, len(rows))) | conflicting
    for index, is_marked in enumerate(marked):
        if is_marked:
            keep.update(range(max(0, index - CONTEXT), min(len(rows), index + CONTEXT + 2)))
    previous = -1
    for index in sorted(keep):
        if index != previous + 1:
            yield f"  {'...':>5}"
        yield rows[index]
        previous = index


def short_location(location: str) -> str:
    """A location (``path:line in name``) with its file name alone."""
    path, _, rest = location.partition(":")
    return f"{os.path.basename(path)}:{rest}"
