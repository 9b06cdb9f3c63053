"""The report of an exploration: what failed, the shrunk schedule, how to replay it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from threadcheck._sched._core import Step

if TYPE_CHECKING:
    from threadcheck._sched._explore import ExploreResult, ScheduleRun

MAX_ROWS = 60  # longer schedules show the steps around each preemption
CONTEXT = 3


def format_result(result: ExploreResult) -> str:
    if not result.found:
        return _clean_summary(result)
    failure = result.failure
    run = result.run
    assert failure is not None and run is not None
    count = run.preemption_count
    lines = [f"threadcheck: {failure.kind}: {failure.message}"]
    if result.strategy == "replay":
        lines.append(f"  replayed from its token ({count} preemption{_s(count)})")
    else:
        lines.append(
            f"  found on schedule {result.found_at} of {result.schedules} "
            f"({result.strategy}, seed {result.seed}) with "
            f"{result.original_preemptions} preemption{_s(result.original_preemptions or 0)}; "
            f"shrunk to {count}"
        )
    if failure.location:
        lines.append(
            f"  at {_short(failure.location)}"
            + (f" in {failure.thread}" if failure.thread else "")
        )
    lines.append("")
    lines.extend(step_table(run))
    if failure.details:
        lines.append("")
        lines.extend("  " + line for line in failure.details.rstrip().splitlines())
    if result.replay_command:
        lines.append("")
        lines.append(f"replay: {result.replay_command}")
    return "\n".join(lines) + "\n"


def _clean_summary(result: ExploreResult) -> str:
    what = (
        "every schedule the strategy can produce"
        if result.exhausted
        else "budget spent: no failure seen, which is not a proof"
    )
    return (
        f"threadcheck: {result.schedules} schedule{_s(result.schedules)} "
        f"({result.distinct} distinct) in {result.seconds:.1f} s, no failure; {what}\n"
    )


def step_table(run: ScheduleRun) -> list[str]:
    """The schedule step by step: thread, user line, what was accessed, and the preemptions."""
    rows = [_row(step, run) for step in run.trace]
    header = f"  {'step':>5}  {'thread':<22} {'where':<44} point"
    return [header, *_elide(rows, [s.index in run.preemptions for s in run.trace])]


def _row(step: Step, run: ScheduleRun) -> str:
    name = run.thread_names[step.tid] if step.tid < len(run.thread_names) else "?"
    thread = f"T{step.tid} {name}"[:22]
    where = (
        f"{os.path.basename(step.filename)}:{step.lineno} {step.function}"
        if step.filename
        else "-"
    )
    detail = step.detail or step.kind
    note = run.preemptions.get(step.index)
    mark = f"   <- {note}" if note else ""
    return f"  {step.index:>5}  {thread:<22} {where:<44} {detail}{mark}"


def _elide(rows: list[str], marked: list[bool]) -> Iterator[str]:
    if len(rows) <= MAX_ROWS:
        yield from rows
        return
    keep = set(range(len(rows) - CONTEXT, len(rows)))
    for index, is_marked in enumerate(marked):
        if is_marked:
            keep.update(range(max(0, index - CONTEXT), min(len(rows), index + CONTEXT + 2)))
    previous = -1
    for index in sorted(keep):
        if index != previous + 1:
            yield f"  {'...':>5}"
        yield rows[index]
        previous = index


def _short(location: str) -> str:
    path, _, rest = location.partition(":")
    return f"{os.path.basename(path)}:{rest}"


def _s(n: int) -> str:
    return "" if n == 1 else "s"
