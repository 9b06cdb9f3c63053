"""Shrinking a failing schedule to its fewest preemptions.

1. Canonicalise: the failing decisions become a preemption plan over the
   no-preemption default (only the decisions that differ from it).
2. Try no preemption at all.
3. Drop runs of preemptions, latest first, keeping any drop that still fails
   the same way: half of them at a time, then ever fewer, down to one.
4. If more than one is left, search every schedule with fewer, fewest first
   (a bounded search, up to two preemptions, in what is left of the budget):
   greedy dropping gets stuck where another one or two preemptions, elsewhere,
   make the same failure.

Every candidate is run for real; a candidate counts only if it fails with the
same signature (kind and first line). The result is always a schedule that
was seen to fail, with its step trace recorded. Ctrl-C stops the shrink: the
fewest preemptions seen to fail so far are the result.
"""

from __future__ import annotations

from collections.abc import Callable

from threadcheck._sched._report import ScheduleRun
from threadcheck._sched._runner import Explorer
from threadcheck._sched.strategies.anchored import Anchor, AnchoredPlan
from threadcheck._sched.strategies.bounded import BoundedPreemption

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

    def judged(run: ScheduleRun) -> tuple[ScheduleRun, bool]:
        nonlocal best
        fails = run.failure is not None and run.failure.signature() == signature
        if fails and (best is None or run.preemption_count <= best.preemption_count):
            best = run
        return run, fails

    def counted() -> None:
        nonlocal runs
        if progress is not None:
            progress(runs, (best or failing).preemption_count)
        runs += 1

    def attempt(plan: AnchoredPlan) -> tuple[ScheduleRun, bool]:
        counted()
        # The failing run's OS random bytes: a program whose path depends on
        # them (secrets, uuid4) takes it again, as its replay does.
        run = explorer.run(plan, 0, entropy=failing.entropy)
        assert run is not None
        return judged(run)

    def attempt_next(strategy: BoundedPreemption, index: int) -> tuple[ScheduleRun, bool] | None:
        counted()
        run = explorer.run(strategy, index, entropy=failing.entropy)
        return None if run is None else judged(run)

    def within_budget() -> bool:
        return runs < budget

    try:
        best_run = _shrink(explorer, failing, attempt, within_budget)
        if best_run.preemption_count > 1:
            bound = min(best_run.preemption_count - 1, 2)
            best_run = _fewest(attempt_next, bound, within_budget) or best_run
        return best_run, False
    except KeyboardInterrupt:
        return best if best is not None else explorer.rerun(failing), True


def _fewest(
    attempt_next: Callable[[BoundedPreemption, int], tuple[ScheduleRun, bool] | None],
    bound: int,
    within_budget: Callable[[], bool],
) -> ScheduleRun | None:
    """The first failing schedule with at most ``bound`` preemptions, fewest first."""
    strategy = BoundedPreemption(bound)
    index = 0
    while within_budget():
        tried = attempt_next(strategy, index)
        if tried is None:
            return None  # every such schedule ran
        run, fails = tried
        if fails:
            return run
        index += 1
    return None


def _shrink(
    explorer: Explorer,
    failing: ScheduleRun,
    attempt: Attempt,
    within_budget: Callable[[], bool],
) -> ScheduleRun:
    by_decision = [
        (i, chosen) for i, (chosen, default, _) in enumerate(failing.choices) if chosen != default
    ]
    first = AnchoredPlan(by_decision=by_decision)
    best, reproduced = attempt(first)
    if not reproduced:
        return explorer.rerun(failing)  # keep it as found
    base, fails_unpreempted = attempt(AnchoredPlan())
    if fails_unpreempted:
        return base
    return _drop_greedily(attempt, best, first.preemptions_taken(best.choices), within_budget)


Attempt = Callable[[AnchoredPlan], tuple[ScheduleRun, bool]]


def _drop_greedily(
    attempt: Attempt,
    best: ScheduleRun,
    plan: list[tuple[Anchor, int]],
    within_budget: Callable[[], bool],
) -> ScheduleRun:
    """Drop runs of preemptions, latest first: half of them at a time, then ever
    fewer, down to one at a time until no drop fails alike. A random walk's
    failure can carry thousands of preemptions, of which a few matter: one at
    a time, the budget ran out with thousands left. Each drop that still fails
    goes on from the preemptions that run really took (a kept one may no
    longer preempt: its thread was already running)."""
    size = max(len(plan) // 2, 1)
    while plan and within_budget():
        end = len(plan)
        dropped = False
        while end > 0 and within_budget():
            start = max(end - size, 0)
            trial = AnchoredPlan(plan[:start] + plan[end:])
            run, fails = attempt(trial)
            if fails:
                best, dropped = run, True
                plan = trial.preemptions_taken(run.choices)
                end = min(start, len(plan))
                continue
            end = start
        if size == 1 and not dropped:
            break
        if not dropped:
            size = max(size // 2, 1)
    return best
