"""coverage.py beside the scheduler: a suite run under ``coverage run`` counts
the lines explorations and stress runs execute, and threads started after them.

On 3.10 and 3.11 the scheduler's ``sys.settrace`` function replaced coverage's
in every controlled thread (the module below showed 45 %, its explored test
100 % green), and a stress run left the threads of every later test untraced.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

COUNTERS = """\
import threading


class Counter:
    def __init__(self):
        self._lock = threading.Lock()
        self._n = 0

    def add(self, n):
        with self._lock:
            self._n += n

    def total(self):
        with self._lock:
            return self._n


def in_a_thread(out):
    out.append(1)
    out.append(2)


def run_a_thread():
    out = []
    thread = threading.Thread(target=in_a_thread, args=(out,))
    thread.start()
    thread.join()
    return out
"""

TESTS = """\
import pytest
from twisted.internet import task, threads
from twisted.internet.defer import gatherResults

from counters import Counter, run_a_thread


def both_add(reactor):
    counter = Counter()
    work = [
        threads.deferToThreadPool(reactor, reactor.getThreadPool(), counter.add, 1),
        task.deferLater(reactor, 0, counter.add, 10),
    ]
    return gatherResults(work).addCallback(lambda _: counter.total())


@pytest.mark.{marker}
def test_counter(threadcheck_reactor):
    return both_add(threadcheck_reactor)


def test_zz_a_later_thread():
    assert run_a_thread() == [1, 2]
"""


def _missed(tmp_path: Path, marker: str, granularity: str = "access") -> list[int]:
    """The lines of ``counters.py`` that a suite run under ``coverage run`` missed."""
    (tmp_path / "counters.py").write_text(COUNTERS)
    if marker.startswith("threadcheck_explore"):
        marker = marker.replace(")", f", granularity={granularity!r})")
    (tmp_path / "test_counters.py").write_text(TESTS.format(marker=marker))
    coverage = [sys.executable, "-m", "coverage"]
    tests = ["run", "--source=counters", "-m", "pytest", "-q", "-p", "no:twisted", "-p"]
    run = subprocess.run(
        [*coverage, *tests, "no:cacheprovider", "test_counters.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = ["json", "-o", "coverage.json"]
    subprocess.run([*coverage, *report], cwd=tmp_path, check=True, capture_output=True)
    files = json.loads((tmp_path / "coverage.json").read_text())["files"]
    missed: list[int] = files["counters.py"]["missing_lines"]
    return missed


@pytest.mark.parametrize("granularity", ["access", "opcode", "line"])
def test_the_lines_an_exploration_runs_are_counted(tmp_path: Path, granularity: str) -> None:
    assert _missed(tmp_path, "threadcheck_explore(budget=20)", granularity) == []


def test_a_stress_run_leaves_later_threads_counted(tmp_path: Path) -> None:
    assert _missed(tmp_path, "threadcheck_stress(runs=20, acceptable=[11])") == []
