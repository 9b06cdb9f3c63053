"""Bounded-preemption search: every schedule with at most N preemptions, fewest first.

Iterative context bounding, as CHESS searches: every schedule with no
preemption, then every one with exactly one, and so on up to N. Each schedule
replays a prefix of decisions and then takes the default (no preemption);
each decision it takes by default offers its alternatives as new prefixes,
queued by the preemptions they cost. So ``bounded:N`` runs the schedules of
``bounded:N-1`` first, in the same order: it finds whatever ``bounded:N-1``
finds, on the same schedule. A preemption is a switch away from a thread that
could go on, or time passing while threads could run; a choice among threads
after one blocked is not one. ``new_execution`` returns False when done.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from threadcheck._sched._core import TIME
from threadcheck._sched.strategies.dpor import diverged


@dataclass(frozen=True)
class _Prefix:
    """A schedule to run: ``base[:depth]``, then ``choice``, then the defaults."""

    base: list[int]
    depth: int
    choice: int
    cost: int

    def decisions(self) -> list[int]:
        return [*self.base[: self.depth], self.choice]


def _is_preemption(tid: int, runnable: Sequence[int], current: int | None) -> bool:
    return tid == TIME or (current is not None and current in runnable and tid != current)


class BoundedPreemption:
    shardable = False  # each schedule follows from those before

    def __init__(self, bound: int) -> None:
        if bound < 0:
            raise ValueError("the preemption bound must be at least 0")
        self.bound = bound
        self._queues: list[deque[_Prefix]] = [deque() for _ in range(bound + 1)]
        self._prefix: list[int] = []
        self._taken: list[int] = []
        self._preemptions = 0
        self._diverged = False

    def new_execution(self, index: int) -> bool:
        if index > 0:
            following = next((queue for queue in self._queues if queue), None)
            if following is None:
                return False
            prefix = following.popleft()
            self._prefix = prefix.decisions()
        self._taken = []
        self._preemptions = 0
        return True

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        depth = len(self._taken)
        if depth < len(self._prefix) and self._prefix[depth] not in runnable:
            # The program did not repeat itself (os.urandom, an id()-ordered
            # set): from here on, the defaults; the search is then no proof.
            self._diverged = True
            del self._prefix[depth:]
        if depth < len(self._prefix):
            chosen = self._prefix[depth]
        else:
            chosen = current if current is not None and current in runnable else runnable[0]
            self._offer(runnable, current, chosen)
        self._taken.append(chosen)
        self._preemptions += _is_preemption(chosen, runnable, current)
        return chosen

    @property
    def caveats(self) -> frozenset[str]:
        """Why its exhaustion would be no proof."""
        return diverged() if self._diverged else frozenset()

    def _offer(self, runnable: Sequence[int], current: int | None, chosen: int) -> None:
        """Queue the other choices here, each after the schedules that cost less."""
        for tid in runnable:
            if tid == chosen:
                continue
            cost = self._preemptions + _is_preemption(tid, runnable, current)
            if cost <= self.bound:
                self._queues[cost].append(_Prefix(self._taken, len(self._taken), tid, cost))

    def next_int(self, bound: int) -> int:
        return 0
