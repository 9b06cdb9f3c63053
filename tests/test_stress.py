"""Stress runs on real threads: the outcome histogram, and what fails it.

Quality: a planted lost update (a read-modify-write split across two lines, in
a deferToThread job and a reactor callback) shows its forbidden outcome in
1,000 perturbed runs; its fixed twin shows only acceptable ones.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest
from races import Counter, _in_thread
from twisted.internet.defer import Deferred

import threadcheck
from threadcheck import StressFailedError
from threadcheck._stress import Raised
from threadcheck._stress import stress as stress_runs

pytestmark = pytest.mark.slow


def lost_update(reactor: Any) -> Deferred[Any]:
    counter = Counter()

    def add(n: int) -> None:
        seen = counter.total
        counter.total = seen + n

    reactor.callLater(0, add, 10)
    done = _in_thread(reactor, add, 1)
    done.addCallback(lambda _: _in_thread(reactor, lambda: None))
    return done.addCallback(lambda _: counter.total)


def lost_update_fixed(reactor: Any) -> Deferred[Any]:
    counter = Counter()

    def add(n: int) -> None:
        seen = counter.total
        counter.total = seen + n

    reactor.callLater(0, add, 10)
    done = _in_thread(reactor, reactor.callFromThread, add, 1)
    done.addCallback(lambda _: _in_thread(reactor, lambda: None))
    done.addCallback(lambda _: _in_thread(reactor, lambda: None))
    return done.addCallback(lambda _: counter.total)


@pytest.mark.quality
def test_the_planted_lost_update_shows_its_forbidden_outcome() -> None:
    result = threadcheck.stress(lost_update, 1000, acceptable=[11], seed=1)
    assert result.runs == 1000
    assert result.histogram[11] > 0
    lost = {outcome: n for outcome, n in result.histogram.items() if outcome != 11}
    assert lost, result.report()
    assert set(lost) <= {1, 10}
    with pytest.raises(StressFailedError) as raised:
        result.assert_clean()
    report = str(raised.value)
    for outcome, count in lost.items():
        assert f"{outcome!r:<40} {count:>8}  FORBIDDEN, first in run" in report
    assert "threadcheck stress: 1000 runs in" in report


@pytest.mark.quality
def test_the_fixed_twin_shows_only_acceptable_outcomes() -> None:
    result = threadcheck.stress(lost_update_fixed, 1000, acceptable=[11], seed=1)
    assert dict(result.histogram) == {11: 1000}
    result.assert_clean()


def test_an_exception_is_forbidden_with_its_traceback_as_example() -> None:
    def fails(reactor: Any) -> Deferred[Any]:
        return _in_thread(reactor, lambda: 1 / 0)

    result = stress_runs(fails, 3, seed=0)
    assert result.histogram == {Raised("raised ZeroDivisionError: division by zero"): 3}
    assert result.failed
    assert (
        "ZeroDivisionError"
        in result.examples[Raised("raised ZeroDivisionError: division by zero")].details
    )


def test_errors_naming_objects_by_address_are_one_outcome() -> None:
    # Each run's record had its own address: 3 runs, 3 rows of one error.
    class Record:
        pass

    def rejects(reactor: Any) -> Deferred[Any]:
        def validate() -> None:
            raise ValueError(f"invalid record {Record()!r}")

        return _in_thread(reactor, validate)

    result = stress_runs(rejects, 3, seed=0)
    [outcome] = result.histogram
    assert isinstance(outcome, Raised)
    assert outcome.text.startswith("raised ValueError: invalid record <")
    assert outcome.text.endswith(".Record object at 0x…>")


def test_a_thread_affinity_violation_is_an_outcome() -> None:
    def calls_later_from_a_worker(reactor: Any) -> Deferred[Any]:
        return _in_thread(reactor, reactor.callLater, 3600, print)

    result = stress_runs(calls_later_from_a_worker, 2, seed=0)
    outcome = Raised("violation: reactor.callLater")
    assert result.histogram == {outcome: 2}
    assert "callLater" in result.examples[outcome].details and result.failed


def test_a_run_that_never_ends_stops_the_stress_run_with_every_stack() -> None:
    stuck = threading.Event()

    def never_fires(reactor: Any) -> Deferred[Any]:
        return _in_thread(reactor, stuck.wait, 30)

    result = stress_runs(never_fires, 100, seed=0, run_timeout=0.3)
    stuck.set()
    assert result.runs == 1  # no second run piles more stuck threads up
    example = result.examples[Raised("timeout")]
    assert "no result within 0.3 s" in example.details
    assert "stuck.wait" in example.details or "wait" in example.details
    assert result.failed


def test_outcomes_not_listed_as_acceptable_are_forbidden() -> None:
    result = stress_runs(lambda reactor: 7, 5, acceptable=[1, 2], seed=0)
    assert result.histogram == {7: 5} and result.failed
    result = stress_runs(lambda reactor: 7, 5, forbidden=[7], seed=0)
    assert result.failed
    result = stress_runs(lambda reactor: 7, 5, seed=0)
    assert not result.failed  # values are acceptable unless said otherwise


def test_a_list_outcome_is_named_by_a_list_or_a_tuple() -> None:
    # acceptable=[["r", "w"]] raised "unhashable type: 'list'"; a tuple never
    # matched the list the scenario returned (shown as its repr).
    for acceptable in ([["r", "w"]], [("r", "w")]):
        result = stress_runs(lambda reactor: ["r", "w"], 3, acceptable=acceptable, seed=0)
        assert result.histogram == {("r", "w"): 3} and not result.failed, result.report()
    result = stress_runs(lambda reactor: [{"w"}], 3, forbidden=[[{"w"}]], seed=0)
    assert result.failed


def test_a_daemon_heartbeat_outliving_its_run_is_harmless() -> None:
    # Its callFromThread (thread-safe) met the disposed reactor's closed waker:
    # AttributeError: '_UnixWaker' object has no attribute 'o', in the user's thread.
    errors: list[BaseException | None] = []
    previous = threading.excepthook
    threading.excepthook = lambda args: errors.append(args.exc_value)
    stop = threading.Event()

    def scenario(reactor: Any) -> str:
        def beat() -> None:
            while not stop.wait(0.01):
                reactor.callFromThread(lambda: None)

        threading.Thread(target=beat, daemon=True, name="heartbeat").start()
        return "ok"

    try:
        assert not stress_runs(scenario, 3, seed=0).failed
        time.sleep(0.1)  # the heartbeats beat on the disposed reactors
    finally:
        stop.set()
        threading.excepthook = previous
    assert errors == []


def test_each_runs_reactor_is_twisteds_global_one_meanwhile() -> None:
    # deferToThread hands its job to the global reactor: an idle real one, so
    # every run of a test that passed explored timed out ("no result within 10 s").
    from twisted.internet import reactor as installed
    from twisted.internet import threads

    def scenario(reactor: Any) -> Deferred[Any]:
        return threads.deferToThread(lambda host: "10.0.0.1", "db.local")

    result = stress_runs(scenario, 5, seed=0, run_timeout=2)
    assert dict(result.histogram) == {"10.0.0.1": 5}, result.report()
    from twisted.internet import reactor as after

    assert after is installed


def test_the_interpreter_is_left_as_it_was() -> None:
    interval = sys.getswitchinterval()
    trace = sys.gettrace()
    stress_runs(lost_update_fixed, 5, seed=0)
    assert sys.getswitchinterval() == interval
    assert sys.gettrace() is trace
    assert threading.gettrace() is None  # type: ignore[attr-defined,unused-ignore]


def test_a_time_budget_counts_runs_until_it_is_spent() -> None:
    # A run takes milliseconds here; the budget leaves room for a loaded CI machine,
    # where one run once took 0.43 s.
    result = stress_runs(lost_update_fixed, None, seconds=2.0, acceptable=[11], seed=0)
    assert result.seconds >= 2.0
    assert result.runs > 1 and not result.failed


def test_one_run_is_one_run() -> None:
    result = stress_runs(lambda reactor: 13, 1, acceptable=[13])
    assert result.report().startswith("threadcheck stress: 1 run in "), result.report()


def test_no_run_is_inconclusive_never_a_pass() -> None:
    result = stress_runs(lambda reactor: 13, 0, acceptable=[13])
    assert result.inconclusive and not result.failed
    assert result.report().startswith("threadcheck stress: inconclusive: no run happened")
    with pytest.raises(StressFailedError):
        result.assert_ok()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"runs": -5}, "runs=-5: give a whole number"),
        ({"runs": None, "seconds": float("inf")}, "seconds=inf: give seconds: a finite number"),
        ({"yield_probability": 7}, "yield_probability=7: give a probability, from 0 to 1"),
        ({"acceptable": 13}, "acceptable=13: give a list of outcomes"),
        ({"seed": "x"}, "seed='x': give a whole number"),
    ],
)
def test_bad_arguments_are_refused_in_one_line(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        stress_runs(lambda reactor: 13, **arguments)
