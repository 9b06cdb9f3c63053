"""threadcheck.explore and replay as a library user meets them."""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from typing import Any

import pytest
from races import BUGGY, FIXED
from twisted.internet import task, threads
from twisted.internet.defer import Deferred

import threadcheck
from threadcheck._sched import _explore
from threadcheck._sched._core import CLOCK_START, VIRTUAL_EPOCH
from threadcheck._sched._explore import Budget
from threadcheck._sched._report import ExplorationFailedError
from threadcheck._testexplore import marker_budget


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow  # 20-50 s: once in the slow tier, not in each Python's fast tier
@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_an_exploration_leaves_no_file_descriptor_or_thread_behind() -> None:
    import gc
    import threading

    gc.collect()  # earlier tests' garbage: the exploration's collections would close its fds
    before = (open_descriptors(), threading.active_count())
    threadcheck.explore(FIXED["lost_update"], budget=300).assert_clean()
    assert (open_descriptors(), threading.active_count()) == before


def test_assert_clean_raises_with_the_whole_report() -> None:
    result = threadcheck.explore(BUGGY["lost_update"])
    with pytest.raises(ExplorationFailedError) as raised:
        result.assert_clean()
    report = str(raised.value)
    assert report.startswith("threadcheck: exception: AssertionError: total is 10\n")
    assert "  found on schedule" in report and "shrunk to 1" in report
    assert "counter.total (store)   <- preempted: T1 runs" in report
    assert "replay: threadcheck.replay(lost_update, 'tc1." in report


def test_a_lambdas_replay_command_is_python() -> None:
    """``threadcheck.replay(<lambda>, ...)`` is no Python: a scenario without a
    name to call it by is named ``scenario`` (the README's Hypothesis example
    passes a lambda to ``threadcheck.run``)."""
    scenario = BUGGY["lost_update"]
    with pytest.raises(ExplorationFailedError) as raised:
        lambda_line = inspect.currentframe().f_lineno + 1  # type: ignore[union-attr]
        threadcheck.explore(lambda reactor: scenario(reactor)).assert_clean()
    assert "replay: threadcheck.replay(scenario, 'tc1." in str(raised.value)
    # Which scenario: the user's own may be another function of that name.
    line = str(raised.value).rstrip().splitlines()[-1]
    said = f"# scenario: the lambda at test_explore_api.py:{lambda_line}, with this run's values"
    assert line.endswith(said)


def test_the_replay_line_pasted_into_a_test_fails_it() -> None:
    # threadcheck.replay(...) alone returns the result: a regression test made
    # of the printed line passed.
    with pytest.raises(ExplorationFailedError) as raised:
        threadcheck.explore(BUGGY["lost_update"]).assert_clean()
    [line] = [x for x in str(raised.value).splitlines() if x.startswith("replay: ")]
    pasted = line.removeprefix("replay: ")
    assert pasted.endswith(".assert_clean()"), pasted
    with pytest.raises(ExplorationFailedError):
        eval(pasted, {"threadcheck": threadcheck, "lost_update": BUGGY["lost_update"]})


def _failing_pool_job(reactor: Any) -> Any:
    from twisted.internet import threads

    def job() -> None:
        raise AssertionError("in the pool")

    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), job)


def test_an_error_of_a_pool_job_is_not_placed_in_the_reactor_thread() -> None:
    # Its Deferred fails in the reactor's thread, which the report named.
    result = threadcheck.explore(_failing_pool_job, budget=5)
    assert result.failure is not None and result.failure.thread is None
    where = result.report().splitlines()[2]
    assert where.startswith("  at test_explore_api.py:") and where.endswith(" in job"), where


def test_a_spent_budget_is_reported_as_such_not_as_a_pass() -> None:
    result = threadcheck.explore(FIXED["ordering"], budget=10)  # its DPOR phase needs 26
    assert not result.found and not result.exhausted
    result.assert_clean()
    assert result.report().endswith(
        "no failure; budget spent: no failure seen, which is not a proof\n"
    )


def _report_over_a_long_dict(reactor: Any) -> Any:
    """A report walks 100 connections under the lock a pool job registers under."""
    lock = threading.Lock()
    conns = {f"c{i}": i for i in range(100)}

    def register() -> None:
        with lock:
            conns["new"] = 0

    registered = threads.deferToThreadPool(reactor, reactor.getThreadPool(), register)
    total = 0
    with lock:
        for name in conns:
            total += conns[name]
    return registered


def test_the_default_goes_on_with_its_budget_when_its_search_is_no_proof() -> None:
    # The DPOR phase finished in 4 schedules with a loop's steps past the
    # bound, which is no proof: the exploration stopped there, its budget unspent.
    result = threadcheck.explore(_report_over_a_long_dict, budget=300)
    assert (result.found, result.exhausted, result.schedules) == (False, False, 300)
    dpor = threadcheck.explore(_report_over_a_long_dict, budget=300, strategy="dpor")
    assert dpor.exhausted and not dpor.proof
    assert dpor.thinned == ("loops past 64 steps (not every step a point)",)


def _forgets_its_deferred(reactor: Any, returns: bool = False) -> Deferred[Any] | None:
    total = [0]
    lock = threading.Lock()

    def add(n: int) -> None:
        with lock:
            total[0] += n

    def check(_: object) -> None:
        assert total[0] == 101, total[0]

    pool = reactor.getThreadPool()
    d = threads.deferToThreadPool(reactor, pool, add, 1)
    d.addCallback(lambda _: task.deferLater(reactor, 0, add, 100)).addCallback(check)
    return d if returns else None  # (forgotten: the check never runs)


def test_a_scenario_that_forgets_its_deferred_is_never_called_proved() -> None:
    # The search "explored every interleaving" of a scenario whose jobs the
    # reactor's stop cut off, its check run in 8 schedules of 65 (probe Z48).
    result = threadcheck.explore(_forgets_its_deferred, budget=100)
    assert (result.found, result.proof) == (False, False)
    assert "work left pending as the scenario's Deferred fired (1 thread-pool job)" in (
        result.report()
    )
    returned = threadcheck.explore(functools.partial(_forgets_its_deferred, returns=True))
    assert returned.proof, returned.report()


@pytest.mark.parametrize("bound", [{"budget": 0}, {"budget": None, "seconds": 1e-9}])
def test_no_schedule_run_is_inconclusive_not_a_pass(bound: dict[str, Any]) -> None:
    result = threadcheck.explore(FIXED["ordering"], **bound)
    assert (result.found, result.schedules, result.inconclusive) == (False, 0, True)
    assert result.report().startswith("threadcheck: inconclusive: no schedule ran (budget ")
    with pytest.raises(ExplorationFailedError, match="nothing was explored"):
        result.assert_clean()


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: threadcheck.explore(FIXED["ordering"], budget=-1), "budget=-1: give a whole"),
        (lambda: threadcheck.explore(FIXED["ordering"], budget=2.5), "budget=2.5: give a whole"),
        (lambda: threadcheck.explore(FIXED["ordering"], seconds=-1), "seconds=-1: give seconds"),
        (lambda: threadcheck.Schedule.of("garbage"), r"takes \(decision, thread\) pairs"),
        (lambda: threadcheck.Schedule.of([(-1, 1)]), r"Schedule.of: \(-1, 1\) is no"),
        (lambda: threadcheck.Schedule.of([(1, 2, 3)]), r"Schedule.of: \(1, 2, 3\) is no"),
        (lambda: threadcheck.Schedule.of([(1, 0), (1, 2)]), "a decision planned twice"),
        (lambda: threadcheck.run(FIXED["ordering"], schedule="tc1.abc"), "give a Schedule"),
        # A string was taken letter by letter ("no such module: t"), a string
        # max_delay raised TypeError from a comparison, a None token AttributeError.
        (
            lambda: threadcheck.explore(FIXED["ordering"], include="twisted"),
            "include='twisted': give a list of files, folders or module names",
        ),
        (lambda: threadcheck.run(FIXED["ordering"], include="twisted"), "include='twisted'"),
        (lambda: threadcheck.run(FIXED["ordering"], max_delay="1"), "not '1'"),
        (lambda: threadcheck.replay(FIXED["ordering"], None), "token=None: give the tc1."),
    ],
)
def test_bad_arguments_are_one_line_errors_before_anything_runs(call: Any, error: str) -> None:
    # A negative budget ran as "inconclusive"; Schedule.of took anything; a token
    # given to run() raised AttributeError.
    with pytest.raises((ValueError, TypeError), match=error):
        call()


def test_a_time_budget() -> None:
    # Warm first: a loaded machine's first exploration can spend 0.5 s before
    # its first schedule (rewriting the test modules), and rightly runs none.
    threadcheck.explore(FIXED["ordering"], budget=1)
    result = threadcheck.explore(FIXED["ordering"], budget=None, seconds=0.5)
    assert result.schedules > 0 and not result.found


@pytest.mark.parametrize(
    ("given", "schedules", "seconds"),
    [
        ({"seconds": 20}, None, 20),  # it was 2000 schedules, in 3 s of the 20 asked
        ({}, 2000, None),
        ({"budget": 2000, "seconds": 20}, 2000, 20),
        ({"budget": 50}, 50, None),
    ],
)
def test_seconds_alone_bound_the_exploration_alone(
    monkeypatch: pytest.MonkeyPatch, given: dict[str, Any], schedules: int | None, seconds: Any
) -> None:
    budgets: list[Budget] = []

    def explore_target(target: Any, *, budget: Budget, **kwargs: Any) -> Any:
        budgets.append(budget)
        return None

    monkeypatch.setattr(_explore, "explore", explore_target)
    threadcheck.explore(FIXED["ordering"], **given)
    assert budgets == [Budget(schedules, seconds)]
    assert marker_budget(given) == Budget(schedules, seconds)  # the marker's


def test_a_time_budget_cuts_short_a_schedule_still_running() -> None:
    # A run longer than the budget (its warm-up's here) went on to its end:
    # `--time 2` took as long as the program did, then said nothing was explored.
    rounds = 5_000
    done: list[int] = []

    def batch(reactor: Any) -> Deferred[Any]:
        def crunch() -> None:
            for _ in range(rounds):
                done.append(sum(range(20_000)))  # milliseconds a round, a point each

        return threads.deferToThread(crunch)

    result = threadcheck.explore(batch, budget=None, seconds=0.2)
    assert (result.found, result.schedules, result.inconclusive) == (False, 0, True)
    assert len(done) < rounds, "the warm-up ran to its end"
    assert "was spent before the first one ended" in result.report()


def test_the_scenario_gets_a_fresh_reactor_every_schedule() -> None:
    seen: list[Any] = []

    def scenario(reactor: Any) -> None:
        seen.append(reactor)
        assert reactor.seconds() == VIRTUAL_EPOCH  # virtual time starts afresh
        assert time.monotonic() == CLOCK_START

    threadcheck.explore(scenario, budget=5, strategy="random").assert_clean()
    assert len(seen) == 1 + 5  # the warm-up run, then 5 schedules
    assert len({id(reactor) for reactor in seen}) == len(seen)


class Counter:
    def __init__(self) -> None:
        self.value = 0


def test_the_global_reactor_is_the_scheduled_one_during_a_schedule() -> None:
    """threads.deferToThread and deferLater on the imported reactor, as services write them."""
    from twisted.internet import defer, task, threads

    def scenario(reactor: Any) -> Any:
        from twisted.internet import reactor as global_reactor

        assert global_reactor is reactor
        counter = Counter()

        def bump() -> None:
            value = counter.value
            counter.value = value + 1  # lost update: the two jobs race

        def check(_: object) -> None:
            assert counter.value == 2, counter.value

        jobs = [threads.deferToThread(bump), task.deferLater(global_reactor, 0, bump)]
        return defer.gatherResults(jobs).addCallback(check)

    result = threadcheck.explore(scenario, budget=2000)
    assert result.found and result.failure is not None
    assert result.failure.what == "AssertionError", result.failure
    assert not result.every_schedule  # an interleaving bug, not a broken scenario


def test_a_reactor_imported_before_exploring_is_a_usage_error_not_a_deadlock() -> None:
    from twisted.internet import reactor as stale  # bound before explore(), as a module would
    from twisted.internet import task

    before = set(stale.getDelayedCalls())

    def scenario(reactor: Any) -> Any:
        return task.deferLater(stale, 0.5, lambda: None)

    with pytest.raises(ValueError, match="used Twisted's global reactor as imported before"):
        threadcheck.explore(scenario, budget=20)
    for call in set(stale.getDelayedCalls()) - before:
        call.cancel()  # what the scenario left there


def test_a_pool_made_before_exploring_is_a_usage_error_not_a_deadlock(tmp_path: Any) -> None:
    # A module-level adbapi.ConnectionPool starts its threads when the global
    # reactor runs: its interactions never ran, and every schedule "deadlocked".
    from twisted.enterprise import adbapi

    pool = adbapi.ConnectionPool("sqlite3", str(tmp_path / "pool.db"), check_same_thread=False)

    def scenario(reactor: Any) -> Any:
        return pool.runQuery("SELECT 1")

    with pytest.raises(ValueError, match="gave work to a thread pool that never started: "):
        threadcheck.explore(scenario, budget=20)


def test_a_thread_pool_the_program_makes_is_scheduled_too() -> None:
    """Twisted makes a ThreadPool's queues and lock in library code; they must
    still be the scheduler's, or a worker would block outside its control."""
    from twisted.python.threadpool import ThreadPool

    def scenario(reactor: Any) -> None:
        ran: list[int] = []
        pool = ThreadPool(0, 3, "mine")
        pool.start()
        for n in range(3):
            pool.callInThread(ran.append, n)
        pool.stop()  # runs the backlog, joins every worker
        assert sorted(ran) == [0, 1, 2], ran

    result = threadcheck.explore(scenario, budget=300)
    result.assert_clean()
    assert result.schedules == 300 or result.proof
    pool = ThreadPool(0, 1, "after")  # and ThreadPool is itself again afterwards
    pool.start()
    pool.stop()


LAZY_LIBRARY = '''
_cache = {}


def settings():
    """Load once, on first use (a library's lazy cache, without a lock)."""
    if "loaded" not in _cache:
        _cache["loads"] = _cache.get("loads", 0) + 1
        _cache["loaded"] = True
    return _cache
'''


def _two_workers_configuring(library: Any) -> Any:
    """A scenario (no reactor: plain threads) of two workers loading the
    library's configuration; it fails if it was loaded twice."""
    import threading

    def two_workers_configure() -> None:
        library._cache.clear()
        workers = [threading.Thread(target=library.settings) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert library._cache["loads"] == 1, "configuration loaded twice"

    return two_workers_configure


def test_a_race_inside_an_installed_library_is_found_with_include(tmp_path: Any) -> None:
    import sys

    site = tmp_path / "site-packages"
    (site / "lazyconfig").mkdir(parents=True)
    (site / "lazyconfig" / "__init__.py").write_text(LAZY_LIBRARY)
    sys.path.insert(0, str(site))
    try:
        import lazyconfig  # type: ignore[import-not-found]

        two_workers_configure = _two_workers_configuring(lazyconfig)
        missed = threadcheck.explore(two_workers_configure, budget=300)
        found = threadcheck.explore(two_workers_configure, budget=300, include=["lazyconfig"])
        with pytest.raises(ValueError, match="no such file, folder or module: lazyconfg"):
            threadcheck.explore(two_workers_configure, include=["lazyconfg"])
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("lazyconfig", None)
    # Without it the library runs whole between points: proved within those.
    assert not missed.found and (missed.schedules == 300 or missed.proof)
    assert found.found, found.report()
    assert found.report().startswith(
        "threadcheck: exception: AssertionError: configuration loaded twice"
    )
    assert " __init__.py:8 settings " in found.report()  # the library's own lines are steps


def test_an_included_name_is_the_installed_module_also_when_a_folder_has_its_name(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run from the library's checkout (tox, a flat layout): ./lazyconfig is its
    # source, unused; the program imports the installed copy. Watching only the
    # folder missed the race, and the default strategy then proved the program.
    import sys

    site = tmp_path / "site-packages"
    (site / "lazyconfig").mkdir(parents=True)
    (site / "lazyconfig" / "__init__.py").write_text(LAZY_LIBRARY)
    checkout = tmp_path / "checkout"
    (checkout / "lazyconfig").mkdir(parents=True)
    (checkout / "lazyconfig" / "__init__.py").write_text(LAZY_LIBRARY)
    monkeypatch.chdir(checkout)
    sys.path.insert(0, str(site))
    try:
        import lazyconfig

        two_workers_configure = _two_workers_configuring(lazyconfig)
        found = threadcheck.explore(two_workers_configure, budget=300, include=["lazyconfig"])
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("lazyconfig", None)
    assert found.found, found.report()
    assert " __init__.py:8 settings " in found.report()


def test_a_long_exploration_keeps_nothing_of_its_past_schedules(tmp_path: Any) -> None:
    # Each schedule makes a reactor (and its checker) and pool threads; none
    # may outlive the next schedule's start, or memory and the cost of every
    # thread start grow with the schedules run (a checker not yet running is
    # told of every thread start).
    import gc
    import threading

    from threadcheck import _affinity
    from threadcheck._sched._explore import Budget, explore
    from threadcheck._sched._targets import ProgramTarget

    program = tmp_path / "never_runs_the_reactor.py"
    program.write_text(
        "import threading\n"
        "from twisted.internet import reactor\n"
        "worker = threading.Thread(target=print)\n"
        "worker.start()\n"
        "worker.join()\n"
    )
    seen: dict[int, tuple[int, int]] = {}

    def count(ran: int, failures: int, elapsed: float) -> None:
        if ran in (20, 200):
            threads = sum(isinstance(o, threading.Thread) for o in gc.get_objects())
            seen[ran] = (len(_affinity._waiting_to_run), threads)

    explore(
        ProgramTarget(None, [str(program)]), budget=Budget(200), strategy="random", progress=count
    )
    checkers_early, threads_early = seen[20]
    checkers_late, threads_late = seen[200]
    # Not 200 and 200. (One checker more than the running schedule's can be
    # held a while in a long pytest session, on 3.10/3.11 once code is rewritten.)
    assert checkers_late <= max(checkers_early, 2), seen
    assert threads_late <= threads_early + 2, seen


def test_a_library_module_remembered_as_such_is_user_code_once_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Explorations remember which loaded modules are libraries; --include must still win."""
    import types

    from threadcheck import _stacks

    folder = "/usr/lib/python3/site-packages/vendored"
    module = types.ModuleType("vendored")
    module.__file__ = f"{folder}/__init__.py"
    assert not _stacks.is_user_module(module)
    monkeypatch.setattr(_stacks, "_USER_DIRS", _stacks._USER_DIRS)  # restored after
    _stacks.register_user_paths([folder])
    try:
        assert _stacks.is_user_module(module)
    finally:
        monkeypatch.undo()
        _stacks._forget_classes()
    assert not _stacks.is_user_module(module)


def test_a_worker_defined_beside_the_scenario_is_rewritten_with_it() -> None:
    # Made by the test before exploring: without its code swapped it would run
    # as written (on 3.10/3.11 traced instruction by instruction; for DPOR, a
    # step that may touch anything).
    from twisted.internet import defer, threads

    import threadcheck
    from threadcheck._races._footprint import is_rewritten

    class Counter:
        total = 0

    counter = Counter()

    def work() -> None:
        counter.total += 1

    def scenario(reactor: Any) -> Any:
        counter.total = 0
        pool = reactor.getThreadPool()
        jobs = [threads.deferToThreadPool(reactor, pool, work) for _ in range(2)]
        return defer.gatherResults(jobs).addCallback(check)

    def check(_: object) -> None:
        assert counter.total == 2, counter.total

    result = threadcheck.explore(scenario, budget=500, strategy="dpor")
    assert result.found and "AssertionError: 1" in result.report()
    assert is_rewritten(work.__code__) and is_rewritten(check.__code__)


def _always_fails(reactor: Any) -> None:
    raise AssertionError("broken on every schedule")


def _interrupt(*args: object) -> None:
    raise KeyboardInterrupt


def test_ctrl_c_after_a_failing_schedule_keeps_the_failure() -> None:
    # progress, called after each schedule, raised Ctrl-C before the failure of
    # that schedule was looked at: "no failure seen so far".
    from threadcheck._sched._explore import Budget, explore
    from threadcheck._sched._targets import ScenarioTarget

    result = explore(
        ScenarioTarget(_always_fails), budget=Budget(100), progress=_interrupt_after_a_schedule
    )
    assert result.found and result.failure is not None
    assert "broken on every schedule" in result.failure.message


def _interrupt_after_a_schedule(schedules: int, *args: object) -> None:
    if schedules:
        raise KeyboardInterrupt


def test_ctrl_c_during_the_warm_up_begins_no_schedule() -> None:
    # A warm-up stuck on real I/O for 30 s was followed by a schedule stuck as long.
    from threadcheck._sched._explore import Budget, explore
    from threadcheck._sched._targets import ScenarioTarget

    runs: list[object] = []
    with pytest.raises(KeyboardInterrupt):
        explore(
            ScenarioTarget(lambda reactor: runs.append(reactor)),
            budget=Budget(100),
            progress=_interrupt,
        )
    assert len(runs) == 1  # the warm-up's


def test_ctrl_c_while_a_first_failure_is_checked_again_stops_the_check() -> None:
    # The schedules that tell "not an interleaving bug" ran on through Ctrl-C.
    from threadcheck._sched._explore import Budget, explore
    from threadcheck._sched._targets import ScenarioTarget

    target = ScenarioTarget(_always_fails)
    result = explore(target, budget=Budget(100), shrink_progress=_interrupt)
    assert result.found and result.shrink_interrupted
    assert result.schedules == 1 and not result.every_schedule


def test_each_schedule_of_a_program_starts_with_the_environment_it_had(tmp_path: Any) -> None:
    # A program that marks its start in os.environ (for the children it spawns)
    # found its own mark from the schedule before: "started twice" on every one.
    from threadcheck._sched._explore import Budget, explore
    from threadcheck._sched._targets import ProgramTarget

    program = tmp_path / "service.py"
    program.write_text(
        "import os\n"
        "assert 'SERVICE_BOOTED' not in os.environ, 'started twice in one process'\n"
        "os.environ['SERVICE_BOOTED'] = '1'\n"
    )
    result = explore(ProgramTarget(None, [str(program)]), budget=Budget(5), strategy="random")
    assert not result.found, result.report()
    assert "SERVICE_BOOTED" not in os.environ


def test_an_executors_thread_names_read_the_same_in_a_replay() -> None:
    # The message named ThreadPoolExecutor-58_0 exploring, -1_0 replaying: the
    # executor numbers itself with a class-wide counter.
    from concurrent.futures import ThreadPoolExecutor

    def scenario(reactor: Any) -> None:
        with ThreadPoolExecutor(max_workers=1) as pool:
            name = pool.submit(lambda: threading.current_thread().name).result()
        raise AssertionError(f"ran in {name}")

    ThreadPoolExecutor().shutdown()  # the counter moves on outside explorations
    result = threadcheck.explore(scenario, budget=5)
    assert result.failure is not None and result.token is not None
    assert result.failure.message == "AssertionError: ran in ThreadPoolExecutor-0_0"
    again = threadcheck.replay(scenario, result.token)
    assert again.failure is not None and again.failure.message == result.failure.message


@pytest.mark.parametrize("call", [threadcheck.explore, threadcheck.run])
def test_a_scenario_that_is_no_function_is_a_type_error(call: Any) -> None:
    # It was the program's failure on every schedule, "at _targets.py:128".
    with pytest.raises(TypeError, match="scenario=42: give a function taking the reactor"):
        call(42)


def test_a_program_that_forks_is_refused_in_one_line(tmp_path: Any) -> None:
    # Each copy of the explorer went on after the fork: internal errors, and the
    # parent's end of the program "proved".
    from threadcheck._sched._core import TargetError
    from threadcheck._sched._explore import Budget, explore
    from threadcheck._sched._targets import ProgramTarget

    program = tmp_path / "daemon.py"
    program.write_text("import os\nif os.fork() == 0:\n    os._exit(0)  # the child\n")
    with pytest.raises(TargetError, match=r"^the program forks \(os.fork\(\)\)"):
        explore(ProgramTarget(None, [str(program)]), budget=Budget(5))


def test_the_program_does_not_see_the_exploration_s_own_threads() -> None:
    # A service's shutdown check for leaked threads named threadcheck-watchdog.
    def scenario(reactor: Any) -> None:
        flusher = threading.Thread(target=lambda: None, name="flusher")
        flusher.start()
        flusher.join()
        names = [thread.name for thread in threading.enumerate()]
        assert not any(name.startswith("threadcheck") for name in names), names
        assert threading.active_count() == len(names)

    threadcheck.explore(scenario, budget=3).assert_clean()


def test_a_failure_is_not_called_independent_of_the_interleaving_on_a_cut_short_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Slow schedules (real I/O) cut the check short after a few: the verdict
    # "not an interleaving bug" was still given, on a real lost update.
    from threadcheck._sched import _explore

    def scenario(reactor: Any) -> Any:
        from twisted.internet import threads

        def fail() -> None:
            raise ValueError("always")

        return threads.deferToThread(fail)

    monkeypatch.setattr(_explore, "OTHER_SECONDS", 0.0)
    cut_short = threadcheck.explore(scenario, budget=5)
    assert cut_short.found and not cut_short.every_schedule
    monkeypatch.undo()
    checked = threadcheck.explore(scenario, budget=5)
    assert checked.found and checked.every_schedule


def test_ctrl_c_ends_the_schedule_then_raises_keyboard_interrupt() -> None:
    # Raised in the middle of a schedule, Twisted's mainLoop swallowed it: the
    # schedule was reported as a deadlock, with a token that did not replay.
    import os
    import signal
    import time

    def scenario() -> None:
        def heartbeat() -> None:
            for _ in range(50):
                time.sleep(0.01)

        beats = [threading.Thread(target=heartbeat) for _ in range(3)]
        for beat in beats:
            beat.start()
        for beat in beats:
            beat.join()

    ctrl_c = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
    ctrl_c.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            threadcheck.explore(scenario, budget=None, seconds=60)
    finally:
        ctrl_c.cancel()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_scenario_lambda_with_a_lambda_on_its_line_keeps_its_own_code() -> None:
    # Rewritten in place, each function was given the code of its name and line:
    # the scenario got the inner lambda's ("<lambda>() takes 0 positional
    # arguments but 1 was given").
    done: list[int] = []
    result = threadcheck.explore(
        lambda reactor: threads.deferToThread(lambda: done.append(1)), budget=10
    )
    result.assert_clean()
    assert done


def test_a_scenario_whose_first_parameter_is_an_option_is_called_without_the_reactor() -> None:
    # The reactor was passed as `ordered`, truthy: the fixed branch was explored,
    # the naive one never, "no failure seen".
    given: list[object] = []

    def dining(ordered: bool = False) -> None:
        given.append(ordered)

    def with_reactor(reactor: Any = None) -> None:
        given.append(reactor is not None)

    threadcheck.explore(dining, budget=1).assert_clean()
    threadcheck.explore(with_reactor, budget=1).assert_clean()
    assert set(given) == {False, True}
    assert given[0] is False and given[-1] is True


def test_a_gathered_failure_is_headed_by_the_error_inside_it() -> None:
    # The headline was Twisted's repr of the FirstError: "FirstError[#0,
    # [Failure instance: Traceback: <class 'AssertionError'>: timed out ...".
    from twisted.internet import threads
    from twisted.internet.defer import gatherResults

    def scenario(reactor: Any) -> Any:
        def produce() -> None:
            raise AssertionError("timed out waiting for the producer")

        return gatherResults([threads.deferToThread(produce), threads.deferToThread(int)])

    result = threadcheck.explore(scenario, budget=5)
    assert result.report().startswith(
        "threadcheck: exception: AssertionError: timed out waiting for the producer;"
    ), result.report()


def test_a_thread_s_traceback_starts_where_its_own_would() -> None:
    # It began with threadcheck's frame that runs a controlled thread's body.
    def scenario() -> None:
        def consume() -> None:
            raise LookupError("no item")

        worker = threading.Thread(target=consume)
        worker.start()
        worker.join()

    result = threadcheck.explore(scenario, budget=2)
    assert result.failure is not None
    frames = [line for line in result.failure.details.splitlines() if line.startswith("  File ")]
    assert frames[0].endswith(", in run"), result.failure.details  # threading's Thread.run
    assert "threadcheck" not in "\n".join(frames), result.failure.details


def test_a_failure_on_every_schedule_says_so_after_its_messages_first_line() -> None:
    # pytest's rewritten assert makes the message two lines: the verdict came
    # after the second ("assert 1 == 2; fails on every schedule tried ...").
    def scenario(reactor: Any) -> Any:
        def job() -> None:
            raise AssertionError("wrong answer\nassert 1 == 2")

        return threads.deferToThread(job)

    headline, second = threadcheck.explore(scenario, budget=5).report().splitlines()[:2]
    assert headline.startswith("threadcheck: exception: AssertionError: wrong answer; fails on")
    assert headline.endswith("more run to check it, outside the budget): not an interleaving bug")
    assert second == "assert 1 == 2"
