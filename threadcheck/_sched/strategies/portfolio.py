"""The default: PCT depth 2, PCT depth 3 and a random walk, in turn (as Coyote's portfolio).

Random walk finds dense races in very few schedules; PCT keeps its
probabilistic guarantee for deeper ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from threadcheck._sched._core import Strategy
from threadcheck._sched.strategies.pct import PCT
from threadcheck._sched.strategies.random_walk import RandomWalk


class Portfolio:
    def __init__(self, seed: int) -> None:
        self.members: list[Strategy] = [PCT(2, seed), PCT(3, seed), RandomWalk(seed)]
        self._current: Strategy = self.members[0]

    def new_execution(self, index: int) -> bool:
        self._current = self.members[index % len(self.members)]
        return self._current.new_execution(index // len(self.members))

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        return self._current.next_thread(runnable, current, step)

    def next_int(self, bound: int) -> int:
        return self._current.next_int(bound)
