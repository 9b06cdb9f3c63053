"""Quality: a token replays in a fresh process, even when the program fills a
cache on first use (as SQLAlchemy's event system sets up its listeners): the
exploration and the replay both start from one warm-up run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from support import assert_found_and_replayed, explore_program

pytestmark = [pytest.mark.quality, pytest.mark.slow]

LAZY_REGISTRY = """
from twisted.internet import threads
from twisted.internet.defer import gatherResults


class EventRegistry:
    listeners = None

    def listen(self):
        if self.listeners is None:  # first use in the process: more points
            self.listeners = []
            for name in ("connect", "checkout", "checkin"):
                self.listeners.append(name)
        return self.listeners


registry = EventRegistry()


def scenario(reactor):
    registry.listen()
    state = {"n": 0}

    def bump():
        value = state["n"]
        state["n"] = value + 1  # BUG: lost update

    pool = reactor.getThreadPool()
    jobs = [threads.deferToThreadPool(reactor, pool, bump) for _ in range(2)]

    def check(_):
        assert state["n"] == 2, f"n is {state['n']}"

    return gatherResults(jobs).addCallback(check)
"""

EXPLORE = "import threadcheck, lazy; print(threadcheck.explore(lazy.scenario).token)"
REPLAY = (
    "import sys, threadcheck, lazy; print(threadcheck.replay(lazy.scenario, sys.argv[1]).report())"
)


def test_a_token_recorded_after_a_lazy_cache_filled_replays_in_a_fresh_process(
    tmp_path: Path,
) -> None:
    (tmp_path / "lazy.py").write_text(textwrap.dedent(LAZY_REGISTRY))
    explored = _python(tmp_path, EXPLORE)
    token = explored.stdout.strip()
    assert token.startswith("tc1."), explored.stderr
    replayed = _python(tmp_path, REPLAY, token)
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith("threadcheck: exception: AssertionError: n is 1\n")


def _python(cwd: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd), "PYTHONHASHSEED": "0"},
    )


DIVERGING_REPLAY = """
import threadcheck
from twisted.internet import task, threads
from twisted.internet.defer import gatherResults


def scenario(reactor, jobs):
    total = [0]

    def add(n):
        total[0] += n

    pool = reactor.getThreadPool()
    work = [threads.deferToThreadPool(reactor, pool, add, 1) for _ in range(jobs)]
    work.append(task.deferLater(reactor, 0, add, 100))

    def check(_):
        assert total[0] == 100 + jobs, f"lost update: total is {total[0]}"

    return gatherResults(work).addCallback(check)


# Recorded with another jobs count (3.11, Twisted 26.10): replayed with 3 it diverges.
TOKEN = (
    "tc1.eNo9j9FqwzAMRf_FzybE7dptYRT6sK8IoWi2mpi5drCVtWXs33edjb6Iq4N0pfutHFtffIpFdX3farMddG9"
    "0rRv9ggr0IK3erNr880Er50cuojr1uj_vtm63U1qdyYclMyDfLM8C9-5YCueq3nNOGUNjprgEyl7uGCRruRTgic"
    "pUmB0YBly6gPlow-Lg1w-1cXxTXavVhW4nx4Gwbxr0c_JREOPJQN9lShEm28aY5hkmmXBBdWcKhdHxFZeF44P8H"
    "YVNkUzCY_1qDhSxKpRHrhkFUU_Tfe5WIUkoNG8hWTgcIOjy4ehQF6bM5OzE9hNbbYP3Kr36Imuyzb4x7cq-8Pv"
    "PL26gelY"
)
try:
    threadcheck.replay(lambda reactor: scenario(reactor, 3), TOKEN)
except threadcheck.ReplayDivergenceError:
    print("diverged")
"""


def test_a_diverged_replay_leaves_no_unhandled_error_at_exit(tmp_path: Path) -> None:
    # The Deferreds its end failed with Abort were collected at the program's
    # exit, after the capture of Twisted's log: "Unhandled error in Deferred".
    program = tmp_path / "diverge.py"
    program.write_text(DIVERGING_REPLAY)
    result = subprocess.run(
        [sys.executable, str(program)], capture_output=True, text=True, timeout=120
    )
    assert result.stdout == "diverged\n", result.stderr
    assert "Unhandled error" not in result.stderr, result.stderr


# The program keeps its failure on sys, to raise once the reactor stopped: in
# the exploring process, every schedule after the first failing one raised it
# again (shrunk to 0 preemptions, a step table in which the count was right,
# and a token that replayed to "no failure"). A new process has no such state.
KEPT_ON_SYS = """
import sys
from types import SimpleNamespace
from twisted.internet import defer, reactor, threads
from twisted.python.threadpool import ThreadPool

sys.path.append("/nonexistent/plugins")
assert sys.path.count("/nonexistent/plugins") == 1, "sys.path kept an earlier run's entry"
stats = SimpleNamespace(lookups=0)

def load(key):
    stats.lookups += 1
    return key.upper()

@defer.inlineCallbacks
def main():
    pool = ThreadPool(minthreads=1, maxthreads=1, name="DBThreadPool")
    pool.start()
    try:
        loaded = threads.deferToThreadPool(reactor, pool, load, "a")
        stats.lookups += 1
        yield loaded
    finally:
        pool.stop()
    if stats.lookups != 2:
        raise SystemExit(f"lost update: lookups is {stats.lookups}")

def keep(failure):
    sys._err = failure.value

main().addBoth(lambda r: (reactor.stop(), r)[1]).addErrback(keep)
reactor.run()
if getattr(sys, "_err", None) is not None:
    raise sys._err
"""


# A service that sets its process up as it starts, and a plugin host that
# loads each plugin once per process, into a module it makes: what one schedule
# set was there in the next (its hooks, limits and socket timeout; the plugin,
# never registered again: every schedule after the first failed).
SET_UP_PROCESS = """
import json, os, pathlib, socket, sys, threading, types
from twisted.internet import reactor, threads

left = []
if socket.getdefaulttimeout() is not None:
    left.append("socket timeout")
socket.setdefaulttimeout(5)
if threading.excepthook is not threading.__excepthook__:
    left.append("threading.excepthook")
threading.excepthook = lambda args: None
if sys.excepthook is not sys.__excepthook__:
    left.append("sys.excepthook")
sys.excepthook = lambda *args: None
settings = json.dumps([sys.getrecursionlimit(), os.umask(0o077)])
sys.setrecursionlimit(5000)
first = pathlib.Path(__file__).with_name("first-run.json")  # what a new process has
if not first.exists():
    first.write_text(settings)
elif first.read_text() != settings:
    left.append(f"limit and mask {settings}, not {first.read_text()}")
registry = {}

def load_plugin(name):
    module_name = "hostplugins." + name
    if module_name in sys.modules:  # loaded in this process already
        return
    module = types.ModuleType(module_name)
    exec("def handle(x):\\n    return 'hello ' + x\\n", module.__dict__)
    sys.modules[module_name] = module
    registry[name] = module.handle

loaded = threads.deferToThread(load_plugin, "greet")
loaded.addCallback(lambda _: registry["greet"]("world"))
loaded.addErrback(lambda failure: left.append("plugin: " + failure.getErrorMessage()))
loaded.addBoth(lambda _: reactor.stop())
reactor.run()
if left:
    raise SystemExit(f"left by an earlier run: {left}")
"""


def test_what_a_program_sets_up_in_its_process_is_a_new_process_s_each_schedule(
    tmp_path: Path,
) -> None:
    program = tmp_path / "service.py"
    program.write_text(SET_UP_PROCESS)
    result = explore_program(program, "--budget", "20", "--strategy", "random")
    assert result.returncode == 0, result.stderr
    assert "20 schedules" in result.stderr, result.stderr


def test_a_program_rewrapping_its_stdout_writes_in_every_schedule(tmp_path: Path) -> None:
    # A CLI's start-up line: collected at the schedule's end, the program's
    # wrapper closed the real stdout's buffer, and every later schedule failed
    # (ValueError: I/O operation on closed file).
    program = tmp_path / "cli.py"
    program.write_text(
        "import io, sys, threading\n"
        'sys.stdout = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", line_buffering=True)\n'
        'results = []\nthreading.Thread(target=results.append, args=("done",)).start()\n'
        'print("résumé:", results)\n'
    )
    result = explore_program(program, "--budget", "10", "--strategy", "random")
    assert result.returncode == 0, result.stderr
    assert "10 schedules" in result.stderr, result.stderr


def test_state_a_program_keeps_on_sys_is_a_new_process_s_each_schedule(tmp_path: Path) -> None:
    program = tmp_path / "lookups.py"
    program.write_text(KEPT_ON_SYS)
    result = explore_program(program, "--budget", "300")
    assert_found_and_replayed(result, "threadcheck: exit: the program exited with status 1")
    assert "shrunk to 1" in result.stderr, result.stderr
