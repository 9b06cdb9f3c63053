"""Quality: a loop's steps are scheduling points (``for`` over anything but a
``range``, a ``while`` loop's back-edge), so a thread iterating a dict that the
reactor changes meanwhile is caught. The planted bug is found within 2,000
schedules and replayed in a fresh process; its fixed twin is clean over 2,000."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support import (
    CLEAN,
    assert_clean,
    assert_found_and_replayed,
    explore_program,
    write_program,
)

pytestmark = [pytest.mark.quality, pytest.mark.slow]

# A plain thread exports the reactor's session table every 50 ms.
EXPORTER = """
import threading
import time
from twisted.internet import reactor, task

sessions = {{}}  # the reactor's: connections come and go


def connect():
    sessions[f"session-{{len(sessions)}}"] = time.monotonic()


def export():
    for _ in range(3):
        time.sleep(0.05)
        {walk}
        assert len(lines) >= 1


exporter = threading.Thread(target=export, name="exporter")
task.LoopingCall(connect).start(0.02)
reactor.callWhenRunning(exporter.start)
reactor.callLater(0.2, reactor.stop)
reactor.run()
exporter.join()
"""
EXPORTER_BUG = 'lines = [f"{name} {started:.3f}" for name, started in sessions.items()]  # BUG'
EXPORTER_FIX = (
    "snapshot = dict(sessions)  # one C-level copy\n"
    '        lines = [f"{name} {started:.3f}" for name, started in snapshot.items()]'
)


def test_iterating_a_dict_the_reactor_changes_is_found_and_replayed(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, EXPORTER.format(walk=EXPORTER_BUG)))
    assert_found_and_replayed(
        result, "threadcheck: exception: RuntimeError: dictionary changed size during iteration\n"
    )
    assert "iteration of " in result.stderr  # the step table names the loop's point


# A worker counts the characters of a long list it alone reads.
LONG_LOOP = """
import threading

lines = [f"line {n}" for n in range(30000)]

def count():
    return sum(len(line) for line in lines)

def count_by_hand():
    total = 0
    for line in lines:
        total += len(line)
    assert total == count()

worker = threading.Thread(target=count_by_hand)
worker.start()
worker.join()
"""


def test_a_long_loop_over_its_own_data_is_not_a_livelock(tmp_path: Path) -> None:
    # 30,000 steps, 20,000 points at most a schedule: a loop's later steps are
    # points only at every power of two.
    result = explore_program(write_program(tmp_path, LONG_LOOP), "--budget", "5")
    assert result.returncode == 0, result.stderr
    # Its loop's later steps are no points: the search that finished is no
    # proof, and the other strategies went on with the budget.
    assert re.match(r"threadcheck: 5 schedules \(\d+ distinct\) in ", result.stderr), result.stderr
    phase = "its exhaustive phase finished first, but left out interleavings, by loops"
    assert f"not a proof ({phase}" in result.stderr


# A service parses its configuration, alone, before it starts the reactor:
# 6,000 lines, four points each (they once made a "livelock": 20,000 points).
STARTUP = """
import threading

from twisted.internet import defer, reactor, threads


class Config:
    def __init__(self):
        self.lines = 0
        self.keys = {{}}

    def feed(self, line):
        self.lines += 1
        key, _, value = line.partition("=")
        self.keys[key] = value


config = Config()
for n in range(6000):
    config.feed(f"key{{n}}=value{{n}}")

lock = threading.Lock()
served = []


def serve():
    {serve}


jobs = [threads.deferToThread(serve), threads.deferToThread(serve)]
defer.gatherResults(jobs).addBoth(lambda _: reactor.stop())
reactor.run()
assert len(served) == 1, served
"""
SERVE_ONCE_BUG = (
    "if not served:  # BUG: looked at, then appended, without the lock\n"
    "        served.append(config.lines)"
)
SERVE_ONCE_FIX = "with lock:\n        if not served:\n            served.append(config.lines)"


def test_a_long_single_threaded_start_up_is_no_livelock(tmp_path: Path) -> None:
    # Every schedule runs the whole start-up (0.3 s of points): 20 of them show
    # it is no livelock, where all 96 took 27 s.
    program = write_program(tmp_path, STARTUP.format(serve=SERVE_ONCE_FIX))
    assert_clean(explore_program(program, "--budget", "20"), budget=20)


def test_a_race_after_a_long_start_up_is_found(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, STARTUP.format(serve=SERVE_ONCE_BUG)))
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: [6000, 6000]")


def test_iterating_a_snapshot_is_clean(tmp_path: Path) -> None:
    assert_clean(explore_program(write_program(tmp_path, EXPORTER.format(walk=EXPORTER_FIX))))


# A worker waits for the reactor to load its configuration, spinning on a flag.
SPIN_WAIT = """
import threading
from twisted.internet import reactor


class Config:
    loaded = False
    port = None


config = Config()


def load():
    {publish}


def serve():
    while not config.loaded:  # a busy wait: no sleep, no lock
        pass
    assert config.port == 8080, config.port


worker = threading.Thread(target=serve, name="server")
worker.start()
reactor.callLater(0.01, load)
reactor.callLater(0.02, reactor.stop)
reactor.run()
worker.join()
"""
SPIN_BUG = "config.loaded = True  # BUG: published before the port is set\n    config.port = 8080"
SPIN_FIX = "config.port = 8080\n    config.loaded = True"


@pytest.mark.parametrize("strategy", ["portfolio", "pct:3", "bounded:1"])
def test_a_spin_wait_is_not_starved_into_a_livelock(tmp_path: Path, strategy: str) -> None:
    """PCT and a preemption bound keep running the spinning thread: past a
    fairness bound the thread that sets the flag runs instead."""
    program = write_program(tmp_path, SPIN_WAIT.format(publish=SPIN_FIX))
    result = explore_program(program, "--strategy", strategy, "--budget", "300")
    assert result.returncode == 0, result.stderr
    assert CLEAN.match(result.stderr) or re.match(
        r"threadcheck: \d+ schedules in .* no failure; the search finished", result.stderr
    ), result.stderr


def test_a_flag_published_too_early_is_found_and_replayed(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, SPIN_WAIT.format(publish=SPIN_BUG)))
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: None\n")


# Two batch jobs count 8,000 records each into a Counter of their own: 32,000
# access points, past the 20,000 the strategy decides. That was reported as a
# livelock; past the bound threads now take fair turns, and the run ends.
BATCH = """
import threading
from collections import Counter
from twisted.internet import defer, reactor, threads

RECORDS = [f"user{{n % 37}},{{n % 5}}" for n in range(8000)]


class Stats:
    started = 0


stats = Stats()
lock = threading.Lock()


def count(batch):
    {start}
    seen = Counter()
    for record in batch:
        user, _, kind = record.partition(",")
        seen[kind] += 1
    return seen


totals = Counter()
jobs = [threads.deferToThread(count, RECORDS) for _ in range(2)]
done = defer.gatherResults(jobs).addCallback(lambda counts: [totals.update(c) for c in counts])
done.addBoth(lambda _: reactor.stop())
reactor.run()
assert sum(totals.values()) == 16000, totals
assert stats.started == 2, f"{{stats.started}} jobs started"
"""
BATCH_START_FIX = "with lock:\n        stats.started += 1"


def test_batch_jobs_past_the_step_bound_are_no_livelock(tmp_path: Path) -> None:
    program = write_program(tmp_path, BATCH.format(start=BATCH_START_FIX))
    result = explore_program(program, "--budget", "2", "--strategy", "random")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("threadcheck: 2 schedules ("), result.stderr


# A daemon heartbeat ticks every 10 ms while the main thread works for 60 s
# of virtual time: 6,000 ticks, every one asleep most of the time.
HEARTBEAT = """
import threading
import time


class Gauge:
    value = 0


gauge = Gauge()
lock = threading.Lock()


def heartbeat():
    while True:
        time.sleep(0.01)
        with lock:
            gauge.value


threading.Thread(target=heartbeat, daemon=True).start()
for step in range(60):
    time.sleep(1)  # a batch of work a second
    with lock:
        gauge.value = step
"""


def test_a_fast_heartbeat_through_a_long_run_is_no_livelock(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, HEARTBEAT), "--budget", "1")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("threadcheck: 1 schedule ("), result.stderr
