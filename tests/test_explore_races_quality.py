"""Quality: ``explore(..., races=True)`` and ``threadcheck explore --races``: a data
race fails the first schedule in which both its accesses happen, with no
assertion in the program; its token replays; the fixed twin explores clean.

The scenarios live in modules imported before exploring (as a test module's
are), so the detector rewrites them in place."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

import threadcheck

from support import assert_clean, assert_found_and_replayed, explore_program, write_program

pytestmark = pytest.mark.quality

SCENARIOS = """
import threading
import time
from twisted.internet import threads


class Stats:
    def __init__(self):
        self.handled = 0


def racy(reactor):
    stats = Stats()

    def handle():
        stats.handled += 1  # in a pool thread and in the reactor thread

    done = threads.deferToThreadPool(reactor, reactor.getThreadPool(), handle)
    handle()
    return done


def fixed(reactor):
    stats = Stats()

    def handle():
        stats.handled += 1

    done = threads.deferToThreadPool(reactor, reactor.getThreadPool(), handle)
    return done.addCallback(lambda _: handle())  # in the reactor thread, after the job


def plain_threads():
    pending = []
    lock = threading.Lock()

    def submit(name):
        with lock:
            pending.append(name)

    workers = [threading.Thread(target=submit, args=(n,)) for n in ("a", "b")]
    for worker in workers:
        worker.start()
    for name in pending:  # BUG: iterates without the lock while the workers append
        pass
    for worker in workers:
        worker.join()


class Flusher:
    def __init__(self):
        self.flushed = 0


def _flush(flusher):
    flusher.flushed += 1


def joined():
    # A write-behind flusher, joined (or seen ended) before its count is read:
    # ordered (it was reported as a race under the scheduler).
    flusher = Flusher()
    worker = threading.Thread(target=_flush, args=(flusher,))
    worker.start()
    worker.join()
    first = flusher.flushed
    watchdog = threading.Timer(0.01, _flush, args=(flusher,))
    watchdog.start()
    while watchdog.is_alive():
        time.sleep(0.005)
    assert first == 1 and flusher.flushed == 2


def peeked():
    flusher = Flusher()
    worker = threading.Thread(target=_flush, args=(flusher,))
    worker.start()
    worker.join(timeout=0)  # BUG: may return before the flush
    if not worker.is_alive():
        return
    return flusher.flushed
"""


@pytest.fixture
def scenarios(tmp_path: Path) -> ModuleType:
    path = tmp_path / "race_scenarios.py"
    path.write_text(textwrap.dedent(SCENARIOS))
    spec = importlib.util.spec_from_file_location("race_scenarios", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["race_scenarios"] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules["race_scenarios"]


def test_a_race_fails_the_first_schedule_and_replays(scenarios: ModuleType) -> None:
    result = threadcheck.explore(scenarios.racy, budget=200, races=True)
    failure = result.failure
    assert failure is not None
    assert failure.message.startswith("data race on Stats.handled: update in thread"), failure
    assert result.found_at == 1
    replayed = threadcheck.replay(scenarios.racy, result.token)
    assert replayed.failure is not None
    assert replayed.failure.what == failure.what == "Stats.handled"


def test_the_fixed_twin_explores_clean(scenarios: ModuleType) -> None:
    result = threadcheck.explore(scenarios.fixed, budget=500, races=True)
    assert result.failure is None, result.report()
    assert result.schedules == 500 or result.proof


def test_without_races_the_same_scenario_passes(scenarios: ModuleType) -> None:
    """No assertion fails in it: only the race detector sees the bug."""
    result = threadcheck.explore(scenarios.racy, budget=200)
    assert result.failure is None, result.report()


def test_a_scenario_without_twisted_iterating_a_shared_list(scenarios: ModuleType) -> None:
    result = threadcheck.explore(scenarios.plain_threads, budget=200, races=True)
    assert result.failure is not None
    assert result.failure.message.startswith("data race on pending: "), result.failure
    assert result.failure.what == "pending" and "iteration in thread" in result.failure.message
    assert result.found_at == 1


def test_a_thread_joined_or_seen_ended_orders_its_work_before(scenarios: ModuleType) -> None:
    result = threadcheck.explore(scenarios.joined, budget=150, races=True)
    assert result.failure is None, result.report()
    assert result.schedules == 150 or result.proof


def test_a_join_that_timed_out_orders_nothing(scenarios: ModuleType) -> None:
    result = threadcheck.explore(scenarios.peeked, budget=150, races=True)
    assert result.failure is not None, result.report()
    assert result.failure.message.startswith("data race on Flusher.flushed: "), result.failure


PROGRAM = """
import threading
from twisted.internet import reactor, threads


class Heartbeat:
    def __init__(self):
        self.beats = 0
        self.lock = threading.Lock()

    def beat(self):
        LOCK_OR_NOT
            self.beats += 1


heartbeat = Heartbeat()


def pulse():
    for _ in range(3):
        heartbeat.beat()


def serve():
    worker = threading.Thread(target=pulse, daemon=True)
    worker.start()
    heartbeat.beat()
    threads.deferToThread(worker.join).addBoth(lambda _: reactor.stop())


reactor.callWhenRunning(serve)
reactor.run()
"""


@pytest.mark.slow
def test_explore_races_on_a_program_fails_and_replays(tmp_path: Path) -> None:
    program = write_program(tmp_path, PROGRAM.replace("LOCK_OR_NOT", "if True:"))
    result = explore_program(program, "--races", "--budget", "200")
    assert_found_and_replayed(
        result, "threadcheck: violation: data race on Heartbeat.beats: update in thread"
    )


@pytest.mark.slow
def test_explore_races_on_the_fixed_program_is_clean(tmp_path: Path) -> None:
    program = write_program(tmp_path, PROGRAM.replace("LOCK_OR_NOT", "with self.lock:"))
    result = explore_program(program, "--races", "--budget", "300")
    assert_clean(result, budget=300)


# Orders the scheduled primitives gave no clock for, though threading's do:
# work done before task_done() happens before join() returns; a set() before
# is_set() returns True. Both were a data race "on every schedule tried".
HANDED_BACK = """
import queue
import threading
import time

class Job:
    result = None

jobs = queue.Queue()
ready = threading.Event()
config = {{}}

def worker():
    job = jobs.get()
    job.result = 42
    jobs.task_done()

def producer():
    config["timeout"] = 5
    ready.set()

threading.Thread(target=worker, daemon=True).start()
threading.Thread(target=producer).start()
job = Job()
jobs.put(job)
{wait}
print(job.result, config["timeout"])
"""
WAITED = "jobs.join()\nwhile not ready.is_set():\n    time.sleep(0.001)"


def test_queue_join_and_a_polled_event_order_what_came_before(tmp_path: Path) -> None:
    program = write_program(tmp_path, HANDED_BACK.format(wait=WAITED))
    assert_clean(explore_program(program, "--races", "--budget", "300"), 300)


def test_without_them_the_race_is_found(tmp_path: Path) -> None:
    program = write_program(tmp_path, HANDED_BACK.format(wait="time.sleep(0.01)"))
    result = explore_program(program, "--races", "--budget", "300")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: violation: data race on "), result.stderr
