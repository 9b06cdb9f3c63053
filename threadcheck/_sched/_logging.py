"""The standard library's logging registry, as it was before the exploration.

A program run once configures logging once: ``basicConfig``, a handler added
to a named logger, a level set. Every schedule runs the program (or the
scenario) again in the same process, and logging's registry outlives it: the
second schedule's ``basicConfig`` would do nothing, and a handler added per
schedule would pile up, so that each record runs every earlier schedule's
handler (their code, their state) and costs more each time. After each
schedule the registry is put back as it was: handlers the schedule added are
flushed and closed, as the end of a process closes them, and taken off; the
levels, filters and flags of every logger are restored; loggers it made are
left in place (a library may hold one) but reset to a new logger's state.
A ``NullHandler`` stays: it is what a library adds as it is imported, once
per process (it stays imported), and it does nothing.

Thread safety: called by the exploring thread between schedules, when no
controlled thread runs; logging's own lock is held while the registry changes.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

_State = tuple[int, list[logging.Handler], bool, bool, list[Any]]
_FRESH: _State = (logging.NOTSET, [], True, False, [])


def _state(logger: logging.Logger) -> _State:
    return (
        logger.level,
        list(logger.handlers),
        logger.propagate,
        logger.disabled,
        list(logger.filters),
    )


def _loggers() -> list[tuple[str, logging.Logger]]:
    """Every logger, the root included (placeholders are no loggers)."""
    manager = logging.Logger.manager
    return [
        *((n, g) for n, g in manager.loggerDict.items() if isinstance(g, logging.Logger)),
        ("", manager.root),
    ]


class LoggingRegistry:
    """Captures logging's registry once (:meth:`capture`), puts it back after
    each schedule (:meth:`restore`)."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}
        self._disable = logging.NOTSET
        self._logger_class: type[logging.Logger] = logging.Logger
        self._record_factory: Any = logging.LogRecord

    def capture(self) -> None:
        self._states = {name: _state(logger) for name, logger in _loggers()}
        self._disable = logging.Logger.manager.disable
        self._logger_class = logging.getLoggerClass()
        self._record_factory = logging.getLogRecordFactory()

    def restore(self) -> None:
        # Per schedule, and a program may have a hundred loggers: compared in place.
        changed: dict[str, tuple[logging.Logger, _State]] = {}
        for name, logger in _loggers():
            state = self._states.get(name, _FRESH)
            level, handlers, propagate, disabled, filters = state
            if (
                logger.level != level
                or logger.handlers != handlers
                or logger.propagate != propagate
                or logger.disabled != disabled
                or logger.filters != filters
            ):
                changed[name] = (logger, state)
        if changed:
            self._put_back(changed)
        if logging.Logger.manager.disable != self._disable:
            logging.disable(self._disable)
        if logging.getLoggerClass() is not self._logger_class:
            logging.setLoggerClass(self._logger_class)
        if logging.getLogRecordFactory() is not self._record_factory:
            logging.setLogRecordFactory(self._record_factory)

    def _put_back(self, changed: dict[str, tuple[logging.Logger, _State]]) -> None:
        kept = {h for state in self._states.values() for h in state[1]}
        for logger, _ in changed.values():
            for handler in logger.handlers:
                if handler not in kept and not isinstance(handler, logging.NullHandler):
                    _close(handler)
        with _logging_lock():
            for name, (logger, (level, handlers, propagate, disabled, filters)) in changed.items():
                added = [h for h in logger.handlers if h not in handlers]
                logger.handlers[:] = [
                    *handlers,
                    *(h for h in added if isinstance(h, logging.NullHandler)),
                ]
                logger.setLevel(level)  # also clears the loggers' level caches
                logger.propagate = propagate
                logger.disabled = disabled
                logger.filters[:] = filters
                self._states[name] = _state(logger)


def _close(handler: logging.Handler) -> None:
    """What ``logging.shutdown`` does to a handler at a process's end."""
    with contextlib.suppress(Exception):  # the program's handler: its errors are its own
        handler.flush()
    with contextlib.suppress(Exception):
        handler.close()


@contextlib.contextmanager
def _logging_lock() -> Any:
    lock: Any = getattr(logging, "_lock", None)
    if lock is None:
        yield
        return
    with lock:
        yield
