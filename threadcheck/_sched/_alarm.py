"""A test framework's alarm while exploring (pytest-timeout's SIGALRM), kept for a schedule's end.

pytest-timeout fails a test that runs too long by raising from its SIGALRM
handler, in the main thread, wherever that thread is. While exploring, the
main thread runs the scheduler: raised inside one of its hand-offs, the
exception left threads running and a scheduler active, and the session's
later explorations were refused as nested ones ("release unlocked lock", "an
abandoned thread woke up"). While exploring, the alarm only asks the running
schedule to end (its threads unwind at their next points); once it has, the
framework's handler runs, as it would have, and its exception ends the
exploration.

Thread safety: installed, fired and removed by the exploring thread (the
main one); the deferring handler runs in it too, between two bytecodes.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from threadcheck._sched._core import active


class AlarmWhileReporting(KeyboardInterrupt):
    """The framework's alarm went off once a failure was found: it stops the
    check and the shrinking as Ctrl-C does, and the failure is reported (the
    test fails with it, not with a timeout that says nothing of it)."""


class DeferredAlarm:
    def __init__(self) -> None:
        self._original: Any = None
        self._pending: tuple[int, FrameType | None] | None = None
        self.reporting = False
        """A failure was found: what is left is checking and shrinking it."""
        self.stopped_reporting = False
        """The alarm went off while reporting (see :class:`AlarmWhileReporting`)."""

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers run in the main thread only
        handler = signal.getsignal(signal.SIGALRM)
        if callable(handler):
            self._original = handler
            signal.signal(signal.SIGALRM, self._defer)

    def uninstall(self) -> None:
        if self._original is not None:
            signal.signal(signal.SIGALRM, self._original)
            self._original = None

    def fire_if_pending(self) -> None:
        """Between schedules: the framework's handler, if its alarm went off (it
        raises, and the exploration ends)."""
        if self._pending is None or self._original is None:
            return
        pending, self._pending = self._pending, None
        handler = self._original
        self.uninstall()
        if self.reporting:
            self.stopped_reporting = True
            raise AlarmWhileReporting
        handler(*pending)

    def _defer(self, number: int, frame: FrameType | None) -> None:
        self._pending = (number, frame)
        scheduler = active()
        if scheduler is not None:
            scheduler.aborting = True  # each thread unwinds at its next point
