"""How long a crochet program takes to exit under ``threadcheck run``, against plain python.

    python tests/benchmarks/run_exit.py [--rounds N]

crochet stops its reactor thread only once the main thread is finished, so a
runner that waits for threads the wrong way hangs or lags here. Prints the
median wall-clock seconds of ``python prog.py`` and of ``threadcheck run
prog.py`` and their ratio (threadcheck / python); rounds alternate which goes
first. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = """\
from crochet import setup, wait_for
setup()
from twisted.internet import reactor, task

@wait_for(timeout=10)
def add(a, b):
    return task.deferLater(reactor, 0.01, lambda: a + b)

assert add(1, 2) == 3
"""


def seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as folder:
        prog = str(Path(folder, "prog.py"))
        Path(prog).write_text(PROGRAM)
        commands = {
            "python": [sys.executable, prog],
            "threadcheck run": [sys.executable, "-m", "threadcheck", "run", prog],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for round_ in range(rounds):
            order = list(commands) if round_ % 2 == 0 else list(reversed(commands))
            for name in order:
                times[name].append(seconds(commands[name]))
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        print(f"{name:16} median {median:.3f} s over {rounds} rounds")
    print(f"ratio threadcheck/python: {medians['threadcheck run'] / medians['python']:.2f}")


if __name__ == "__main__":
    main()
