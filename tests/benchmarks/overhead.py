"""Throughput of the instrumented reactor against Twisted's own, measured in one run.

    python tests/benchmarks/overhead.py [--rounds N]

Prints, per workload, the median time of each reactor and the median of the
per-round ratios (instrumented / plain; 1.00 means no overhead). Rounds alternate which reactor
goes first so that drift hits both alike, and the cyclic GC is collected before
and paused during each run (as timeit does) so that one reactor's garbage is
not timed against the other. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.base import ReactorBase

from threadcheck_reactor import ThreadCheckMixin, ThreadCheckReactor

# The Twisted class the instrumented default reactor wraps.
PLAIN: type[ReactorBase] = next(
    base for base in ThreadCheckReactor.__bases__ if base is not ThreadCheckMixin
)
CALLS = 50_000
THREADS = 4


def noop() -> None:
    pass


def call_later_throughput(make: Callable[[], Any]) -> float:
    """Seconds to schedule CALLS callLater(0, ...) in the reactor thread and run them all."""
    reactor = make()
    fired = [0]
    elapsed = [0.0]

    def tick() -> None:
        fired[0] += 1
        if fired[0] == CALLS:
            elapsed[0] = time.perf_counter() - start[0]
            reactor.stop()

    start = [0.0]

    def schedule() -> None:
        start[0] = time.perf_counter()
        call_later = reactor.callLater
        for _ in range(CALLS):
            call_later(0, tick)

    reactor.callWhenRunning(schedule)
    reactor.run(installSignalHandlers=False)
    return elapsed[0]


def call_from_thread_throughput(make: Callable[[], Any]) -> float:
    """Seconds for THREADS workers to callFromThread CALLS calls in all, until all have run."""
    reactor = make()
    per_thread = CALLS // THREADS
    ran = [0]
    elapsed = [0.0]
    go = threading.Barrier(THREADS + 1)

    def tick() -> None:
        ran[0] += 1
        if ran[0] == per_thread * THREADS:
            elapsed[0] = time.perf_counter() - start[0]
            reactor.stop()

    def worker() -> None:
        go.wait()
        call_from_thread = reactor.callFromThread
        for _ in range(per_thread):
            call_from_thread(tick)

    workers = [threading.Thread(target=worker) for _ in range(THREADS)]
    for w in workers:
        w.start()
    start = [0.0]

    def release() -> None:
        start[0] = time.perf_counter()
        go.wait()

    reactor.callWhenRunning(release)
    reactor.run(installSignalHandlers=False)
    for w in workers:
        w.join()
    return elapsed[0]


def schedule_only(make: Callable[[], Any]) -> float:
    """Seconds for CALLS bare callLater calls (the check's worst case: nothing else runs)."""
    reactor = make()
    call_later = reactor.callLater
    start = time.perf_counter()
    for _ in range(CALLS):
        call_later(3600, noop)
    return time.perf_counter() - start


WORKLOADS: dict[str, Callable[[Callable[[], Any]], float]] = {
    "callLater throughput (schedule + run)": call_later_throughput,
    "callFromThread throughput (4 threads)": call_from_thread_throughput,
    "callLater, schedule only": schedule_only,
}


def _without_gc(workload: Callable[[Callable[[], Any]], float], cls: type) -> float:
    gc.collect()
    gc.disable()
    try:
        return workload(cls)
    finally:
        gc.enable()


def measure(rounds: int) -> None:
    print(f"{PLAIN.__name__} vs {ThreadCheckReactor.__name__}, {CALLS} calls, {rounds} rounds")
    print("ratio = instrumented/plain time, median of per-round pairs [min-max]")
    for name, workload in WORKLOADS.items():
        plain: list[float] = []
        checked: list[float] = []
        for round_ in range(rounds):
            order = [(plain, PLAIN), (checked, ThreadCheckReactor)]
            for times, cls in order if round_ % 2 == 0 else reversed(order):
                times.append(_without_gc(workload, cls))
        ratios = [c / p for p, c in zip(plain, checked, strict=True)]
        print(
            f"{name:40s} plain {statistics.median(plain) * 1e3:7.2f} ms  "
            f"instrumented {statistics.median(checked) * 1e3:7.2f} ms  "
            f"ratio {statistics.median(ratios):.3f} [{min(ratios):.2f}-{max(ratios):.2f}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    measure(parser.parse_args().rounds)


if __name__ == "__main__":
    main()
