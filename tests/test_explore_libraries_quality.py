"""Quality: installed libraries whose own locks, conditions and events a
program's threads wait on (APScheduler's, SQLAlchemy's pool's shapes), under
``threadcheck explore`` without ``--include``.

A library's primitives made during a schedule were real: a correct program
whose library thread waited on its own ``Event`` with a timeout, or whose pool
job waited on the library pool's ``Condition`` for a connection another job
held, blocked for real, and after 10 s the schedule "failed" (exit 1, no line
named). So did one whose library held its ``RLock`` in the reactor thread while
it handed a job to the reactor's thread pool (a point, where another thread
ran and waited for that lock). They are now the scheduler's, without points of
their own (the library's code has none): waits pass in virtual time, and the
thread that ends them runs. Each planted bug is found and replayed; each
fixed twin runs its budget clean.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import assert_clean, assert_found_and_replayed, explore_with_library, with_library

pytestmark = [pytest.mark.quality, pytest.mark.slow]

# APScheduler's BackgroundScheduler, in small: its own thread runs the job,
# then sleeps on its Event until the next run or until shutdown sets it.
TICKER = """
import threading


class Ticker:
    def __init__(self, interval, job):
        self._interval = interval
        self._job = job
        self._wakeup = threading.Event()
        self._lock = threading.RLock()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="Ticker", daemon=True)

    def start(self):
        self._thread.start()

    def _loop(self):
        while True:
            with self._lock:
                if self._stopped:
                    return
            self._job()
            self._wakeup.wait(self._interval)

    def shutdown(self):
        with self._lock:
            self._stopped = True
        self._wakeup.set()
        self._thread.join()
"""
METRICS = """
import sys
import threading
from twisted.internet import reactor, task
from ticker import Ticker

samples = {{"count": 0}}
ticker_runs, loop_runs = [], []
lock = threading.Lock()

def sample():
    ticker_runs.append(1)
    {count}

def count_in_reactor():
    loop_runs.append(1)
    {count}

ticker = Ticker(0.05, sample)
loop = task.LoopingCall(count_in_reactor)

def stop():
    loop.stop()
    ticker.shutdown()
    reactor.stop()

reactor.callWhenRunning(ticker.start)
reactor.callWhenRunning(loop.start, 0.05, now=False)
reactor.callLater(0.12, stop)
reactor.run()
runs = len(ticker_runs) + len(loop_runs)
if samples["count"] != runs:
    sys.exit(f"lost count: {{samples['count']}} of {{runs}}")
"""
COUNT_RACY = 'samples["count"] += 1  # BUG: both threads count, unlocked'
COUNT_LOCKED = 'with lock:\n        samples["count"] += 1'

# A pool in the shape of SQLAlchemy's QueuePool: a checkout waits on the pool's
# Condition, with a timeout read from the clock it imported.
CONNPOOL = """
import threading
from time import monotonic


class Pool:
    def __init__(self, size, timeout):
        self._free = list(range(size))
        self._ready = threading.Condition()
        self._timeout = timeout

    def checkout(self):
        end = monotonic() + self._timeout
        with self._ready:
            while not self._free:
                remaining = end - monotonic()
                if remaining <= 0:
                    raise TimeoutError("pool checkout timed out")
                self._ready.wait(remaining)
            return self._free.pop()

    def checkin(self, connection):
        with self._ready:
            self._free.append(connection)
            self._ready.notify()
"""
REPORTS = """
import sys
import time
from twisted.internet import defer, reactor, threads
from connpool import Pool

pool = Pool(size=1, timeout={timeout})
rows = []

def report(name):
    connection = pool.checkout()
    try:
        time.sleep(0.5)  # the query
        rows.append(name)
    finally:
        pool.checkin(connection)

def run():
    jobs = [threads.deferToThread(report, name) for name in ("daily", "weekly")]
    done = defer.gatherResults(jobs, consumeErrors=True)
    done.addErrback(lambda failure: rows.append(failure.value.subFailure.getErrorMessage()))
    done.addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(run)
reactor.run()
if sorted(rows) != ["daily", "weekly"]:
    sys.exit(f"reports lost: {{rows}}")
"""

# APScheduler's executor: in the reactor thread it holds its RLock while it
# hands the job to the reactor's pool (where a point may switch threads); the
# job's end, in the pool thread, takes that lock.
RUNNER = """
import threading


class JobRunner:
    def __init__(self, reactor):
        self._pool = reactor.getThreadPool()
        self._lock = threading.RLock()
        self.running = 0
        self.skipped = 0

    def submit(self, job):
        with self._lock:
            if self.running:
                self.skipped += 1
                return
            self.running += 1
            self._pool.callInThreadWithCallback(self._done, job)

    def _done(self, ok, result):
        with self._lock:
            self.running -= 1
"""
JOBS = """
import sys
import threading
from twisted.internet import reactor, task
from runner import JobRunner

results, flushed = [], []
lock = threading.Lock()
runner = None

def job():
    {append}

def submit():
    runner.submit(job)
    {flush}

def start():
    global runner
    runner = JobRunner(reactor)
    loop = task.LoopingCall(submit)
    loop.start(0.01)
    reactor.callLater(0.035, loop.stop)
    reactor.callLater(0.5, reactor.stop)

reactor.callWhenRunning(start)
reactor.run()
ran = 4 - runner.skipped
if len(flushed) + len(results) != ran:
    sys.exit(f"results lost: {{len(flushed) + len(results)}} of {{ran}}")
"""
APPEND_LOCKED = "with lock:\n        results.append(1)"
FLUSH_LOCKED = "with lock:\n        flushed.extend(results)\n        results.clear()"
APPEND_RACY = "results.append(1)"
FLUSH_RACY = (  # BUG: a result appended between the copy and the clear is lost
    "batch = list(results)\n    results.clear()\n    flushed.extend(batch)"
)


def test_a_library_threads_event_wait_passes_in_virtual_time(tmp_path: Path) -> None:
    program = METRICS.format(count=COUNT_LOCKED)
    assert_clean(explore_with_library(tmp_path, "ticker", TICKER, program))


def test_a_lost_count_beside_a_library_thread_is_found_and_replayed(tmp_path: Path) -> None:
    program = METRICS.format(count=COUNT_RACY)
    result = explore_with_library(tmp_path, "ticker", TICKER, program)
    env = with_library(tmp_path, "ticker", TICKER)
    assert_found_and_replayed(
        result, "threadcheck: exit: the program exited with status 1: lost count", env
    )


def test_a_job_waiting_on_a_library_pools_condition_gets_its_connection(tmp_path: Path) -> None:
    program = REPORTS.format(timeout=5)
    assert_clean(explore_with_library(tmp_path, "connpool", CONNPOOL, program))


def test_a_library_pools_checkout_timeout_comes_in_virtual_time(tmp_path: Path) -> None:
    program = REPORTS.format(timeout=0.2)  # BUG: shorter than a report's query
    result = explore_with_library(tmp_path, "connpool", CONNPOOL, program)
    env = with_library(tmp_path, "connpool", CONNPOOL)
    headline = "threadcheck: exit: the program exited with status 1: reports lost:"
    assert_found_and_replayed(result, headline, env)
    assert "pool checkout timed out" in result.stderr


def test_a_library_lock_held_while_a_job_is_handed_to_the_pool_is_waited_for(
    tmp_path: Path,
) -> None:
    program = JOBS.format(append=APPEND_LOCKED, flush=FLUSH_LOCKED)
    assert_clean(explore_with_library(tmp_path, "runner", RUNNER, program))


def test_a_lost_result_beside_a_library_lock_is_found_and_replayed(tmp_path: Path) -> None:
    program = JOBS.format(append=APPEND_RACY, flush=FLUSH_RACY)
    result = explore_with_library(tmp_path, "runner", RUNNER, program)
    env = with_library(tmp_path, "runner", RUNNER)
    headline = "threadcheck: exit: the program exited with status 1: results lost"
    assert_found_and_replayed(result, headline, env)
