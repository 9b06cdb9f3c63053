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
was seen to fail, with its step trace recorded.
"""

from __future__ import annotations

from collections.abc import Callable

from threadcheck._sched._explore import Explorer, ScheduleRun, run_plan
from threadcheck._sched.strategies import Replay

DEFAULT_SHRINK_BUDGET = 400


def shrink_failure(
    explorer: Explorer, failing: ScheduleRun, budget: int = DEFAULT_SHRINK_BUDGET
) -> ScheduleRun:
    assert failing.failure is not None
    signature = failing.failure.signature()
    runs = 0

    def attempt(preemptions: list[tuple[int, int]]) -> tuple[ScheduleRun, bool]:
        nonlocal runs
        runs += 1
        run, _ = run_plan(explorer, preemptions)
        return run, run.failure is not None and run.failure.signature() == signature

    plan = [
        (i, chosen) for i, (chosen, default, _) in enumerate(failing.choices) if chosen != default
    ]
    best, reproduced = attempt(plan)
    if not reproduced:
        again = explorer.run(Replay(failing.decisions), 0)  # keep it as found, traced
        assert again is not None
        return again
    base, fails_unpreempted = attempt([])
    if fails_unpreempted:
        return base
    best, plan = _drop_greedily(attempt, best, plan, lambda: runs < budget)
    if best.preemption_count <= 1:
        return best
    for decision, (_, default, runnable) in enumerate(base.choices):
        for tid in runnable:
            if runs >= budget:
                return best
            if tid == default:
                continue
            run, fails = attempt([(decision, tid)])
            if fails:
                return run
    return best


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
