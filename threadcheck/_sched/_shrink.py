"""Shrinking a failing schedule to its fewest preemptions.

1. Canonicalise: the failing decisions become a preemption plan over the
   no-preemption default (only the decisions that differ from it).
2. Try no preemption at all.
3. Greedily drop preemptions, latest first, keeping any drop that still fails
   the same way.
4. If more than one is left, search every single-preemption schedule (a
   bounded search with bound 1): often one preemption is enough where greedy
   dropping gets stuck.

Every candidate is run for real; a candidate counts only if it fails with the
same signature (kind and first line). The result is always a schedule that
was seen to fail, with its step trace recorded. Ctrl-C stops the shrink: the
fewest preemptions seen to fail so far are the result.
"""

from __future__ import annotations

from collections.abc import Callable

from threadcheck._sched._report import ScheduleRun
from threadcheck._sched._runner import Explorer, run_plan
from threadcheck._sched.strategies import Replay

DEFAULT_SHRINK_BUDGET = 400


def shrink_failure(
    explorer: Explorer,
    failing: ScheduleRun,
    budget: int = DEFAULT_SHRINK_BUDGET,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[ScheduleRun, bool]:
    """The shrunk failing schedule, and whether Ctrl-C cut the shrink short.

    ``progress(attempts, preemptions)`` is called before each attempt (and may
    raise KeyboardInterrupt)."""
    assert failing.failure is not None
    signature = failing.failure.signature()
    runs = 0
    best: ScheduleRun | None = None

    def attempt(preemptions: list[tuple[int, int]]) -> tuple[ScheduleRun, bool]:
        nonlocal runs, best
        if progress is not None:
            progress(runs, (best or failing).preemption_count)
        runs += 1
        run, _ = run_plan(explorer, preemptions)
        fails = run.failure is not None and run.failure.signature() == signature
        if fails and (best is None or run.preemption_count <= best.preemption_count):
            best = run
        return run, fails

    try:
        return _shrink(explorer, failing, attempt, lambda: runs < budget), False
    except KeyboardInterrupt:
        return best if best is not None else _traced(explorer, failing), True


def _shrink(
    explorer: Explorer,
    failing: ScheduleRun,
    attempt: Attempt,
    within_budget: Callable[[], bool],
) -> ScheduleRun:
    plan = [
        (i, chosen) for i, (chosen, default, _) in enumerate(failing.choices) if chosen != default
    ]
    best, reproduced = attempt(plan)
    if not reproduced:
        return _traced(explorer, failing)  # keep it as found
    base, fails_unpreempted = attempt([])
    if fails_unpreempted:
        return base
    best, plan = _drop_greedily(attempt, best, plan, within_budget)
    if best.preemption_count <= 1:
        return best
    for decision, (_, default, runnable) in enumerate(base.choices):
        for tid in runnable:
            if not within_budget():
                return best
            if tid == default:
                continue
            run, fails = attempt([(decision, tid)])
            if fails:
                return run
    return best


def _traced(explorer: Explorer, run: ScheduleRun) -> ScheduleRun:
    again = explorer.run(Replay(run.decisions), 0)
    assert again is not None
    return again


Attempt = Callable[[list[tuple[int, int]]], tuple[ScheduleRun, bool]]


def _drop_greedily(
    attempt: Attempt,
    best: ScheduleRun,
    plan: list[tuple[int, int]],
    within_budget: Callable[[], bool],
) -> tuple[ScheduleRun, list[tuple[int, int]]]:
    changed = True
    while changed and within_budget():
        changed = False
        for item in reversed(plan):
            if not within_budget():
                break
            trial = [p for p in plan if p != item]
            run, fails = attempt(trial)
            if fails:
                best, plan, changed = run, trial, True
                break
    return best, plan
