"""Quality: Twisted's ``threadable.synchronize`` locks order what they guard.

A request-stats object synchronised the Twisted way: pool jobs record served
requests, a LoopingCall in the reactor takes the window every tick. Planted:
``take_window`` left out of ``synchronized`` (the tick resets a window a job
is adding to). The lock ``synchronize`` gives an object is made past
``threading.RLock``, from ``_thread.allocate_lock``: the race detector saw no
order (the fixed twin was reported), and under the scheduler a job waiting
for it blocked outside its control.
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
