"""Resources over a long exploration: memory and per-schedule cost stay flat.

    python tests/benchmarks/explore_memory.py [--schedules N]

For a scenario (the reactor runs; two pool jobs under a lock) and a whole
program that never starts the reactor (two threads under a lock), one
exploration of N schedules (default 20,000) with the random walk (the default
strategy proves both in a few hundred schedules, and stops). Prints the RSS
growth after the first 1,000 schedules and at the end, and the cost of a
schedule in the last 1,000 against the first 1,000 (the ratio should stay near
1: nothing a schedule leaves behind may slow the next ones). Not a test:
nothing here asserts.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from threadcheck._sched._explore import Budget, explore
from threadcheck._sched._targets import ProgramTarget, ScenarioTarget

PROGRAM = """
import threading
from twisted.internet import reactor  # imported, never run

total = [0]
lock = threading.Lock()

def add():
    with lock:
        total[0] += 1

workers = [threading.Thread(target=add) for _ in range(2)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
assert total[0] == 2
"""


def pool_jobs(reactor: Any) -> Any:
    from twisted.internet import threads
    from twisted.internet.defer import gatherResults

    counts = {"n": 0}
    lock = threading.Lock()

    def job() -> None:
        with lock:
            counts["n"] += 1

    pool = reactor.getThreadPool()
    return gatherResults([threads.deferToThreadPool(reactor, pool, job) for _ in range(2)])


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def measure(name: str, target: Any, schedules: int) -> None:
    explore(target, budget=Budget(50), strategy="random")  # warm: imports, code tables
    base = rss_mb()
    marks: dict[int, tuple[float, float]] = {}

    def progress(ran: int, failures: int, elapsed: float) -> None:
        if ran in (1000, schedules - 1000, schedules):
            marks[ran] = (elapsed, rss_mb())

    started = time.monotonic()
    result = explore(target, budget=Budget(schedules), strategy="random", progress=progress)
    seconds = time.monotonic() - started
    first = marks[1000][0] / 1000
    last = (marks[schedules][0] - marks[schedules - 1000][0]) / 1000
    print(
        f"{name:<28} {result.schedules} schedules in {seconds:.1f} s; "
        f"RSS +{marks[1000][1] - base:.0f} MB after 1,000, "
        f"+{marks[schedules][1] - base:.0f} MB after {schedules:,}; "
        f"ms/schedule first 1,000 {first * 1000:.2f}, last 1,000 {last * 1000:.2f} "
        f"(ratio {last / first:.2f})",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedules", type=int, default=20_000)
    args = parser.parse_args()
    assert args.schedules >= 2000, "needs a first and a last 1,000"
    measure("scenario (reactor runs)", ScenarioTarget(pool_jobs), args.schedules)
    with tempfile.TemporaryDirectory() as folder:
        program = Path(folder) / "two_threads.py"
        program.write_text(textwrap.dedent(PROGRAM))
        measure("program (reactor never run)", ProgramTarget(None, [str(program)]), args.schedules)


if __name__ == "__main__":
    main()
