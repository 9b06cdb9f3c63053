"""Bad paths and signals at every entry point, in subprocesses: one line, the
right exit status, never a traceback, never a lost report."""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import run_in

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
STARTED = "program started"

PROGRAM = f"""
print({STARTED!r}, flush=True)
"""


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_in(args, cwd, timeout=180, **env)


def threadcheck(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "threadcheck", *args], cwd, **env)


def write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def assert_one_line(text: str, start: str) -> str:
    """``text`` is one line beginning with ``start``; returns it."""
    assert "Traceback" not in text, text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith(start), text
    return lines[0]


def bad_json_path(kind: str, tmp_path: Path) -> str:
    if kind == "missing directory":
        return str(tmp_path / "no-such-dir" / "report.json")
    if kind == "read-only file":
        if os.geteuid() == 0:
            pytest.skip("root writes read-only files")
        path = tmp_path / "report.json"
        path.write_text("{}")
        path.chmod(0o444)
        return str(path)
    return {"/proc file": "/proc/x.json", "/proc/self/status": "/proc/self/status"}[kind]


BAD_JSON = ["missing directory", "/proc file", "/proc/self/status", "read-only file"]


@pytest.mark.parametrize("kind", BAD_JSON)
@pytest.mark.parametrize("command", ["run", "explore"])
def test_unwritable_json_is_one_line_before_the_program_runs(
    command: str, kind: str, tmp_path: Path
) -> None:
    prog = write(tmp_path / "prog.py", PROGRAM)
    path = bad_json_path(kind, tmp_path)
    result = threadcheck(tmp_path, command, "--json", path, str(prog))
    assert result.returncode == 2, result.stderr
    assert STARTED not in result.stdout
    line = assert_one_line(result.stderr, "threadcheck: error: --json: ")
    assert path in line or os.path.dirname(path) in line


@pytest.mark.parametrize("kind", BAD_JSON)
def test_unwritable_json_is_pytests_usage_error(kind: str, tmp_path: Path) -> None:
    write(tmp_path / "test_it.py", "def test_it():\n    print('test ran')\n")
    path = bad_json_path(kind, tmp_path)
    pytest_args = ["-p", "no:cacheprovider", "-s", "--threadcheck", "--threadcheck-json", path]
    result = run([sys.executable, "-m", "pytest", *pytest_args], tmp_path)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout + result.stderr
    assert "test ran" not in result.stdout
    assert_one_line(result.stderr, "ERROR: ")


TRIAL_TEST = """
import os
from twisted.internet import reactor, threads
from twisted.trial import unittest

class ServiceTests(unittest.TestCase):
    def test_retry(self):
        if os.environ.get("REMOVE_REPORT_DIR"):
            os.rmdir(os.environ["REMOVE_REPORT_DIR"])  # a cleanup step gone too far
        return threads.deferToThread(reactor.callLater, 0, lambda: None)
"""

TAC = """
from twisted.application import service
from twisted.internet import reactor
print({STARTED!r}, flush=True)
application = service.Application("demo")
reactor.callWhenRunning(lambda: reactor.callLater(0.1, reactor.stop))
""".replace("{STARTED!r}", repr(STARTED))


@pytest.mark.parametrize("kind", BAD_JSON)
@pytest.mark.parametrize("program", ["trial", "twistd"])
def test_unwritable_json_stops_trial_and_twistd_with_one_line(
    program: str, kind: str, tmp_path: Path
) -> None:
    write(tmp_path / "test_service.py", TRIAL_TEST)
    write(tmp_path / "app.tac", TAC)
    args = {
        "trial": ["test_service"],
        "twistd": ["-n", "--pidfile=", "-l", "-", "-y", "app.tac"],
    }[program]
    path = bad_json_path(kind, tmp_path)
    result = run(
        [str(BIN / program), "--reactor=threadcheck", *args], tmp_path, THREADCHECK_JSON=path
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert STARTED not in result.stdout and "ServiceTests" not in result.stdout
    assert_one_line(result.stderr, "threadcheck: error: THREADCHECK_JSON: ")


def test_json_lost_at_the_end_of_trial_still_prints_the_human_report(tmp_path: Path) -> None:
    write(tmp_path / "test_service.py", TRIAL_TEST)
    reports = tmp_path / "reports"
    reports.mkdir()
    result = run(
        [str(BIN / "trial"), "--reactor=threadcheck", "test_service"],
        tmp_path,
        THREADCHECK_JSON=str(reports / "threadcheck.json"),
        REMOVE_REPORT_DIR=str(reports),
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "threadcheck: 1 thread-affinity violation (1 distinct)" in result.stderr
    assert "offending call:" in result.stderr
    [error] = [line for line in result.stderr.splitlines() if "error:" in line]
    assert error.startswith("threadcheck: error: cannot write the JSON report to "), error
    # The report comes first: the error is its last word, not a replacement for it.
    assert result.stderr.index("offending call:") < result.stderr.index(error)


BAD_PROGRAMS = {
    "syntax": ("def broken(:\n    pass\n", "SyntaxError: "),
    "import": ("import no_such_dependency\n", "ModuleNotFoundError: No module named "),
}


@pytest.mark.parametrize("problem", sorted(BAD_PROGRAMS))
def test_explore_reports_a_program_that_cannot_start_as_one_line(
    problem: str, tmp_path: Path
) -> None:
    body, start = BAD_PROGRAMS[problem]
    prog = write(tmp_path / "service.py", body)
    result = threadcheck(tmp_path, "explore", str(prog))
    assert result.returncode == 2, result.stderr
    line = assert_one_line(result.stderr, f"threadcheck: error: {start}")
    assert "service.py" in line
    assert "replay" not in result.stderr and "step" not in result.stderr


LAZY_MISSING_DEPENDENCY = """
from twisted.internet import reactor, threads

def export():
    import no_such_dependency  # a handler's lazy import, once the program runs
    return no_such_dependency.dumps({})

def stop(result):
    reactor.stop()
    return result  # an error goes on, unhandled

threads.deferToThread(export).addBoth(stop)
reactor.run()
"""


def test_a_handlers_missing_import_is_the_programs_failure_not_its_start(
    tmp_path: Path,
) -> None:
    # It was "error: Unhandled error in Deferred: ModuleNotFoundError" as if the
    # program could not start: exit 2, no token, no --json outcome.
    prog = write(tmp_path / "service.py", LAZY_MISSING_DEPENDENCY)
    result = threadcheck(tmp_path, "explore", "--json", "out.json", str(prog))
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: unhandled-error: Unhandled error in Deferred")
    assert "replay: threadcheck replay tc1." in result.stderr
    assert json.loads((tmp_path / "out.json").read_text())["found"] is True


ALWAYS_FAILS = """
import threading

config = {}

def load():
    config["port"] = 8080

loader = threading.Thread(target=load)
loader.start()
loader.join()
assert config["port"] == 8443, "wrong default port"  # wrong on any schedule
"""


def test_a_failure_on_every_schedule_is_not_called_an_interleaving_bug(tmp_path: Path) -> None:
    prog = write(tmp_path / "service.py", ALWAYS_FAILS)
    result = threadcheck(tmp_path, "explore", str(prog))
    assert result.returncode == 1, result.stderr
    headline = result.stderr.splitlines()[0]
    assert "AssertionError" in headline
    assert re.search(
        r"; fails on every schedule tried \(\d+: the first, and \d+ more run to check it, "
        r"outside the budget\): not an interleaving bug$",
        headline,
    )
    # Its preemptions made no difference: not said (it read "with 1 preemption;
    # shown without preemptions").
    assert re.fullmatch(
        r"  found on schedule \d+ \(budget 2000, portfolio, seed 0\); shown without preemptions",
        result.stderr.splitlines()[1],
    ), result.stderr


def test_run_of_a_package_without_main_is_pythons_one_line(tmp_path: Path) -> None:
    (tmp_path / "service").mkdir()
    (tmp_path / "service" / "__init__.py").write_text(PROGRAM)
    result = threadcheck(tmp_path, "run", "-m", "service")
    assert result.returncode == 2, result.stderr
    assert_one_line(
        result.stderr,
        "threadcheck: error: No module named service.__main__; 'service' is a package "
        "and cannot be directly executed",
    )


# Signals come from the program itself, at a known point of the exploration:
# no sleeps, no race between the test and the explorer. Through posix.kill, as
# another process would send them: os.kill of itself is the program's own
# (explore runs what the program would get).
SIGNALLED_ON_RUN = """
import os, posix, signal, threading
from pathlib import Path

runs = Path(os.environ["RUNS_FILE"])
count = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(count))
if count == int(os.environ.get("SIGNALLED_RUN", "6")):  # 6: the fifth schedule, after the warm-up
    posix.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))

hits = []
lock = threading.Lock()

def handle():
    with lock:
        hits.append(1)

workers = [threading.Thread(target=handle) for _ in range(2)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
assert len(hits) == 2
"""


@pytest.mark.parametrize(("signal_name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_during_explore_prints_the_summary(
    signal_name: str, status: int, tmp_path: Path
) -> None:
    _assert_stopped_by(tmp_path, SIGNALLED_ON_RUN, signal_name, status)


def _assert_stopped_by(
    tmp_path: Path, program: str, signal_name: str, status: int, **env: str
) -> None:
    """An exploration of ``program``, signalled in its fifth schedule, stops there."""
    prog = write(tmp_path / "service.py", program)
    result = threadcheck(
        tmp_path,
        "explore",
        "--budget",
        "100000",
        str(prog),
        RUNS_FILE=str(tmp_path / "runs"),
        SIGNAL=signal_name,
        **env,
    )
    assert result.returncode == status, result.stderr
    assert_one_line(
        result.stderr, "threadcheck: interrupted after 5 schedules, no failure seen so far"
    )


SHUTDOWN_LIBRARY = """
import signal

def install_shutdown_handlers(function):
    signal.signal(signal.SIGTERM, function)
    signal.signal(signal.SIGINT, function)
"""


@pytest.mark.parametrize(("signal_name", "status"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_librarys_shutdown_handler_does_not_take_the_explorers_signal(
    signal_name: str, status: int, tmp_path: Path
) -> None:
    # Z49: Scrapy's CrawlerProcess sets its shutdown handler in each run; set
    # for real (a library's call, not the program's), it took the explorer's
    # Ctrl-C (a correct crawl "failed", cut short) or swallowed it for good.
    site = tmp_path / "site-packages"
    site.mkdir()
    write(site / "crawling.py", SHUTDOWN_LIBRARY)
    program = SIGNALLED_ON_RUN.replace(
        "hits = []",
        "import crawling\ncrawling.install_shutdown_handlers(lambda *a: None)\nhits = []",
    )
    path = os.pathsep.join([str(site), *sys.path])
    _assert_stopped_by(tmp_path, program, signal_name, status, PYTHONPATH=path)


def test_a_signal_during_the_warm_up_says_nothing_was_explored(tmp_path: Path) -> None:
    # "interrupted after 0 schedules, no failure seen so far": none was looked at.
    prog = write(tmp_path / "service.py", SIGNALLED_ON_RUN)
    runs = str(tmp_path / "runs")
    result = threadcheck(
        tmp_path, "explore", str(prog), RUNS_FILE=runs, SIGNAL="SIGINT", SIGNALLED_RUN="1"
    )
    assert result.returncode == 130, result.stderr
    assert_one_line(
        result.stderr, "threadcheck: interrupted before any schedule ran: nothing explored"
    )


# A thread polling a raw epoll object in a loop: real I/O no wait of ours
# covers, so its schedule goes on making progress in real time. The program
# is signalled in its second schedule.
POLLING_SIGNALLED = """
import os, posix, select, signal, socket, threading
from pathlib import Path

runs = Path(os.environ["RUNS_FILE"])
count = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(count))
inbound, outbound = socket.socketpair()
got = []

def loop():
    poller = select.epoll()
    poller.register(outbound.fileno(), select.EPOLLIN)
    while not got:
        for _ in poller.poll(0.05):
            got.append(outbound.recv(100))

thread = threading.Thread(target=loop)
thread.start()
if count == 3:  # the second schedule, after the warm-up run
    posix.kill(os.getpid(), signal.SIGINT)
    thread.join()  # the data never comes: the loop polls on, in real time
inbound.sendall(b"x")
thread.join()
"""


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="select.epoll")
def test_ctrl_c_ends_a_schedule_that_polls_on_in_real_time(tmp_path: Path) -> None:
    # It ran on until its step bound (minutes); a second Ctrl-C then exited
    # through the program's os._exit: "the program exited with status 130".
    prog = write(tmp_path / "service.py", POLLING_SIGNALLED)
    result = threadcheck(tmp_path, "explore", str(prog), RUNS_FILE=str(tmp_path / "runs"))
    assert result.returncode == 130, result.stderr
    assert_one_line(
        result.stderr, "threadcheck: interrupted after 1 schedule, no failure seen so far"
    )


LOST_UPDATE_INTERRUPTED_WHILE_SHRINKING = """
import os, posix, signal, threading
from pathlib import Path

balance = {"total": 0}

def deposit(amount):
    for _ in range(3):
        current = balance["total"]
        balance["total"] = current + amount  # BUG: read-modify-write without a lock

workers = [threading.Thread(target=deposit, args=(n,)) for n in (1, 10, 100)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
if balance["total"] != 333:
    failures = Path(os.environ["FAILURES_FILE"])
    count = int(failures.read_text()) + 1 if failures.exists() else 1
    failures.write_text(str(count))
    if count == 2:  # the first failure was the exploration's: this one is shrinking's
        posix.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))  # as Ctrl-C would come
    raise AssertionError(f"lost update: {balance['total']}")
"""


@pytest.mark.parametrize(
    ("signal_name", "status", "said"), [("SIGINT", 130, "Ctrl-C"), ("SIGTERM", 143, "SIGTERM")]
)
def test_a_signal_while_shrinking_reports_the_failure_found(
    tmp_path: Path, signal_name: str, status: int, said: str
) -> None:
    # It exited 1, and a SIGTERM was said to be Ctrl-C.
    prog = write(tmp_path / "bank.py", LOST_UPDATE_INTERRUPTED_WHILE_SHRINKING)
    failures = tmp_path / "failures"
    result = threadcheck(
        tmp_path, "explore", str(prog), FAILURES_FILE=str(failures), SIGNAL=signal_name
    )
    assert failures.read_text() == "2", result.stderr
    assert result.returncode == status, result.stderr  # stopped, as the README's table says
    assert "KeyboardInterrupt" not in result.stderr and "threadcheck/" not in result.stderr
    assert result.stderr.startswith("threadcheck: exception: AssertionError: lost update")
    assert f"(shrinking stopped by {said})" in result.stderr
    assert "threadcheck replay " in result.stderr


TWISTED_STOPPED_BY_CTRL_C = """
import os, signal, threading
from twisted.internet import reactor

def worker():
    reactor.callLater(0, print)  # BUG: callLater from a worker thread

def start():
    thread = threading.Thread(target=worker, name="worker")
    thread.start()
    thread.join()
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: Twisted's handler stops the reactor

reactor.callWhenRunning(start)
reactor.run()
print("reactor stopped", flush=True)
"""


def test_ctrl_c_of_a_twisted_program_under_run_exits_130_with_the_report(
    tmp_path: Path,
) -> None:
    prog = write(tmp_path / "server.py", TWISTED_STOPPED_BY_CTRL_C)
    result = threadcheck(tmp_path, "run", str(prog))
    assert result.returncode == 130, result.stderr
    assert "reactor stopped" in result.stdout
    assert "Traceback" not in result.stderr
    assert "threadcheck: 1 thread-affinity violation (1 distinct)" in result.stderr
    assert "offending call: server.py:6 in worker" in result.stderr


def test_explore_runs_a_folders_main_as_python_does(tmp_path: Path) -> None:
    # It ran the folder as a file: IsADirectoryError on every schedule, a token.
    (tmp_path / "app").mkdir()
    write(tmp_path / "app" / "__main__.py", PROGRAM)
    result = threadcheck(tmp_path, "explore", "--budget", "5", "app")
    assert result.returncode == 0, result.stderr
    assert "IsADirectoryError" not in result.stderr
