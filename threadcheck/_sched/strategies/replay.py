"""Replay: the recorded decisions, in order; any mismatch is a divergence."""

from __future__ import annotations

from collections.abc import Sequence

from threadcheck._sched._core import choice_name


class ReplayDivergenceError(Exception):
    """The run did not follow the recorded schedule: it cannot be trusted to reproduce."""

    __module__ = "threadcheck"  # shown to users by its public name


class Replay:
    def __init__(self, decisions: Sequence[int]) -> None:
        self.decisions = list(decisions)
        self._next = 0

    def new_execution(self, index: int) -> bool:
        self._next = 0
        return True

    def _take(self) -> int:
        if self._next >= len(self.decisions):
            raise ReplayDivergenceError(
                f"the run needs more than the {len(self.decisions)} recorded decisions"
            )
        value = self.decisions[self._next]
        self._next += 1
        return value

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        chosen = self._take()
        if chosen not in runnable:
            raise ReplayDivergenceError(
                f"decision {self._next} recorded {choice_name(chosen)}, but only "
                f"{', '.join(map(choice_name, runnable))} can run at step {step}"
            )
        return chosen

    def next_int(self, bound: int) -> int:
        value = -1 - self._take()
        if not 0 <= value < bound:
            raise ReplayDivergenceError(f"decision {self._next} is not a choice in range({bound})")
        return value

    def exhausted(self) -> bool:
        return self._next == len(self.decisions)
