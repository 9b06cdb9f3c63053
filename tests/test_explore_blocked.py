"""Never an unearned pass, never a dead process: a thread blocked outside the
scheduler's control fails its schedule and stops the exploration, the process
then exits (under pytest, after the session and its junitxml), an interrupted
reactor thread is unwound, and our own errors are one line."""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred

import threadcheck
from threadcheck._cli import main
from threadcheck._sched import _explore, _token, _watchdog
from threadcheck._sched._explore import Budget, explore
from threadcheck._sched._runner import Settings
from threadcheck._sched._targets import ScenarioTarget
from threadcheck._sched._watchdog import abandoned_threads
from threadcheck._sched.strategies import ReplayDivergenceError

from support import explore_program, explore_with_library, write_program

WORKER_BLOCKED = """
import socket
from twisted.internet import reactor, threads

ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # (a socket pair of its own:
ours.bind(("127.0.0.1", 0))  # nobody else could write it, a deadlock's)

def read_reply():
    return ours.recv(1)  # a real socket nobody writes to

threads.deferToThread(read_reply).addBoth(lambda _: reactor.stop())
reactor.run()
"""

# The reactor thread (the program's main thread) blocks in a callback.
REACTOR_BLOCKED = """
import socket
from twisted.internet import reactor

ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # (a socket pair of its own:
ours.bind(("127.0.0.1", 0))  # nobody else could write it, a deadlock's)

def on_timer():
    ours.recv(1)  # blocking I/O in the reactor thread
    reactor.stop()

reactor.callLater(0.1, on_timer)
reactor.run()
"""

# The main thread waits once a thread it started has ended: the ended thread
# (the last to run, whose OS thread does the waiting) was named.
MAIN_BLOCKED_AFTER_A_THREAD = """
import socket, threading

ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # (a socket pair of its own:
ours.bind(("127.0.0.1", 0))  # nobody else could write it, a deadlock's)

def read_reply():
    return ours.recv(1)  # a real socket nobody writes to

threading.Thread(target=print, args=("started",)).start()
read_reply()
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("program", "thread"),
    [
        (WORKER_BLOCKED, "T1 (PoolThread-"),
        (REACTOR_BLOCKED, "T0 (MainThread)"),
        (MAIN_BLOCKED_AFTER_A_THREAD, "T0 (MainThread)"),
    ],
    ids=["worker", "reactor-thread", "main-after-a-thread"],
)
def test_a_thread_blocked_outside_control_fails_the_schedule_and_the_process_exits(
    tmp_path: Path, program: str, thread: str
) -> None:
    result = explore_program(write_program(tmp_path, program))  # times out if it hangs
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"threadcheck: uncontrolled-blocking: {thread}"), lines[0]
    assert "blocked outside the scheduler's control for over 10 s" in lines[0]
    assert "found in the warm-up run, before the first schedule " in lines[1], lines[1]
    assert lines[1].endswith("not shrunk: a rerun would block again"), lines[1]
    assert "in read_reply" in result.stderr or "in on_timer" in result.stderr  # where
    assert lines[-1].startswith("replay: threadcheck replay tc1.")
    assert "Traceback" not in result.stderr.split("\n\n")[0]


# A service with an asyncio loop in a daemon thread beside the reactor hangs:
# a callback raises before its reactor.stop(). The idle loop waits on its own
# wake-up pair, which only the program's threads write: after 10 s it was
# "blocked outside the scheduler's control", and the error was an aside.
HANGS_BESIDE_AN_IDLE_LOOP = """
import asyncio, threading
from twisted.internet import reactor, defer

loop = asyncio.new_event_loop()
threading.Thread(target=loop.run_forever, name="aio-loop", daemon=True).start()

def load_config(_):
    raise RuntimeError("config missing")  # reactor.stop() below never runs
    reactor.stop()

reactor.callWhenRunning(lambda: defer.succeed(None).addCallback(load_config))
reactor.run()
"""


def test_a_hang_beside_an_idle_event_loop_is_its_error_then_a_deadlock(tmp_path: Path) -> None:
    started = time.monotonic()
    result = explore_program(write_program(tmp_path, HANGS_BESIDE_AN_IDLE_LOOP))
    assert time.monotonic() - started < 9, "waited for the watchdog"
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        "threadcheck: unhandled-error: Unhandled error in Deferred: RuntimeError: config missing"
    ), result.stderr
    assert "then deadlock: every live thread is blocked: T0(MainThread) on reactor idle, " in (
        result.stderr
    )
    assert "Exception ignored" not in result.stderr  # the idle loops, freed at the end


# The blocked wait is an installed library's, run as the job itself: the report
# named no line (no frame of the program's was on the thread's stack).
LIBRARY_BLOCKED = """
import socket

ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # (a socket pair of its own:
ours.bind(("127.0.0.1", 0))  # nobody else could write it, a deadlock's)

def read_reply():
    return ours.recv(1)  # a real socket nobody writes to
"""
USES_THE_LIBRARY = """
from twisted.internet import reactor, threads
import replies

threads.deferToThread(replies.read_reply).addBoth(lambda _: reactor.stop())
reactor.run()
"""


@pytest.mark.slow
def test_a_thread_blocked_in_a_library_is_reported_where_it_waits(tmp_path: Path) -> None:
    result = explore_with_library(tmp_path, "replies", LIBRARY_BLOCKED, USES_THE_LIBRARY)
    assert result.returncode == 1, result.stderr
    assert "\n  at replies.py:8 in read_reply in thread 'PoolThread-" in result.stderr, (
        result.stderr
    )


# A pool job reads a status pipe nobody writes; given an argument, the program
# first submits another job (so a replay with one goes elsewhere).
PIPE_BLOCKED = """
import os, sys
from twisted.internet import reactor, threads

r, w = os.pipe()
if len(sys.argv) > 1:
    threads.deferToThread(lambda: 1)
threads.deferToThread(os.read, r, 1)
reactor.callLater(1, reactor.stop)
reactor.run()
"""


@pytest.mark.slow
def test_a_replay_that_diverges_after_a_thread_blocked_for_good_exits_two(
    tmp_path: Path,
) -> None:
    # The interpreter's exit, left with the blocked thread, exited 1: as if
    # the replay had failed as recorded.
    program = write_program(tmp_path, PIPE_BLOCKED)
    found = explore_program(program, "--budget", "5")
    [replay] = [line for line in found.stderr.splitlines() if line.startswith("replay: ")]
    command = [sys.executable, "-m", *replay.removeprefix("replay: ").split(), "diverge"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("threadcheck: the replay diverged"), result.stderr


# A reactor job waits on a multiprocessing child (a subprocess child is waited
# for off the turn: see test_explore_services_quality).
CHILD_WAITS = {
    "multiprocessing": (
        "import multiprocessing\n\n"
        "def work():\n"
        "    pass\n\n"
        "if __name__ == '__main__':\n"
        "    child = multiprocessing.get_context('spawn').Process(target=work)\n"
        "    child.start()\n"
        "    child.join()\n",
        "T0 (MainThread) waits on a child process: not controlled (BaseProcess.join at ",
        "child.join()",
    ),
    # A process pool's result (a ThreadPool's is controlled: test_explore_stdlib_quality).
    "process pool": (
        "import multiprocessing\n\n"
        "def work():\n"
        "    return 1\n\n"
        "if __name__ == '__main__':\n"
        "    pool = multiprocessing.get_context('spawn').Pool(1)\n"
        "    result = pool.apply_async(work)\n"
        "    result.get()\n",
        "T0 (MainThread) waits on a child process: not controlled (ApplyResult.get at ",
        "result.get()",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(CHILD_WAITS))
def test_waiting_on_a_child_process_fails_the_schedule_at_once(tmp_path: Path, kind: str) -> None:
    program, headline, waits = CHILD_WAITS[kind]
    result = explore_program(write_program(tmp_path, program))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("threadcheck: uncontrolled-blocking: " + headline), lines[0]
    assert " at service.py:9 in <module>)" in lines[0], lines[0]  # as the user runs it
    # It blocks in the first run, the warm-up: it was called "schedule 1", with no steps.
    assert lines[1].startswith("  found in the warm-up run, before the first schedule ("), lines[1]
    assert lines[1].endswith("not shrunk: a rerun would block again"), lines[1]
    assert "   step  thread " in result.stderr, result.stderr
    assert lines[-1].startswith("replay: threadcheck replay tc1.")
    # Where it waits, as every report shows a stack: ours and the libraries' folded.
    assert 'File "' not in result.stderr, result.stderr
    assert f"    service.py:9 in <module>\n        {waits}\n" in result.stderr


@pytest.mark.slow
def test_under_pytest_the_test_fails_the_session_goes_on_and_junitxml_is_written(
    tmp_path: Path,
) -> None:
    (tmp_path / "test_service.py").write_text(
        "import socket\n"
        "import pytest\n"
        "from twisted.internet import threads\n\n"
        "KEPT = []  # the other end stays open: nothing ever arrives\n\n"
        "@pytest.mark.threadcheck_explore(budget=50)\n"
        "def test_blocked(threadcheck_reactor):\n"
        "    ours = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "    ours.bind(('127.0.0.1', 0))\n"
        "    KEPT.append(ours)\n"
        "    pool = threadcheck_reactor.getThreadPool()\n"
        "    return threads.deferToThreadPool(threadcheck_reactor, pool, ours.recv, 1)\n\n"
        "def test_after():\n"
        "    assert True\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "--junitxml=report.xml",
            "test_service.py",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 1 passed" in result.stdout
    assert "uncontrolled-blocking" in result.stdout
    assert 'failures="1"' in (tmp_path / "report.xml").read_text()


def test_the_reactor_thread_blocked_in_a_scenario_is_unwound() -> None:
    kept: list[int] = []

    def scenario(reactor: Any) -> Deferred[Any]:
        ours, _theirs = pipe = os.pipe()  # (a socket pair of its own is a deadlock's)
        kept.extend(pipe)  # nobody writes to it, nobody closes it
        reactor.callLater(0.1, os.read, ours, 1)  # blocking I/O in a reactor callback
        return Deferred()  # never fires: only the watchdog ends this schedule

    result = explore(
        ScenarioTarget(scenario), budget=Budget(5), settings=Settings(stall_timeout=1.0)
    )
    assert result.failure is not None and result.failure.kind == "uncontrolled-blocking"
    assert result.failure.thread == "MainThread"
    assert result.schedules == 1  # the exploration stopped there
    assert result.unshrunk == "a rerun would block again"
    assert "MainThread" not in abandoned_threads()  # unwound, not left blocked
    for end in kept:
        os.close(end)


def test_a_long_sleep_beside_a_real_socket_is_not_blocked() -> None:
    # Virtual time goes on with the reactor's real polls: a worker sleeping
    # longer than the watchdog's wait was reported "blocked outside the
    # scheduler's control" (the polls were no progress).
    kept: list[socket.socket] = []

    def scenario(reactor: Any) -> Deferred[Any]:
        listening = socket.socket()
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        kept.append(listening)
        reactor.addReader(_Readable(listening))  # polled for real, nothing comes
        worker = threads.deferToThread(lambda: __import__("time").sleep(1.5))
        return worker.addBoth(lambda _: reactor.removeAll())

    result = explore(
        ScenarioTarget(scenario), budget=Budget(1), settings=Settings(stall_timeout=1.0)
    )
    assert result.failure is None, result.report()
    assert result.schedules == 1
    for end in kept:
        end.close()


def test_a_pool_job_waiting_on_a_child_longer_than_the_watchdog_is_not_blocked() -> None:
    # The wait is ours (off the turn, in real time), polled without using CPU:
    # once the watchdog judged threads by their CPU share, a child's build longer
    # than its wait failed a correct program, "blocked outside the scheduler's control".
    child = [sys.executable, "-c", "import time; time.sleep(1.5)"]

    def scenario(reactor: Any) -> Deferred[Any]:
        return threads.deferToThread(subprocess.run, child, timeout=60)

    result = explore(
        ScenarioTarget(scenario), budget=Budget(1), settings=Settings(stall_timeout=1.0)
    )
    assert result.failure is None, result.report()
    assert result.schedules == 1


@pytest.mark.slow
def test_long_python_code_between_points_is_busy_not_blocked() -> None:
    # A batch job in library code (no points: difflib's loops, seconds of
    # them) outlasting the watchdog's wait, as a loaded machine makes a long
    # job do: it was reported "blocked outside the scheduler's control" at a
    # line of Python.
    import difflib
    import random

    draw = random.Random(1)
    old, new = ([draw.randrange(50) for _ in range(15_000)] for _ in range(2))

    def compare() -> float:
        return difflib.SequenceMatcher(None, old, new, autojunk=False).ratio()

    def scenario(reactor: Any) -> Deferred[Any]:
        return threads.deferToThread(compare)

    result = explore(
        ScenarioTarget(scenario), budget=Budget(1), settings=Settings(stall_timeout=1.5)
    )
    assert result.failure is None, result.report()
    assert result.schedules == 1


def test_a_batch_job_is_judged_by_its_cpu_time_a_polling_loop_by_the_clock() -> None:
    # The watchdog's limit (6 times a 1.5 s wait: 9 s) for code passing no
    # point. A job that took 5 s of CPU over 12 s of a loaded CI runner's clock
    # was called spinning by the wall clock alone (the test above, in CI).
    assert not _watchdog._spinning(wall=12.0, cpu=5.0, timeout=1.5)
    assert _watchdog._spinning(wall=9.5, cpu=9.1, timeout=1.5)  # spinning on a real lock
    assert _watchdog._spinning(wall=9.5, cpu=0.4, timeout=1.5)  # polling with short sleeps
    assert not _watchdog._spinning(wall=8.0, cpu=0.1, timeout=1.5)


@contextlib.contextmanager
def _installed(tmp_path: Path, name: str, source: str) -> Iterator[Any]:
    """Module ``name`` of ``source``, imported from a site-packages folder (an
    installed library); its ``released`` set at the end, to end a spinner left
    behind, and the module forgotten."""
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / f"{name}.py").write_text(source)
    sys.path.insert(0, str(site))
    try:
        module = importlib.import_module(name)
        yield module
    finally:
        sys.modules[name].released = True
        sys.path.remove(str(site))
        sys.modules.pop(name, None)


def _spun(scenario: Any, budget: Budget | None = None, stall_timeout: float = 0.3) -> Any:
    return explore(
        ScenarioTarget(scenario),
        budget=budget or Budget(1),
        settings=Settings(stall_timeout=stall_timeout),
    )


@pytest.mark.slow
def test_a_library_spinning_on_a_real_lock_is_stuck_all_the_same(tmp_path: Path) -> None:
    # Busy is not blocked, but not for ever: a library's loop that spins on a
    # lock made before exploring moves between its instructions without end.
    held = threading.Lock()
    held.acquire()
    source = "def spin(lock):\n    while not lock.acquire(False):\n        pass\n"
    try:
        with _installed(tmp_path, "spinner", source) as spinner:
            result = _spun(lambda reactor: threads.deferToThread(spinner.spin, held))
    finally:
        held.release()  # the abandoned spinner ends
    assert result.failure is not None and result.failure.kind == "uncontrolled-blocking"
    assert (result.failure.location or "").endswith("spinner.py:2 in spin"), result.failure
    assert "ran for over 1.8 s without a scheduling point, last in " in result.failure.message


STARTER = """
import threading
class Starter:
    def __init__(self):
        self.up = False
        threading.Thread(target=self._run, daemon=True).start()
        n = 0
        while not self.up and not released:
            n += 1
    def _run(self):
        self.up = True
released = False  # set by the test: the abandoned spinner ends
"""


@pytest.mark.slow
def test_a_library_spinning_on_its_own_threads_flag_is_busy_not_blocked(tmp_path: Path) -> None:
    # `while not self.up: n += 1` until the library's own thread sets the flag:
    # seen at the same instruction at every look (where it lets the GIL go),
    # it was "blocked outside the scheduler's control (a real socket, a C
    # call...)", and the library's line it spins at was folded away.
    with _installed(tmp_path, "starter", STARTER) as starter:

        def scenario(reactor: Any) -> Deferred[Any]:
            return threads.deferToThread(lambda: starter.Starter().up)

        result = _spun(scenario)
    assert result.failure is not None and result.failure.kind == "uncontrolled-blocking"
    assert "ran for over 1.8 s without a scheduling point, last in " in result.failure.message
    assert "starter.py:8 in __init__ (spinning on" in result.failure.message, result.failure


@pytest.mark.slow
def test_a_time_budget_ends_a_schedule_spinning_in_a_library(tmp_path: Path) -> None:
    # Cut short at the time, the spinning thread never reached the point that
    # would unwind it, and nothing looked at it again: explore --time 5 ran for
    # ever, Ctrl-C and SIGTERM too.
    source = "released = False\ndef wait():\n    while not released:\n        pass\n"
    with _installed(tmp_path, "latch", source) as latch:
        result = _spun(lambda reactor: threads.deferToThread(latch.wait), Budget(None, 1.0), 5.0)
    assert result.inconclusive and result.failure is None, result.report()


class _Readable:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        pass

    def logPrefix(self) -> str:
        return "listening"

    def connectionLost(self, reason: object) -> None:
        pass


def test_a_divergence_while_shrinking_reports_the_failure_unshrunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def diverge(*args: object, **kwargs: object) -> object:
        raise ReplayDivergenceError("decision 3 recorded T2, but only T1 can run")

    monkeypatch.setattr(_explore, "shrink_failure", diverge)

    def scenario(reactor: Any) -> Deferred[Any]:
        state = {"n": 0}

        def bump() -> None:
            value = state["n"]
            state["n"] = value + 1

        pool = reactor.getThreadPool()
        jobs = [threads.deferToThreadPool(reactor, pool, bump) for _ in range(2)]
        return _both(jobs, state)

    result = threadcheck.explore(scenario, budget=2000)
    assert result.found and result.token is not None
    assert "not shrunk: it went elsewhere when rerun (decision 3 recorded T2" in result.report()
    assert threadcheck.replay(scenario, result.token).failure == result.failure
    assert _token.decode(result.token)["rerun_diverged"] is True  # a replay that diverges says so


def _both(jobs: list[Deferred[Any]], state: dict[str, int]) -> Deferred[Any]:
    from twisted.internet.defer import gatherResults

    def check(_: object) -> None:
        assert state["n"] == 2, f"n is {state['n']}"

    return gatherResults(jobs).addCallback(check)


def test_our_own_error_is_one_line_with_the_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def broken(*args: object, **kwargs: object) -> object:
        raise KeyError("points")

    monkeypatch.setattr(_explore, "replay", broken)
    monkeypatch.setenv("PYTHONHASHSEED", "0")  # else the command re-executes itself
    # A thread an earlier test of this worker left blocked would make main()
    # end the process, as the command does (the worker crashed on 3.13).
    monkeypatch.setattr(_watchdog, "_abandoned", [])
    program = write_program(tmp_path, "print('hi')\n")
    token = _token.encode({"decisions": [], "digest": "", "failure": "no failure"})
    assert main(["replay", token, str(program)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"threadcheck: internal error: KeyError: 'points' (replaying {token}); please report it\n"
    )


def test_a_module_slow_to_rewrite_on_import_is_not_blocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLAlchemy's compiler, --include'd, took over 10 s to rewrite on its first
    # import in a schedule, and the importing thread was reported blocked.
    from threadcheck._races import _rewrite

    (tmp_path / "slow_to_rewrite.py").write_text("VALUE = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    compile_user = _rewrite._compile_user
    real_sleep = time.sleep

    def slowly(*args: Any) -> Any:
        if args[1].endswith("slow_to_rewrite.py"):
            real_sleep(1.5)  # past the watchdog's wait (time.sleep is virtual in T0)
        return compile_user(*args)

    monkeypatch.setattr(_rewrite, "_compile_user", slowly)
    values: list[int] = []

    def scenario(reactor: Any) -> Deferred[Any]:
        import slow_to_rewrite  # in the reactor thread, T0, as a program's own imports

        values.append(slow_to_rewrite.VALUE)
        return threads.deferToThread(lambda: None)

    result = explore(
        ScenarioTarget(scenario), budget=Budget(2), settings=Settings(stall_timeout=0.5)
    )
    assert result.failure is None, result.report()
    assert values and set(values) == {42}


# A pool job waits on a helper process that never ends.
CHILD_STUCK = """
import subprocess
from pathlib import Path
from twisted.internet import reactor, threads

def job():
    helper = subprocess.Popen(["sleep", "600"])
    Path("helper.pid").write_text(str(helper.pid))
    helper.wait()  # no timeout

threads.deferToThread(job).addBoth(lambda _: reactor.stop())
reactor.run()
"""


@pytest.mark.slow
def test_a_child_waited_on_by_a_blocked_thread_ends_with_its_schedule(tmp_path: Path) -> None:
    # The thread was left blocked, and its child outlived the exploring process.
    result = explore_program(write_program(tmp_path, CHILD_STUCK), "--budget", "2")
    assert result.returncode == 1, result.stderr
    # A child's end is waited for as long as real I/O is (a build may take a
    # while): 30 s in all, not the watchdog's 10 s for a thread stuck out of control.
    assert result.stderr.startswith(
        "threadcheck: deadlock: stuck on real I/O: no thread could run for 30 s of real time"
    ), result.stderr
    assert "T1(PoolThread-twisted.internet.reactor-0) Popen.wait (a real child process)" in (
        result.stderr
    )
    pid = int((tmp_path / "helper.pid").read_text())
    with pytest.raises(ProcessLookupError):  # killed, and reaped by init
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)


class _ConnectionPool:
    """A library's pool, made at import (before exploring): its lock is real."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()

    def take(self) -> None:
        if not self.mutex.acquire(timeout=2):
            raise TimeoutError("pool exhausted: timed out after 2 s")

    def give(self) -> None:
        self.mutex.release()


_POOL = _ConnectionPool()


def _two_readers(reactor: Any) -> Any:
    def read() -> None:
        _POOL.take()
        try:
            time.sleep(0.01)  # the query
        finally:
            _POOL.give()

    pool = reactor.getThreadPool()
    jobs = [threads.deferToThreadPool(reactor, pool, read) for _ in range(2)]
    return defer.gatherResults(jobs, consumeErrors=True)


def test_a_failure_after_a_wait_outside_the_scheduler_s_control_is_that_wait() -> None:
    # Z51: a SQLAlchemy engine made at import: one job held its pool's real
    # lock in a sleep, the other waited on that lock outside our control until
    # its 2 s timeout: "exception: TimeoutError ... shrunk to none: it fails
    # without a preemption", a bug of correct code.
    result = threadcheck.explore(_two_readers, budget=5)
    assert result.failure is not None
    assert result.failure.kind == "uncontrolled-blocking", result.report()
    assert re.fullmatch(
        r"T\d \(PoolThread-twisted\.internet\.reactor-\d\) waited \d\.\d s outside the "
        r"scheduler's control \(.*\); then exception: TimeoutError: pool exhausted: timed out "
        r"after 2 s",
        result.failure.message,
    ), result.failure.message
    assert "in take" in (result.failure.location or ""), result.failure.location
