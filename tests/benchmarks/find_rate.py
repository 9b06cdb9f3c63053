"""Find rate: how many schedules ``threadcheck explore`` needs to find each planted bug.

    python tests/benchmarks/find_rate.py [--seeds K] [--budget B] [--only NAME]

Run from a checkout with PYTHONPATH=.:reactor:tests. The shapes are the whole
programs with a planted bug from the quality tests: the five that need time to
pass while a thread is held (``tests/test_explore_time_quality.py``), the
executor lost update, the report made before a barrier and the jittered lost
update (``tests/test_explore_stdlib_quality.py``), and the health check that
calls ``os._exit`` and the event lost at exit (``tests/test_explore_exits_quality.py``).

Each program is written as ``service.py`` into a fresh temporary folder and
explored there, by the CLI in a fresh process, with the default strategy, once
per seed 0..K-1: ``python -m threadcheck explore --seed N --budget B --json
OUT service.py`` (at most 300 s a run). The schedule that found the bug is read
from ``found on schedule N`` in the report on stderr (the JSON's ``schedules``
also counts the runs spent shrinking). Progress goes to stderr; the Markdown
table, shape -> schedules to find (median, min and max over the seeds, ``>B``
when a seed's budget ran out), to stdout. A median marked ``>`` is only known
to be above that bound: a seed on either side of the middle found nothing. Not
a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]
TESTS = CHECKOUT / "tests"
TIMEOUT = 300.0
HEADLINE_WIDTH = 60
ATEXIT_BUG = "pass  # BUG: may look too early"
"""The consumer's planted bug in ``ATEXIT_FLUSH`` (written in its test, not a constant)."""

FOUND_ON = re.compile(r"^\s*found on schedule (\d+) ")


def planted_programs() -> dict[str, str]:
    """Shape -> its whole program with the bug planted, from the quality tests."""
    sys.path.insert(0, str(TESTS))  # the test modules import ``support`` from there
    import test_explore_exits_quality as exits  # type: ignore[import-not-found]
    import test_explore_stdlib_quality as stdlib  # type: ignore[import-not-found]
    import test_explore_time_quality as held  # type: ignore[import-not-found]

    programs: dict[str, str] = {name: held.program(name, fixed=False) for name in held.SHAPES}
    before, after = stdlib.BARRIER_BUG
    programs["executor"] = stdlib.EXECUTOR.format(update=stdlib.EXECUTOR_BUG)
    programs["barrier"] = stdlib.BARRIER.format(before=before, after=after)
    programs["jitter"] = stdlib.JITTER.format()
    programs["health-check"] = exits.HEALTH_CHECK.format(update=exits.BUGGY)
    programs["atexit-flush"] = exits.ATEXIT_FLUSH.format(wait=ATEXIT_BUG)
    return programs


@dataclass
class Outcome:
    """One exploration of one shape with one seed."""

    found_on: int | None
    """The schedule that found the bug; None if none did."""
    headline: str
    """The report's first line without ``threadcheck: `` (or why there is none)."""
    seconds: float


def explore(program: str, seed: int, budget: int) -> Outcome:
    """Explore ``program`` as ``service.py`` in a fresh folder, by the CLI."""
    with tempfile.TemporaryDirectory(prefix="find_rate-") as name:
        folder = Path(name)
        (folder / "service.py").write_text(program)
        command = [sys.executable, "-m", "threadcheck", "explore", "--seed", str(seed)]
        command += ["--budget", str(budget), "--json", "outcome.json", "service.py"]
        python_path = os.pathsep.join([str(CHECKOUT), str(CHECKOUT / "reactor")])
        started = time.perf_counter()
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                cwd=folder,
                env={**os.environ, "PYTHONPATH": python_path},
            )
        except subprocess.TimeoutExpired:
            return Outcome(None, f"timed out after {TIMEOUT:g} s", time.perf_counter() - started)
        seconds = time.perf_counter() - started
        outcome = folder / "outcome.json"
        written = json.loads(outcome.read_text()) if outcome.exists() else {}
    return Outcome(found_on(result.stderr, written), headline(result), seconds)


def found_on(stderr: str, written: dict[str, object]) -> int | None:
    """The schedule named by ``found on schedule N`` near the report's top;
    failing that, the JSON's count if it says found; else None."""
    for line in stderr.splitlines()[:10]:
        match = FOUND_ON.match(line)
        if match:
            return int(match.group(1))
    schedules = written.get("schedules")
    if written.get("found") is True and isinstance(schedules, int):
        return schedules
    return None


def headline(result: subprocess.CompletedProcess[str]) -> str:
    """The report's first line, without ``threadcheck: ``."""
    for line in result.stderr.splitlines():
        if line.startswith("threadcheck: "):
            return line.removeprefix("threadcheck: ")
    return f"exit status {result.returncode}, no report"


def shorten(text: str) -> str:
    return text if len(text) <= HEADLINE_WIDTH else text[: HEADLINE_WIDTH - 3] + "..."


def count(n: float, budget: int) -> str:
    return f">{budget}" if math.isinf(n) else f"{n:g}"


def median(counts: list[float], budget: int) -> str:
    """The median, or ``>bound`` when a seed in the middle found nothing (the
    bound counts it as the budget)."""
    ordered = sorted(counts)
    middle = ordered[(len(ordered) - 1) // 2 : len(ordered) // 2 + 1]
    if all(math.isfinite(n) for n in middle):
        return f"{statistics.median(ordered):g}"
    return f">{statistics.median(min(n, budget) for n in ordered):g}"


def measure(name: str, program: str, seeds: int, budget: int) -> list[Outcome]:
    outcomes = []
    for seed in range(seeds):
        outcome = explore(program, seed, budget)
        if outcome.found_on is None:
            done = f"not found in {budget} ({shorten(outcome.headline)})"
        else:
            done = f"found on schedule {outcome.found_on}"
        print(f"{name} seed {seed}: {done}, {outcome.seconds:.1f} s", file=sys.stderr, flush=True)
        outcomes.append(outcome)
    return outcomes


def row(name: str, outcomes: list[Outcome], budget: int) -> str:
    counts = [math.inf if o.found_on is None else float(o.found_on) for o in outcomes]
    found = [o for o in outcomes if o.found_on is not None]
    first = shorten(found[0].headline if found else outcomes[0].headline).replace("|", "\\|")
    cells = [name, median(counts, budget), count(min(counts), budget)]
    cells += [count(max(counts), budget), f"{len(found)}/{len(outcomes)}", first]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per shape (K)")
    parser.add_argument("--budget", type=int, default=2000, help="schedules per seed (B)")
    parser.add_argument("--only", default="", help="only shapes whose name contains NAME")
    args = parser.parse_args()
    started = time.perf_counter()
    rows = []
    for name, program in planted_programs().items():
        if args.only in name:
            rows.append(row(name, measure(name, program, args.seeds, args.budget), args.budget))
    version = ".".join(map(str, sys.version_info[:3]))
    print(
        f"Python {version}: schedules to find each planted bug "
        f"(threadcheck explore, default strategy, seeds 0-{args.seeds - 1}, budget {args.budget})"
    )
    print()
    print("| shape | median | min | max | found | headline |")
    print("|---|---:|---:|---:|---:|---|")
    print("\n".join(rows))
    print()
    print(f"total wall time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
