"""What ``explore()`` costs before and after its schedules, with the scenario already imported.

    python tests/benchmarks/explore_start.py [--rounds N]

Run from a checkout with PYTHONPATH=.:reactor:tests. Calls
``threadcheck.explore(scenario, budget=1)`` on explore_speed.py's scenario
``--rounds`` times (after one unmeasured call: imports, first-use caches) and
prints the median of each phase: entering the explorer (patches, GC freeze,
rewriting user modules), the warm-up run (one uncontrolled run before
exploring, so that replays in a fresh process start from the same state),
leaving it, and the whole call (which also runs one schedule and builds the
result). The start cost is enter + warm-up + exit. Not a test: nothing here
asserts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import explore_speed

import threadcheck
from threadcheck._sched._runner import Explorer

PHASES = ("__enter__", "warm_up", "__exit__")


def _timed(name: str, method: Callable[..., Any], spent: dict[str, list[float]]) -> Any:
    def timed(self: Explorer, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return method(self, *args)
        finally:
            spent[name].append(time.perf_counter() - started)

    return timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    rounds = parser.parse_args().rounds
    spent: dict[str, list[float]] = {name: [] for name in PHASES}
    for name in PHASES:
        setattr(Explorer, name, _timed(name, getattr(Explorer, name), spent))
    threadcheck.explore(explore_speed.scenario, budget=1)
    whole = []
    for _ in range(rounds):
        started = time.perf_counter()
        threadcheck.explore(explore_speed.scenario, budget=1)
        whole.append(time.perf_counter() - started)
    medians = {name: statistics.median(times[1:]) * 1000 for name, times in spent.items()}
    print(f"Python {sys.version.split()[0]}, median of {rounds} calls of explore(budget=1)")
    print(
        f"enter {medians['__enter__']:.2f} ms  warm-up {medians['warm_up']:.2f} ms  "
        f"exit {medians['__exit__']:.2f} ms  start cost {sum(medians.values()):.2f} ms  "
        f"whole call {statistics.median(whole) * 1000:.2f} ms"
    )


if __name__ == "__main__":
    main()
