"""Points where nothing is shared: a metrics collector with long loops over its own data.

    python tests/benchmarks/metrics_collector.py [--budget N] [--requests R] [--iterations I]

Run from a checkout with PYTHONPATH=.:reactor:tests. The program: a plain
thread that, every 50 ms, walks the reactor's table of R requests (60) and runs
an I-iteration (6,000) numeric loop on each, over local numbers only, while
the reactor adds a request every 10 ms. Its bug: the walk iterates the dict
the reactor changes ("dictionary changed size during iteration"); the fixed
twin walks a snapshot. Prints, for the running Python:

* the plain run: the program once with ``python`` (no threadcheck), wall time
  (real sleeps included);
* the CPU ceiling: one walk's CPU time alone (the numeric loops), in this
  process; no exploration that runs the program can beat 1/walk schedules/s;
* the fixed twin under ``threadcheck explore --budget N``: schedules/s (from
  its summary line) and its ratio to plain runs/s;
* the planted bug: the schedule that found it (``found on schedule K``).

Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]

PROGRAM = """
import threading
import time
from twisted.internet import reactor, task

class Request:
    def __init__(self, number):
        self.number = number
        self.weight = (number * 7919 % 1000) / 1000.0

active = {{n: Request(n) for n in range({requests})}}  # the reactor's, by request id

def accept():
    number = len(active)
    active[number] = Request(number)

def score(request):
    weight = request.weight
    acc = 0.0
    for i in range({iterations}):  # CPU only, over the thread's own numbers
        acc = (acc * 0.5 + i * weight) % 97.0
    return acc

def collect():
    time.sleep(0.05)
    {walk}

collector = threading.Thread(target=collect, name="metrics")
task.LoopingCall(accept).start(0.01, now=False)
reactor.callWhenRunning(collector.start)
reactor.callLater(0.08, reactor.stop)
reactor.run()
collector.join()
"""
BUG = "totals = {number: score(request) for number, request in active.items()}  # BUG"
FIX = "totals = {number: score(request) for number, request in dict(active).items()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=200)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--iterations", type=int, default=6000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        fixed = _write(Path(folder) / "fixed.py", FIX, args)
        buggy = _write(Path(folder) / "buggy.py", BUG, args)
        plain = _plain_seconds(fixed)
        walk = _walk_seconds(args)
        rate, summary = _explore_rate(fixed, args.budget)
        found = _found_at(buggy, args.budget)
    version = ".".join(map(str, sys.version_info[:3]))
    print(f"Python {version}: {args.requests} requests x {args.iterations} iterations a walk")
    print(f"plain run: {plain * 1000:.0f} ms ({1 / plain:.1f} runs/s)")
    print(f"CPU ceiling: one walk {walk * 1000:.0f} ms, at most {1 / walk:.1f} schedules/s")
    print(
        f"fixed twin explored: {rate:.1f} schedules/s ({summary}); {rate * plain:.2f}x plain, "
        f"{rate * walk:.2f} of the ceiling"
    )
    print(f"planted bug: {found}")


def _write(path: Path, walk: str, args: argparse.Namespace) -> Path:
    path.write_text(PROGRAM.format(walk=walk, requests=args.requests, iterations=args.iterations))
    return path


def _environment() -> dict[str, str]:
    path = os.pathsep.join([str(CHECKOUT), str(CHECKOUT / "reactor")])
    return {**os.environ, "PYTHONPATH": path, "PYTHONHASHSEED": "0"}


def _plain_seconds(program: Path) -> float:
    """The best of three plain runs, interpreter start-up excluded (measured alone)."""
    env = _environment()
    startup = min(
        _timed([sys.executable, "-c", "import twisted.internet.reactor"], env) for _ in range(3)
    )
    return min(_timed([sys.executable, str(program)], env) for _ in range(3)) - startup


def _walk_seconds(args: argparse.Namespace) -> float:
    """The best of three walks of the program's table, run here with no threadcheck."""
    namespace: dict[str, object] = {}
    source = PROGRAM.format(walk="pass", requests=args.requests, iterations=args.iterations)
    exec(source.split("collector = ")[0], namespace)  # the definitions, not the run
    score: object = namespace["score"]
    active: object = namespace["active"]
    assert callable(score) and isinstance(active, dict)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for request in active.values():
            score(request)
        best = min(best, time.perf_counter() - started)
    return best


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
    return time.perf_counter() - started


def _explore_rate(program: Path, budget: int) -> tuple[float, str]:
    first = _explored(program, budget)[0]
    match = re.match(r"threadcheck: (\d+) schedules \(\d+ distinct\) in ([\d.]+) s", first)
    if match is None:
        return 0.0, first[:100]
    return int(match.group(1)) / float(match.group(2)), first.split(",")[0]


def _found_at(program: Path, budget: int) -> str:
    lines = _explored(program, budget)
    found = next((line for line in lines[:3] if "found on schedule" in line), None)
    if found is None:
        return "not found: " + lines[0][:100]
    return f"{lines[0][:70]}; {found.strip().split(';')[0]}"


def _explored(program: Path, budget: int) -> list[str]:
    """The report of ``threadcheck explore --budget N`` on ``program``, by line."""
    command = [sys.executable, "-m", "threadcheck", "explore", "--budget", str(budget)]
    result = subprocess.run(
        [*command, str(program)], env=_environment(), capture_output=True, text=True, timeout=1200
    )
    return result.stderr.splitlines() or ["(no output)"]


if __name__ == "__main__":
    main()
