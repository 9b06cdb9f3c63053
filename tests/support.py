"""Helpers for tests: real instrumented reactors, never installed globally.

``RunningReactor`` runs a reactor's ``run()`` in its own thread, so the test's
own thread is a genuine foreign thread, and ``in_reactor`` runs a callable in
the reactor thread for real (through ``blockingCallFromThread``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from twisted.internet import default
from twisted.internet.threads import blockingCallFromThread

from threadcheck import Mode, Recorder
from threadcheck._cli import VIOLATIONS_FOUND
from threadcheck._sched._core import Step
from threadcheck._sched._report import ScheduleRun
from threadcheck_reactor import ThreadCheckMixin, ThreadCheckReactor

T = TypeVar("T")
JOIN_TIMEOUT = 30.0

TWISTED_CLASSES = {
    "select": "twisted.internet.selectreactor.SelectReactor",
    "poll": "twisted.internet.pollreactor.PollReactor",
    "epoll": "twisted.internet.epollreactor.EPollReactor",
    "asyncio": "twisted.internet.asyncioreactor.AsyncioSelectorReactor",
}
"""Twisted's reactor class for each instrumented kind but default, by the path
frameworks name it with (scrapy's TWISTED_REACTOR)."""


def twisted_default_kind() -> str:
    """The kind twisted.internet.default installs here (from epollreactor: epoll)."""
    return default.install.__module__.rpartition(".")[2].removesuffix("reactor")


class RunningReactor:
    def __init__(
        self, mode: Mode | str, reactor_type: type[ThreadCheckMixin] = ThreadCheckReactor
    ) -> None:
        self.recorder = Recorder()
        self.reactor: ThreadCheckMixin = reactor_type(mode, self.recorder)
        started = threading.Event()
        # Before run(), calls from the creating thread are allowed.
        self.reactor.callWhenRunning(started.set)
        self.thread = threading.Thread(
            target=self.reactor.run, kwargs={"installSignalHandlers": False}, name="reactor"
        )
        self.thread.start()
        if not started.wait(JOIN_TIMEOUT):
            raise RuntimeError("reactor did not start")

    def in_reactor(self, f: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``f`` in the reactor thread and return its (Deferred's) result."""
        return blockingCallFromThread(self.reactor, f, *args, **kwargs)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.reactor.callFromThread(_stop_if_running, self.reactor)
            self.thread.join(JOIN_TIMEOUT)
        assert not self.thread.is_alive(), "reactor thread did not stop"
        release_descriptors(self.reactor)


def release_descriptors(reactor: Any) -> None:
    """Close what a stopped reactor keeps open (its waker, its epoll object, an
    asyncio loop of its own), as Twisted's ReactorBuilder does after each test:
    a worker running hundreds of tests would reach select()'s limit of 1,024."""
    with reactor.threadcheck.exempt():  # the reactor thread is gone: not a violation
        for reader in list(getattr(reactor, "_internalReaders", ())):
            reactor.removeReader(reader)
            reader.connectionLost(None)
            reactor._internalReaders.discard(reader)  # closed: a second stop skips it
    reactor.waker = None  # a late callFromThread queues its call and wakes nothing, as dispose()
    poller = getattr(reactor, "_poller", None)
    if hasattr(poller, "close"):
        poller.close()
    loop = getattr(reactor, "_asyncioEventloop", None)
    if loop is not None and not loop.is_closed():  # the asyncio reactor made its own
        loop.close()


def loop_of(running: RunningReactor) -> Any:
    """The asyncio loop of a running asyncio reactor."""
    return running.reactor._asyncioEventloop  # type: ignore[attr-defined]


def _stop_if_running(reactor: ThreadCheckMixin) -> None:
    if reactor.running:
        reactor.stop()


def run_in_thread(f: Callable[[], T], name: str = "worker") -> T:
    """Call ``f`` in a fresh thread; return its result or re-raise its exception."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = f()
        except BaseException as error:
            outcome["error"] = error

    thread = threading.Thread(target=target, name=name)
    thread.start()
    thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive(), f"thread {name} hung"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]  # type: ignore[no-any-return]


def run_threads(threads: list[threading.Thread]) -> None:
    """Start all of ``threads`` together, then wait for each; none may hang."""
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
        assert not thread.is_alive(), f"thread {thread.name} hung"


def run_in(
    args: list[str], cwd: Path, *, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run a command in ``cwd`` (made if need be), with ``cwd`` first on PYTHONPATH."""
    cwd.mkdir(exist_ok=True)
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(cwd), **env},
    )


# -- whole programs under `threadcheck explore` (the quality tests) -------------


def before_short_summary(result: pytest.RunResult) -> str:
    """A pytester run's stdout up to pytest's short test summary: with CI set in
    the environment, pytest repeats each failure's whole message there."""
    out: str = result.stdout.str()
    return out.split("short test summary info")[0]


def write_program(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "service.py"
    path.write_text(textwrap.dedent(body))
    return path


def run_program(program: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``threadcheck run`` on ``program``, as a user runs it."""
    command = [sys.executable, "-m", "threadcheck", "run", *args, str(program)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def assert_run_of_twin(
    program: Path,
    source: str,
    slot: str,
    code: str,
    *,
    planted: bool,
    prints: str,
    counted: str,
    fix: str,
) -> None:
    """``threadcheck run`` of ``program``, written from ``source`` with its line
    ``{slot}`` as ``code``: the program's output either way; the planted twin
    reported (``counted``, at that line, with ``fix``), the fixed one silent."""
    program.write_text(source.format(**{slot: code}))
    result = run_program(program)
    assert prints in result.stdout, (result.stdout, result.stderr)
    if not planted:
        assert result.returncode == 0, result.stderr
        assert "no thread-affinity violations found" in result.stderr
        return
    assert result.returncode == VIOLATIONS_FOUND, result.stderr
    assert f"  {counted}" in result.stderr
    line = source.splitlines().index(f"    {{{slot}}}") + 1
    assert f"{program.name}:{line}" in result.stderr
    assert f"fix: {fix}" in result.stderr


def explore_program(program: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "threadcheck", "explore", *args, str(program)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=program.parent)


def explore_with_library(
    tmp_path: Path, name: str, library: str, program: str, *options: str
) -> subprocess.CompletedProcess[str]:
    """``threadcheck explore`` of ``program``, with module ``name`` installed (a
    site-packages folder of its own on PYTHONPATH: a library, not user code)."""
    path = write_program(tmp_path, program)
    command = [sys.executable, "-m", "threadcheck", "explore", *options, str(path)]
    env = with_library(tmp_path, name, library)
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def with_library(tmp_path: Path, name: str, library: str) -> dict[str, str]:
    """The environment in which module ``name`` is an installed library."""
    site = tmp_path / "site-packages"
    site.mkdir(exist_ok=True)
    (site / f"{name}.py").write_text(library)
    return {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def assert_found_and_replayed(
    result: subprocess.CompletedProcess[str], headline: str, env: dict[str, str] | None = None
) -> None:
    """The exploration failed with ``headline`` (no traceback of ours before the
    step table), and its replay command, run afresh (in ``env``), fails the same way."""
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(headline), result.stderr
    assert 'Traceback (most recent call last):\n  File "' not in result.stderr.split("\n\n")[0]
    [replay] = [line for line in result.stderr.splitlines() if line.startswith("replay: ")]
    program = Path(replay.split()[-1])
    replayed = subprocess.run(
        [sys.executable, "-m", *replay.removeprefix("replay: ").split()],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=program.parent,
        env=env,
    )
    assert replayed.returncode == 1, replayed.stderr
    assert replayed.stderr.startswith(headline), replayed.stderr


CLEAN = re.compile(r"threadcheck: (\d+ schedules? \(|every interleaving explored \()")
"""A clean exploration's summary: its budget spent, or proved (its DPOR phase)."""


def assert_clean(result: subprocess.CompletedProcess[str], budget: int = 2000) -> None:
    """The exploration ran its ``budget`` schedules without a failure, or proved
    that none fails, and printed its summary line alone (nothing logged by the
    program's threads)."""
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(
        (f"threadcheck: {budget} schedules (", "threadcheck: every interleaving explored (")
    ), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def schedule_run(trace: list[Step], preemptions: dict[int, str], names: list[str]) -> ScheduleRun:
    """A schedule's run as the explorer reports it, made by hand (its table, its views)."""
    return ScheduleRun(
        index=1,
        failure=None,
        decisions=[],
        choices=[],
        trace=trace,
        preemptions=preemptions,
        steps=len(trace),
        digest="",
        thread_names=names,
    )
