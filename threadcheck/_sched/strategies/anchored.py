"""A preemption plan anchored to each thread's own steps (shrinking).

A :class:`~threadcheck._sched.strategies.plan.Plan` names its preemptions by
decision index: drop one early preemption and every later index means another
moment of the program, so the preemptions kept no longer preempt where they
did, and shrinking a long random walk's failure stalled at tens of them. Here a
preemption is anchored where it happened: the thread that was running (or had
just blocked), how many steps it had taken, and which decision at that step it
was. Dropping another preemption leaves that thread's own steps, and so the
anchor, where they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from threadcheck._sched.strategies.plan import Plan

Anchor = tuple[int | None, int, int]
"""(the running or just-blocked thread, the steps it had ended, the decision's
number at that step)."""


class AnchoredPlan(Plan):
    """``preemptions`` by anchor; ``by_decision`` by decision index, as a Plan's
    (the first run of a failure, whose anchors are then read from :attr:`anchors`)."""

    def __init__(
        self,
        preemptions: Iterable[tuple[Anchor, int]] = (),
        by_decision: Iterable[tuple[int, int]] = (),
    ) -> None:
        super().__init__(by_decision)
        self.anchored = dict(preemptions)
        self.anchors: list[Anchor] = []
        """The anchor of each decision of the last run."""
        self._steps: Counter[int] = Counter()
        self._at_step: Counter[tuple[int | None, int]] = Counter()

    def new_execution(self, index: int) -> bool:
        self.anchors = []
        self._steps.clear()
        self._at_step.clear()
        return super().new_execution(index)

    def step_ended(self, tid: int) -> None:
        self._steps[tid] += 1

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        at = (current, self._steps[current] if current is not None else step)
        anchor = (*at, self._at_step[at])
        self._at_step[at] += 1
        self.anchors.append(anchor)
        planned = self.anchored.get(anchor)
        if planned is not None:
            self.preemptions[self._decision] = planned  # the decision Plan reads next
        return super().next_thread(runnable, current, step)

    def preemptions_taken(
        self, choices: Sequence[tuple[int, int, tuple[int, ...]]]
    ) -> list[tuple[Anchor, int]]:
        """The last run's preemptions (its ``choices``), by anchor."""
        return [
            (self.anchors[index], chosen)
            for index, (chosen, default, _) in enumerate(choices)
            if chosen != default
        ]
