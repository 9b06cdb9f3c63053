"""Size and render time of the HTML pages and the Chrome trace for big inputs.

    python tests/benchmarks/view_render.py [--screenshots DIR]

Run from a checkout with PYTHONPATH=.:reactor:tests. For schedules of 50, 500
and 5,000 steps (4 threads, a preemption every 97 steps), prints the time to
build the page and the trace, their sizes, and the time headless Chromium takes
to load the page (navigation start to the load event's end, from the page's own
``performance`` timing); the last column is that time over the smallest page's.
Then the same for findings pages of 1,000 and 100,000 violations (5,000
distinct). With ``--screenshots DIR``, also writes the screenshots
docs/views.md shows: a real failing schedule (the bundled lost update), a
time-passing one, and ``threadcheck run --races`` on the bundled data race.
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import browser
from test_view import ThreadInfo, big_result, finding, late_fetch, lost_update

import threadcheck
from threadcheck._view._chrome import chrome_trace
from threadcheck._view._findings import findings_page
from threadcheck._view._page import schedule_page
from threadcheck._view._schedule import schedule_view

SIZES = (50, 500, 5000)
LOAD_TIME = (
    "performance.getEntriesByType('navigation')[0].loadEventEnd"
    " - performance.getEntriesByType('navigation')[0].startTime"
)


def measure(chromium: browser.Browser | None, folder: Path) -> None:
    print(
        f"{'steps':>6} {'page ms':>8} {'page KB':>8} {'trace ms':>9} {'trace KB':>9} "
        f"{'load ms':>8} {'load/first':>10}"
    )
    first: float | None = None
    for steps in SIZES:
        view = schedule_view(big_result(steps, 4))
        started = time.perf_counter()
        page = schedule_page(view, f"{steps} steps")
        page_ms = (time.perf_counter() - started) * 1e3
        started = time.perf_counter()
        trace = json.dumps(chrome_trace(view, f"{steps} steps"), separators=(",", ":"))
        trace_ms = (time.perf_counter() - started) * 1e3
        path = folder / f"page-{steps}.html"
        path.write_text(page, encoding="utf-8")
        load = "-"
        ratio = "-"
        if chromium is not None:
            chromium.open(path.as_uri())
            loaded = float(chromium.evaluate(LOAD_TIME))
            first = first or loaded
            load, ratio = f"{loaded:.0f}", f"{loaded / first:.1f}"
        print(
            f"{steps:6d} {page_ms:8.1f} {len(page.encode()) / 1024:8.0f} {trace_ms:9.1f} "
            f"{len(trace.encode()) / 1024:9.0f} {load:>8} {ratio:>10}"
        )


def measure_findings(chromium: browser.Browser | None, folder: Path) -> None:
    print(f"{'violations':>10} {'distinct':>8} {'page ms':>8} {'page KB':>8} {'load ms':>8}")
    distinct = [
        replace(
            finding("reactor.callLater", test=f"t.py::test_{n % 50}"),
            thread=ThreadInfo(f"w{n}", n),
        )
        for n in range(5000)
    ]
    for total in (1000, 100_000):
        violations = [distinct[n % len(distinct)] for n in range(total)]
        started = time.perf_counter()
        page = findings_page(violations, [], f"{total} violations")
        page_ms = (time.perf_counter() - started) * 1e3
        path = folder / f"findings-{total}.html"
        path.write_text(page, encoding="utf-8")
        load = "-"
        if chromium is not None:
            chromium.open(path.as_uri())
            load = f"{float(chromium.evaluate(LOAD_TIME)):.0f}"
        print(
            f"{total:10d} {min(total, len(distinct)):8d} {page_ms:8.0f} "
            f"{len(page.encode()) / 1024:8.0f} {load:>8}"
        )


def screenshots(chromium: browser.Browser, folder: Path, into: Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    for name, result in (
        ("schedule-lost-update", lost_update()),
        ("schedule-time-passes", threadcheck.explore(late_fetch, budget=2000)),
    ):
        path = folder / f"{name}.html"
        path.write_text(schedule_page(schedule_view(result), name), encoding="utf-8")
        chromium.open(path.as_uri())
        (into / f"{name}.png").write_bytes(chromium.screenshot())
        print(f"wrote {into / f'{name}.png'}")
    page = folder / "race.html"
    example = ["-m", "threadcheck.examples.data_race_counter"]
    subprocess.run(
        [sys.executable, "-m", "threadcheck", "run", "--races", "--html", str(page), *example],
        capture_output=True,
        check=False,
    )
    chromium.open(page.as_uri())
    (into / "findings-data-race.png").write_bytes(chromium.screenshot())
    print(f"wrote {into / 'findings-data-race.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--screenshots", type=Path, metavar="DIR")
    args = parser.parse_args()
    executable = browser.find_chromium()
    chromium = browser.Browser(executable, height=760) if executable else None
    if chromium is None:
        print("no chromium on PATH: load times not measured")
    try:
        with tempfile.TemporaryDirectory() as folder:
            measure(chromium, Path(folder))
            measure_findings(chromium, Path(folder))
            if args.screenshots and chromium is not None:
                screenshots(chromium, Path(folder), args.screenshots)
    finally:
        if chromium is not None:
            chromium.close()


if __name__ == "__main__":
    main()
