"""The owner-thread rule, blockingCallFromThread, exact counts, provenance and modes."""

from __future__ import annotations

import re
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from twisted.internet import task, threads
from twisted.internet.defer import DeferredList

from threadcheck import (
    BlockingCallAfterStopError,
    BlockingCallInReactorThreadError,
    Kind,
    Mode,
    Recorder,
    ThreadAffinityError,
    ThreadAffinityWarning,
    spawn_site,
)
from threadcheck._report import fix_for, format_report
from threadcheck_reactor import ThreadCheckReactor

from support import RunningReactor, run_in_thread, run_threads

JOB_WAIT = 30.0  # seconds: a hang fails the test long before pytest-timeout


def noop() -> None:
    pass


# -- before run() -----------------------------------------------------------


def test_creator_may_set_up_before_run() -> None:
    reactor = ThreadCheckReactor(Mode.RAISE)
    reactor.callLater(1, noop).cancel()
    reactor.callWhenRunning(noop)
    reactor.threadcheck.flush_pending()
    assert reactor.threadcheck.recorder.violations() == []


def test_thread_that_runs_the_reactor_may_set_it_up_before_run() -> None:
    reactor = ThreadCheckReactor(Mode.RECORD)

    def set_up_then_run() -> None:
        reactor.callLater(0, reactor.stop)  # before run(), from the future reactor thread
        reactor.run(installSignalHandlers=False)

    run_in_thread(set_up_then_run, name="runner")
    assert reactor.threadcheck.recorder.violations() == []
    assert reactor.threadcheck.owner_info().name == "runner"


def test_third_thread_before_run_is_reported_when_run_starts() -> None:
    reactor = ThreadCheckReactor(Mode.RAISE)
    run_in_thread(lambda: reactor.callLater(3600, noop), name="meddler")  # held, not raised
    assert reactor.threadcheck.recorder.violations() == []

    reactor.callLater(0, reactor.stop)
    reactor.run(installSignalHandlers=False)

    [violation] = reactor.threadcheck.recorder.violations()
    assert violation.kind is Kind.BEFORE_RUN
    assert violation.thread.name == "meddler"
    assert violation.reactor_thread.name == threading.current_thread().name


def test_never_run_reactor_judges_held_calls_at_report_time() -> None:
    reactor = ThreadCheckReactor(Mode.RECORD)
    run_in_thread(lambda: reactor.callWhenRunning(noop), name="meddler")
    reactor.threadcheck.flush_pending()
    [violation] = reactor.threadcheck.recorder.violations()
    assert (violation.api, violation.kind) == ("reactor.callWhenRunning", Kind.BEFORE_RUN)


def test_creator_is_foreign_once_another_thread_runs_the_reactor(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RAISE)  # created here, runs in "reactor"
    with pytest.raises(ThreadAffinityError):
        running.reactor.callLater(0, noop)


# -- blockingCallFromThread ---------------------------------------------------


@pytest.mark.parametrize("mode", list(Mode))
def test_blocking_call_in_reactor_thread_raises_in_every_mode(
    mode: Mode, running_reactor: Any
) -> None:
    running: RunningReactor = running_reactor(mode)

    def in_reactor_thread() -> str:
        return threads.blockingCallFromThread(running.reactor, lambda: "never")

    with pytest.raises(BlockingCallInReactorThreadError):
        running.in_reactor(in_reactor_thread)
    [violation] = running.recorder.violations()
    assert violation.kind is Kind.BLOCKING_CALL_IN_REACTOR
    assert violation.stack[-2].function == "in_reactor_thread"


def test_blocking_call_before_run_in_the_thread_that_will_run_it_raises() -> None:
    """A trial test body runs in the reactor's thread before the reactor spins:
    the call would wait for ever (it hung the run)."""

    def test_body() -> None:
        recorder = Recorder()
        reactor = ThreadCheckReactor(Mode.RECORD, recorder)
        try:
            threads.blockingCallFromThread(reactor, lambda: "never")
        finally:
            [violation] = recorder.violations()
            assert violation.kind is Kind.BLOCKING_CALL_IN_REACTOR
            reactor.dispose()

    with pytest.raises(BlockingCallInReactorThreadError):
        run_in_thread(test_body)  # fails there if it hangs


def test_blocking_call_from_a_worker_is_fine(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RAISE)
    assert threads.blockingCallFromThread(running.reactor, lambda: 42) == 42
    assert running.recorder.violations() == []


def test_call_from_thread_in_reactor_thread_is_fine(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RAISE)
    done = threading.Event()
    running.in_reactor(lambda: running.reactor.callFromThread(done.set))
    assert done.wait(30)
    assert running.recorder.violations() == []


# -- correct programs ---------------------------------------------------------


def test_correct_thread_program_has_no_violations(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RAISE)
    reactor = running.reactor
    seen: list[int] = []

    def work(n: int) -> int:
        reactor.callFromThread(seen.append, n)
        return threads.blockingCallFromThread(reactor, lambda: n * 2)

    def start() -> Any:
        from twisted.internet.defer import gatherResults

        calls = [
            threads.deferToThreadPool(reactor, reactor.getThreadPool(), work, n) for n in range(50)
        ]
        reactor.callInThread(reactor.callFromThread, seen.append, -1)
        return gatherResults(calls)

    assert running.in_reactor(start) == [n * 2 for n in range(50)]
    assert running.recorder.violations() == []


def test_call_in_thread_from_a_worker_before_the_pool_exists_is_fine(
    running_reactor: Any,
) -> None:
    running: RunningReactor = running_reactor(Mode.RAISE)
    done = threading.Event()
    running.reactor.callInThread(done.set)  # the pool is created lazily, here
    assert done.wait(30)
    assert running.recorder.violations() == []


# -- nothing lost under concurrency -------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("mode", [Mode.RECORD, Mode.RAISE])
def test_exact_count_from_eight_threads_at_once(mode: Mode, running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(mode)
    per_thread, n_threads = 1000, 8
    barrier = threading.Barrier(n_threads)
    raised = [0] * n_threads

    def hammer(index: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            try:
                running.reactor.callLater(3600, noop)
            except ThreadAffinityError:
                raised[index] += 1

    workers = [
        threading.Thread(target=hammer, args=(i,), name=f"hammer-{i}") for i in range(n_threads)
    ]
    run_threads(workers)

    violations = running.recorder.violations()
    assert len(violations) == per_thread * n_threads
    by_thread = {name: 0 for name in (w.name for w in workers)}
    for violation in violations:
        by_thread[violation.thread.name] += 1
    assert set(by_thread.values()) == {per_thread}
    assert sum(raised) == (per_thread * n_threads if mode is Mode.RAISE else 0)


# -- provenance -----------------------------------------------------------------


def test_violation_from_defer_to_thread_has_submission_and_spawn_site(
    running_reactor: Any,
) -> None:
    running: RunningReactor = running_reactor(Mode.RECORD)
    reactor = running.reactor

    def bad_work() -> None:
        reactor.callLater(3600, noop)

    def submit() -> Any:
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), bad_work)

    running.in_reactor(submit)

    [violation] = running.recorder.violations()
    assert violation.stack[-1].function == "bad_work"
    assert violation.submitted_from is not None
    assert "submit" in [f.function for f in violation.submitted_from]
    assert violation.spawn_site is not None


def test_a_call_in_thread_with_callbacks_on_result_has_the_submission(
    running_reactor: Any,
) -> None:
    # onResult runs in the pool thread after the job, outside the frame that
    # kept the submission: its violation named only the thread's spawn site
    # (an earlier, unrelated job's).
    running: RunningReactor = running_reactor(Mode.RECORD)
    reactor = running.reactor
    done = threading.Event()

    def on_result(ok: bool, value: object) -> None:
        reactor.callLater(3600, noop)
        done.set()

    def submit_with_callback() -> None:
        reactor.getThreadPool().callInThreadWithCallback(on_result, noop)

    running.in_reactor(submit_with_callback)
    assert done.wait(10)
    [violation] = running.recorder.violations()
    assert violation.stack[-1].function == "on_result"
    assert violation.submitted_from is not None
    assert "submit_with_callback" in [f.function for f in violation.submitted_from]


def test_violation_from_a_plain_thread_has_its_spawn_site(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RECORD)

    def start_meddler() -> None:
        thread = threading.Thread(target=running.reactor.stop, name="meddler")
        thread.start()
        thread.join()

    start_meddler()
    [violation] = running.recorder.violations()
    assert violation.thread.name == "meddler"
    assert violation.submitted_from is None
    assert violation.spawn_site is not None
    assert violation.spawn_site[-1].function == "start_meddler"


# -- modes ----------------------------------------------------------------------


def test_warn_mode_warns_at_the_offending_line(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.WARN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call = running.reactor.callLater(3600, noop)
    running.in_reactor(call.cancel)
    [warning] = [w for w in caught if issubclass(w.category, ThreadAffinityWarning)]
    assert warning.filename == __file__
    assert "reactor.callLater" in str(warning.message)
    assert len(running.recorder.violations()) == 1


def test_record_mode_lets_the_call_happen(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RECORD)
    call = running.reactor.callLater(3600, noop)
    assert call.active()
    running.in_reactor(call.cancel)
    assert [v.api for v in running.recorder.violations()] == ["reactor.callLater"]


def test_unknown_mode_is_a_clear_error() -> None:
    with pytest.raises(
        ValueError, match=r"unknown mode 'loud': choose one of 'raise', 'record', 'warn'"
    ):
        ThreadCheckReactor("loud")


def test_repeated_violations_share_one_stack(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RECORD)
    for _ in range(3):
        running.reactor.callWhenRunning(noop)
    first, *rest = running.recorder.violations()
    assert len(rest) == 2
    assert all(v.stack is first.stack for v in rest)


def test_recorder_clear_hands_back_what_it_held() -> None:
    reactor = ThreadCheckReactor(Mode.RECORD)
    run_in_thread(lambda: reactor.callWhenRunning(noop))
    reactor.threadcheck.flush_pending()
    recorder = reactor.threadcheck.recorder
    assert len(recorder) == 1
    taken = recorder.clear()
    assert [v.api for v in taken] == ["reactor.callWhenRunning"]
    assert len(recorder) == 0


def test_thread_start_tracking_can_be_turned_off_and_on() -> None:
    from threadcheck._threads import stop_tracking_thread_starts, track_thread_starts

    stop_tracking_thread_starts()
    try:
        untracked = threading.Thread(target=noop)
        untracked.start()
        untracked.join()
    finally:
        track_thread_starts()
    tracked = threading.Thread(target=noop)
    tracked.start()
    tracked.join()
    assert spawn_site(untracked) is None
    site = spawn_site(tracked)
    assert site is not None
    assert site[-1].function == "test_thread_start_tracking_can_be_turned_off_and_on"


# -- blockingCallFromThread once the reactor is stopping (twisted#10124) -------


@pytest.mark.parametrize("mode", list(Mode))
def test_blocking_call_after_stop_raises_at_once_in_every_mode(
    mode: Mode, running_reactor: Any
) -> None:
    running: RunningReactor = running_reactor(mode)

    def call_into_a_stopped_reactor() -> int:
        return threads.blockingCallFromThread(running.reactor, lambda: 1)

    running.stop()
    with pytest.raises(BlockingCallAfterStopError):
        run_in_thread(call_into_a_stopped_reactor)  # fails there if it hangs
    [violation] = running.recorder.violations()
    assert violation.kind is Kind.BLOCKING_CALL_AFTER_STOP
    assert violation.thread.name == "worker"
    assert violation.stack[-2].function == "call_into_a_stopped_reactor"
    assert violation.headline().startswith("blockingCallFromThread called from thread 'worker'")


def test_a_daemon_threads_blocking_call_after_stop_waits_as_under_twisted(
    running_reactor: Any,
) -> None:
    # A heartbeat still beating as the program ends: Python exits without it,
    # so its wait holds up nothing (it raised, with a traceback and exit 3).
    running: RunningReactor = running_reactor(Mode.RAISE)
    running.stop()
    answers: list[int] = []
    heartbeat = threading.Thread(
        target=lambda: answers.append(threads.blockingCallFromThread(running.reactor, lambda: 1)),
        name="heartbeat",
        daemon=True,
    )
    heartbeat.start()
    queued = threading.Event()
    for _ in range(500):
        if running.reactor.threadCallQueue or not heartbeat.is_alive():
            queued.set()
            break
        queued.wait(0.01)
    assert heartbeat.is_alive(), "it did not wait"
    assert running.recorder.violations() == []
    running.reactor.runUntilCurrent()  # its call was queued: run, it ends the wait
    heartbeat.join(JOB_WAIT)
    assert answers == [1]


def _stop_while_a_job_runs(reactor: Any, job: Callable[[], None]) -> None:
    """Run ``reactor``, give its pool ``job`` and stop at once; it must end."""
    reactor.callWhenRunning(reactor.callInThread, job)
    reactor.callWhenRunning(reactor.stop)
    runner = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False})
    runner.start()
    runner.join(JOB_WAIT)
    assert not runner.is_alive(), "the reactor hung in its thread pool's shutdown"


@pytest.mark.quality
def test_a_pool_job_calling_into_the_reactor_during_shutdown_no_longer_hangs() -> None:
    """twisted#10124: the pool's shutdown joins a job that waits, in
    blockingCallFromThread, for a reactor that will never run its call."""
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RECORD, recorder)
    stopping = threading.Event()
    outcome: list[BaseException] = []

    def job() -> None:
        stopping.wait(JOB_WAIT)
        try:
            threads.blockingCallFromThread(reactor, lambda: None)
        except BlockingCallAfterStopError as error:
            outcome.append(error)

    # Once the 'before' triggers are done: the reactor serves no call any more.
    reactor.addSystemEventTrigger("during", "shutdown", stopping.set)
    _stop_while_a_job_runs(reactor, job)
    assert len(outcome) == 1
    [violation] = recorder.violations()
    assert violation.kind is Kind.BLOCKING_CALL_AFTER_STOP
    assert violation.stack[-2].function == "job"


@pytest.mark.quality
def test_a_pool_jobs_call_accepted_while_the_before_triggers_run_is_served() -> None:
    # Accepted (the reactor still serves calls then), it was queued for a loop
    # that had ended: the pool's join waited on the job for ever.
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RECORD, recorder)
    stopping = threading.Event()
    answers: list[int] = []

    def job() -> None:
        stopping.wait(JOB_WAIT)
        answers.append(threads.blockingCallFromThread(reactor, lambda: 7))

    def before_shutdown() -> None:  # returns no Deferred: the phase ends at once
        stopping.set()
        for _ in range(100):  # made certain: the job's call comes meanwhile
            if reactor.threadCallQueue:
                break
            threading.Event().wait(0.01)

    reactor.addSystemEventTrigger("before", "shutdown", before_shutdown)
    _stop_while_a_job_runs(reactor, job)
    assert answers == [7]
    assert recorder.violations() == []


@pytest.mark.quality
def test_its_fixed_twin_stops_the_reactor_after_the_job_is_silent() -> None:
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RECORD, recorder)
    answers: list[int] = []

    def job() -> None:
        answers.append(threads.blockingCallFromThread(reactor, lambda: 7))

    def start() -> None:
        pool = reactor.getThreadPool()
        done = threads.deferToThreadPool(reactor, pool, job)
        done.addCallback(lambda _: reactor.stop())  # stop once the job is over

    reactor.callWhenRunning(start)
    runner = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False})
    runner.start()
    runner.join(JOB_WAIT)
    assert not runner.is_alive()
    assert answers == [7]
    assert recorder.violations() == []


@pytest.mark.quality
def test_a_shutdown_waiting_for_its_jobs_still_serves_their_blocking_calls() -> None:
    """A graceful shutdown: the 'before' trigger returns the jobs' Deferreds, and
    the reactor runs calls from threads until they fire (it was reported, and
    the call refused, from the moment stop() was called)."""
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RECORD, recorder)
    stopped = threading.Event()
    log: list[str] = []

    def job(n: int) -> None:
        stopped.wait(JOB_WAIT)  # still running when stop() is called
        threads.blockingCallFromThread(reactor, log.append, f"job {n} done")

    def start() -> None:
        pool = reactor.getThreadPool()
        jobs = [threads.deferToThreadPool(reactor, pool, job, n) for n in (0, 1)]
        reactor.addSystemEventTrigger("before", "shutdown", DeferredList, jobs)
        reactor.stop()
        stopped.set()

    reactor.callWhenRunning(start)
    runner = threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False})
    runner.start()
    runner.join(JOB_WAIT)
    assert not runner.is_alive()
    assert sorted(log) == ["job 0 done", "job 1 done"]
    assert recorder.violations() == []


# -- the creating thread after it started the reactor's thread (Tribler#2403) ---


def _run_in_background(reactor: Any, gate: threading.Event | None = None) -> threading.Thread:
    def run() -> None:
        if gate is not None:
            gate.wait(JOB_WAIT)  # the race's losing side, made certain
        reactor.run(installSignalHandlers=False)

    thread = threading.Thread(target=run, name="reactor-thread")
    thread.start()
    return thread


def _stop(reactor: Any, thread: threading.Thread) -> None:
    reactor.callFromThread(reactor.stop)
    thread.join(JOB_WAIT)
    assert not thread.is_alive()


@pytest.mark.quality
def test_a_call_after_starting_the_reactors_thread_is_reported() -> None:
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RECORD, recorder)
    running = threading.Event()
    reactor.callWhenRunning(running.set)  # before the start: ordered, fine
    gate = threading.Event()
    thread = _run_in_background(reactor, gate)
    reactor.callLater(0, noop)  # BUG: races the loop the thread is starting
    gate.set()
    assert running.wait(JOB_WAIT)
    _stop(reactor, thread)
    [violation] = recorder.violations()
    assert (violation.api, violation.kind) == (
        "reactor.callLater",
        Kind.AFTER_STARTING_REACTOR_THREAD,
    )
    assert re.fullmatch(
        r"reactor\.callLater called from thread 'MainThread' \(ident \d+\), which created "
        r"the reactor, after it started 'reactor-thread' \(ident \d+\) to run it: the call "
        r"races the reactor's loop",
        violation.headline(),
    )
    assert violation.stack[-1].function == (
        "test_a_call_after_starting_the_reactors_thread_is_reported"
    )


@pytest.mark.quality
def test_a_looping_call_started_after_starting_the_reactors_thread_is_handed_over_whole() -> None:
    # Tribler#2403's shape: LoopingCall.start makes the callLater. The fix said
    # to hand over reactor.callLater, a call the user never wrote.
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RECORD, recorder)
    loop = task.LoopingCall(noop)
    loop.clock = reactor
    gate = threading.Event()
    thread = _run_in_background(reactor, gate)
    loop.start(0.01)  # BUG: races the loop the thread is starting
    gate.set()
    reactor.callFromThread(loop.stop)
    _stop(reactor, thread)
    [violation] = recorder.violations()
    assert violation.kind is Kind.AFTER_STARTING_REACTOR_THREAD
    assert fix_for(violation) == (
        "make the call before starting the reactor's thread, or hand it over: "
        "reactor.callFromThread(loop.start, 0.01)"
    )


@pytest.mark.quality
def test_its_fixed_twin_makes_the_call_before_starting_the_thread() -> None:
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RAISE, recorder)
    running = threading.Event()
    reactor.callLater(0, running.set)
    worker = threading.Thread(target=noop)  # other threads started before are fine too
    worker.start()
    worker.join()
    reactor.callWhenRunning(noop)
    thread = _run_in_background(reactor)
    assert running.wait(JOB_WAIT)
    _stop(reactor, thread)
    assert recorder.violations() == []


def test_the_creator_running_the_reactor_itself_may_start_threads_first() -> None:
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RECORD, recorder)
    worker = threading.Thread(target=noop)
    worker.start()
    worker.join()
    reactor.callLater(0, reactor.stop)  # after a thread start, but this thread runs it
    reactor.run(installSignalHandlers=False)
    assert recorder.violations() == []


# -- a thread pool that cannot finish at shutdown -----------------------------


@pytest.mark.quality
def test_a_stuck_pool_worker_at_shutdown_is_reported_with_its_stack(
    capsys: pytest.CaptureFixture[str],
) -> None:
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RECORD, recorder)
    reactor.shutdown_grace = 0.3
    release = threading.Event()

    def stuck_job() -> None:
        reactor.callFromThread(reactor.stop)  # shut down while this job runs
        release.wait(JOB_WAIT)  # BUG: nothing ends this wait at shutdown

    reactor.callWhenRunning(reactor.callInThread, stuck_job)
    thread = _run_in_background(reactor)
    try:
        for _ in range(100):
            if recorder.violations():
                break
            threading.Event().wait(0.1)
        [violation] = recorder.violations()
        for watch in threading.enumerate():  # it records, then writes stderr: let it finish
            if watch.name == "threadcheck-shutdown-watch":
                watch.join(JOB_WAIT)
    finally:
        release.set()
        thread.join(JOB_WAIT)
    assert violation.kind is Kind.STUCK_AT_SHUTDOWN
    assert violation.thread.name.startswith("PoolThread-")
    assert violation.stack[-1].function == "wait"  # where it is blocked ...
    assert any(frame.function == "stuck_job" for frame in violation.stack)  # ... in whose job
    assert violation.submitted_from is not None
    err = capsys.readouterr().err  # shown at once: the process may never get to exit
    assert "the reactor's thread pool cannot finish at shutdown: worker 'PoolThread-" in err
    assert "make the job return at shutdown" in err
    # Counted as what it is, not as a call of ThreadPool.stop the program never made.
    assert format_report([violation]).splitlines()[1] == "  stuck-at-shutdown: 1"


@pytest.mark.quality
@pytest.mark.parametrize("stuck", [True, False], ids=["stuck", "finishing"])
def test_a_shutdown_waiting_on_a_stuck_jobs_deferred_reports_the_job(stuck: bool) -> None:
    # A 'before' trigger waits on the job's Deferred (TimerService.stopService
    # does): shutdown never reached the pool's join, and nothing was said.
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RECORD, recorder)
    reactor.shutdown_grace = 0.3
    release = threading.Event()

    def poll_backend() -> None:
        release.wait(JOB_WAIT if stuck else 0.05)  # BUG when stuck: no timeout

    def start() -> None:
        polled = threads.deferToThreadPool(reactor, reactor.getThreadPool(), poll_backend)
        reactor.addSystemEventTrigger("before", "shutdown", lambda: polled)
        reactor.callLater(0.01, reactor.stop)

    reactor.callWhenRunning(start)
    thread = _run_in_background(reactor)
    try:
        for _ in range(30 if stuck else 8):
            if recorder.violations():
                break
            threading.Event().wait(0.1)
    finally:
        release.set()
        thread.join(JOB_WAIT)
    threading.Event().wait(0.5)  # past the grace: a timer left running would report now
    if not stuck:
        assert recorder.violations() == []
        return
    [violation] = recorder.violations()
    assert violation.kind is Kind.STUCK_AT_SHUTDOWN
    assert any(frame.function == "poll_backend" for frame in violation.stack)


@pytest.mark.quality
def test_a_pool_that_finishes_in_time_is_silent() -> None:
    recorder = Recorder()
    reactor = ThreadCheckReactor(Mode.RECORD, recorder)
    reactor.shutdown_grace = 0.3
    reactor.callWhenRunning(reactor.callInThread, threading.Event().wait, 0.05)
    reactor.callWhenRunning(reactor.callLater, 0.01, reactor.stop)
    thread = _run_in_background(reactor)
    thread.join(JOB_WAIT)
    threading.Event().wait(0.5)  # past the grace: a timer left running would report now
    assert recorder.violations() == []
