"""A headless Chromium driven over the DevTools protocol on a pipe (stdlib only).

``--remote-debugging-pipe``: the browser reads commands on its fd 3 and writes
replies and events on fd 4, each a JSON object ended by a NUL byte. Enough of
the protocol for the view tests: open a page, evaluate script in it, collect
console errors and uncaught exceptions, count a screenshot's colours.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


class BrowserError(Exception):
    pass


class Browser:
    def __init__(self, executable: str, width: int = 1400, height: int = 900) -> None:
        self._profile = tempfile.mkdtemp(prefix="tc-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # the browser's fds 3 and 4 (kept: pass_fds)
            reading, writing = os.dup(to_browser_r), os.dup(from_browser_w)  # not 3 or 4
            os.dup2(reading, 3)
            os.dup2(writing, 4)

        self._process = subprocess.Popen(
            [
                executable,
                "--headless",
                "--no-sandbox",  # as root in CI
                "--disable-gpu",
                "--hide-scrollbars",
                "--no-first-run",
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=wire_fds,
            pass_fds=(3, 4),
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._width, self._height = width, height
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self._session = self._attach()

    # -- the protocol ----------------------------------------------------------------

    def _send(
        self, method: str, params: dict[str, Any] | None = None, session: bool = True
    ) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(timeout=30)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _receive(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise BrowserError("no answer from the browser")
            chunk = os.read(self._from_browser, 65536)
            if not chunk:
                raise BrowserError("the browser closed its pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        result: dict[str, Any] = json.loads(message)
        return result

    def _attach(self) -> str:
        targets = self._send("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self._send(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}, session=False
        )
        session: str = attached["sessionId"]
        self._session = session
        for domain in ("Page", "Runtime", "Log"):
            self._send(f"{domain}.enable")
        self._send(  # the viewport itself, not the window around it
            "Emulation.setDeviceMetricsOverride",
            {
                "width": self._width,
                "height": self._height,
                "deviceScaleFactor": 1,
                "mobile": False,
            },
        )
        return session

    # -- what the tests use --------------------------------------------------------------

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.events.clear()
        self._send("Page.navigate", {"url": url})
        deadline = time.monotonic() + 30
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            if time.monotonic() > deadline:
                raise BrowserError(f"{url} did not load")
            self.events.append(self._receive(timeout=30))

    def evaluate(self, expression: str) -> Any:
        reply = self._send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def click_at(self, x: float, y: float) -> None:
        """A mouse click at viewport coordinates (for what draws on a canvas)."""
        for kind in ("mousePressed", "mouseReleased"):
            self._send(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            )

    def scripts(self, enabled: bool) -> None:
        """The page's own scripts on or off (``evaluate`` still runs)."""
        self._send("Emulation.setScriptExecutionDisabled", {"value": not enabled})

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                thrown = details.get("exception", {}).get("description", "")
                found.append(f"{details.get('text')} {thrown}".strip())
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(" ".join(str(a.get("value")) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(str(params["entry"].get("text")))
        return found

    def colour_counts(
        self, colours: list[tuple[int, int, int]], tolerance: int = 6
    ) -> tuple[int, int, list[int]]:
        """Width, height and, per colour, how many pixels of a screenshot are
        within ``tolerance`` of it in each channel. The browser decodes and
        counts (a canvas of the PNG): in Python, a 1400x900 screenshot took
        10 to 20 s of a loaded CI runner."""
        png = self._send("Page.captureScreenshot", {"format": "png"})["data"]  # base64
        script = f"""(async () => {{
            const image = new Image();
            image.src = "data:image/png;base64,{png}";
            await image.decode();
            const canvas = document.createElement("canvas");
            canvas.width = image.width;
            canvas.height = image.height;
            const context = canvas.getContext("2d");
            context.drawImage(image, 0, 0);
            const data = context.getImageData(0, 0, image.width, image.height).data;
            const colours = {json.dumps(colours)};
            const counts = colours.map(() => 0);
            for (let i = 0; i < data.length; i += 4) {{
                colours.forEach(([r, g, b], k) => {{
                    if (Math.abs(data[i] - r) <= {tolerance} && Math.abs(data[i + 1] - g)
                        <= {tolerance} && Math.abs(data[i + 2] - b) <= {tolerance}) counts[k]++;
                }});
            }}
            return [image.width, image.height, counts];
        }})()"""
        reply = self._send(
            "Runtime.evaluate",
            {"expression": script, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in reply:
            raise BrowserError(f"counting colours: {reply['exceptionDetails']}")
        width, height, counts = reply["result"]["value"]
        return int(width), int(height), [int(n) for n in counts]

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self._send("Browser.close", session=False)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
        shutil.rmtree(self._profile, ignore_errors=True)
