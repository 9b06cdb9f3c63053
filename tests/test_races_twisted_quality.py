"""Quality: Twisted's hand-offs are happens-before edges for the race detector.

One service-shaped program exercises every hand-off, each on its own
attribute of ``Shared``. Run ``racy``, each attribute is accessed on both
sides of a hand-off it does not go through: every one is reported exactly
once, under its name. Run ``fixed``, the same accesses go through the
hand-off: silent. End to end, as a user runs it: ``threadcheck run --races``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from support import write_program

pytestmark = [pytest.mark.quality, pytest.mark.slow]  # subprocesses, end to end

PROGRAM = """\
import sys, threading, time
from twisted.internet import defer, reactor, threads

RACY = sys.argv[1] == "racy"

class Shared:
    # Defaults: in the racy run a read may come first; it must not fail.
    handed = submitted = result = into = out_of = fired = later = started = 0

s = Shared()


def call_from_thread():
    # a worker thread's write, then callFromThread(f): f sees it
    def worker():
        if not RACY:
            s.handed = 1
        reactor.callFromThread(lambda: s.handed)
        if RACY:
            s.handed = 1
    t = threading.Thread(target=worker)
    t.start()
    return threads.deferToThread(t.join)


def defer_to_thread_submit():
    # the reactor's write, then deferToThread(job): the job sees it
    if not RACY:
        s.submitted = 1
    d = threads.deferToThread(lambda: s.submitted)
    if RACY:
        s.submitted = 1
    return d


def job_result_to_callbacks():
    # a job's write, then its return: the Deferred's callbacks see it
    gate = threading.Event()
    def job():
        s.result = 1
        if RACY:
            gate.wait(5)
    d = threads.deferToThread(job)
    if RACY:
        def early():
            s.result
            gate.set()
        reactor.callLater(0.01, early)
    else:
        d.addCallback(lambda _: s.result)
    return d


def blocking_call_into_reactor():
    # a worker's write, then blockingCallFromThread(f): f, in the reactor, sees it;
    # f's write is seen by the worker once blockingCallFromThread returns
    ready = defer.Deferred()
    def worker():
        if RACY:
            reactor.callFromThread(ready.callback, None)
            s.into = 1
            time.sleep(0.05)
            s.out_of
        else:
            s.into = 1
            threads.blockingCallFromThread(reactor, setter)
            s.out_of
            reactor.callFromThread(ready.callback, None)
    def setter():
        s.into
        s.out_of = 1
    def after(_):
        if RACY:
            s.into
            s.out_of = 1
    threading.Thread(target=worker).start()
    return ready.addCallback(after)


def deferred_fired_from_a_worker():
    # a worker's write, then d.callback handed over with callFromThread
    d = defer.Deferred()
    def worker():
        if not RACY:
            s.fired = 1
        reactor.callFromThread(d.callback, None)
        if RACY:
            s.fired = 1
    threading.Thread(target=worker).start()
    return d.addCallback(lambda _: s.fired)


def call_later_in_the_reactor():
    # scheduling in the reactor thread: program order, never a race
    s.later = 1
    d = defer.Deferred()
    reactor.callLater(0, lambda: d.callback(s.later))
    return d


@defer.inlineCallbacks
def main():
    for scenario in (
        call_from_thread,
        defer_to_thread_submit,
        job_result_to_callbacks,
        blocking_call_into_reactor,
        deferred_fired_from_a_worker,
        call_later_in_the_reactor,
    ):
        yield scenario()
    yield threads.deferToThread(time.sleep, 0.05)
    reactor.stop()


s.started = 1
reactor.callWhenRunning(lambda: s.started)
reactor.callWhenRunning(main)
reactor.run()
"""

RACY_LOCATIONS = {
    "Shared.handed",
    "Shared.submitted",
    "Shared.result",
    "Shared.into",
    "Shared.out_of",
    "Shared.fired",
}


def run_races(
    program: Path, mode: str, *options: str
) -> tuple[subprocess.CompletedProcess[str], dict]:
    report = program.parent / f"{mode}.json"
    command = [sys.executable, "-m", "threadcheck", "run", "--races", "--json", str(report)]
    result = subprocess.run(
        [*command, *options, str(program), mode], capture_output=True, text=True, timeout=120
    )
    return result, json.loads(report.read_text())


def test_every_hand_off_skipped_is_a_race_reported_once(tmp_path: Path) -> None:
    result, report = run_races(write_program(tmp_path, PROGRAM), "racy")
    assert result.returncode == 3, result.stderr
    races = [v for v in report["violations"] if v["kind"] == "data-race"]
    by_location = Counter(v["api"] for v in races)
    assert set(by_location) == RACY_LOCATIONS, result.stderr
    assert all(n == 1 for n in by_location.values()), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("reactor", ["default", "asyncio"])
def test_every_hand_off_orders_the_accesses(tmp_path: Path, reactor: str) -> None:
    program = write_program(tmp_path, PROGRAM)
    result, report = run_races(program, "fixed", "--reactor", reactor)
    assert result.returncode == 0, result.stderr
    assert report["violations"] == []
    assert "no thread-affinity violations or data races found" in result.stderr


OWN_REACTOR_AND_POOL = """
import sys, threading
from twisted.internet.selectreactor import SelectReactor
from twisted.python.threadpool import ThreadPool

class Job:
    def __init__(self, n):
        self.n = n

# A thread pool the program makes, with more jobs than threads: queued jobs
# reach the worker through the pool's own coordination.
pool = ThreadPool(1, 1)
pool.start()
jobs = [Job(n) for n in range(20)]
done = threading.Event()
for job in jobs:
    job.n += 1
    pool.callInThread(lambda job=job: job.n)
pool.callInThread(done.set)
done.wait(10)
pool.stop()

# A reactor the program builds itself (as Twisted's ReactorBuilder tests do).
reactor = SelectReactor()
box = Job(0)
def worker():
    box.n = 1
    reactor.callFromThread(lambda: (box.n, reactor.stop()))
reactor.callWhenRunning(threading.Thread(target=worker).start)
reactor.run()
"""


def test_a_program_s_own_pool_and_reactor_carry_their_hand_offs(tmp_path: Path) -> None:
    result, report = run_races(write_program(tmp_path, OWN_REACTOR_AND_POOL), "fixed")
    assert result.returncode == 0, result.stderr
    assert report["violations"] == [], result.stderr
