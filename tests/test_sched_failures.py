"""Every way a schedule fails is reported as such, with where it happened."""

from __future__ import annotations

import inspect
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import protocol, threads
from twisted.internet.defer import Deferred

import threadcheck
from threadcheck._sched import _core
from threadcheck._sched._core import TIME, Abort, Scheduler
from threadcheck._sched._explore import Budget, explore
from threadcheck._sched._runner import Settings
from threadcheck._sched._targets import ScenarioTarget


def in_pool(reactor: Any, job: Any, *args: Any) -> Deferred[Any]:
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), job, *args)


def test_an_exception_in_a_user_thread() -> None:
    def scenario(reactor: Any) -> None:
        def boom() -> None:
            raise ValueError("in a thread")

        thread = threading.Thread(target=boom, name="worker")
        thread.start()
        thread.join()

    result = threadcheck.explore(scenario, budget=5)
    assert result.failure is not None
    assert (result.failure.kind, result.failure.message) == (
        "exception",
        "ValueError: in a thread",
    )
    assert result.failure.thread == "worker"
    assert result.failure.location is not None and "in boom" in result.failure.location


def test_an_unhandled_error_in_a_deferred() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        def fails() -> None:
            raise KeyError("lost")

        in_pool(reactor, fails)  # nobody handles its failure
        return in_pool(reactor, lambda: None)

    result = threadcheck.explore(scenario, budget=5)
    assert result.failure is not None
    assert result.failure.kind == "unhandled-error"
    assert "KeyError" in result.failure.message
    assert result.failure.signature() == "unhandled-error:KeyError"


def test_an_error_in_a_job_given_to_call_in_thread_is_one_line() -> None:
    # The pool logs it with the legacy log.err(): its formatted event carries the
    # whole traceback, which became the headline (14 lines, then the error).
    def scenario(reactor: Any) -> Deferred[Any]:
        def job() -> None:
            [].pop()

        reactor.callInThread(job)
        return in_pool(reactor, lambda: None)

    result = threadcheck.explore(scenario, budget=5)
    assert result.failure is not None
    assert result.failure.kind == "unhandled-error"
    assert result.failure.message == "Unhandled Error: IndexError: pop from empty list"


def test_a_failed_deferred_and_an_error_in_a_reactor_callback() -> None:
    def failed(reactor: Any) -> Deferred[Any]:
        return in_pool(reactor, lambda: 1 / 0)

    def in_callback(reactor: Any) -> Deferred[Any]:
        reactor.callLater(0, lambda: 1 / 0)
        return in_pool(reactor, lambda: None)

    for scenario, kind in ((failed, "exception"), (in_callback, "unhandled-error")):
        result = threadcheck.explore(scenario, budget=5)
        assert result.failure is not None
        assert (result.failure.kind, result.failure.what) == (kind, "ZeroDivisionError")


def test_a_thread_affinity_violation() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        return in_pool(reactor, reactor.callLater, 0, lambda: None)

    result = threadcheck.explore(scenario, budget=5)
    assert result.failure is not None
    assert result.failure.kind == "violation"
    assert result.failure.message.startswith("reactor.callLater called from thread 'PoolThread")
    assert "fix: do it in the reactor thread" in result.failure.details


def test_a_violation_of_a_job_given_to_call_in_thread_names_who_submitted_it() -> None:
    # The scheduled reactor's callInThread was one frame more: the submission's
    # few innermost frames stopped short of the user's line.
    def scenario(reactor: Any) -> None:
        reactor.callInThread(reactor.callLater, 0, lambda: None)
        submitted.append(inspect.currentframe().f_lineno - 1)  # type: ignore[union-attr]

    submitted: list[int] = []
    result = threadcheck.explore(scenario, budget=5)
    assert result.failure is not None and result.failure.kind == "violation"
    submission = result.failure.details.partition("work submitted to the thread pool at")[2]
    submission = submission.partition("thread started at")[0]
    assert f"test_sched_failures.py:{submitted[0]} in scenario" in submission, submission


def test_a_violation_is_reported_before_the_hang_it_causes() -> None:
    # A worker fires the scenario's Deferred: the harness's reactor.stop then
    # runs in that worker, and the idle reactor is never woken to shut down.
    def scenario(reactor: Any) -> Deferred[Any]:
        done: Deferred[Any] = Deferred()
        reactor.callInThread(lambda: done.callback(None))
        return done

    result = threadcheck.explore(scenario, budget=5)
    assert result.failure is not None
    assert result.failure.kind == "violation"
    assert result.failure.message.startswith("Deferred.callback called from thread 'PoolThread")
    assert result.failure.details.startswith("then deadlock: every live thread is blocked")
    assert "fix: do it in the reactor thread" in result.failure.details
    replayed = threadcheck.replay(scenario, result.token).failure
    assert replayed is not None and replayed.signature() == "violation:Deferred.callback"


def test_a_deadlock_names_each_thread_and_where_it_waits() -> None:
    def scenario(reactor: Any) -> None:
        first, second = threading.Lock(), threading.Lock()

        def one() -> None:
            with first, second:
                pass

        def two() -> None:
            with second, first:
                pass

        workers = [
            threading.Thread(target=one, name="one"),
            threading.Thread(target=two, name="two"),
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    result = threadcheck.explore(scenario, budget=200)
    assert result.failure is not None and result.failure.kind == "deadlock"
    assert "T0(MainThread) on join of T1 (one)" in result.failure.message
    assert "T1(one) on lock" in result.failure.message
    assert "T2(two) on lock" in result.failure.message
    assert "test_sched_failures.py" in result.failure.details
    assert result.run is not None and result.run.preemption_count == 1


def test_a_step_bound_catches_a_livelock() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        flag = {"go": False}

        def spin() -> None:
            while not flag["go"]:  # never set: spins on an access point
                pass

        return in_pool(reactor, spin)

    result = explore(
        ScenarioTarget(scenario), budget=Budget(3), settings=Settings(max_steps=500), shrink=False
    )
    assert result.failure is not None
    assert result.failure.kind == "livelock"
    # 500 decided by the strategy, then fair turns (a batch job's loops end so) up to 10 times that
    message = "step bound exceeded: 5000 scheduling points without finishing"
    assert result.failure.message == message


def _ticking_while_waiting_for_ever(interval: float) -> Any:
    def scenario(reactor: Any) -> Deferred[Any]:
        from twisted.internet import task

        task.LoopingCall(lambda: None).start(interval)  # a service's heartbeat
        return Deferred()  # the reply the test waits for never comes

    return scenario


def test_a_scenario_waiting_for_ever_while_a_looping_call_ticks_is_a_livelock() -> None:
    # Each tick let time pass and took no point: the schedule ran for ever.
    result = threadcheck.explore(_ticking_while_waiting_for_ever(1.0), budget=1)
    assert result.failure is not None and result.failure.kind == "livelock"
    assert result.failure.message.startswith(
        "time bound exceeded: 3,600 s of virtual time without finishing"
    )


def test_time_passing_more_often_than_the_step_bound_allows_is_a_livelock() -> None:
    result = explore(
        ScenarioTarget(_ticking_while_waiting_for_ever(0.01)),
        budget=Budget(1),
        settings=Settings(max_steps=200),
        shrink=False,
    )
    assert result.failure is not None and result.failure.kind == "livelock"
    assert result.failure.message.startswith("time bound exceeded: time passing 400 times")


def _asking_a_server(replies: bool) -> Any:
    def scenario(reactor: Any) -> Deferred[Any]:
        class Server(protocol.Protocol):
            def dataReceived(self, data: bytes) -> None:
                if replies:
                    self.transport.write(b"pong")

        class Client(protocol.Protocol):
            def connectionMade(self) -> None:
                self.transport.write(b"ping")

            def dataReceived(self, data: bytes) -> None:
                self.transport.loseConnection()
                answered.callback(data)

        answered: Deferred[bytes] = Deferred()
        factory = protocol.Factory.forProtocol(Server)
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        client = protocol.ClientFactory.forProtocol(Client)
        reactor.connectTCP("127.0.0.1", port.getHost().port, client)
        return answered.addBoth(lambda result: port.stopListening())

    return scenario


@pytest.mark.parametrize("replies", [False, True], ids=["silent", "replying"])
def test_a_reply_that_never_comes_is_stuck_not_a_hang(
    monkeypatch: pytest.MonkeyPatch, replies: bool
) -> None:
    # The reactor polled its sockets for ever (budgets and SIGTERM waited on it).
    monkeypatch.setattr(_core, "REAL_IO_LIMIT", 0.5)
    result = threadcheck.explore(_asking_a_server(replies), budget=2)
    if replies:
        result.assert_clean()
        return
    assert result.failure is not None and result.failure.kind == "deadlock"
    assert result.failure.message.startswith(
        "stuck on real I/O: no thread could run for 500 ms of real time in all, waiting on "
        "sockets or pipes that did not answer (a reply that never comes?): T0(MainThread)"
    )
    # Its token is printed, but real I/O's timing is not replayed: the report says so.
    assert "replay is best effort: this schedule waited on real sockets or pipes" in (
        result.report()
    )
    assert result.report().splitlines()[-1].startswith("replay: ")
    # Found in the warm-up run, it is not run again (each rerun waited 30 s:
    # a pool job reading a reply without a timeout took minutes, deaf to SIGTERM).
    assert result.schedules == 1
    assert "not shrunk: a rerun would wait again" in result.report()


class AlwaysTime:
    """A strategy that lets time pass whenever it may: it never runs the other thread."""

    def new_execution(self, index: int) -> bool:
        return True

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        return TIME if TIME in runnable else runnable[0]

    def next_int(self, bound: int) -> int:
        return 0


def test_decisions_without_points_are_bounded_too() -> None:
    # A thread that waits until "now" again and again, in code without points
    # (a reactor polling real sockets did), while the strategy lets no time pass.
    scheduler = Scheduler(AlwaysTime(), max_steps=10)
    me = scheduler.adopt_current("MainThread")
    scheduler.new_thread("never run", daemon=True)
    try:
        with pytest.raises(Abort):
            while True:
                scheduler.block("poll", scheduler.now)
    finally:
        scheduler.release_adopted(me)
    assert scheduler.failure is not None and scheduler.failure.kind == "livelock"
    assert (
        scheduler.failure.message
        == "step bound exceeded: 30 scheduling decisions without finishing"
    )


def test_blocking_outside_the_scheduler_is_reported_not_hung() -> None:
    real = threading.Event()  # created before exploring: the scheduler cannot see it

    def scenario(reactor: Any) -> Deferred[Any]:
        def stuck() -> None:
            real.wait()  # a real wait: blocks the OS thread, holding the turn

        return in_pool(reactor, stuck)

    try:
        result = explore(
            ScenarioTarget(scenario),
            budget=Budget(2),
            settings=Settings(stall_timeout=1.0),
            shrink=False,
        )
    finally:
        real.set()  # lets the abandoned pool threads go
    assert result.failure is not None
    assert result.failure.kind == "uncontrolled-blocking"
    assert "blocked outside the scheduler's control" in result.failure.message
    assert "in stuck\n      real.wait()" in result.failure.details, result.failure.details


def test_the_reactor_stopping_before_the_scenario_is_done() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        reactor.callLater(0, reactor.stop)
        return Deferred()

    result = threadcheck.explore(scenario, budget=3)
    assert result.failure is not None
    assert result.failure.kind == "incomplete"


def test_a_deadlock_that_the_last_runnable_threads_end_leaves_is_reported() -> None:
    # An executor's worker ended last (its executor collected), leaving only the
    # never-stopped pool's worker and the join at exit: the turn stayed with the
    # ended worker, read as "blocked outside the scheduler's control" after 10 s.
    from concurrent.futures import ThreadPoolExecutor

    from twisted.internet import defer
    from twisted.python.threadpool import ThreadPool

    def scenario(reactor: Any) -> Deferred[Any]:
        pool = ThreadPool(1, 2, name="own")
        pool.start()  # BUG: never stopped
        job = threads.deferToThreadPool(reactor, pool, lambda: 2)
        executor = ThreadPoolExecutor(2)
        fired: Deferred[Any] = Deferred()
        executor.submit(lambda: reactor.callFromThread(fired.callback, 1))
        return defer.gatherResults([fired, job])

    result = threadcheck.explore(scenario, budget=5)
    assert result.failure is not None, result.report()
    assert result.failure.kind == "deadlock", result.report()
    assert "T0(MainThread) on join of T1 (PoolThread-own-0) at exit" in result.failure.message


@pytest.mark.parametrize(("code", "status"), [(256, None), (-1, 255), (3, 3), ("bad", 1)])
def test_an_exit_status_is_the_processs(code: object, status: int | None) -> None:
    # sys.exit(256) (an error count as the status) ends a process with 0, and
    # sys.exit(-1) with 255: they were "status 256", a failure, and "status -1".
    from threadcheck._sched._program import program_failure

    failure = program_failure("MainThread", SystemExit(code))
    if status is None:
        assert failure is None
    else:
        assert failure is not None and failure.what == str(status)
        assert failure.message.startswith(f"the program exited with status {status}")


def _abort() -> None:
    os.abort()


def _raise_usr1() -> None:
    signal.raise_signal(signal.SIGUSR1)


def _pthread_kill_usr1() -> None:
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGUSR1)


def _killpg_usr1() -> None:
    os.killpg(os.getpgid(0), signal.SIGUSR1)


@pytest.mark.parametrize(
    ("signal_itself", "message"),
    [
        (_abort, "the program was killed by SIGABRT (os.abort)"),
        (_raise_usr1, "the program was killed by SIGUSR1 (signal.raise_signal)"),
        (_pthread_kill_usr1, "the program was killed by SIGUSR1 (signal.pthread_kill)"),
        (_killpg_usr1, "the program was killed by SIGUSR1 (os.killpg of its group)"),
    ],
)
def test_a_program_signalling_itself_ends_that_schedule_not_the_process(
    signal_itself: Any, message: str
) -> None:
    # Each killed the explorer (a pytest session: exit 134, no junitxml), or
    # was taken for the user's Ctrl-C; os.kill of itself already ended the schedule.
    def scenario(reactor: Any) -> None:
        worker = threading.Thread(target=signal_itself, name="watchdog")
        worker.start()
        worker.join()

    result = threadcheck.explore(scenario, budget=3)
    assert result.failure is not None
    assert (result.failure.kind, result.failure.message) == ("exit", message)
    assert result.failure.thread == "watchdog"


def test_a_stop_asked_while_a_thread_is_stuck_outside_control_ends_that_schedule() -> None:
    # Ctrl-C waited for the watchdog's timeout (10 s) before the exploration
    # stopped, and then reported the stall as the program's failure.
    from threadcheck._sched import _progress

    real = threading.Event()  # created before exploring: the scheduler cannot see it

    def scenario(reactor: Any) -> Deferred[Any]:
        return in_pool(reactor, real.wait)

    asked = threading.Timer(0.2, _progress.stop_requested.set)
    asked.start()
    try:
        with pytest.raises(KeyboardInterrupt):  # as a Ctrl-C between schedules stops it
            patient = Settings(stall_timeout=600)
            explore(ScenarioTarget(scenario), budget=Budget(2), settings=patient)
    finally:
        asked.join()
        _progress.stop_requested.clear()
        real.set()  # lets the abandoned pool thread go


def test_threads_started_with_start_new_thread_are_controlled() -> None:
    # A raw thread ran for real: the program waiting on its lock was "deadlocked"
    # on every schedule.
    import _thread

    def scenario(reactor: Any) -> None:
        done = threading.Lock()
        done.acquire()
        handled: list[int] = []

        def handle() -> None:
            handled.append(1)
            done.release()

        _thread.start_new_thread(handle, ())
        done.acquire()
        assert handled == [1]

    result = threadcheck.explore(scenario, budget=20)
    assert not result.found, result.report()


def test_a_stop_asked_while_waiting_on_real_io_ends_that_schedule() -> None:
    # A pool job's recv with a long timeout was waited out in real time, the
    # user's Ctrl-C or SIGTERM unheard until it ended.
    import socket

    from threadcheck._sched import _progress

    ours, theirs = socket.socketpair()  # theirs never writes

    def scenario(reactor: Any) -> Deferred[Any]:
        def receive() -> bytes:
            ours.settimeout(600)
            return ours.recv(1)

        return in_pool(reactor, receive)

    asked = threading.Timer(0.3, _progress.stop_requested.set)
    asked.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            explore(ScenarioTarget(scenario), budget=Budget(2))
    finally:
        asked.join()
        _progress.stop_requested.clear()
        ours.close()
        theirs.close()


def test_a_stuck_threads_excerpt_starts_at_the_users_call() -> None:
    # Eight frames of the scheduler's own wait on real files, under the user's
    # call, left no line of the user's in the report.
    reading, writing = os.pipe()
    started = threading.Event()

    def read_the_reply() -> None:
        started.set()
        _core._ready([reading], [], 5)  # the scheduler's own wait, as a recv's

    thread = threading.Thread(target=read_the_reply)
    thread.start()
    try:
        started.wait(5)
        while sys._current_frames()[thread.ident or 0].f_code.co_name != "_ready":
            time.sleep(0.001)  # until the thread is inside the wait
        excerpt = _core.stack_of(thread.ident, limit=2)
    finally:
        os.write(writing, b"x")
        thread.join()
        os.close(reading)
        os.close(writing)
    assert excerpt.splitlines()[-2].endswith("in read_the_reply"), excerpt
    assert "in _ready" not in excerpt


@pytest.mark.parametrize("other", ["self.pending", "progress.pending"])
def test_a_long_step_table_keeps_the_other_threads_access_to_what_was_preempted(
    other: str,
) -> None:
    # Z47: a lost update's table showed the reactor preempted at its store of
    # self.pending, then the pool thread's next rows, then "...": the pool
    # thread's load and store (the planted line) were folded away. Z48: so were
    # they when the pool thread names the object otherwise (progress.pending).
    from threadcheck._sched._core import Step
    from threadcheck._sched._report import step_table

    from support import schedule_run

    def step(index: int, tid: int, line: int, detail: str) -> Step:
        return Step(index, tid, "access", "/srv/pool.py", line, "f", detail)

    trace = [step(i, 0, 10, "x (load)") for i in range(1, 40)]
    trace.append(step(40, 0, 35, "self.pending (store)"))
    trace += [step(i, 1, 20, "queue.get") for i in range(41, 52)]
    trace += [step(52, 1, 32, f"{other} (load)"), step(53, 1, 32, f"{other} (store)")]
    trace += [step(i, 0, 50, "y (load)") for i in range(54, 90)]
    run = schedule_run(trace, {40: "preempted: T1 runs"}, ["MainThread", "PoolThread"])
    table = "\n".join(step_table(run))
    assert "pool.py:32 f" in table, table
    assert table.count(".pending (") == 3, table
    assert table.count("...") >= 2, table  # still elided around them


def test_a_long_step_table_shows_the_violating_call() -> None:
    # Z48: a watcher thread's reactor.stop() was the violation, the schedule went
    # on, and its table showed the main thread's last rows alone.
    from threadcheck._sched._core import Failure, Step
    from threadcheck._sched._report import step_table

    from support import schedule_run

    def step(index: int, tid: int, line: int, detail: str) -> Step:
        return Step(index, tid, "access", "/srv/watch.py", line, "watch", detail)

    trace = [step(i, 1, 45, "loop") for i in range(1, 29)]
    trace.append(step(29, 1, 48, "lock.acquire"))  # an argument's (Z49: f.result())
    trace.append(step(30, 1, 48, "reactor.stop() (call)"))
    trace += [step(i, 0, 69, "service.lines (load)") for i in range(31, 90)]
    run = schedule_run(trace, {}, ["MainThread", "Thread-1 (watch)"])
    run.failure = Failure(
        "violation", "reactor.stop called", "Thread-1 (watch)", "/srv/watch.py:48 in watch"
    )
    table = step_table(run)
    [row] = [row for row in table if row.endswith("   <- the violation")]
    assert row.split()[:2] == ["30", "T1"], table  # the call's row, not the lock's
    assert table[-1].startswith("     89  T0"), table  # the last rows still end it


def test_a_long_step_table_shows_where_a_call_without_a_point_of_its_own_was_made() -> None:
    # Z50: a sensor thread's client.sendMessage(payload), into autobahn (no
    # point on the line), was the violation: the table showed the main
    # thread's last rows alone.
    from threadcheck._sched._core import Failure, Step
    from threadcheck._sched._report import step_table

    from support import schedule_run

    def step(index: int, tid: int, line: int, detail: str) -> Step:
        return Step(index, tid, "access", "/srv/sensor.py", line, "sensor", detail)

    trace = [step(i, 1, 45, "iteration of clients") for i in range(1, 30)]
    trace += [step(i, 0, 79, "results (load)") for i in range(30, 90)]
    run = schedule_run(trace, {}, ["MainThread", "sensor"])
    where = "/srv/sensor.py:47 in sensor"
    run.failure = Failure("violation", "transport.write called", "sensor", where, step=30)
    table = step_table(run)
    [row] = [row for row in table if "<- then the violation" in row]
    assert row.split()[:2] == ["29", "T1"], table
    assert row.endswith("   <- then the violation, at sensor.py:47 in sensor"), row
    assert table[-1].startswith("     89  T0"), table


PUSHLIB = """
def push(reactor, payload):
    reactor.callLater(0, print, payload)
"""

SENSOR = """
import queue, threading
import pushlib
from twisted.internet import reactor

readings = queue.Queue()


def sensor():
    while True:
        reading = readings.get(timeout=1)
        if reading is None:
            return reactor.callFromThread(reactor.stop)
        pushlib.push(reactor, reading)  # BUG: from the sensor thread


def main():
    for n in range(3):
        readings.put(n)
    readings.put(None)
    thread = threading.Thread(target=sensor, name="sensor")
    reactor.callWhenRunning(thread.start)
    reactor.run()
    thread.join()
    total = 0
    for n in range(40):  # the main thread's rows end the table
        total += n


main()
"""


def test_an_exploration_notes_the_step_of_a_violation_made_through_a_library(
    tmp_path: Path,
) -> None:
    from support import explore_with_library

    result = explore_with_library(tmp_path, "pushlib", PUSHLIB, SENSOR, "--budget", "1")
    assert result.returncode == 1, result.stderr
    [row] = [row for row in result.stderr.splitlines() if "<- then the violation" in row]
    assert " T1 sensor " in row, result.stderr
    assert row.endswith("at service.py:14 in sensor"), row
