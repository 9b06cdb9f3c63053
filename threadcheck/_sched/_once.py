"""One schedule of a scenario, planned or random: what ``threadcheck.run`` does.

Thread safety: call from one thread at a time (it runs the schedule there).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from threadcheck import _arguments
from threadcheck._sched._core import Strategy
from threadcheck._sched._report import ExploreResult
from threadcheck._sched._runner import (
    Explorer,
    Settings,
    Target,
    environment,
    make_token,
    rewritten_at_access,
)
from threadcheck._sched._seed import in_example, next_seed
from threadcheck._sched._token import python_replay
from threadcheck._sched.strategies import Plan, RandomWalk


@dataclass(frozen=True)
class Schedule:
    """A preemption plan: at decision ``d`` (counted over the decisions where
    more than one thread could run) thread ``T<t>`` runs instead of the default,
    which keeps the running thread going, or runs the oldest runnable one when
    it blocks. ``Schedule()`` is the no-preemption schedule."""

    preemptions: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, preemptions: Iterable[tuple[int, int]]) -> Schedule:
        """From ``(decision, thread)`` pairs of whole numbers 0 or more, each
        decision once (a thread that cannot run there yields to another)."""
        if isinstance(preemptions, str | bytes) or not isinstance(preemptions, Iterable):
            raise TypeError(f"Schedule.of takes (decision, thread) pairs, not {preemptions!r}")
        pairs = []
        for pair in preemptions:
            if not (
                isinstance(pair, tuple | list)
                and len(pair) == 2
                and all(_arguments.count(n) is None for n in pair)
            ):
                raise ValueError(
                    f"Schedule.of: {pair!r} is no (decision, thread) pair of numbers 0 or more"
                )
            pairs.append((pair[0], pair[1]))
        decisions = [d for d, _ in pairs]
        if len(set(decisions)) != len(decisions):
            raise ValueError(f"Schedule.of: a decision planned twice in {pairs!r}")
        return cls(tuple(pairs))

    def __repr__(self) -> str:
        return f"Schedule.of({list(self.preemptions)!r})"


def run_once(
    target: Target,
    schedule: Schedule | None,
    settings: Settings,
    replay_hint: str,
) -> ExploreResult:
    """Run ``target`` once: under ``schedule``, or a random walk when None."""
    strategy: Strategy
    if schedule is None:
        seed = next_seed()
        strategy, name = RandomWalk(seed), "random"
    else:
        seed = 0
        strategy, name = Plan(schedule.preemptions), "plan"
    started = time.monotonic()
    settings = rewritten_at_access(settings)
    env = environment(settings)
    # In a Hypothesis example, the OS randomness the program draws (uuid4) is
    # the example's too: run again, the example must do what it did.
    entropy = f"example/{seed}/{schedule}" if in_example() else None
    with Explorer(target, settings, collect_first=False, random_seed=seed) as explorer:
        _warm_up_outside_examples(explorer, target)
        run = explorer.run(strategy, 0, entropy=entropy)
    assert run is not None  # plans and random walks never run out
    found = run.failure is not None
    token = make_token(run, env, name, seed, target) if found else None
    return ExploreResult(
        found=found,
        schedules=1,
        distinct=1,
        strategy=name,
        seed=seed,
        target=target.description,
        seconds=time.monotonic() - started,
        failure=run.failure,
        run=run if found else None,
        found_at=1 if found else None,
        original_preemptions=run.preemption_count if found else None,
        token=token,
        replay_command=python_replay(replay_hint, token) if token else None,
        environment=env,
    )


def _warm_up_outside_examples(explorer: Explorer, target: Target) -> None:
    """The warm-up run (what the program fills on first use is filled before the
    recorded run, as before its replay in a fresh process); not in a Hypothesis
    example: its scenario's draws would be drawn twice, and Hypothesis's own
    replay of the example, drawing them once, would see other values."""
    if not in_example():
        explorer.warm_up()
