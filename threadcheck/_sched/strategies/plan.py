"""A preemption plan: no preemption, except at the planned decisions.

The default policy keeps the running thread going and, when it blocks, runs
the oldest runnable thread. A plan lists ``(decision, thread)`` pairs: at
that decision (counted from 0 over the decisions where more than one thread
could run) the named thread runs instead; if it cannot, another runnable
thread does (chosen by the name), so a planned preemption always preempts.
Shrinking searches over plans, and Hypothesis draws them in the test thread.
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
        planned = self.preemptions.get(decision)
        if planned is None or planned == default:
            return default
        if planned in runnable:
            return planned
        # The named thread cannot run here: still preempt, to another thread
        # picked by the name, so a planned preemption is never lost.
        others = [tid for tid in runnable if tid != default]
        return others[planned % len(others)]

    def next_int(self, bound: int) -> int:
        return 0
