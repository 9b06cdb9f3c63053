"""Exploration throughput under pytest, with one and with two pytest-xdist workers.

    python tests/benchmarks/explore_xdist.py [--budget N] [--rounds N]

Runs, in a temporary folder, a test file that makes the 3-thread, ~50-point
scenario of explore_speed.py one ``threadcheck_explore`` test, through
``pytest -n 1`` and ``pytest -n 2 --threadcheck-explore=N``. Under two workers
the one exploration is split into two parts that run at once, each on its own
CPU. For each run it reads the parts' schedules and exploring seconds from the
junitxml properties, and prints:

* exploration throughput: all schedules over the longest part's exploring time
  (the parts run concurrently), for -n 1 and -n 2, and their ratio;
* end to end: schedules over the whole pytest command's wall time, which also
  counts starting pytest, its workers and collection.

Medians over ``--rounds`` (each round measures both, one after the other).
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

HERE = Path(__file__).parent

TEST_FILE = """
import pytest
from explore_speed import scenario


@pytest.mark.threadcheck_explore(budget=100)
def test_scenario(threadcheck_reactor):
    return scenario(threadcheck_reactor)
"""


def measure(folder: Path, workers: int, budget: int) -> tuple[float, float, int]:
    """One pytest run: (exploration schedules/s, end-to-end schedules/s, schedules)."""
    report = folder / f"report-{workers}.xml"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:twisted",
        "-n",
        str(workers),
        f"--threadcheck-explore={budget}",
        f"--junitxml={report}",
        "test_scenario.py",
    ]
    # The scenario is explore_speed.py's, imported from beside this file.
    path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"pytest failed:\n{done.stdout}\n{done.stderr}")
    parts = [
        prop.get("value", "").split()
        for prop in ElementTree.parse(report).iter("property")
        if prop.get("name") == "threadcheck_schedules"
    ]
    schedules = sum(int(part[0]) for part in parts)
    longest = max(float(part[1]) for part in parts)
    return schedules / longest, schedules / wall, schedules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=6000, help="schedules per exploration")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        (folder / "test_scenario.py").write_text(TEST_FILE)
        measure(folder, 1, 50)  # warm the file system caches and .pyc files
        for _ in range(args.rounds):
            for workers in (1, 2):
                explored, end_to_end, schedules = measure(folder, workers, args.budget)
                assert schedules == args.budget, schedules
                results[workers].append((explored, end_to_end))
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f}, {args.budget} schedules, median of {args.rounds} rounds"
    )
    print(f"{'workers':>8} {'exploring sched/s':>18} {'end to end sched/s':>19}")
    medians = {}
    for workers, rows in results.items():
        explored = statistics.median(row[0] for row in rows)
        end_to_end = statistics.median(row[1] for row in rows)
        medians[workers] = (explored, end_to_end)
        print(f"{workers:>8} {explored:>18.0f} {end_to_end:>19.0f}")
    print(
        f"ratio -n 2 / -n 1: exploring {medians[2][0] / medians[1][0]:.2f}, "
        f"end to end {medians[2][1] / medians[1][1]:.2f}"
    )


if __name__ == "__main__":
    main()
