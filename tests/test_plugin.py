"""The Twisted reactor plugin: ``--reactor=threadcheck`` for trial and twistd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent

TRIAL_TESTS = """
from twisted.internet import reactor, threads
from twisted.trial import unittest

from threadcheck import ThreadAffinityError
from threadcheck_reactor import ThreadCheckMixin


class InstrumentedReactorTests(unittest.TestCase):
    def test_reactor_is_instrumented(self):
        self.assertIsInstance(reactor, ThreadCheckMixin)

    def test_worker_violation_fails_its_deferred(self):
        d = threads.deferToThread(reactor.callLater, 0, lambda: None)
        return self.assertFailure(d, ThreadAffinityError)
"""


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd), **env},
    )


def trial(module: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "trial"), "--reactor=threadcheck", module], cwd, **env)


@pytest.mark.parametrize("program", ["trial", "twistd"])
def test_help_reactors_lists_threadcheck(program: str, tmp_path: Path) -> None:
    result = run([str(BIN / program), "--help-reactors"], tmp_path)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if "threadcheck" in line.split()[:1]]
    assert "thread-affinity" in line


def test_trial_runs_tests_on_the_instrumented_reactor(tmp_path: Path) -> None:
    (tmp_path / "tc_trial_tests.py").write_text(TRIAL_TESTS)
    result = trial("tc_trial_tests", tmp_path, THREADCHECK_MODE="raise")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED (successes=2)" in result.stdout
    # raise mode: the violation was raised and also recorded, so it is reported at exit.
    assert "threadcheck: 1 thread-affinity violation" in result.stderr


def test_trial_record_mode_reports_at_exit_and_writes_json(tmp_path: Path) -> None:
    (tmp_path / "tc_record_tests.py").write_text(
        textwrap.dedent(
            """
            from twisted.internet import reactor, threads
            from twisted.trial import unittest


            class Sloppy(unittest.TestCase):
                def test_schedules_from_a_worker(self):
                    return threads.deferToThread(reactor.callLater, 0, lambda: None)
            """
        )
    )
    report = tmp_path / "report.json"
    result = trial("tc_record_tests", tmp_path, THREADCHECK_JSON=str(report))
    assert "PASSED" in result.stdout
    assert "reactor.callLater called from thread" in result.stderr
    assert json.loads(report.read_text())["counts_by_api"] == {"reactor.callLater": 1}


def test_bad_mode_in_environment_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "tc_trial_tests.py").write_text(TRIAL_TESTS)
    result = trial("tc_trial_tests", tmp_path, THREADCHECK_MODE="loud")
    assert result.returncode != 0
    assert "unknown mode 'loud'" in result.stdout + result.stderr


def test_twistd_runs_an_application_on_the_instrumented_reactor(tmp_path: Path) -> None:
    (tmp_path / "app.tac").write_text(
        textwrap.dedent(
            """
            from twisted.application import service
            from twisted.internet import reactor

            from threadcheck_reactor import ThreadCheckMixin

            application = service.Application("threadcheck-demo")
            print("instrumented:", isinstance(reactor, ThreadCheckMixin), flush=True)
            reactor.callWhenRunning(reactor.callLater, 0.1, reactor.stop)
            """
        )
    )
    result = run(
        [
            str(BIN / "twistd"),
            "--reactor=threadcheck",
            "-n",
            "--pidfile=",
            "-l",
            "-",
            "-y",
            "app.tac",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "instrumented: True" in result.stdout
    assert "threadcheck" not in result.stderr  # a clean run reports nothing
