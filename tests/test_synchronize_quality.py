"""Quality: locks made past ``threading.Lock`` order what they guard.

A request-stats object synchronised the Twisted way: pool jobs record served
requests, a LoopingCall in the reactor takes the window every tick. Planted:
``take_window`` left out of ``synchronized`` (the tick resets a window a job
is adding to). The lock ``synchronize`` gives an object is made past
``threading.RLock``, from ``_thread.allocate_lock``: the race detector saw no
order (the fixed twin was reported), and under the scheduler a job waiting
for it blocked outside its control. The same for older code's own locks:
``_thread.allocate_lock()``, and a class built on ``threading._RLock``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import assert_clean, assert_found_and_replayed, explore_program, write_program

pytestmark = [pytest.mark.quality, pytest.mark.slow]  # subprocesses, end to end

PROGRAM = """\
import time
from twisted.internet import defer, task, threads
from twisted.python import threadable


class RequestStats:
    \"\"\"Requests served by pool jobs; the reactor takes a window every tick.\"\"\"

    def __init__(self):
        self.served = 0
        self.window = 0
        self.history = []

    def record(self):  # in a pool job
        self.served += 1
        self.window += 1

    def take_window(self):  # in the reactor
        taken = self.window
        self.history.append(taken)
        self.window = 0
        return taken

    synchronized = {synchronized}


threadable.synchronize(RequestStats)
stats = RequestStats()
windows = []


def handle(request):
    time.sleep(0.004)  # the backend answers
    stats.record()


def main(reactor):
    ticks = task.LoopingCall(lambda: windows.append(stats.take_window()))
    ticks.start(0.002)

    def done(_):
        ticks.stop()
        windows.append(stats.take_window())
        assert sum(windows) == stats.served == 4, (windows, stats.served)

    jobs = [threads.deferToThread(handle, n) for n in range(4)]
    return defer.gatherResults(jobs).addCallback(done)


task.react(main)
"""
PLANTED = '["record"]'
FIXED = '["record", "take_window"]'


def _program(tmp_path: Path, synchronized: str) -> Path:
    return write_program(tmp_path, PROGRAM.format(synchronized=synchronized))


def _races(program: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    report = program.with_suffix(".json")
    command = [sys.executable, "-m", "threadcheck", "run", "--races", "--json", str(report)]
    result = subprocess.run([*command, str(program)], capture_output=True, text=True, timeout=120)
    return result, json.loads(report.read_text())


def test_the_race_detector_sees_the_lock_synchronize_gives(tmp_path: Path) -> None:
    result, report = _races(_program(tmp_path, FIXED))
    assert result.returncode == 0, result.stderr
    assert report["violations"] == [], result.stderr


def test_a_method_left_unsynchronized_is_a_race(tmp_path: Path) -> None:
    result, report = _races(_program(tmp_path, PLANTED))
    assert result.returncode == 3, result.stderr
    violations = report["violations"]
    assert isinstance(violations, list)
    assert {v["api"] for v in violations} == {"RequestStats.window"}, result.stderr


def test_explore_finds_the_window_reset_lost_and_replays_it(tmp_path: Path) -> None:
    result = explore_program(_program(tmp_path, PLANTED), "--budget", "2000")
    assert_found_and_replayed(result, "threadcheck: unhandled-error: main function")
    assert "AssertionError" in result.stderr


def test_explore_holds_a_job_waiting_for_the_lock_in_the_scheduler(tmp_path: Path) -> None:
    # It blocked outside the scheduler's control: "uncontrolled-blocking" after 10 s.
    assert_clean(explore_program(_program(tmp_path, FIXED), "--budget", "300"), 300)


# A job queue guarded the way older code does it: a lock from _thread, or a
# class of its own on threading._RLock. Planted: the reactor's drain forgets it.
RAW_LOCKS = """\
import _thread, threading, time
from twisted.internet import defer, task, threads

class JobLock(threading._RLock):
    \"\"\"The service's own lock class, older than its threading.RLock use.\"\"\"

LOCK = {make}


class Pending:
    def __init__(self):
        self.count = 0

    def add(self):  # in pool jobs
        with LOCK:
            self.count += 1
            time.sleep(0)

    def drain(self):  # in the reactor
        {drain}


pending = Pending()
drained = []


def drain_now():
    drained.append(pending.drain())


def job():
    time.sleep(0.004)  # the backend answers
    pending.add()
    time.sleep(0.05)  # the job's own log write: the ticks drain meanwhile


def main(reactor):
    ticks = task.LoopingCall(drain_now)
    ticks.start(0.002)

    def done(_):
        ticks.stop()
        drain_now()
        assert sum(drained) == 3, drained

    jobs = [threads.deferToThread(job) for _ in range(3)]
    return defer.gatherResults(jobs).addCallback(done)


task.react(main)
"""
MAKES = {"allocate_lock": "_thread.allocate_lock()", "rlock_subclass": "JobLock()"}
LOCKED_DRAIN = "with LOCK:\n            taken, self.count = self.count, 0\n        return taken"
UNLOCKED_DRAIN = (
    "taken = self.count\n        drained.append(0)\n        self.count = 0\n        return taken"
)


def _raw_locks(tmp_path: Path, make: str, drain: str) -> Path:
    return write_program(tmp_path, RAW_LOCKS.format(make=MAKES[make], drain=drain))


@pytest.mark.parametrize("make", sorted(MAKES))
def test_older_codes_own_locks_order_what_they_guard(tmp_path: Path, make: str) -> None:
    program = _raw_locks(tmp_path, make, LOCKED_DRAIN)
    result, report = _races(program)
    assert result.returncode == 0, result.stderr
    assert report["violations"] == [], result.stderr
    assert_clean(explore_program(program, "--budget", "300"), 300)


@pytest.mark.parametrize("make", sorted(MAKES))
def test_a_drain_outside_older_codes_lock_is_found(tmp_path: Path, make: str) -> None:
    program = _raw_locks(tmp_path, make, UNLOCKED_DRAIN)
    result, report = _races(program)
    assert result.returncode == 3, result.stderr
    violations = report["violations"]
    assert isinstance(violations, list)
    assert {v["api"] for v in violations} == {"Pending.count"}, result.stderr
    found = explore_program(program, "--budget", "2000")
    assert_found_and_replayed(found, "threadcheck: unhandled-error: main function")


# A health page's warning counter, an observer of the service's log. Through
# Twisted's legacy ``log.msg`` every observer runs under the log publisher's
# lock, which Twisted makes on first use (or made long before): ordered.
# Planted: the jobs log through the new ``Logger``, which takes no lock.
LOG_OBSERVER = """\
import time
from twisted.internet import defer, task, threads
from twisted.logger import Logger, globalLogPublisher
from twisted.python import log

LEGACY = {legacy}


class WarningCounter:
    \"\"\"The billing warnings seen, for the health page.\"\"\"

    def __init__(self):
        self.warnings = 0

    def __call__(self, event):
        if event.get("system") == "billing" or event.get("log_namespace") == "billing":
            self.warnings += 1


counter = WarningCounter()
logger = Logger(namespace="billing")
if LEGACY:
    log.msg("service starting")  # the publisher's lock, made before the observer is added
    log.addObserver(counter)
else:
    globalLogPublisher.addObserver(counter)


def warn(text):
    if LEGACY:
        log.msg(text, system="billing")
    else:
        logger.warn(text)


def charge(n):  # a pool job
    time.sleep(0.003)  # the payment gateway answers
    warn("card %d declined, retrying" % n)


def main(reactor):
    def done(_):
        assert counter.warnings == 4, counter.warnings

    jobs = [threads.deferToThread(charge, n) for n in range(3)]
    jobs.append(task.deferLater(reactor, 0.001, warn, "gateway slow"))
    return defer.gatherResults(jobs).addCallback(done)


task.react(main)
"""


def test_observers_of_twisted_s_legacy_log_are_ordered_by_its_lock(tmp_path: Path) -> None:
    program = write_program(tmp_path, LOG_OBSERVER.format(legacy=True))
    result, report = _races(program)
    assert result.returncode == 0, result.stderr
    assert report["violations"] == [], result.stderr


def test_an_observer_the_new_logger_calls_from_two_threads_is_a_race(tmp_path: Path) -> None:
    program = write_program(tmp_path, LOG_OBSERVER.format(legacy=False))
    result, report = _races(program)
    assert result.returncode == 3, result.stderr
    violations = report["violations"]
    assert isinstance(violations, list)
    assert {v["api"] for v in violations} == {"WarningCounter.warnings"}, result.stderr
