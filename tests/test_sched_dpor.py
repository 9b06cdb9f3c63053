"""Source-DPOR's search core against a brute-force enumeration of small programs.

A program here is a list of threads, each a list of operations on named
locations and locks. Every interleaving is enumerated; two are equivalent when
they order every pair of conflicting operations alike. The DPOR search must
reach every equivalence class, and run far fewer executions than there are
interleavings where operations commute.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st

from threadcheck._sched._dpor import Event, SourceDpor, conflict

Op = tuple[str, str]  # ("r" | "w" | "acq" | "rel", name)
Program = list[list[Op]]
Class = frozenset[tuple[int, int, int, int]]


def _event(tid: int, op: Op) -> Event:
    kind, name = op
    if kind == "r":
        return Event(tid, reads=frozenset({name}))
    if kind == "acq":
        lock = frozenset({name})
        return Event(tid, writes=lock, acquires=lock, exclusive=lock)
    if kind == "rel":
        return Event(tid, writes=frozenset({name}), releases=frozenset({name}))
    return Event(tid, writes=frozenset({name}))


class _Run:
    """One execution of a program, driven by ``choose``; records its class."""

    def __init__(self, program: Program) -> None:
        self.program = program
        self.pc = [0] * len(program)
        self.owner: dict[str, int] = {}
        self.trace: list[tuple[int, int, Event]] = []

    def enabled(self) -> list[int]:
        ready = []
        for tid, ops in enumerate(self.program):
            if self.pc[tid] == len(ops):
                continue
            kind, name = ops[self.pc[tid]]
            if kind == "acq" and name in self.owner:
                continue
            ready.append(tid)
        return ready

    def step(self, tid: int) -> Event:
        kind, name = self.program[tid][self.pc[tid]]
        if kind == "acq":
            self.owner[name] = tid
        elif kind == "rel":
            del self.owner[name]
        event = _event(tid, (kind, name))
        self.trace.append((tid, self.pc[tid], event))
        self.pc[tid] += 1
        return event

    def run(self, choose: Callable[[list[int]], int], ran: Callable[[Event], None]) -> None:
        while enabled := self.enabled():
            ran(self.step(choose(enabled)))

    def pending(self) -> list[Event]:
        """The blocked next step of each thread that did not finish (a deadlock)."""
        return [
            _event(tid, ops[self.pc[tid]])
            for tid, ops in enumerate(self.program)
            if self.pc[tid] < len(ops)
        ]

    def equivalence_class(self) -> Class:
        pairs = set()
        for a, (tid_a, pc_a, event_a) in enumerate(self.trace):
            for tid_b, pc_b, event_b in self.trace[a + 1 :]:
                if tid_a != tid_b and conflict(event_a, event_b):
                    pairs.add((tid_a, pc_a, tid_b, pc_b))
        return frozenset(pairs)


def brute_force(program: Program) -> tuple[int, set[Class]]:
    """Every interleaving: how many, and their classes."""
    key = repr(program)
    if key not in _enumerated:
        _enumerated[key] = _enumerate(program)
    return _enumerated[key]


_enumerated: dict[str, tuple[int, set[Class]]] = {}


def _enumerate(program: Program) -> tuple[int, set[Class]]:
    return _every_interleaving(_Run(program))


def _every_interleaving(run: _Run) -> tuple[int, set[Class]]:
    classes: set[Class] = set()
    count = 0

    def extend() -> None:
        nonlocal count
        enabled = run.enabled()
        if not enabled:
            count += 1
            classes.add(run.equivalence_class())
            return
        for tid in enabled:
            pc, owner, length = list(run.pc), dict(run.owner), len(run.trace)
            run.step(tid)
            extend()
            run.pc, run.owner = pc, owner
            del run.trace[length:]

    extend()
    return count, classes


def with_dpor(program: Program) -> tuple[SourceDpor, set[Class]]:
    return _searched(lambda: _Run(program))


def _searched(new_run: Callable[[], _Run]) -> tuple[SourceDpor, set[Class]]:
    search = SourceDpor()
    classes: set[Class] = set()
    while search.begin():
        run = new_run()
        run.run(search.choose, search.ran)
        search.end(run.pending())
        classes.add(run.equivalence_class())
        assert search.executions < 10_000
    return search, classes


def rw(name: str) -> list[Op]:
    return [("r", name), ("w", name)]


def locked(lock: str, body: list[Op]) -> list[Op]:
    return [("acq", lock), *body, ("rel", lock)]


PROGRAMS: dict[str, Program] = {
    "independent": [rw("a"), rw("b"), rw("c")],
    "lost update": [rw("x"), rw("x")],
    "locked counter": [locked("l", rw("x")), locked("l", rw("x"))],
    "three threads, two locations": [rw("x") + rw("y"), rw("y"), [("r", "x"), ("w", "y")]],
    "readers only": [[("r", "x")] * 3, [("r", "x")] * 3],
    "lock order inversion": [
        [("acq", "a"), ("acq", "b"), ("rel", "b"), ("rel", "a")],
        [("acq", "b"), ("acq", "a"), ("rel", "a"), ("rel", "b")],
    ],
    "message passing": [[("w", "data"), ("w", "ready")], [("r", "ready"), ("r", "data")]],
    "bank transfer": [
        locked("a", [("r", "A"), ("w", "A")]) + locked("b", [("r", "B"), ("w", "B")]),
        locked("a", [("r", "A"), ("w", "A")]) + locked("b", [("r", "B"), ("w", "B")]),
        [("r", "A"), ("r", "B")],
    ],
}


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_equivalence_class_is_explored(name: str) -> None:
    program = PROGRAMS[name]
    interleavings, expected = brute_force(program)
    search, explored = with_dpor(program)
    assert search.exhausted
    assert explored == expected
    assert search.executions <= interleavings


def test_commuting_steps_are_explored_once() -> None:
    search, _ = with_dpor(PROGRAMS["independent"])
    assert search.executions == 1  # 90 interleavings, one class
    search, _ = with_dpor(PROGRAMS["readers only"])
    assert search.executions == 1


def test_a_locked_counter_takes_two_executions_not_every_interleaving() -> None:
    interleavings, classes = brute_force(PROGRAMS["locked counter"])
    search, _ = with_dpor(PROGRAMS["locked counter"])
    assert (interleavings, len(classes), search.executions) == (2, 2, 2)
    interleavings, classes = brute_force(PROGRAMS["bank transfer"])
    search, _ = with_dpor(PROGRAMS["bank transfer"])
    assert search.executions < interleavings / 10, (search.executions, interleavings)
    assert search.executions <= 2 * len(classes)


def test_a_run_that_leaves_its_prefix_goes_on_but_proves_nothing() -> None:
    """A program that keeps state between runs (a file it counts its runs in)
    may not repeat the prefix: the search goes on from the obligations before
    that place, and says it diverged, so its end is no proof."""
    search = SourceDpor()
    assert search.begin()
    _Run(PROGRAMS["lost update"]).run(search.choose, search.ran)
    search.end()
    executions = 1
    assert search.begin()
    prefix_thread = search._prefix[0]
    other = _Run([[], *PROGRAMS["lost update"][1:]])  # thread 0 does nothing this time
    assert prefix_thread == 0
    other.run(search.choose, search.ran)
    assert search.diverged
    search.end()
    while search.begin():
        _Run(PROGRAMS["lost update"]).run(search.choose, search.ran)
        search.end()
        executions += 1
        assert executions < 100
    assert search.exhausted and search.diverged


def _thread_ops(draw: st.DrawFn) -> list[Op]:
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, 2))):
        access: list[Op] = [(draw(st.sampled_from("rw")), draw(st.sampled_from("xy")))]
        if draw(st.booleans()):
            ops += locked(draw(st.sampled_from("lm")), access)
        else:
            ops += access
    return ops


@st.composite
def programs(draw: st.DrawFn) -> Program:
    return [_thread_ops(draw) for _ in range(draw(st.integers(2, 3)))]


@settings(max_examples=100, deadline=None, phases=[Phase.generate, Phase.shrink])
@given(programs())
def test_every_class_of_random_programs_is_explored(program: Program) -> None:
    assume(sum(map(len, program)) <= 10)  # brute force stays fast: at most 113,400 interleavings
    interleavings, expected = brute_force(program)
    search, explored = with_dpor(program)
    assert explored == expected
    assert search.executions <= interleavings


# Steps of several operations, as the scheduler reports them: a lock taken, the
# critical section's accesses and the release can be one step, when no other
# thread could run at the points in between.

StepProgram = list[list[list[Op]]]  # threads -> steps -> operations


def _step_event(tid: int, ops: list[Op]) -> Event:
    events = [_event(tid, op) for op in ops]
    taken = frozenset(name for kind, name in ops if kind == "acq")
    held_before = frozenset(  # released before the step takes it (if it does)
        name
        for index, (kind, name) in enumerate(ops)
        if kind == "rel" and ("acq", name) not in ops[:index]
    )
    return Event(
        tid,
        reads=frozenset().union(*(e.reads for e in events)),
        writes=frozenset().union(*(e.writes for e in events)),
        acquires=taken,
        releases=held_before,
        exclusive=taken,
    )


class _StepRun(_Run):
    def __init__(self, program: StepProgram) -> None:
        super().__init__([])
        self.steps = program
        self.pc = [0] * len(program)

    def enabled(self) -> list[int]:
        ready = []
        for tid, steps in enumerate(self.steps):
            if self.pc[tid] == len(steps):
                continue
            taken = {name for kind, name in steps[self.pc[tid]] if kind == "acq"}
            if any(self.owner.get(name, tid) != tid for name in taken):
                continue
            ready.append(tid)
        return ready

    def step(self, tid: int) -> Event:
        ops = self.steps[tid][self.pc[tid]]
        for kind, name in ops:
            if kind == "acq":
                self.owner[name] = tid
            elif kind == "rel":
                del self.owner[name]
        event = _step_event(tid, ops)
        self.trace.append((tid, self.pc[tid], event))
        self.pc[tid] += 1
        return event

    def pending(self) -> list[Event]:
        return [
            _step_event(tid, steps[self.pc[tid]])
            for tid, steps in enumerate(self.steps)
            if self.pc[tid] < len(steps)
        ]


def _step_classes(program: StepProgram) -> tuple[int, set[Class]]:
    return _every_interleaving(_StepRun(program))


def _dpor_steps(program: StepProgram) -> tuple[SourceDpor, set[Class]]:
    return _searched(lambda: _StepRun(program))


def test_a_whole_critical_section_in_one_step_races_with_the_other_thread_s() -> None:
    # Each thread takes the lock, updates x and lets go in one step: both orders.
    program: StepProgram = [[locked("l", rw("x"))], [locked("l", rw("x"))]]
    _, expected = _step_classes(program)
    _, explored = _dpor_steps(program)
    assert explored == expected and len(expected) == 2
    # The lock taken in one step, the update and release in the next.
    program = [
        [[("acq", "l")], [*rw("x"), ("rel", "l")]],
        [[("acq", "l"), *rw("x")], [("rel", "l")]],
    ]
    _, expected = _step_classes(program)
    _, explored = _dpor_steps(program)
    assert explored == expected and len(expected) == 2


def test_a_lock_let_go_and_taken_again_in_one_step_is_held_throughout() -> None:
    # T0 holds l from its first step to its last: T1's whole section goes before or after.
    program: StepProgram = [
        [[("acq", "l")], [("r", "x")], [("rel", "l"), ("acq", "l")], [("r", "x"), ("rel", "l")]],
        [[("acq", "l"), ("w", "x"), ("rel", "l")]],
    ]
    _, expected = _step_classes(program)
    _, explored = _dpor_steps(program)
    assert explored == expected and len(expected) == 2


@st.composite
def step_programs(draw: st.DrawFn) -> StepProgram:
    threads = []
    for _ in range(draw(st.integers(2, 3))):
        ops = _thread_ops(draw)
        cuts = sorted(draw(st.sets(st.integers(1, max(1, len(ops) - 1)), max_size=len(ops))))
        bounds = [0, *[c for c in cuts if c < len(ops)], len(ops)]
        threads.append([ops[a:b] for a, b in itertools.pairwise(bounds) if a < b])
    return threads


@settings(max_examples=100, deadline=None, phases=[Phase.generate, Phase.shrink])
@given(step_programs())
def test_every_class_of_random_programs_of_many_operation_steps_is_explored(
    program: StepProgram,
) -> None:
    assume(sum(map(len, program)) <= 9)
    interleavings, expected = _step_classes(program)
    search, explored = _dpor_steps(program)
    assert explored == expected
    assert search.executions <= interleavings


def test_a_thread_that_runs_long_alone_costs_each_scan_only_the_other_threads() -> None:
    """The backward scans (a step's clock, its races) visit only the threads not
    yet ordered before it: a thread's own thousands of steps are one visit, so a
    run of N steps costs O(N) visits, where walking them all cost O(N^2) (a
    20,000-step livelock took minutes to report)."""
    steps = 2_000
    program: Program = [[("w", "x")], [("w", "mine")] * steps]
    search = SourceDpor()
    visits = 0
    backwards = search._backwards

    def counted(depth: int, unknown: set[int]) -> Iterator[int]:
        nonlocal visits
        for k in backwards(depth, unknown):
            visits += 1
            yield k

    search._backwards = counted  # type: ignore[method-assign]
    executions = 0
    while search.begin():
        _Run(program).run(search.choose, search.ran)
        search.end()
        executions += 1
    assert executions == 1  # nothing conflicts
    assert visits < 4 * (steps + 1), visits


def test_runs_that_did_not_repeat_are_put_down_to_real_io_when_they_waited_on_some() -> None:
    # Z48: two programs talking to another process were said to keep state
    # between runs; the other process's timing was what differed.
    from types import SimpleNamespace

    from threadcheck._sched._core import REAL_IO
    from threadcheck._sched._explore import _caveats
    from threadcheck._sched.strategies.dpor import DIVERGED, DIVERGED_BY_REAL_IO

    diverging: Any = SimpleNamespace(caveats=DIVERGED)
    assert _caveats(diverging, frozenset({REAL_IO})) == DIVERGED_BY_REAL_IO
    assert _caveats(diverging, frozenset()) == DIVERGED
