"""Your own reactor-only code: reactor_only, any_thread, confine, assert_reactor_thread.

Quality: each is reported from a worker with the user's call as the first
line and the right fix, silent from the reactor thread, and free when no
instrumented reactor is installed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import threadcheck

pytestmark = pytest.mark.slow

PROGRAM = """
import threading
import threadcheck
from twisted.internet import reactor


@threadcheck.reactor_only
class Cache:
    def __init__(self):
        self.entries = {}
        self._limit = 10

    @property
    def limit(self):
        return self._limit

    @limit.setter
    def limit(self, value):
        self._limit = value

    def put(self, key, value):
        self.entries[key] = value

    @threadcheck.any_thread
    def size(self):
        return len(self.entries)


@threadcheck.reactor_only
def refresh(cache):
    cache.put("refreshed", True)


class Session:
    state = "new"

    def advance(self):
        self.state = "next"


def in_a_worker(cache, session):
    {WORKER}


def main():
    cache = Cache()
    session = threadcheck.confine(Session())
    {REACTOR}
    worker = threading.Thread(target=in_a_worker, args=(cache, session), name="worker")
    worker.start()
    worker.join()
    reactor.stop()


reactor.callWhenRunning(main)
reactor.run()
"""


def run(tmp_path: Path, worker: str, in_reactor: str = "pass") -> subprocess.CompletedProcess[str]:
    text = PROGRAM.replace("{WORKER}", worker).replace("{REACTOR}", in_reactor)
    return run_program(tmp_path / "program.py", text)


def run_program(program: Path, text: str) -> subprocess.CompletedProcess[str]:
    """``threadcheck run`` on ``text``, written to ``program``."""
    program.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "threadcheck", "run", str(program)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=program.parent,
    )


@pytest.mark.quality
@pytest.mark.parametrize(
    ("worker_line", "api", "fix"),
    [
        (
            'cache.put("k", 1)',
            "Cache.put",
            "call it in the reactor thread: reactor.callFromThread(obj.put, ...)",
        ),
        (
            "refresh(cache)",
            "refresh",
            "call it in the reactor thread: reactor.callFromThread(refresh, ...)",
        ),
        (
            "session.advance()",
            "Session.advance",
            "call it in the reactor thread: reactor.callFromThread(obj.advance, ...)",
        ),
        (
            'session.state = "done"',
            "Session.state (write)",
            "set it in the reactor thread: reactor.callFromThread(setattr, obj, 'state', value)",
        ),
        (
            "cache.limit = 5",
            "Cache.limit (write)",
            "set it in the reactor thread: reactor.callFromThread(setattr, obj, 'limit', value)",
        ),
        (
            "threadcheck.assert_reactor_thread()",
            "assert_reactor_thread",
            "this code must run in the reactor thread",
        ),
    ],
)
def test_reported_from_a_worker_at_the_users_line_with_its_fix(
    tmp_path: Path, worker_line: str, api: str, fix: str
) -> None:
    result = run(tmp_path, worker_line)
    assert result.returncode == 3, result.stderr
    report = result.stderr
    assert f"  {api}: 1\n" in report, report
    assert "called from thread 'worker'" in report
    assert "program.py:42 in in_a_worker" in report  # the worker's own line, first
    assert fix in report, report


@pytest.mark.quality
def test_silent_in_the_reactor_thread_and_for_any_thread_methods(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "cache.size()",
        in_reactor=(
            'cache.put("k", 1); refresh(cache); session.advance(); session.state = "x"; '
            "cache.limit = 3; threadcheck.assert_reactor_thread()"
        ),
    )
    assert result.returncode == 0, result.stderr
    assert "threadcheck: no thread-affinity violations found" in result.stderr


def test_without_an_instrumented_reactor_they_return_what_they_were_given() -> None:
    code = textwrap.dedent(
        """
        import threadcheck

        def f():
            pass

        class C:
            def m(self):
                pass

        obj = C()
        assert threadcheck.reactor_only(f) is f
        assert threadcheck.reactor_only(C) is C and C.__dict__["m"] is C.m
        assert threadcheck.confine(obj) is obj and type(obj) is C
        threadcheck.assert_reactor_thread()
        print("untouched")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout == "untouched\n", result.stderr


def test_confine_refuses_what_it_cannot_confine_in_one_line() -> None:
    from threadcheck_reactor import ThreadCheckReactor

    reactor = ThreadCheckReactor()
    modules = sys.modules
    saved = modules.get("twisted.internet.reactor")
    modules["twisted.internet.reactor"] = reactor  # type: ignore[assignment]
    try:
        with pytest.raises(TypeError, match="confine\\(\\) cannot confine a int"):
            threadcheck.confine(5)
    finally:
        if saved is None:
            del modules["twisted.internet.reactor"]
        else:
            modules["twisted.internet.reactor"] = saved
        reactor.dispose()


MACHINE = """
import queue
import threading
import threadcheck
from twisted.internet import reactor


class Machine:  # magic-wormhole#280: a state machine one thread drives
    state = "idle"

    def feed(self, event):
        self.state = event


def main():
    handed, done = queue.Queue(), threading.Event()

    def drive():
        machine = threadcheck.confine(Machine(), thread=threading.current_thread())
        machine.feed("started")  # its own thread: fine
        handed.put(machine)
        done.wait()

    owner = threading.Thread(target=drive, name="owner")
    owner.start()
    machine = handed.get()
    {REACTOR_LINE}
    done.set()
    owner.join()
    reactor.stop()


reactor.callWhenRunning(main)
reactor.run()
"""


@pytest.mark.quality
@pytest.mark.parametrize(
    ("line", "api"),
    [
        ('machine.feed("poked")', "Machine.feed"),
        ('machine.state = "poked"', "Machine.state (write)"),
    ],
)
def test_an_object_confined_to_a_thread_is_reported_from_another(
    tmp_path: Path, line: str, api: str
) -> None:
    result = run_program(tmp_path / "machine.py", MACHINE.replace("{REACTOR_LINE}", line))
    assert result.returncode == 3, result.stderr
    report = result.stderr
    assert f"  {api}: 1\n" in report, report
    assert "called from thread 'MainThread'" in report
    assert "the object is confined to 'owner'" in report
    lineno = MACHINE.splitlines().index("    {REACTOR_LINE}") + 1
    assert f"offending call: machine.py:{lineno} in main" in report  # the offending line
    assert "fix: call it in 'owner'" in report


@pytest.mark.quality
def test_an_object_confined_to_a_thread_is_silent_in_that_thread(tmp_path: Path) -> None:
    result = run_program(tmp_path / "machine.py", MACHINE.replace("{REACTOR_LINE}", "pass"))
    assert result.returncode == 0, result.stderr
    assert "threadcheck: no thread-affinity violations found" in result.stderr


def test_confine_to_something_not_a_thread_is_refused_in_one_line() -> None:
    with pytest.raises(TypeError, match=r"confine\(thread=\.\.\.\) takes a threading.Thread"):
        _confine_with_active_checker(thread="owner")


def _confine_with_active_checker(thread: object) -> None:
    from unittest import mock

    from threadcheck import _confine
    from threadcheck._affinity import AffinityChecker

    with mock.patch.object(_confine, "active_checker", return_value=AffinityChecker()):
        threadcheck.confine(object(), thread=thread)  # type: ignore[arg-type]
