"""Exploration speed: schedules per second of the controlled scheduler, per strategy.

    python tests/benchmarks/explore_speed.py [--budget N] [--plain N] [--rounds N] [--pin]

Run from a checkout with PYTHONPATH=.:reactor:tests. The scenario is the one the
scheduler's speed target names: the reactor thread plus two thread-pool workers,
each doing a few shared-state accesses under a lock, about 50 scheduling points
per schedule and clean (no schedule fails). Prints one table for the running
Python:

* per strategy (portfolio, random, pct:2, pct:3, bounded:1 and dpor until exhausted or
  the budget), the median schedules/s of ``threadcheck.explore`` over the
  rounds, with the median points (scheduling steps), preemptions (a thread
  that could go on switched out) and thread switches per schedule of a sample
  run through ``Explorer`` (``ExploreResult.run`` is only set on failure);
  A strategy that exhausts its search stops early: the seconds it took are
  shown, since its rate then mostly measures ``explore()``'s start;
* the controlled/uncontrolled ratio: the same scenario run ``--plain`` times on
  a plain instrumented reactor (``ThreadCheckReactor``, real threads, a fresh
  reactor per run) against as many schedules of ``random`` (the default
  strategy proves this scenario in fewer), per run;
* the floor: as many runs on Twisted's own reactor, uninstrumented (real
  threads, a fresh reactor and thread pool per run, as each schedule has):
  what a schedule costs before any of threadcheck's work, so the most
  schedules/s an explorer that builds a fresh reactor per schedule could reach.

``--pin`` runs the whole process on one CPU (Linux): one controlled thread runs
at a time anyway, and a hand-off within one CPU is cheaper than across two.
Each measurement runs once unmeasured first (imports, code tables, caches).
Each schedule's reactor leaves its waker pipe open (2 fds; its epoll fd too
until the GC frees it): after every exploration the script closes the
orphaned pipes (Linux: /proc/self/fd), or a few thousand schedules would reach
the open-file limit; the header shows the fds leaked per schedule. Not a
test: nothing here asserts.
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
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred, gatherResults

import threadcheck
from threadcheck._sched._core import iter_runs
from threadcheck._sched._runner import Explorer, Settings
from threadcheck._sched._targets import ScenarioTarget, run_scenario
from threadcheck._sched.strategies import parse
from threadcheck_reactor import ThreadCheckMixin, ThreadCheckReactor, _running

STRATEGIES = ("portfolio", "random", "pct:2", "pct:3", "bounded:1", "dpor")
ROUNDS_EACH = 2
"""Lock-protected updates per worker: 2 gives ~52 points per schedule."""
SAMPLE = 30
"""Schedules per strategy whose points and switches are counted."""


class Shared:
    def __init__(self) -> None:
        self.total = 0


def scenario(reactor: Any) -> Deferred[Any]:
    """The reactor and two pool workers updating one counter under a lock.

    Worker 1 waits for worker 2's job to start, so every schedule (and every
    plain run) has both workers: the pool cannot reuse one for both jobs.
    """
    shared = Shared()
    lock = threading.Lock()
    both = threading.Event()

    def work(n: int) -> int:
        for _ in range(ROUNDS_EACH):
            with lock:
                shared.total += n
        if n == 1:
            both.wait()
        else:
            both.set()
        return n

    pool = reactor.getThreadPool()
    jobs = [threads.deferToThreadPool(reactor, pool, work, n) for n in (1, 2)]
    return gatherResults(jobs).addCallback(lambda _: check(shared))


def check(shared: Shared) -> None:
    assert shared.total == 3 * ROUNDS_EACH, shared.total


class _Leaks:
    """Counts and closes the pipes explorations leave open (one per schedule's waker)."""

    def __init__(self) -> None:
        self.closed = 0
        self.schedules = 0

    def open_fds(self) -> set[int]:
        try:
            return {int(fd) for fd in os.listdir("/proc/self/fd")}
        except OSError:  # not Linux: leave them
            return set()

    def reclaim(self, before: set[int], schedules: int) -> None:
        gc.collect()  # frees the reactors' epoll objects, which close their own fds
        self.schedules += schedules
        for fd in self.open_fds() - before:
            try:
                if stat.S_ISFIFO(os.fstat(fd).st_mode):  # a waker's pipe end: nobody owns it
                    os.close(fd)
                    self.closed += 1
            except OSError:
                pass

    def per_schedule(self) -> float:
        return self.closed / self.schedules if self.schedules else 0.0


LEAKS = _Leaks()


def shape(strategy: str, schedules: int) -> dict[str, float]:
    """Median points, preemptions and switches per schedule, and threads, over a sample."""
    points: list[int] = []
    preemptions: list[int] = []
    switches: list[int] = []
    thread_counts: set[int] = set()
    failed = 0
    chosen = parse(strategy, 0)
    before = LEAKS.open_fds()
    with Explorer(ScenarioTarget(scenario), Settings()) as explorer:
        for index in range(schedules):
            run = explorer.run(chosen, index, record_trace=True)
            if run is None:
                break
            points.append(run.steps)
            preemptions.append(len(run.preemptions))
            switches.append(sum(1 for _ in iter_runs(run.trace)) - 1)
            thread_counts.add(len(run.thread_names))
            failed += run.failure is not None
    LEAKS.reclaim(before, len(points))
    return {
        "points": statistics.median(points),
        "points_min": min(points),
        "points_max": max(points),
        "preemptions": statistics.median(preemptions),
        "switches": statistics.median(switches),
        "threads": max(thread_counts),
        "failed": failed,
    }


def schedules_per_second(strategy: str, budget: int) -> tuple[float, float, int, bool, bool]:
    """One ``threadcheck.explore``: schedules/s, seconds, schedules run, exhausted, found."""
    before = LEAKS.open_fds()
    started = time.perf_counter()
    result = threadcheck.explore(scenario, budget=budget, strategy=strategy, seed=0)
    elapsed = time.perf_counter() - started
    LEAKS.reclaim(before, result.schedules)
    return (
        result.schedules / elapsed,
        elapsed,
        result.schedules,
        result.exhausted,
        result.found,
    )


def plain_run(scenario: Any) -> None:
    """``scenario`` once on a fresh instrumented reactor with real threads, in this thread."""
    reactor = ThreadCheckReactor("record")
    run_scenario(reactor, scenario)
    reactor.dispose()  # close its fds: a thousand reactors would keep them


def plain_seconds(runs: int) -> float:
    """Seconds for ``runs`` plain runs of the scenario."""
    started = time.perf_counter()
    for _ in range(runs):
        plain_run(scenario)
    return time.perf_counter() - started


TWISTED: Any = next(base for base in ThreadCheckReactor.__bases__ if base is not ThreadCheckMixin)
"""The Twisted reactor class the instrumented default reactor wraps."""


def twisted_seconds(runs: int) -> float:
    """Seconds for ``runs`` runs of the scenario on Twisted's own reactor, each fresh."""
    _running.unpatch()  # Twisted's own Deferreds (the next instrumented reactor patches again)
    started = time.perf_counter()
    for _ in range(runs):
        reactor = TWISTED()
        run_scenario(reactor, scenario)
        for reader in list(reactor._internalReaders):  # its waker: close its pipe
            reactor.removeReader(reader)
            reader.connectionLost(None)
        reactor._poller.close()
    return time.perf_counter() - started


def controlled_seconds(runs: int) -> float:
    """Seconds for ``runs`` schedules of ``random`` (``threadcheck.explore``)."""
    before = LEAKS.open_fds()
    started = time.perf_counter()
    result = threadcheck.explore(scenario, budget=runs, strategy="random", seed=0)
    elapsed = time.perf_counter() - started
    LEAKS.reclaim(before, result.schedules)
    return elapsed


def measure(budget: int, plain: int, rounds: int) -> None:
    version = ".".join(map(str, sys.version_info[:3]))
    backend = "sys.monitoring" if sys.version_info >= (3, 12) else "sys.settrace"
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"Python {version} ({backend}), budget {budget}, median of {rounds} rounds{load}")
    schedules_per_second("portfolio", 50)  # warm-up
    print(f"fds left open per schedule (closed here): {LEAKS.per_schedule():.1f}")
    print(
        f"{'strategy':10s} {'sched/s':>8s} {'[min-max]':>13s} {'schedules':>9s} "
        f"{'points':>10s} {'preempt':>7s} {'switches':>8s} {'threads':>7s}"
    )
    for strategy in STRATEGIES:
        rates: list[float] = []
        seconds: list[float] = []
        ran, exhausted, found = 0, False, False
        for _ in range(rounds):
            gc.collect()
            rate, elapsed, ran, exhausted, found = schedules_per_second(strategy, budget)
            rates.append(rate)
            seconds.append(elapsed)
        s = shape(strategy, SAMPLE)
        note = f" (exhausted in {statistics.median(seconds):.2f} s)" if exhausted else ""
        note += " FOUND A FAILURE" if found or s["failed"] else ""
        points = f"{s['points']:.0f} [{s['points_min']}-{s['points_max']}]"
        print(
            f"{strategy:10s} {statistics.median(rates):8.0f} "
            f"{f'[{min(rates):.0f}-{max(rates):.0f}]':>13s} {ran:9d} {points:>10s} "
            f"{s['preemptions']:7.0f} {s['switches']:8.0f} {s['threads']:7d}{note}"
        )
    plain_seconds(20)  # warm-up
    ratios: list[float] = []
    plain_times: list[float] = []
    controlled_times: list[float] = []
    for round_ in range(rounds):
        order = [(plain_times, plain_seconds), (controlled_times, controlled_seconds)]
        for times, how in order if round_ % 2 == 0 else reversed(order):
            gc.collect()
            times.append(how(plain))
        ratios.append(controlled_times[-1] / plain_times[-1])
    p, c = statistics.median(plain_times), statistics.median(controlled_times)
    print(
        f"plain ThreadCheckReactor x{plain}: {p * 1e3:.0f} ms ({plain / p:.0f} runs/s); "
        f"{plain} schedules (random): {c * 1e3:.0f} ms ({plain / c:.0f} sched/s); "
        f"controlled/plain time {statistics.median(ratios):.2f} "
        f"[{min(ratios):.2f}-{max(ratios):.2f}]"
    )
    twisted_seconds(20)  # warm-up
    floor = statistics.median(twisted_seconds(plain) for _ in range(rounds))
    print(
        f"floor: Twisted's {TWISTED.__name__} x{plain}, uninstrumented: {floor * 1e3:.0f} ms "
        f"({plain / floor:.0f} runs/s); random's schedules/its runs time {c / floor:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=1000, help="schedules per strategy")
    parser.add_argument("--plain", type=int, default=500, help="runs per side of the ratio")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pin", action="store_true", help="run on one CPU (Linux)")
    args = parser.parse_args()
    if args.pin:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})  # before any thread starts: they all inherit it
        print(f"pinned to CPU {cpu}")
    measure(args.budget, args.plain, args.rounds)


if __name__ == "__main__":
    main()
