"""Throughput of the instrumented reactor against Twisted's own, measured in one run.

    python tests/benchmarks/overhead.py [--rounds N]

Prints, per workload, the median time of each reactor and their ratio
(instrumented / plain; 1.00 means no overhead). Rounds alternate which reactor
goes first so that drift hits both alike. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
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


def measure(rounds: int) -> None:
    print(f"{PLAIN.__name__} vs {ThreadCheckReactor.__name__}, {CALLS} calls, {rounds} rounds")
    for name, workload in WORKLOADS.items():
        plain: list[float] = []
        checked: list[float] = []
        for round_ in range(rounds):
            order = [(plain, PLAIN), (checked, ThreadCheckReactor)]
            for times, cls in order if round_ % 2 == 0 else reversed(order):
                times.append(workload(cls))
        p, c = statistics.median(plain), statistics.median(checked)
        print(
            f"{name:40s} plain {p * 1e3:8.2f} ms  "
            f"instrumented {c * 1e3:8.2f} ms  ratio {c / p:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    measure(parser.parse_args().rounds)


if __name__ == "__main__":
    main()
