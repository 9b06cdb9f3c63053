"""Random walk: at every decision, any runnable thread, uniformly."""

from __future__ import annotations

import random
from collections.abc import Sequence


class RandomWalk:
    """Finds dense races fast; switches often. Schedule ``i`` of seed ``s`` is always the same."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._random = random.Random()

    def new_execution(self, index: int) -> bool:
        # String seeds hash with SHA-512: the same on every run and hash seed.
        self._random.seed(f"random:{self.seed}:{index}")
        return True

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        return runnable[self._random.randrange(len(runnable))]

    def next_int(self, bound: int) -> int:
        return self._random.randrange(bound)
