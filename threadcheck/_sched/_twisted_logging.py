"""Twisted's global log state, as it was before the exploration.

A program that logs the Twisted way begins logging once per process:
``globalLogBeginner.beginLoggingTo([...])`` or ``log.startLogging(sys.stdout)``
adds its observers to the global publisher, points ``sys.stdout`` and
``sys.stderr`` at the log, and routes warnings there. Every schedule runs the
program again in one process: without a reset, each schedule's observers
would pile up (each event runs every earlier schedule's observer, and a
replay in a fresh process would diverge from its recording), the second
schedule's ``beginLoggingTo`` would log the first one's redirected
``sys.stdout`` into itself, and threadcheck's own report would be written into
the program's log. After each schedule this state is put back as it was.

Until a program begins logging, Twisted prints critical events on stderr and
buffers every event, to replay them to the observers logging begins with.
While exploring, the echo is off (each schedule's unhandled errors would be
printed before the report, which already says what failed), and each schedule
buffers into a buffer of its own: its observers get what it logged before, as
in a fresh process, never what the process logged before the exploration (an
earlier test's errors, which would fail the schedule).

Thread safety: called by the exploring thread between schedules, when no
controlled thread runs.
"""

from __future__ import annotations

import contextlib
import io
import sys
import warnings
from typing import Any


class TwistedLogging:
    """:meth:`capture` once before exploring, :meth:`restore` after each
    schedule, :meth:`release` at the end."""

    def __init__(self) -> None:
        self._echo: Any = None
        self._buffer: Any = None
        self._observers: list[Any] = []
        self._legacy: list[Any] = []
        self._begun: tuple[Any, Any] = (None, ("", 0))
        self._streams: tuple[Any, Any] = (sys.stdout, sys.stderr)
        self._showwarning: Any = warnings.showwarning

    def capture(self) -> None:
        from twisted.logger import globalLogBeginner, globalLogPublisher

        _quiet_aborted_deferreds()
        self._echo = getattr(globalLogBeginner, "_temporaryObserver", None)
        self._buffer = getattr(globalLogBeginner, "_initialBuffer", None)
        if self._echo is not None:
            globalLogPublisher.removeObserver(self._echo)
        self._observers = list(_observers(globalLogPublisher))
        self._legacy = list(_legacy_observers())
        self._begun = (self._echo, getattr(globalLogBeginner, "_previousBegin", ("", 0)))
        self._streams = (sys.stdout, sys.stderr)
        self._showwarning = warnings.showwarning
        self._buffer_for_next()

    def restore(self) -> None:
        self._put_back()
        self._buffer_for_next()

    def release(self) -> None:
        """As before the exploration, the echo on stderr included."""
        from twisted.logger import globalLogBeginner, globalLogPublisher

        self._put_back()
        if self._echo is not None:
            globalLogBeginner._initialBuffer = self._buffer
            globalLogPublisher.addObserver(self._echo)

    def _buffer_for_next(self) -> None:
        """Until the next schedule begins logging, its events go to a buffer of its own."""
        from twisted.logger import LimitedHistoryLogObserver, globalLogBeginner, globalLogPublisher

        if self._echo is None:
            return  # logging began before the exploration: nothing buffers
        buffer: Any = LimitedHistoryLogObserver()  # an observer, though not declared one
        globalLogBeginner._initialBuffer = buffer
        globalLogBeginner._temporaryObserver = buffer
        globalLogPublisher.addObserver(buffer)

    def _put_back(self) -> None:
        from twisted.logger import globalLogBeginner, globalLogPublisher

        observers = _observers(globalLogPublisher)
        if observers != self._observers:
            observers[:] = self._observers
        legacy = _legacy_observers()
        if legacy != self._legacy:
            legacy[:] = self._legacy
        if hasattr(globalLogBeginner, "_temporaryObserver"):
            globalLogBeginner._temporaryObserver, globalLogBeginner._previousBegin = self._begun
        if (sys.stdout, sys.stderr) != self._streams:
            for theirs in (sys.stdout, sys.stderr):
                _let_go(theirs, self._streams)
            sys.stdout, sys.stderr = self._streams
        if warnings.showwarning is not self._showwarning:
            warnings.showwarning = self._showwarning


def _let_go(stream: Any, ours: tuple[Any, Any]) -> None:
    """A stream the program made over one of ours (``sys.stdout =
    io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8")``), flushed and
    detached: collected, it closed our buffer, and every later schedule's
    output failed (I/O operation on closed file)."""
    if stream in ours or not isinstance(stream, io.TextIOWrapper):
        return
    buffers = {id(getattr(s, "buffer", None)) for s in (*ours, sys.__stdout__, sys.__stderr__)}
    with contextlib.suppress(Exception):  # already detached, closed, or not ours
        if id(stream.buffer) in buffers:
            stream.flush()
            stream.detach()


def _observers(publisher: Any) -> list[Any]:
    observers: list[Any] = getattr(publisher, "_observers", [])  # Twisted's, since 15.2
    return observers


def _legacy_observers() -> list[Any]:
    """What ``twisted.python.log.addObserver`` keeps of the observers it wrapped."""
    from twisted.python import log

    legacy: list[Any] = getattr(log.theLogPublisher, "_legacyObservers", [])
    return legacy


def _quiet_aborted_deferreds() -> None:
    """A Deferred that an :class:`Abort` failed (a schedule's end, unwinding its
    callbacks) holds no error of the program's. Collected after the exploration
    (a ReplayDivergenceError's traceback held it), it logged "Unhandled error in
    Deferred" at the program's exit: Twisted's check skips it, for good (such
    Deferreds may outlive any exploration)."""
    from twisted.internet.defer import DebugInfo

    from threadcheck._sched._core import Abort

    original = DebugInfo.__del__
    if getattr(original, "quiet_aborted", False):
        return

    def collected(self: DebugInfo) -> None:
        failure = self.failResult
        if failure is not None and isinstance(failure.value, Abort):
            return
        original(self)

    collected.quiet_aborted = True  # type: ignore[attr-defined]
    DebugInfo.__del__ = collected  # type: ignore[method-assign]
