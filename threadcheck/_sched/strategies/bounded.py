"""Bounded-preemption search: every schedule with at most N preemptions, depth first.

Stateless search in the manner of CHESS: each schedule replays a prefix of
decisions and then takes the default (no preemption); afterwards the deepest
decision with an untried alternative within the bound becomes the next
prefix. Exhausts small scenarios; ``new_execution`` returns False when done.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from threadcheck._sched._core import TIME


@dataclass
class _Decision:
    runnable: tuple[int, ...]
    current: int | None
    chosen: int
    tried: set[int]
    preemptions_before: int

    def is_preemption(self, tid: int) -> bool:
        return _is_preemption(tid, self.runnable, self.current)


def _is_preemption(tid: int, runnable: Sequence[int], current: int | None) -> bool:
    """Switching away from a thread that could go on, or letting time pass
    while threads could run (they are held: a preemption of them)."""
    return tid == TIME or (current is not None and current in runnable and tid != current)


class BoundedPreemption:
    shardable = False  # each schedule follows from the one before

    def __init__(self, bound: int) -> None:
        if bound < 0:
            raise ValueError("the preemption bound must be at least 0")
        self.bound = bound
        self._path: list[_Decision] = []
        self._prefix: list[int] = []
        self._depth = 0
        self._preemptions = 0

    def new_execution(self, index: int) -> bool:
        if index > 0:
            prefix = self._backtrack()
            if prefix is None:
                return False
            self._prefix = prefix
        self._path = self._path[: len(self._prefix)]
        self._depth = 0
        self._preemptions = 0
        return True

    def _backtrack(self) -> list[int] | None:
        for depth in range(len(self._path) - 1, -1, -1):
            decision = self._path[depth]
            for tid in decision.runnable:
                if tid in decision.tried:
                    continue
                cost = decision.preemptions_before + decision.is_preemption(tid)
                if cost <= self.bound:
                    decision.tried.add(tid)
                    decision.chosen = tid
                    del self._path[depth + 1 :]
                    return [d.chosen for d in self._path]
        return None

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        depth = self._depth
        self._depth += 1
        if depth < len(self._prefix):
            chosen = self._prefix[depth]
            if chosen not in runnable:
                raise RuntimeError("bounded search: the program is not deterministic here")
        else:
            chosen = current if current is not None and current in runnable else runnable[0]
            self._path.append(
                _Decision(tuple(runnable), current, chosen, {chosen}, self._preemptions)
            )
        self._preemptions += _is_preemption(chosen, runnable, current)
        return chosen

    def next_int(self, bound: int) -> int:
        return 0
