"""PCT (Burckhardt et al., ASPLOS 2010): random priorities, d-1 priority change points.

Each thread gets a random priority when first seen; the highest-priority
runnable thread always runs; at d-1 randomly chosen decisions the running
thread drops below every other. A bug of depth d is found with probability at
least 1/(n·k^(d-1)) per schedule. As in Shuttle and Coyote, change points are
drawn over the decisions seen so far (steps with more than one runnable thread).
"""

from __future__ import annotations

import random
from collections.abc import Sequence


class PCT:
    def __init__(self, depth: int, seed: int) -> None:
        if depth < 1:
            raise ValueError("PCT depth must be at least 1")
        self.depth = depth
        self.seed = seed
        self._random = random.Random()
        self._longest = 0
        self._decisions = 0
        self._priority: dict[int, float] = {}
        self._change_points: set[int] = set()
        self._lowest = 0.0

    def new_execution(self, index: int) -> bool:
        self._longest = max(self._longest, self._decisions)
        self._random.seed(f"pct:{self.depth}:{self.seed}:{index}")
        self._decisions = 0
        self._priority = {}
        self._lowest = 0.0
        horizon = max(self._longest, 1)
        self._change_points = {self._random.randint(1, horizon) for _ in range(self.depth - 1)}
        return True

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        self._decisions += 1
        for tid in runnable:
            if tid not in self._priority:
                self._priority[tid] = self._random.random() + 1.0  # above every demoted one
        if self._decisions in self._change_points and current is not None:
            self._lowest -= 1.0
            self._priority[current] = self._lowest
        return max(runnable, key=self._priority.__getitem__)

    def next_int(self, bound: int) -> int:
        return self._random.randrange(bound)
