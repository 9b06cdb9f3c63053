"""Dynamic partial-order reduction: every meaningfully different schedule, once.

Source-DPOR with sleep sets (:mod:`threadcheck._sched._dpor`) over the
scheduler's steps. A step is a thread's run from where another thread could
have run to the next such place; what it touched (its footprint, gathered by
:mod:`threadcheck._races._footprint` from rewritten user code and the
scheduler's primitives) says which steps conflict. Two schedules that order
every pair of conflicting steps alike are equivalent, and only one of them
runs. When no race is left to reverse, the search is exhausted: every
schedule of the program, within its scheduling points, was covered.

Time passing (:data:`~threadcheck._sched._core.TIME`) is a step too: it
writes the clock (which the clocks, the reactor and every wait with a deadline
read) and ends the waits that time out, which the waiters' next steps acquire. Each
schedule replays a prefix of the previous one's choices and then goes on
with the first thread the search allows, so schedules follow one another:
the strategy cannot be sharded.
"""

from __future__ import annotations

from collections.abc import Sequence

from threadcheck._races import _footprint
from threadcheck._sched import _patch
from threadcheck._sched._core import TIME
from threadcheck._sched._dpor import Event, SourceDpor

_CLOCK = frozenset({_footprint.CLOCK})


class Dpor:
    shardable = False
    rewrites_code = True
    """The explorer rewrites user code, to gather what each step touched..."""
    needs_footprints = True
    """... in each schedule."""

    def __init__(self) -> None:
        self.search = SourceDpor()
        self._chose = False
        self._started = False

    def new_execution(self, index: int) -> bool:
        if self._started:
            self.search.end()
        self._started = True
        _footprint.clear()
        self._chose = False
        return self.search.begin()

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        self._chose = True
        time = None
        if TIME in runnable:  # what it would do, were it chosen (see SourceDpor.choose)
            time = Event(TIME, writes=_footprint.time_would | _CLOCK)
        return self.search.choose(runnable, time)

    def step_ended(self, tid: int) -> None:
        """The scheduler's word that a step of ``tid`` (or time passing) ended."""
        if not self._chose:
            self.search.choose((tid,))  # no other thread could run: no decision was asked
        self._chose = False
        reads, writes, acquires, releases, exclusive, waits = _footprint.take()
        if tid == TIME:  # the clock, and the waits it ended (gathered as it woke them)
            writes = writes | _CLOCK
        self.search.ran(Event(tid, reads, writes, acquires, releases, exclusive, waits))

    def next_int(self, bound: int) -> int:
        raise RuntimeError("dpor: a nondeterministic choice other than a thread's is not searched")

    @property
    def exhausted(self) -> bool:
        return self.search.exhausted

    @property
    def caveats(self) -> frozenset[str]:
        """Why its exhaustion would be no proof."""
        return diverged() if self.search.diverged else frozenset()


DIVERGED = frozenset(
    {"runs that did not repeat themselves (the program keeps state between runs)"}
)
DIVERGED_BY_RANDOMNESS = frozenset(
    {"runs that did not repeat themselves (each run draws other OS random bytes: secrets, uuid4)"}
)
DIVERGED_BY_REAL_IO = frozenset(
    {"runs that did not repeat themselves (real I/O: another process's timing differs each run)"}
)


def diverged() -> frozenset[str]:
    """Why a search whose runs did not repeat their prefixes is no proof: the
    random bytes each run draws afresh when the program drew any, else state
    the program keeps between runs."""
    return DIVERGED_BY_RANDOMNESS if _patch.os_randomness_drawn else DIVERGED
