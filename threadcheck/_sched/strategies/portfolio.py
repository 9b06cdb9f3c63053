"""The default: a DPOR search that may prove, taking turns with PCT depth 2, PCT
depth 3 and a random walk (as Coyote's portfolio).

While the ``dpor`` search runs (its first :data:`PROOF_SCHEDULES`
schedules), it takes every other schedule: a scenario of test size is
explored exhaustively within them, and the result is a proof. The members
take the others, and all of them once the search is over or too big to
finish: random walk finds dense races in very few schedules, PCT keeps its
probabilistic guarantee for deeper ones, and neither waits for the search.
Sharded, each shard would repeat the same search: the members alone run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from threadcheck._sched._core import Strategy
from threadcheck._sched.strategies.dpor import Dpor
from threadcheck._sched.strategies.pct import PCT
from threadcheck._sched.strategies.random_walk import RandomWalk

PROOF_SCHEDULES = 250
"""Schedules the DPOR search may take before the members go on alone."""


class Portfolio:
    def __init__(self, seed: int, prove: bool = True) -> None:
        self.members: list[Strategy] = [PCT(2, seed), PCT(3, seed), RandomWalk(seed)]
        self._dpor = Dpor() if prove else None
        self._current: Strategy = self.members[0]
        self._searched = 0
        """Schedules the DPOR search ran."""
        self._searching = prove

    @property
    def rewrites_code(self) -> bool:
        return self._dpor is not None

    @property
    def needs_footprints(self) -> bool:
        return self._current is self._dpor

    @property
    def step_ended(self) -> Callable[[int], None] | None:
        return self._dpor.step_ended if self._current is self._dpor and self._dpor else None

    @property
    def exhausted(self) -> bool:
        """The DPOR search finished: every interleaving was explored."""
        return self._dpor is not None and self._dpor.exhausted

    @property
    def caveats(self) -> frozenset[str]:
        return self._dpor.caveats if self._dpor is not None else frozenset()

    def go_on_unproved(self) -> bool:
        """The search finished, but is no proof (a daemon thread held while time
        passed, a loop's steps past the bound): the members go on with the budget."""
        if self._dpor is None:
            return False
        self._dpor = None
        self._searching = False
        return True

    def new_execution(self, index: int) -> bool:
        if self._searching and index % 2 == 0:
            assert self._dpor is not None
            if not self._dpor.new_execution(index):
                return False  # every interleaving explored
            if self._searched < PROOF_SCHEDULES:
                self._searched += 1
                self._current = self._dpor
                return True
            self._searching = False  # too big to finish: the members go on alone
        turn = index - self._searched
        self._current = self.members[turn % len(self.members)]
        return self._current.new_execution(turn // len(self.members))

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        return self._current.next_thread(runnable, current, step)

    def next_int(self, bound: int) -> int:
        return self._current.next_int(bound)
