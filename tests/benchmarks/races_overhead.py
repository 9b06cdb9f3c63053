"""What ``--races`` costs, measured in one run: time ratios and memory per location.

    python tests/benchmarks/races_overhead.py [--rounds N] [--only TEXT]

* The reactor workloads of ``overhead.py``, on the instrumented reactor,
  with and without race detection; with it, the workloads' own code (their
  callbacks, as a user's would be) is rewritten as a user module is.
* A pure-Python loop of attribute updates in one thread: every access
  recorded, the detector's worst case.
* Memory per tracked location (``tracemalloc``): the shadow state of 20,000
  objects, one attribute each, beyond the objects themselves.

Rounds alternate which mode goes first; the cyclic GC is collected before
and paused during each run. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).parent))

import overhead

from threadcheck import Recorder
from threadcheck._races import _detector
from threadcheck._races._rewrite import compile_user
from threadcheck_reactor import ThreadCheckReactor

LOOP = """
class Point:
    def __init__(self):
        self.x = 0
        self.y = 0

def updates(n):
    point = Point()
    for _ in range(n):
        point.x += 1
        point.y = point.x * 2
    return point
"""
LOOP_STEPS = 200_000
LOCATIONS = 20_000


def rewritten(source: str, filename: str, name: str) -> ModuleType:
    module = ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module  # dataclasses and the like look their module up
    exec(compile_user(source, filename), module.__dict__)
    return module


def plain(source: str, filename: str, name: str) -> ModuleType:
    module = ModuleType(name)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def timed(run: Callable[[], float], races: bool) -> float:
    if races:
        _detector.start(Recorder())
    gc.collect()
    gc.disable()
    try:
        return run()
    finally:
        gc.enable()
        if races:
            _detector.stop()


def loop_seconds(module: ModuleType) -> float:
    start = time.perf_counter()
    module.updates(LOOP_STEPS)
    return time.perf_counter() - start


def compare(name: str, rounds: int, off: Callable[[], float], on: Callable[[], float]) -> None:
    plain_times: list[float] = []
    race_times: list[float] = []
    for round_ in range(rounds):
        order = [(plain_times, off, False), (race_times, on, True)]
        for times, run, races in order if round_ % 2 == 0 else reversed(order):
            times.append(timed(run, races))
    ratios = [r / p for p, r in zip(plain_times, race_times, strict=True)]
    print(
        f"{name:42s} plain {statistics.median(plain_times) * 1e3:8.2f} ms  "
        f"races {statistics.median(race_times) * 1e3:8.2f} ms  "
        f"ratio {statistics.median(ratios):6.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
    )


def memory_per_location() -> float:
    source = "class Obj:\n    pass\n\ndef touch(objs):\n    for o in objs:\n        o.value = 1\n"
    results = []
    for races in (False, True):
        make = rewritten if races else plain
        module = make(source, str(Path(__file__).with_name("_races_memory.py")), "_races_memory")
        objs = [module.Obj() for _ in range(LOCATIONS)]
        if races:
            _detector.start(Recorder())
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        module.touch(objs)
        results.append(tracemalloc.get_traced_memory()[0] - before)
        tracemalloc.stop()
        if races:
            _detector.stop()
    return (results[1] - results[0]) / LOCATIONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--only", help="the workloads whose name holds this text")
    args = parser.parse_args()
    source_path = Path(overhead.__file__)
    instrumented = rewritten(source_path.read_text(), str(source_path), "_overhead_races")
    print(f"Python {sys.version.split()[0]}, {args.rounds} rounds")
    print("ratio = races/plain time (both on the instrumented reactor), median [min-max]")
    for name, workload in overhead.WORKLOADS.items():
        if args.only is not None and args.only.lower() not in name.lower():
            continue
        twin = getattr(instrumented, workload.__name__)
        compare(
            name,
            args.rounds,
            lambda w=workload: w(ThreadCheckReactor),
            lambda w=twin: w(ThreadCheckReactor),
        )
    loop_file = str(Path(__file__).with_name("_races_loop.py"))
    loop_plain = plain(LOOP, loop_file, "_races_loop")
    loop_rewritten = rewritten(LOOP, loop_file, "_races_loop")
    compare(
        f"attribute updates in one thread ({LOOP_STEPS})",
        args.rounds,
        lambda: loop_seconds(loop_plain),
        lambda: loop_seconds(loop_rewritten),
    )
    print(f"memory per tracked location: {memory_per_location():.0f} bytes")


if __name__ == "__main__":
    main()
