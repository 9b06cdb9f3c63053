"""A preemption plan: no preemption, except at the planned decisions.

The default policy keeps the running thread going and, when it blocks, runs
the oldest runnable thread. A plan lists ``(decision, thread)`` pairs: at
that decision (counted from 0 over the decisions where more than one thread
could run) the named thread runs instead, if it can. Shrinking searches over
plans, and Hypothesis draws them in the test thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class Plan:
    def __init__(self, preemptions: Iterable[tuple[int, int]]) -> None:
        self.preemptions = dict(preemptions)
        self._decision = 0
        self.defaults: list[int] = []
        """The default choice at each decision of the last run."""
        self.options: list[tuple[int, ...]] = []
        """The runnable threads at each decision of the last run."""

    def new_execution(self, index: int) -> bool:
        self._decision = 0
        self.defaults = []
        self.options = []
        return True

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        decision = self._decision
        self._decision += 1
        default = current if current is not None and current in runnable else runnable[0]
        self.defaults.append(default)
        self.options.append(tuple(runnable))
        planned = self.preemptions.get(decision, default)
        return planned if planned in runnable else default

    def next_int(self, bound: int) -> int:
        return 0
