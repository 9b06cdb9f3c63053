"""Schedules to a proof: dpor against bounded:2 on each fixed twin, and to a find.

    python tests/benchmarks/dpor_proofs.py [--cap N]

Run from a checkout with PYTHONPATH=.:reactor:tests. For each fixed twin of
tests/races.py (Twisted) and tests/dpor_programs.py (plain threads), one
exploration per strategy in this process: ``dpor`` until its search is
exhausted, ``bounded:2`` until every schedule with at most two preemptions
ran (both capped at ``--cap`` schedules; a capped one shows ``>N``). Prints
schedules and seconds of each, and the ratio of their schedules; then the
schedule on which each strategy found each planted bug. Not a test: nothing
here asserts.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import dpor_programs
import races

import threadcheck

TWINS: dict[str, tuple[Any, Any]] = {
    **{f"races:{n}": (races.BUGGY[n], races.FIXED[n]) for n in sorted(races.BUGGY)},
    **{
        f"threads:{n}": (dpor_programs.BUGGY[n], dpor_programs.FIXED[n])
        for n in sorted(dpor_programs.BUGGY)
    },
    "threads:buffer, one consumer": (None, dpor_programs.buffer_one_consumer),
}


def _to_the_end(scenario: Any, strategy: str, cap: int) -> tuple[str, float, bool]:
    started = time.perf_counter()
    result = threadcheck.explore(scenario, strategy=strategy, budget=cap)
    seconds = time.perf_counter() - started
    assert not result.found, result.report()
    done = result.exhausted
    return (str(result.schedules) if done else f">{result.schedules}"), seconds, done


def _found_at(scenario: Any, strategy: str, cap: int) -> str:
    result = threadcheck.explore(scenario, strategy=strategy, budget=cap)
    return str(result.found_at) if result.found else f">{result.schedules}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap", type=int, default=5000)
    cap = parser.parse_args().cap
    print(f"python {sys.version.split()[0]}, cap {cap} schedules")
    print(f"{'fixed twin':<30} {'dpor':>14} {'bounded:2':>16} {'ratio':>7}")
    for name, (_, fixed) in TWINS.items():
        dpor, dpor_seconds, proved = _to_the_end(fixed, "dpor", cap)
        bounded, bounded_seconds, _ = _to_the_end(fixed, "bounded:2", cap)
        ratio = int(bounded.lstrip(">")) / int(dpor.lstrip(">"))
        mark = "" if proved else " (not exhausted)"
        print(
            f"{name:<30} {dpor:>6} {dpor_seconds:5.1f} s {bounded:>7} {bounded_seconds:5.1f} s "
            f"{ratio:6.1f}x{mark}"
        )
    print()
    print(f"{'planted bug: found on schedule':<30} {'dpor':>6} {'portfolio':>10} {'random':>7}")
    for name, (buggy, _) in TWINS.items():
        if buggy is None:
            continue
        found = [_found_at(buggy, strategy, cap) for strategy in ("dpor", "portfolio", "random")]
        print(f"{name:<30} {found[0]:>6} {found[1]:>10} {found[2]:>7}")


if __name__ == "__main__":
    main()
