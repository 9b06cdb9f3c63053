"""Between the schedules of a long exploration: a progress line, and Ctrl-C.

On a terminal, one line of stderr shows the schedules run, their rate and the
failures seen, redrawn a few times a second and cleared at the end; anywhere
else nothing is shown. A first Ctrl-C stops the exploration once the schedule
running has ended (interrupting a schedule midway would look like a failure of
the program's); a second one exits at once, for a schedule that never ends.

Thread safety: called by the exploring thread between schedules; the signal
handler runs in the main thread.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any, TextIO

REDRAW_INTERVAL = 0.25  # seconds: a few updates a second
INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


class Progress:
    """``progress=`` for ``_explore.explore``, used as a context manager.

    Raises KeyboardInterrupt from the callback once Ctrl-C was pressed.
    """

    def __init__(self, stream: TextIO, interval: float = REDRAW_INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self.visible = stream.isatty()
        self.schedules = 0
        self._next_draw = interval  # a short exploration shows no line at all
        self._drawn = False
        self._interrupted = False
        self._previous_handler: Any = None

    def __enter__(self) -> Progress:
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_interrupt)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)
        self.clear()

    def __call__(self, schedules: int, failures: int, elapsed: float) -> None:
        self.schedules = schedules
        if self._interrupted:
            raise KeyboardInterrupt
        if self.visible and elapsed >= self._next_draw:
            self._next_draw = elapsed + self.interval
            self._draw(schedules, failures, elapsed)

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def _draw(self, schedules: int, failures: int, elapsed: float) -> None:
        rate = schedules / elapsed if elapsed > 0 else 0.0
        self.stream.write(
            f"\r\x1b[Kthreadcheck: {schedules} schedules, {rate:.0f}/s, "
            f"{failures} failure{'' if failures == 1 else 's'}"
        )
        self.stream.flush()
        self._drawn = True

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if not self._interrupted:
            self._interrupted = True
            return
        self.clear()
        sys.stdout.flush()
        self.stream.write("threadcheck: interrupted again: exiting in the middle of a schedule\n")
        self.stream.flush()
        os._exit(INTERRUPTED)
