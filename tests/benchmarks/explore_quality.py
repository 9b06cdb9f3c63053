"""Exploration quality: how soon the controlled scheduler finds the planted races, vs plain runs.

    python tests/benchmarks/explore_quality.py [--seeds K] [--budget B] [--plain M]
                                               [--timeout S] [--fixed N] [--only NAME]

Run from a checkout with PYTHONPATH=.:reactor:tests. For each planted race in
``tests/races.py`` (``BUGGY``) prints:

* the schedules to the first failure with the default strategy (portfolio),
  median and max over seeds 0..K-1 (``>B`` when a seed's budget ran out), and
  the failure it reported;
* the plain-repetition baseline: the same scenario run M times, each on a
  fresh instrumented reactor (``ThreadCheckReactor``) with real threads, and
  again with ``sys.setswitchinterval(1e-6)``, counting the runs that show the
  bug (a failed Deferred or failed assertion, an error logged by the reactor or
  a thread, a deadlock = no end within the timeout, or the reactor stopping
  before the scenario's Deferred fired).

Then each fixed twin (``FIXED``) over N schedules of the default strategy,
which must be clean. A plain run that deadlocked leaves its threads blocked
for good: the script then ends with ``os._exit``. Each schedule's reactor
leaves its waker pipe open: after every exploration the script closes the
orphaned pipes (Linux: /proc/self/fd), or some ten thousand schedules would
reach the open-file limit. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import gc
import os
import stat
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from races import BUGGY, FIXED
from twisted.internet.defer import maybeDeferred
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure as TwistedFailure

import threadcheck
from threadcheck_reactor import ThreadCheckReactor

Scenario = Callable[[Any], Any]
_stuck = [0]
"""Plain runs that never ended: their threads are still blocked."""


def _open_fds() -> set[int]:
    try:
        return {int(fd) for fd in os.listdir("/proc/self/fd")}
    except OSError:  # not Linux: leave them
        return set()


def explore(scenario: Scenario, budget: int, seed: int) -> Any:
    """``threadcheck.explore`` with the default strategy, then the pipes it left open closed."""
    before = _open_fds()
    result = threadcheck.explore(scenario, budget=budget, seed=seed)
    gc.collect()  # frees the reactors' epoll objects, which close their own fds
    for fd in _open_fds() - before:
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):  # a waker's pipe end: nobody owns it
                os.close(fd)
        except OSError:
            pass
    return result


def plain_outcome(scenario: Scenario, timeout: float) -> str | None:
    """Run ``scenario`` once on a fresh real reactor; None if clean, else how it failed.

    The reactor runs in a thread of its own so that a deadlock (the reactor
    thread blocked for good) shows as a timeout instead of hanging the script.
    """
    reactor = ThreadCheckReactor("record")
    outcome: list[object] = []
    logged: list[str] = []

    def observe(event: dict[str, Any]) -> None:
        failure = event.get("log_failure")
        if failure is not None:
            logged.append(f"logged {failure.type.__name__}: {failure.value}")

    def start() -> None:
        maybeDeferred(scenario, reactor).addBoth(finish)

    def finish(result: object) -> None:
        outcome.append(result)
        if reactor.running and not reactor._stopped:  # the scenario may have stopped it
            reactor.stop()

    def thread_error(args: Any) -> None:
        error = getattr(args.exc_type, "__name__", "?")
        logged.append(f"thread {args.thread.name}: {error}: {args.exc_value}")

    reactor.callWhenRunning(start)
    runner = threading.Thread(
        target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True
    )
    previous_hook = threading.excepthook
    threading.excepthook = thread_error
    globalLogPublisher.addObserver(observe)  # type: ignore[arg-type]
    try:
        runner.start()
        runner.join(timeout)
    finally:
        globalLogPublisher.removeObserver(observe)  # type: ignore[arg-type]
        threading.excepthook = previous_hook
    if runner.is_alive():
        _stuck[0] += 1
        return f"deadlock (no end within {timeout:g} s)"
    reactor.waker.connectionLost(None)  # close its fds: a thousand reactors would keep them
    if not outcome:
        return "incomplete (the reactor stopped before the scenario's Deferred fired)"
    result = outcome[0]
    if isinstance(result, TwistedFailure):
        return f"{getattr(result.type, '__name__', '?')}: {result.value}"
    return logged[0] if logged else None


def plain_failures(scenario: Scenario, runs: int, timeout: float) -> tuple[int, float, str]:
    """Failing runs out of ``runs``, runs per second, and the commonest failure."""
    seen: Counter[str] = Counter()
    started = time.perf_counter()
    for _ in range(runs):
        failure = plain_outcome(scenario, timeout)
        if failure is not None:
            seen[failure.split(":")[0].split(" (")[0]] += 1
    rate = runs / (time.perf_counter() - started)
    return sum(seen.values()), rate, seen.most_common(1)[0][0] if seen else ""


def plain_failures_fast_switching(
    scenario: Scenario, runs: int, timeout: float
) -> tuple[int, float, str]:
    """As :func:`plain_failures` with the GIL handed over every microsecond."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        return plain_failures(scenario, runs, timeout)
    finally:
        sys.setswitchinterval(previous)


def schedules_to_failure(scenario: Scenario, seeds: int, budget: int) -> tuple[list[int], str]:
    """Schedules to the first failure per seed (budget + 1: none found), and the first failure."""
    found: list[int] = []
    first = ""
    for seed in range(seeds):
        result = explore(scenario, budget, seed)
        if result.found and result.failure is not None and result.found_at is not None:
            found.append(result.found_at)
            first = first or f"{result.failure.kind}: {result.failure.message}"[:60]
        else:
            found.append(budget + 1)
    return found, first


def fixed_twin(scenario: Scenario, budget: int) -> str:
    """One exploration of a fixed twin: clean, or what failed."""
    result = explore(scenario, budget, 0)
    rate = result.schedules / result.seconds if result.seconds else 0.0
    if not result.found or result.failure is None:
        ended = "exhausted" if result.exhausted else "clean"
        return f"{ended}: {result.schedules} schedules, {result.distinct} distinct, {rate:.0f}/s"
    return f"FAILED at schedule {result.found_at}: {result.failure.kind}: {result.failure.message}"


def _count(n: int, budget: int) -> str:
    return f">{budget}" if n > budget else str(n)


def measure(seeds: int, budget: int, plain: int, timeout: float, fixed: int, only: str) -> None:
    version = ".".join(map(str, sys.version_info[:3]))
    print(
        f"Python {version}: schedules to first failure (portfolio, seeds 0-{seeds - 1}, "
        f"budget {budget}) vs {plain} plain runs (ThreadCheckReactor, real threads)"
    )
    print(
        f"{'race':15s} {'median':>6s} {'max':>5s}  {'plain':>9s} {'runs/s':>6s}  "
        f"{'plain 1us':>9s} {'runs/s':>6s}  explored failure / plain failure"
    )
    for name, scenario in BUGGY.items():
        if only and name != only:
            continue
        found, first = schedules_to_failure(scenario, seeds, budget)
        median = statistics.median(found)
        failing, rate, kind = plain_failures(scenario, plain, timeout)
        failing_fast, rate_fast, kind_fast = plain_failures_fast_switching(
            scenario, plain, timeout
        )
        print(
            f"{name:15s} {_count(int(median), budget) if median == int(median) else median:>6} "
            f"{_count(max(found), budget):>5s}  {f'{failing}/{plain}':>9s} {rate:6.0f}  "
            f"{f'{failing_fast}/{plain}':>9s} {rate_fast:6.0f}  "
            f"{first} / {kind or kind_fast or '-'}"
        )
    print(f"fixed twins, {fixed} schedules each (portfolio, seed 0):")
    for name, scenario in FIXED.items():
        if only and name != only:
            continue
        print(f"  {name:15s} {fixed_twin(scenario, fixed)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per race (K)")
    parser.add_argument("--budget", type=int, default=2000, help="schedules per seed")
    parser.add_argument("--plain", type=int, default=1000, help="plain runs per race (M)")
    parser.add_argument("--timeout", type=float, default=3.0, help="plain run deadlock timeout")
    parser.add_argument("--fixed", type=int, default=2000, help="schedules per fixed twin")
    parser.add_argument("--only", default="", help="one race by name")
    args = parser.parse_args()
    measure(args.seeds, args.budget, args.plain, args.timeout, args.fixed, args.only)
    if _stuck[0]:
        sys.stdout.flush()
        os._exit(0)  # deadlocked plain runs: their non-daemon pool threads never end


if __name__ == "__main__":
    main()
