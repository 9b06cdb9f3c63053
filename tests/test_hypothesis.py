"""Hypothesis drives schedules: schedules(), threadcheck.run, the registered generator.

Quality tests: a planted race is found under @given and shrunk, program and
schedule together, to at most 2 preemptions; the failure carries a token that
replays it; the example database replays the failure first.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.database import InMemoryExampleDatabase
from hypothesis.errors import InvalidArgument
from races import BUGGY, FIXED, Counter, _check, _in_thread
from twisted.internet.defer import Deferred, gatherResults

import threadcheck
from threadcheck import ExplorationFailedError, Schedule
from threadcheck.hypothesis import schedules

QUICK = settings(
    derandomize=True,  # the same examples on every CI run (per Python version)
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
    max_examples=200,
)


def lost_updates(reactor: Any, workers: int) -> Deferred[Any]:
    """``workers`` deferToThread jobs and a reactor callback each add to one total."""
    counter = Counter()

    def add(n: int) -> None:
        counter.total += n

    reactor.callLater(0, add, 100)
    jobs = [_in_thread(reactor, add, 1) for _ in range(workers)]
    expected = 100 + workers
    return gatherResults(jobs).addCallback(
        lambda _: _check(counter.total == expected, f"total is {counter.total}")
    )


def test_a_schedule_shows_as_a_plan_that_can_be_rebuilt() -> None:
    schedule = Schedule.of([(3, 1), (7, 0)])
    assert repr(schedule) == "Schedule.of([(3, 1), (7, 0)])"
    assert eval(repr(schedule), {"Schedule": Schedule}) == schedule


@pytest.mark.parametrize(
    "arguments", [{"max_preemptions": -1}, {"max_gap": "3"}, {"max_threads": 0}]
)
def test_bad_arguments_are_invalid(arguments: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        schedules(**arguments)


@QUICK
@given(schedules(max_preemptions=3, max_gap=10, max_threads=3))
def test_drawn_schedules_respect_their_bounds(schedule: Schedule) -> None:
    decisions = [decision for decision, _ in schedule.preemptions]
    assert len(decisions) <= 3
    assert decisions == sorted(set(decisions))
    assert all(0 <= thread < 3 for _, thread in schedule.preemptions)


def test_the_no_preemption_schedule_runs_clean() -> None:
    result = threadcheck.run(BUGGY["lost_update"], schedule=Schedule())
    assert not result.found and result.token is None


@pytest.mark.slow  # 20-50 s: once in the slow tier, not in each Python's fast tier
@pytest.mark.quality
def test_a_race_is_found_and_shrunk_to_at_most_two_preemptions() -> None:
    failing: list[Schedule] = []

    @QUICK
    @given(schedules())
    def check(schedule: Schedule) -> None:
        try:
            threadcheck.run(BUGGY["lost_update"], schedule=schedule)
        except ExplorationFailedError:
            failing.append(schedule)
            raise

    with pytest.raises(ExplorationFailedError) as raised:
        check()
    result = raised.value.result  # Hypothesis raises its last, smallest failing example
    # What counts is how often the failing run left the no-preemption default
    # (a planned switch to the thread that runs anyway is no preemption).
    assert result.original_preemptions is not None
    assert 1 <= result.original_preemptions <= 2, failing[-1]
    assert result.failure is not None and "total is" in result.failure.message
    assert result.token is not None and result.token in str(raised.value)
    assert "threadcheck.replay(lost_update, 'tc1." in str(raised.value)
    again = threadcheck.replay(BUGGY["lost_update"], result.token)
    assert again.found and again.failure is not None
    assert again.failure.signature() == result.failure.signature()


@pytest.mark.quality
def test_program_and_schedule_shrink_together() -> None:
    shrunk: list[int] = []

    @QUICK
    @given(workers=st.integers(1, 5), schedule=schedules())
    def check(workers: int, schedule: Schedule) -> None:
        shrunk.append(workers)
        threadcheck.run(lambda reactor: lost_updates(reactor, workers), schedule=schedule)

    with pytest.raises(ExplorationFailedError) as raised:
        check()
    # One worker racing the reactor callback is enough; shrinking the program
    # moves the schedule's decisions, so Hypothesis may stop at two.
    assert shrunk[-1] <= 2, shrunk[-1]
    preemptions = raised.value.result.original_preemptions
    assert preemptions is not None and 1 <= preemptions <= 2


@pytest.mark.quality
def test_the_fixed_twin_passes_every_example() -> None:
    @QUICK
    @given(schedules())
    def check(schedule: Schedule) -> None:
        threadcheck.run(FIXED["lost_update"], schedule=schedule)

    check()


def test_the_example_database_replays_the_failure_first() -> None:
    database = InMemoryExampleDatabase()
    calls: list[Schedule] = []

    @settings(QUICK, database=database, phases=[Phase.reuse, Phase.generate, Phase.shrink])
    @given(schedules())
    def check(schedule: Schedule) -> None:
        calls.append(schedule)
        threadcheck.run(BUGGY["lost_update"], schedule=schedule)

    with pytest.raises(ExplorationFailedError):
        check()
    shrunk = calls[-1]
    calls.clear()
    with pytest.raises(ExplorationFailedError):
        check()
    assert calls[0] == shrunk


def test_unplanned_runs_walk_their_own_schedule_per_example_reproducibly() -> None:
    """An unplanned run's seed is drawn from the example's data: every example
    walked one schedule, the same for all (Hypothesis seeds its registered
    generators alike for each example), and a race never met was never found."""
    seeds: list[int] = []

    @settings(QUICK, max_examples=5)
    @given(st.integers())
    def check(_: int) -> None:
        seeds.append(threadcheck.run(FIXED["ordering"]).seed)

    check()
    check()
    assert len(seeds) == 10 and seeds[:5] == seeds[5:]  # derandomized: the same again
    assert len(set(seeds[:5])) > 1


@pytest.mark.quality
def test_the_programs_os_randomness_is_the_examples_own() -> None:
    # uuid4 drew fresh OS bytes on each call of run(): Hypothesis's second run
    # of a failing example took another path ("FlakyFailure: ... unreliable").
    import uuid

    def request(reactor: Any) -> None:
        request_id = uuid.uuid4().hex
        _check(request_id[0] < "c", f"request id {request_id} is not routed")

    @settings(QUICK, max_examples=50)
    @given(schedules())
    def check(schedule: Schedule) -> None:
        threadcheck.run(request, schedule=schedule)

    with pytest.raises(ExplorationFailedError, match="is not routed"):
        check()


def test_unplanned_runs_outside_hypothesis_vary() -> None:
    seeds = {threadcheck.run(FIXED["ordering"]).seed for _ in range(3)}
    assert len(seeds) == 3


def test_a_scenario_draws_once_per_example() -> None:
    # run() warmed up by calling the scenario once more first: each example drew
    # twice, and Hypothesis's replay of a failing one drew other values.
    drawn: list[bool] = []

    @settings(QUICK, max_examples=5)
    @given(st.data(), schedules())
    def check(data: st.DataObject, schedule: Schedule) -> None:
        def scenario(reactor: Any) -> None:
            drawn.append(data.draw(st.booleans()))

        threadcheck.run(scenario, schedule)

    check()
    assert len(drawn) == 5


def test_outside_hypothesis_run_warms_the_scenario_up_first() -> None:
    calls: list[object] = []
    threadcheck.run(calls.append, Schedule())
    assert len(calls) == 2  # the warm-up, then the run


def lost_amounts(reactor: Any, amounts: list[int]) -> Deferred[Any]:
    """A deferToThread job per amount and a reactor callback each add to one total."""
    counter = Counter()

    def add(n: int) -> None:
        counter.total += n

    reactor.callLater(0, add, 100)
    jobs = [_in_thread(reactor, add, n) for n in amounts]
    expected = 100 + sum(amounts)
    return gatherResults(jobs).addCallback(
        lambda _: _check(counter.total == expected, f"total is {counter.total}")
    )


@pytest.mark.quality
def test_a_failures_replay_line_works_with_its_lambda_written_again() -> None:
    # The lambda passing the drawn list is a point's place: the printed replay
    # line, followed with a lambda on another line, diverged ("points differ").
    drawn: list[list[int]] = []

    @QUICK
    @given(amounts=st.lists(st.integers(1, 3), min_size=1, max_size=4), schedule=schedules())
    def check(amounts: list[int], schedule: Schedule) -> None:
        drawn.append(amounts)
        threadcheck.run(lambda reactor: lost_amounts(reactor, amounts), schedule=schedule)

    with pytest.raises(ExplorationFailedError) as raised:
        check()
    result = raised.value.result
    amounts = drawn[-1]  # the failing example, run last
    with pytest.warns(UserWarning, match="points are at other lines than recorded"):
        again = threadcheck.replay(lambda reactor: lost_amounts(reactor, amounts), result.token)
    assert again.found and again.failure is not None and result.failure is not None
    assert again.failure.signature() == result.failure.signature()


@pytest.mark.quality
def test_hypothesis_explains_no_failure_by_threadcheck_s_own_lines() -> None:
    # "These lines were always and only run by failing test cases:
    # .../threadcheck/_sched/_runner.py:673": ours, that raise the failure.
    @settings(QUICK, phases=[Phase.generate, Phase.shrink, Phase.explain])
    @given(st.integers(1, 3), schedules())
    def check(workers: int, schedule: Schedule) -> None:
        threadcheck.run(lambda reactor: lost_updates(reactor, workers), schedule=schedule)

    with pytest.raises(ExplorationFailedError) as raised:
        check()
    notes = "\n".join(getattr(raised.value, "__notes__", []))
    assert "threadcheck" not in notes.partition("always and only run by failing")[2], notes
