"""The Twisted reactor plugin: ``--reactor=threadcheck`` for trial and twistd."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from support import run_in

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

    test_worker_violation_fails_its_deferred.threadcheck_allow = ["reactor.callLater"]
"""


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_in(args, cwd, **env)


def trial(module: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "trial"), "--reactor=threadcheck", *args, module], cwd, **env)


@pytest.mark.parametrize("program", ["trial", "twistd"])
def test_help_reactors_lists_threadcheck(program: str, tmp_path: Path) -> None:
    result = run([str(BIN / program), "--help-reactors"], tmp_path)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if "threadcheck" in line.split()[:1]]
    assert "thread-affinity" in line


def test_trial_raise_mode_fails_the_test_and_allows_what_it_expects(tmp_path: Path) -> None:
    (tmp_path / "tc_trial_tests.py").write_text(TRIAL_TESTS)
    result = trial("tc_trial_tests", tmp_path, THREADCHECK_MODE="raise")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED (successes=2)" in result.stdout
    # raise mode: the violation was raised and also recorded, so it is reported at exit.
    assert "threadcheck: 1 thread-affinity violation" in result.stderr


SLOPPY_TESTS = """
import threading

from twisted.internet import reactor, threads
from twisted.trial import unittest


def schedule():
    # Leaves nothing pending: trial would report a DelayedCall as a dirty reactor.
    reactor.callWhenRunning(print)


class Sloppy(unittest.TestCase):
    def test_clean(self):
        return threads.deferToThread(lambda: None)

    def test_from_a_worker(self):
        return threads.deferToThread(schedule)

    def test_twice_from_a_worker(self):
        return threads.deferToThread(lambda: [schedule(), schedule()])


class SloppySync(unittest.SynchronousTestCase):
    def test_from_a_thread(self):
        thread = threading.Thread(target=schedule)
        thread.start()
        thread.join()
"""


BLOCKING_TEST = """

class Blocking(unittest.TestCase):
    def test_blocking_call_in_the_reactor_thread(self):
        # It raises BlockingCallInReactorThreadError: one error, not a second
        # for the violation it also is.
        return threads.blockingCallFromThread(reactor, lambda: None)
"""


STALLING_TESTS = """
import time
from twisted.internet import reactor, task
from twisted.trial.unittest import TestCase

def load_config():
    time.sleep(0.3)  # BUG: blocking in the reactor thread
    return {"ok": True}

class ConfigTests(TestCase):
    def test_config_loaded(self):
        return task.deferLater(reactor, 0, load_config)
"""


@pytest.mark.parametrize("jobs", [[], ["-j", "2"]], ids=["serial", "j2"])
def test_trial_reports_a_stall_once_also_from_its_workers(tmp_path: Path, jobs: list[str]) -> None:
    # Under -j a worker's stall stayed in its stderr, a file in _trial_temp.
    (tmp_path / "tc_stalling.py").write_text(STALLING_TESTS)
    result = trial("tc_stalling", tmp_path, *jobs)
    assert "PASSED (successes=1)" in result.stdout, result.stdout + result.stderr
    assert result.stderr.count("threadcheck: 1 reactor stall (reported, not failures)") == 1
    assert "blocked at: tc_stalling.py:7 in load_config" in result.stderr, result.stderr


@pytest.mark.parametrize("jobs", [[], ["-j", "2"]], ids=["serial", "j2"])
def test_trial_record_mode_fails_each_test_and_reports_everything(
    tmp_path: Path, jobs: list[str]
) -> None:
    (tmp_path / "tc_sloppy.py").write_text(SLOPPY_TESTS + BLOCKING_TEST)
    report = tmp_path / "report.json"
    result = trial("tc_sloppy", tmp_path, *jobs, THREADCHECK_JSON=str(report))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED (errors=4, successes=1)" in result.stdout
    assert "ThreadAffinityViolationsError: threadcheck: 2 thread-affinity violations" in (
        result.stdout
    )
    # One report, on the console, of every process's violations (-j: the workers'),
    # after the line that says the blocking call raised.
    assert result.stderr.count("threadcheck: 5 thread-affinity violations (") == 1
    assert (
        "thread-affinity violations ("
        not in result.stderr.split("threadcheck: 5 thread-affinity violations (")[0]
    )
    document = json.loads(report.read_text())
    assert document["total"] == 5
    assert {v["test"]["nodeid"] for v in document["violations"]} == {
        "tc_sloppy.Blocking.test_blocking_call_in_the_reactor_thread",
        "tc_sloppy.Sloppy.test_from_a_worker",
        "tc_sloppy.Sloppy.test_twice_from_a_worker",
        "tc_sloppy.SloppySync.test_from_a_thread",
    }
    assert not list(tmp_path.glob("threadcheck-spool-*"))


def test_trial_threadcheck_allow_accepts_known_violations(tmp_path: Path) -> None:
    (tmp_path / "tc_allowed.py").write_text(
        textwrap.dedent(
            """
            from twisted.internet import reactor, threads
            from twisted.trial import unittest


            class Known(unittest.TestCase):
                def test_known(self):
                    return threads.deferToThread(reactor.callLater, 0, print)

                test_known.threadcheck_allow = ["reactor.callLater"]

                def test_typo(self):
                    pass

                test_typo.threadcheck_allow = ["reactor.calLater"]
            """
        )
    )
    result = trial("tc_allowed", tmp_path)
    assert "FAILED (errors=1, successes=1)" in result.stdout, result.stdout
    assert "test_typo ...                                                       [ERROR]" in (
        result.stdout
    )
    assert (
        "ValueError: threadcheck_allow: 'reactor.calLater' is not a checked API; "
        "did you mean reactor.callLater?"
    ) in result.stdout
    assert (
        "_trial.py" not in result.stdout and "_reactor.py" not in result.stdout
    )  # no frames of ours


@pytest.mark.parametrize("jobs", [[], ["-j", "2"]])
def test_trial_says_once_that_a_clean_run_found_nothing(tmp_path: Path, jobs: list[str]) -> None:
    # Z48: a clean run said nothing at all; nothing told that the check ran.
    (tmp_path / "tc_clean.py").write_text(
        "from twisted.internet import threads\n"
        "from twisted.trial import unittest\n\n\n"
        "class Clean(unittest.TestCase):\n"
        "    def test_job(self):\n"
        "        return threads.deferToThread(sum, [1, 2])\n\n"
        "    def test_nothing(self):\n"
        "        pass\n"
    )
    result = trial("tc_clean", tmp_path, *jobs)
    assert "PASSED (successes=2)" in result.stdout, result.stdout + result.stderr
    assert result.stderr == "threadcheck: no thread-affinity violations found\n", result.stderr


def test_trial_violations_outside_any_test_fail_the_run(tmp_path: Path) -> None:
    (tmp_path / "tc_at_import.py").write_text(
        textwrap.dedent(
            """
            import threading

            from twisted.internet import reactor
            from twisted.trial import unittest

            thread = threading.Thread(target=reactor.callWhenRunning, args=(print,))
            thread.start()
            thread.join()


            class Fine(unittest.TestCase):
                def test_fine(self):
                    pass
            """
        )
    )
    result = trial("tc_at_import", tmp_path)
    assert result.returncode == 1
    assert "PASSED (successes=1)" in result.stdout  # the tests themselves passed
    assert "1 thread-affinity violation(s) outside any test fail this run" in result.stderr
    # Given Twisted's method where it was made, line 7: the report leads with it.
    assert "tc_at_import.py:7 in <module>  (the thread was made here)" in (result.stderr)


def test_trial_report_only_fails_nothing(tmp_path: Path) -> None:
    (tmp_path / "tc_sloppy.py").write_text(SLOPPY_TESTS)
    result = trial("tc_sloppy", tmp_path, THREADCHECK_REPORT_ONLY="1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED (successes=4)" in result.stdout
    assert result.stderr.startswith("threadcheck: 4 thread-affinity violations")


def test_trial_run_by_a_relative_path_is_not_the_users_code(tmp_path: Path) -> None:
    # Its script, run as `../venv/bin/trial`, was shown as the user's line
    # ("blocked at: ../venv/bin/trial:8 in <module>" for a stall in a library).
    (tmp_path / "tc_sloppy.py").write_text(SLOPPY_TESTS)
    relative = os.path.relpath(BIN / "trial", tmp_path)
    result = run([relative, "--reactor=threadcheck", "tc_sloppy"], tmp_path)
    assert "FAILED" in result.stdout, result.stdout + result.stderr
    assert "tc_sloppy.py" in result.stderr
    assert not re.search(r"trial:\d+ in <module>", result.stderr), result.stderr


CHILD = """
import threading
import threadcheck_reactor._reactor as module  # Twisted's reactor.__module__ convention

module.install()
from twisted.internet import reactor

thread = threading.Thread(target=reactor.callLater, args=(3600, print), name="in-child")
thread.start()
thread.join()
"""


def test_a_child_process_reports_into_its_parents_report(tmp_path: Path) -> None:
    (tmp_path / "tc_child.py").write_text(
        textwrap.dedent(
            f"""
            import subprocess
            import sys

            from twisted.trial import unittest


            class Spawns(unittest.TestCase):
                def test_child(self):
                    child = subprocess.run(
                        [sys.executable, "-c", {CHILD!r}], capture_output=True, text=True
                    )
                    self.assertEqual((child.returncode, child.stderr), (0, ""))
            """
        )
    )
    report = tmp_path / "report.json"
    result = trial("tc_child", tmp_path, THREADCHECK_JSON=str(report))
    # The child's violation is in the parent's report, outside the parent's tests.
    assert "thread-affinity violation(s) outside any test fail this run" in result.stderr
    assert "reactor.callLater called before run() from thread 'in-child'" in result.stderr
    assert json.loads(report.read_text())["total"] == 1
    assert result.returncode == 1


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("THREADCHECK_MODE", "loud", "THREADCHECK_MODE: unknown mode 'loud'"),
        ("THREADCHECK_REPORT_ONLY", "maybe", "THREADCHECK_REPORT_ONLY='maybe': use 1 or 0"),
        ("THREADCHECK_RACES", "maybe", "THREADCHECK_RACES='maybe': use 1 or 0"),
        ("THREADCHECK_STALL_MS", "abc", "THREADCHECK_STALL_MS takes milliseconds"),
    ],
)
@pytest.mark.parametrize("program", ["trial", "twistd"])
def test_bad_environment_is_a_one_line_usage_error(
    tmp_path: Path, variable: str, value: str, message: str, program: str
) -> None:
    # twistd printed its whole usage (67 lines) before the error.
    (tmp_path / "tc_trial_tests.py").write_text(TRIAL_TESTS)
    (tmp_path / "app.tac").write_text(TAC.format(buggy=False))
    target = ["tc_trial_tests"] if program == "trial" else ["-n", "--pidfile=", "-y", "app.tac"]
    command = [str(BIN / program), "--reactor=threadcheck", *target]
    result = run(command, tmp_path, **{variable: value})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"threadcheck: error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


TAC = """
import threading

from twisted.application import service
from twisted.internet import reactor

from threadcheck_reactor import ThreadCheckMixin

application = service.Application("threadcheck-demo")
print("instrumented:", isinstance(reactor, ThreadCheckMixin), flush=True)


def worker():
    reactor.callLater(0, print)


def start():
    if {buggy}:
        thread = threading.Thread(target=worker, name="worker")
        thread.start()
        thread.join()
    reactor.callLater(0.1, reactor.stop)


reactor.callWhenRunning(start)
"""


def twistd(tmp_path: Path, *args: str, buggy: bool) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.tac").write_text(TAC.format(buggy=buggy))
    return run([str(BIN / "twistd"), "--reactor=threadcheck", *args, "-y", "app.tac"], tmp_path)


def test_twistd_clean_application_exits_zero(tmp_path: Path) -> None:
    result = twistd(tmp_path, "-n", "--pidfile=", "-l", "-", buggy=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "instrumented: True" in result.stdout
    # A clean run says so, once, and that alone (Z48: nothing told that the check ran).
    assert result.stderr == "threadcheck: no thread-affinity violations found\n", result.stderr
    assert "[threadcheck#info] threadcheck: no thread-affinity violations found" in result.stdout


def test_twistd_violation_is_logged_and_fails_the_exit_status(tmp_path: Path) -> None:
    result = twistd(tmp_path, "-n", "--pidfile=", "-l", "twistd.log", buggy=True)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "threadcheck: 1 thread-affinity violation" in result.stderr
    log = (tmp_path / "twistd.log").read_text()
    assert "[threadcheck#error] threadcheck: 1 thread-affinity violation" in log
    assert "offending call: app.tac:14 in worker" in log


def test_twistd_under_threadcheck_run_reports_once_with_runs_status(tmp_path: Path) -> None:
    # The plugin's own report and exit status 3 came first; run then said "the
    # program also failed (exit status 3)" and printed the report a third time.
    (tmp_path / "app.tac").write_text(TAC.format(buggy=True))
    twistd_args = [str(BIN / "twistd"), "--reactor=threadcheck", "-n", "--pidfile=", "-l", "-"]
    result = run([str(BIN / "threadcheck"), "run", *twistd_args, "-y", "app.tac"], tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "instrumented: True" in result.stdout
    assert result.stderr.count("thread-affinity violation") == 1, result.stderr
    assert "also failed" not in result.stderr


def test_twistd_logs_a_stall_as_a_warning(tmp_path: Path) -> None:
    # A daemon has no stderr: its stalls were only ever printed there.
    tac = TAC.format(buggy=False).replace(
        "reactor.callLater(0.1, reactor.stop)",
        "import time; time.sleep(0.3)  # a blocking load in the reactor thread\n"
        "    reactor.callLater(0.1, reactor.stop)",
    )
    (tmp_path / "app.tac").write_text(tac)
    command = [str(BIN / "twistd"), "--reactor=threadcheck", "-n", "--pidfile=", "-l", "s.log"]
    result = run([*command, "-y", "app.tac"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    log = (tmp_path / "s.log").read_text()
    assert "[threadcheck#warn] threadcheck: 1 reactor stall (reported, not failures)" in log, log
    assert "blocked at: app.tac:22 in start" in log


def test_twistd_stopped_by_sigterm_still_writes_its_reports(tmp_path: Path) -> None:
    # twistd ends itself with the signal, and exit handlers never ran: no JSON.
    tac = TAC.format(buggy=True).replace(
        "reactor.callLater(0.1, reactor.stop)",
        "import os, signal; reactor.callLater(0.1, os.kill, os.getpid(), signal.SIGTERM)",
    )
    (tmp_path / "app.tac").write_text(tac)
    json_path = tmp_path / "report.json"
    command = [str(BIN / "twistd"), "--reactor=threadcheck", "-n", "--pidfile=", "-l", "-"]
    result = run([*command, "-y", "app.tac"], tmp_path, THREADCHECK_JSON=str(json_path))
    assert result.returncode == -signal.SIGTERM, result.stdout + result.stderr
    # On stderr, as on a normal stop: not only in twistd's log (-l -: stdout).
    assert result.stderr.startswith("threadcheck: 1 thread-affinity violation"), result.stderr
    assert len(json.loads(json_path.read_text())["violations"]) == 1


# Twisted's newer runner of services: the report was printed, but the exit
# status stayed 0; stopped by SIGTERM, it printed nothing at all.
WSGI_APP = (
    TAC.replace('application = service.Application("threadcheck-demo")\n', "")
    + """

def application(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]
"""
)


@pytest.mark.parametrize("stop", ["reactor.stop", "SIGTERM"])
def test_twist_fails_the_exit_status_and_reports_when_signalled(tmp_path: Path, stop: str) -> None:
    app = WSGI_APP.format(buggy=True)
    if stop == "SIGTERM":
        app = app.replace(
            "reactor.callLater(0.1, reactor.stop)",
            "import os, signal; reactor.callLater(0.1, os.kill, os.getpid(), signal.SIGTERM)",
        )
    (tmp_path / "webapp.py").write_text(app)
    twist = [str(BIN / "twist"), "--reactor=threadcheck", "web", "--listen", "tcp:0"]
    result = run([*twist, "--wsgi", "webapp.application"], tmp_path, PYTHONPATH=str(tmp_path))
    expected = 3 if stop == "reactor.stop" else -signal.SIGTERM
    assert result.returncode == expected, result.stdout + result.stderr
    assert "instrumented: True" in result.stdout
    assert result.stderr.startswith("threadcheck: 1 thread-affinity violation"), result.stderr


RACY_TAC = """
import threading, time

from twisted.application import internet, service
from twisted.internet import reactor

class Heartbeat:
    beats = 0

heartbeat = Heartbeat()
lock = threading.Lock()

def beat():
    while True:
        time.sleep(0.01)
        with {guard}:
            heartbeat.beats += 1

def beats():
    with {guard}:
        return heartbeat.beats

threading.Thread(target=beat, daemon=True).start()
application = service.Application("heartbeat")
internet.TimerService(0.05, beats).setServiceParent(application)
reactor.callLater(0.5, reactor.stop)
"""


@pytest.mark.parametrize("locked", [False, True], ids=["racy", "locked"])
def test_twistd_reports_a_race_in_its_tac_file(tmp_path: Path, locked: bool) -> None:
    # twistd compiles the .tac itself, past the import hook: no race was reported.
    guard = "lock" if locked else "contextlib.nullcontext()"
    tac = RACY_TAC.format(guard=guard).replace("import threading", "import contextlib, threading")
    (tmp_path / "app.tac").write_text(tac)
    command = [str(BIN / "twistd"), "--reactor=threadcheck", "-n", "--pidfile=", "-l", "-"]
    result = run([*command, "-y", "app.tac"], tmp_path, THREADCHECK_RACES="1")
    if locked:
        assert result.returncode == 0, result.stderr
        assert result.stderr == "threadcheck: no thread-affinity violations or data races found\n"
    else:
        assert result.returncode == 3, result.stderr
        # Real threads: either access may be the later one, which the report names first.
        assert "data race on Heartbeat.beats: " in result.stderr
        assert "update: app.tac:17 in beat" in result.stderr
        assert "update in thread 'Thread-1 (beat)'" in result.stderr


def test_daemonized_twistd_writes_the_report_to_its_log(tmp_path: Path) -> None:
    result = twistd(tmp_path, "--pidfile=twistd.pid", "-l", "twistd.log", buggy=True)
    assert result.returncode == 0, result.stdout + result.stderr  # the launcher's status
    log = tmp_path / "twistd.log"
    deadline = time.monotonic() + 30
    while not _daemon_finished(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "[threadcheck#error] threadcheck: 1 thread-affinity violation" in log.read_text()


def _daemon_finished(folder: Path) -> bool:
    # twistd removes its pid file when the daemon exits.
    log = folder / "twistd.log"
    return (
        log.exists()
        and "Main loop terminated" in log.read_text()
        and not (folder / "twistd.pid").exists()
    )


TWISTED_SUITES = [
    "twisted.test.test_threads",
    "twisted.test.test_internet",
    "twisted.test.test_stdio",
]


def _outcomes(stdout: str) -> dict[str, str]:
    """test id -> [OK], [FAIL], [SKIPPED], ... from trial's bwverbose reporter."""
    outcomes: dict[str, str] = {}
    for line in stdout.splitlines():
        test, _, outcome = line.rpartition(" ... ")
        if test and outcome.startswith("["):
            outcomes[test] = outcome
    return outcomes


def test_twisteds_own_suites_give_the_same_results_under_threadcheck(tmp_path: Path) -> None:
    # Their child processes re-create the reactor from type(reactor).__module__.
    args = ["-j", "2", "--reporter=bwverbose", *TWISTED_SUITES]
    report = tmp_path / "report.json"
    default = run([str(BIN / "trial"), *args], tmp_path / "default")
    checked = run(
        [str(BIN / "trial"), "--reactor=threadcheck", *args],
        tmp_path / "threadcheck",
        THREADCHECK_JSON=str(report),
    )
    assert default.returncode == 0, default.stdout[-2000:]
    expected = _outcomes(default.stdout)
    assert len(expected) > 80
    assert _outcomes(checked.stdout) == expected
    assert checked.returncode == 0, checked.stdout[-2000:] + checked.stderr
    assert json.loads(report.read_text())["total"] == 0


@pytest.mark.quality
@pytest.mark.parametrize("reactor", ["threadcheck", "threadcheck-asyncio"])
def test_trial_reports_a_stall_without_failing(tmp_path: Path, reactor: str) -> None:
    (tmp_path / "tc_stall.py").write_text(
        textwrap.dedent(
            """
            import time

            from twisted.internet import reactor, task
            from twisted.trial import unittest


            def slow():
                time.sleep(0.3)


            class Slow(unittest.TestCase):
                def test_slow(self):
                    return task.deferLater(reactor, 0, slow)
            """
        )
    )
    result = run(
        [str(BIN / "trial"), f"--reactor={reactor}", "tc_stall"],
        tmp_path,
        THREADCHECK_STALL_MS="50",
    )
    assert result.returncode == 0, result.stderr
    assert "PASSED (successes=1)" in result.stdout
    assert "threadcheck: 1 reactor stall (reported, not failures)" in result.stderr
    assert "reactor thread stalled in time.sleep" in result.stderr
    assert "tc_stall.py:8 in slow" in result.stderr  # the callback
    assert "blocked at: tc_stall.py:9 in slow" in result.stderr


TRIAL_RACES = """
from twisted.internet import reactor, task, threads
from twisted.trial import unittest


class Stats:
    def __init__(self):
        self.handled = 0


class RaceTests(unittest.TestCase):
    def test_racy(self):
        stats = Stats()
        def bump():
            stats.handled += 1
        def later():  # once the reactor (and its pool) runs
            d = threads.deferToThread(bump)
            stats.handled += 1
            return d
        return task.deferLater(reactor, 0.01, later)

    def test_fixed(self):
        stats = Stats()
        def bump():
            stats.handled += 1
        def later():
            d = threads.deferToThread(bump)
            d.addCallback(lambda _: setattr(stats, "handled", stats.handled + 1))
            return d
        return task.deferLater(reactor, 0.01, later)
"""


def test_trial_with_threadcheck_races_fails_the_racy_test_only(tmp_path: Path) -> None:
    (tmp_path / "tc_trial_races.py").write_text(TRIAL_RACES)
    result = trial("tc_trial_races", tmp_path, THREADCHECK_RACES="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED (errors=1, successes=1)" in result.stdout
    assert "data race on Stats.handled: update in thread" in result.stdout
    assert "during test: tc_trial_races.RaceTests.test_racy" in result.stdout
    plain = trial("tc_trial_races", tmp_path)
    assert "PASSED (successes=2)" in plain.stdout, plain.stdout + plain.stderr


@pytest.mark.parametrize(
    "names",
    [
        ["tc_trial_races.RaceTests.test_racy"],
        ["-j", "2", "tc_trial_races"],
        ["suite/tc_trial_by_path.py"],  # not importable as named: trial loads the file
    ],
)
def test_trial_with_threadcheck_races_loads_tests_by_name_and_in_workers(
    tmp_path: Path, names: list[str]
) -> None:
    # The race detector's import hook was the deepest frame of "no module
    # tc_trial_races.RaceTests": trial took it for a module failing inside.
    # A test file named by its path, loaded by trial itself, ran as written.
    (tmp_path / "tc_trial_races.py").write_text(TRIAL_RACES)
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "tc_trial_by_path.py").write_text(TRIAL_RACES)
    result = trial(names[-1], tmp_path, *names[:-1], THREADCHECK_RACES="1")
    assert "No module named" not in result.stdout, result.stdout
    assert "data race on Stats.handled: update in thread" in result.stdout, result.stdout
    assert "RaceTests.test_racy" in result.stdout


@pytest.mark.parametrize("names", [["svcpkg.tests"], ["svcpkg"], ["-j", "2", "svcpkg.tests"]])
def test_trial_watches_an_installed_packages_tests_for_races_however_run(
    tmp_path: Path, names: list[str]
) -> None:
    # Its test folder became the user's code as its first test ran: a serial
    # trial had imported every module by then, unwatched (crochet's race on
    # its watchdog's flag was found under -j only).
    tests = tmp_path / "site-packages" / "svcpkg" / "tests"
    tests.mkdir(parents=True)
    (tests.parent / "__init__.py").write_text("")
    (tests / "__init__.py").write_text("")
    (tests / "test_stats.py").write_text(TRIAL_RACES)
    site = str(tmp_path / "site-packages")
    result = trial(names[-1], tmp_path, *names[:-1], THREADCHECK_RACES="1", PYTHONPATH=site)
    assert "data race on Stats.handled: update in thread" in result.stdout, result.stdout
    assert "FAILED (errors=1, successes=1)" in result.stdout


def test_trial_races_include_names_what_it_cannot_find(tmp_path: Path) -> None:
    (tmp_path / "tc_trial_races.py").write_text(TRIAL_RACES)
    result = trial(
        "tc_trial_races", tmp_path, THREADCHECK_RACES="1", THREADCHECK_RACES_INCLUDE="nosuchpkg"
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "threadcheck: error: THREADCHECK_RACES_INCLUDE: no such file, folder or module: nosuchpkg"
    )


# A twistd service stopped by SIGTERM (as systemd and docker stop one), whose
# pool job calls the reactor: twistd then kills itself with the signal.
SELF_TERMINATING_TAC = """
import os, signal
from twisted.application import service
from twisted.internet import reactor, threads

def refresh():
    reactor.callLater(0, print, "refreshed")  # BUG: from a pool thread

class Refresher(service.Service):
    def startService(self):
        super().startService()
        reactor.callLater(0.2, threads.deferToThread, refresh)
        reactor.callLater(1, os.kill, os.getpid(), signal.SIGTERM)

application = service.Application("refresher")
Refresher().setServiceParent(application)
"""


def test_threadcheck_run_twistd_stopped_by_a_signal_prints_its_report(tmp_path: Path) -> None:
    # twistd re-raised the signal once stopped and died before the report.
    (tmp_path / "refresher.tac").write_text(SELF_TERMINATING_TAC)
    command = [sys.executable, "-m", "threadcheck", "run", str(BIN / "twistd")]
    result = run([*command, "-n", "--pidfile=", "-y", "refresher.tac"], tmp_path)
    assert result.returncode == -signal.SIGTERM, result.stderr
    assert "threadcheck: 1 thread-affinity violation" in result.stderr, result.stderr
    assert "offending call: refresher.tac:7 in refresh" in result.stderr


def test_trial_tests_of_an_installed_package_are_the_users_code(tmp_path: Path) -> None:
    # trial pkg.tests with the package installed: its test module sat under
    # site-packages, folded as a library: the report had no offending line.
    package = tmp_path / "site-packages" / "tcinstalled"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "test_service.py").write_text(TRIAL_WORKER_BUG)
    result = trial("tcinstalled.test_service", tmp_path, PYTHONPATH=str(package.parent))
    assert "FAILED (errors=1)" in result.stdout, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert "offending call: site-packages/tcinstalled/test_service.py:9 in worker" in said, said


TRIAL_WORKER_BUG = """
import threading
from twisted.internet import reactor
from twisted.trial import unittest

class ServiceTests(unittest.TestCase):
    def test_worker_schedules_a_call(self):
        def worker():
            reactor.callLater(0, lambda: None)  # BUG: from a worker thread
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
"""
