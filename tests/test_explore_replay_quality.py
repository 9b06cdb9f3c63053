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
