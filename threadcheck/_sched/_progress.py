"""Between the schedules of a long exploration: a progress line, and Ctrl-C.

On a terminal, one line of stderr shows the schedules run, their rate and the
failures seen (then the shrinking of a failure), redrawn a few times a second
and cleared at the end; anywhere else nothing is shown. A first Ctrl-C (or
another of the ``signals`` taken, SIGTERM for the command line) stops the
exploration once the schedule running has ended (interrupting a schedule
midway would look like a failure of the program's), or stops shrinking with
the failure found; a second one exits at once, for a schedule that never ends.

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

from threadcheck._text import plural

exit_now = os._exit
"""The process's own: during a schedule ``os._exit`` is the program's, which ends
only the schedule (a second Ctrl-C was reported as the program exiting 130)."""

REDRAW_INTERVAL = 0.25  # seconds: a few updates a second

stop_requested = threading.Event()
"""Set by a first Ctrl-C (or SIGTERM) while a :class:`Progress` is on: the
watchdog then ends a schedule stuck outside the scheduler's control at once,
where it would wait its full timeout (10 s)."""


class Progress:
    """``progress=`` for ``_explore.explore``, used as a context manager.

    Raises KeyboardInterrupt from the callback once Ctrl-C was pressed.
    """

    def __init__(
        self,
        stream: TextIO,
        interval: float = REDRAW_INTERVAL,
        signals: tuple[signal.Signals, ...] = (signal.SIGINT,),
    ) -> None:
        self.stream = stream
        self.interval = interval
        self.visible = stream.isatty()
        self.schedules = 0
        self.signals = signals
        self.received: signal.Signals | None = None
        """The first signal that stopped the exploration."""
        self._next_draw = interval  # a short exploration shows no line at all
        self._drawn = False
        self._previous_handlers: dict[signal.Signals, Any] = {}

    @property
    def exit_status(self) -> int:
        """128 + the signal, as shells report it: 130 for Ctrl-C, 143 for SIGTERM."""
        return 128 + (self.received or signal.SIGINT)

    def __enter__(self) -> Progress:
        stop_requested.clear()
        if threading.current_thread() is threading.main_thread():
            for number in self.signals:
                self._previous_handlers[number] = signal.signal(number, self._on_interrupt)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for number, handler in self._previous_handlers.items():
            signal.signal(number, handler)
        stop_requested.clear()
        self.clear()

    def __call__(self, schedules: int, failures: int, elapsed: float) -> None:
        self.schedules = schedules
        if self.received is not None:
            raise KeyboardInterrupt
        if self.visible and elapsed >= self._next_draw:
            self._next_draw = elapsed + self.interval
            rate = schedules / elapsed if elapsed > 0 else 0.0
            self._draw(
                f"{plural(schedules, 'schedule')}, {rate:.0f}/s, {plural(failures, 'failure')}"
            )

    def shrinking(self, attempts: int, preemptions: int) -> None:
        """``shrink_progress=`` for ``explore``: before each shrinking attempt."""
        if self.received is not None:
            raise KeyboardInterrupt
        if self.visible:
            self._draw(
                f"failure found; shrinking: {plural(attempts, 'attempt')}, "
                f"{plural(preemptions, 'preemption')} so far"
            )

    def clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._drawn = False

    def _draw(self, text: str) -> None:
        self.stream.write(f"\r\x1b[Kthreadcheck: {text}")
        self.stream.flush()
        self._drawn = True

    def _on_interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)
            stop_requested.set()
            return
        self.clear()
        sys.stdout.flush()
        self.stream.write("threadcheck: interrupted again: exiting in the middle of a schedule\n")
        self.stream.flush()
        exit_now(self.exit_status)
