"""Strategies, tokens and replay: deterministic, exhaustive where they claim it, and
a replay that goes elsewhere is an error, never a pass."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from races import BUGGY, FIXED
from twisted.internet import threads

import threadcheck
from threadcheck._sched import _token
from threadcheck._sched._explore import Budget, explore
from threadcheck._sched._runner import Settings
from threadcheck._sched._targets import ScenarioTarget
from threadcheck._sched.strategies import (
    PCT,
    BoundedPreemption,
    Plan,
    RandomWalk,
    Replay,
    ReplayDivergenceError,
    parse,
)
from threadcheck._sched.strategies.anchored import AnchoredPlan


def decisions(strategy: object, index: int, points: list[list[int]]) -> list[int]:
    """What ``strategy`` picks at each of ``points`` (runnable sets, current = first)."""
    assert strategy.new_execution(index)  # type: ignore[attr-defined]
    return [
        strategy.next_thread(runnable, runnable[0], step)  # type: ignore[attr-defined]
        for step, runnable in enumerate(points)
    ]


POINTS = [[0, 1], [0, 1, 2], [1, 2], [0, 2], [0, 1, 2]] * 4


@pytest.mark.parametrize("make", [lambda: RandomWalk(7), lambda: PCT(3, 7)])
def test_a_schedule_is_the_same_for_the_same_seed_and_index(make: object) -> None:
    first, second = make(), make()  # type: ignore[operator]
    assert decisions(first, 5, POINTS) == decisions(second, 5, POINTS)
    assert len({tuple(decisions(first, index, POINTS)) for index in range(10)}) > 1


def test_pct_runs_the_highest_priority_thread_until_a_change_point() -> None:
    pct = PCT(1, 0)  # depth 1: no change point, so one thread keeps running
    picked = decisions(pct, 0, [[0, 1, 2]] * 10)
    assert len(set(picked)) == 1


def test_bounded_search_enumerates_schedules_up_to_its_bound_then_stops() -> None:
    def count(bound: int) -> int:
        search = BoundedPreemption(bound)
        index = 0
        while search.new_execution(index):
            for runnable in [[0, 1]] * 3:
                search.next_thread(runnable, 0, 0)
            index += 1
        return index

    # Three decisions where T0 runs and T1 could: 1 schedule with no preemption,
    # 3 more with one, and the rest with two.
    assert count(0) == 1
    assert count(1) == 4
    assert count(2) > count(1)


def test_plan_preempts_only_where_planned() -> None:
    plan = Plan([(1, 1)])
    assert decisions(plan, 0, [[0, 1]] * 3) == [0, 1, 0]
    assert plan.defaults == [0, 0, 0]


def test_an_anchored_plan_preempts_at_its_threads_own_step_wherever_that_falls() -> None:
    def run(plan: Plan, t1_first: int) -> list[int]:
        # T1 runs t1_first points first (what an earlier preemption, kept or
        # dropped, changes), then T0 three; at each point the other could run.
        plan.new_execution(0)
        chosen = []
        for tid, points in ((1, t1_first), (0, 3)):
            for _ in range(points):
                if isinstance(plan, AnchoredPlan):
                    plan.step_ended(tid)
                chosen.append(plan.next_thread([0, 1], tid, len(chosen)))
        return chosen

    first = AnchoredPlan(by_decision=[(1, 1)])  # as found: at decision 1, T1 runs
    assert run(first, 0) == [0, 1, 0]
    taken = first.preemptions_taken([(0, 0, (0, 1)), (1, 0, (0, 1)), (0, 0, (0, 1))])
    assert taken == [((0, 2, 0), 1)]  # at T0's second step
    # By index, decision 1 now falls among T1's points; by anchor, still T0's second.
    assert run(Plan([(1, 1)]), 2)[2:] == [0, 0, 0]
    assert run(AnchoredPlan(taken), 2) == [1, 1, 0, 1, 0]


def test_replay_refuses_a_choice_that_cannot_run() -> None:
    replay = Replay([1, 0])
    replay.new_execution(0)
    assert replay.next_thread([0, 1], 0, 1) == 1
    with pytest.raises(ReplayDivergenceError, match="recorded T0, but only T1, T2 can run"):
        replay.next_thread([1, 2], 1, 2)


def test_strategy_spellings() -> None:
    assert isinstance(parse("pct:2", 0), PCT)
    assert isinstance(parse("bounded:1", 0), BoundedPreemption)
    # A depth or bound past 1000 hung (a billion change points drawn) or ran
    # out of memory (a queue per bound) before the first schedule.
    for bad in ("pct:x", "dfs", "random:3", "portfolio:2", "pct:0", "pct:1001", "bounded:-1"):
        with pytest.raises(ValueError, match="unknown strategy"):
            parse(bad, 0)


def test_token_round_trip_and_damage() -> None:
    document = {
        "decisions": _token.run_length([1, 1, 1, 0, 2, 2]),
        "digest": "abc",
        "failure": "deadlock",
    }
    token = _token.encode(document)
    assert token.startswith("tc1.")
    assert _token.expand(_token.decode(token)["decisions"]) == [1, 1, 1, 0, 2, 2]
    edited = _token.encode({**document, "decisions": [[1, "x"]]})
    for bad, message in (
        ("hello", "not a threadcheck replay token"),
        (edited, "its decisions or digest are malformed"),
        (token[:-8], "damaged replay token"),
        ("tc1." + token[4:].upper(), "damaged replay token"),
        (token + "AAAA", "damaged replay token"),  # zlib would ignore what follows its end
        (token[:12] + "!" + token[12:], "damaged replay token"),  # base64 would skip it
        # A valid-looking run of two billion: a MemoryError when expanded.
        (_token.encode({**document, "decisions": [[0, 2_000_000_000]]}), "more than 1,000,000"),
    ):
        with pytest.raises(_token.TokenError, match=message):
            _token.decode(bad)


def test_bounded_search_finds_the_lost_update_and_exhausts_its_fixed_twin() -> None:
    found = threadcheck.explore(BUGGY["lost_update"], budget=None, strategy="bounded:1")
    assert found.found
    clean = threadcheck.explore(FIXED["lost_update"], budget=5000, strategy="bounded:1")
    assert not clean.found and clean.exhausted
    # Named with its bound, and no proof: a failure past it is not searched for.
    assert (
        "every schedule with at most 1 preemption (bounded:1), which is not a proof"
    ) in clean.report()


@pytest.mark.parametrize("name", ["lost_update", "ordering", "check_then_act"])
def test_a_higher_bound_finds_what_a_lower_one_finds_on_the_same_schedule(name: str) -> None:
    # Fewest preemptions first: bounded:2 runs bounded:1's schedules first, in order.
    lower = threadcheck.explore(BUGGY[name], budget=1000, strategy="bounded:1")
    higher = threadcheck.explore(BUGGY[name], budget=1000, strategy="bounded:2")
    assert lower.found, lower.report()
    assert (higher.found, higher.found_at) == (True, lower.found_at)


@pytest.mark.parametrize("name", ["ordering", "early_stop"])
def test_a_choice_after_a_thread_blocked_is_no_preemption_in_the_report(name: str) -> None:
    # bounded:0 tries every such choice; the report said "with 1 preemption"
    # (and bounded:1's finds "with 2").
    found = threadcheck.explore(BUGGY[name], budget=1000, strategy="bounded:0")
    assert found.found and found.original_preemptions == 0
    assert "with 0 preemptions" in found.report()
    assert "<- blocked: " in found.report()  # still shown, where it was taken


def test_bounded_search_runs_every_schedule_of_a_level_before_the_next() -> None:
    search = BoundedPreemption(2)
    costs = []
    index = 0
    while search.new_execution(index):
        preempted = 0
        for _ in range(3):
            preempted += search.next_thread([0, 1], 0, 0) != 0
        costs.append(preempted)
        index += 1
    assert costs == sorted(costs)  # 0, then the ones, then the twos
    assert costs.count(0) == 1 and costs.count(1) == 3


def test_the_same_seed_finds_the_same_schedule() -> None:
    first = threadcheck.explore(BUGGY["ordering"], seed=3)
    second = threadcheck.explore(BUGGY["ordering"], seed=3)
    assert first.found and second.found and first.run and second.run
    assert first.found_at == second.found_at
    assert first.run.decisions == second.run.decisions
    # The tokens differ only in the OS randomness each run drew (os.urandom is
    # seeded per exploration: ids a program leaves behind must not collide).
    assert first.token != second.token


def test_replay_reproduces_and_a_wrong_token_diverges() -> None:
    result = threadcheck.explore(BUGGY["lost_update"])
    assert result.token is not None
    again = threadcheck.replay(BUGGY["lost_update"], result.token)
    assert again.found and again.failure == result.failure
    with pytest.raises(ReplayDivergenceError):
        threadcheck.replay(FIXED["lost_update"], result.token)


def _diverged_replay(**recorded: object) -> str:
    """Why a replay of the lost update's token on its fixed twin diverges, once
    the token's ``recorded`` fields are changed (each was False, or not random)."""
    from threadcheck._sched import _token

    result = threadcheck.explore(BUGGY["lost_update"])
    assert result.token is not None
    document = _token.decode(result.token)
    for key in recorded.keys() - {"hashseed"}:
        assert document[key] is False, key  # as an ordinary exploration records it
    with pytest.raises(ReplayDivergenceError) as raised:
        threadcheck.replay(FIXED["lost_update"], _token.encode({**document, **recorded}))
    return str(raised.value)


def test_a_divergence_of_a_token_recorded_with_random_hashes_says_so() -> None:
    # A pytest session hashes strings at random unless PYTHONHASHSEED is set: a
    # test iterating a set of strings diverged on replay, with no word of why.
    assert "recorded with random string hashes" in _diverged_replay(hashseed="random")


def test_a_divergence_of_a_token_that_waited_on_real_io_says_so_first() -> None:
    # Z48: a service talking to another process diverged on replay, and was
    # told only to record it again with PYTHONHASHSEED=0 set.
    message = _diverged_replay(hashseed="random", real_io=True)
    assert "; it waited on real sockets or pipes when it was recorded, whose timing" in message
    assert message.index("real sockets") < message.index("random string hashes")


def test_a_divergence_its_own_exploration_saw_too_is_not_blamed_on_the_hash_seed() -> None:
    # Z48: the exploration's own rerun went elsewhere ("not shrunk: it went
    # elsewhere when rerun"), in the process that found it, with the same hash
    # seed; its replay was told to record it again with PYTHONHASHSEED=0 set.
    message = _diverged_replay(hashseed="random", rerun_diverged=True)
    assert "; so did the exploration's own rerun of it, in the process" in message
    assert "PYTHONHASHSEED" not in message


def test_access_points_split_a_one_line_update_and_sync_points_do_not() -> None:
    assert threadcheck.explore(BUGGY["lost_update"], budget=300).found
    missed = threadcheck.explore(BUGGY["lost_update"], budget=300, granularity="sync")
    assert not missed.found


def test_library_code_gets_points_only_when_included(tmp_path: Path) -> None:
    # A "library" whose own one-line update races: installed packages are not
    # instrumented, so the race is found only once its folder is included.
    library = tmp_path / "site-packages" / "counterlib"
    library.mkdir(parents=True)
    (library / "__init__.py").write_text(
        "class Counter:\n    total = 0\n\n    def add(self, n):\n        self.total += n\n"
    )
    sys.path.insert(0, str(library.parent))
    try:
        import counterlib  # type: ignore[import-not-found]

        def scenario(reactor: Any) -> Any:
            counter = counterlib.Counter()
            reactor.callLater(0, counter.add, 10)
            done = threads.deferToThreadPool(reactor, reactor.getThreadPool(), counter.add, 1)
            done.addCallback(
                lambda _: threads.deferToThreadPool(reactor, reactor.getThreadPool(), int)
            )
            return done.addCallback(lambda _: _check(counter.total == 11))

        target = ScenarioTarget(scenario)
        missed = explore(target, budget=Budget(200))
        found = explore(target, budget=Budget(200), settings=Settings(include=(str(library),)))
    finally:
        sys.path.remove(str(library.parent))
        sys.modules.pop("counterlib", None)
    assert not missed.found
    assert found.found


def _check(condition: bool) -> None:
    assert condition
