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

_State = tuple[tuple[logging.Handler, ...], int, bool, bool, tuple[Any, ...]]
_FRESH: _State = ((), logging.NOTSET, True, False, ())


def _state(logger: logging.Logger) -> _State:
    return (
        tuple(logger.handlers),
        logger.level,
        logger.propagate,
        logger.disabled,
        tuple(logger.filters),
    )


def _loggers() -> dict[str, logging.Logger]:
    """Every logger, the root included (placeholders are no loggers)."""
    loggers = {
        name: logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }
    loggers[""] = logging.getLogger()
    return loggers


class LoggingRegistry:
    """Captures logging's registry once (:meth:`capture`), puts it back after
    each schedule (:meth:`restore`)."""

    def __init__(self) -> None:
        self._states: dict[str, _State] = {}
        self._disable = logging.NOTSET
        self._logger_class: type[logging.Logger] = logging.Logger
        self._record_factory: Any = logging.LogRecord

    def capture(self) -> None:
        self._states = {name: _state(logger) for name, logger in _loggers().items()}
        self._disable = logging.Logger.manager.disable
        self._logger_class = logging.getLoggerClass()
        self._record_factory = logging.getLogRecordFactory()

    def restore(self) -> None:
        changed = {
            name: (logger, self._states.get(name, _FRESH))
            for name, logger in _loggers().items()
            if _state(logger) != self._states.get(name, _FRESH)
        }
        kept = {h for state in self._states.values() for h in state[0]}
        for logger, _ in changed.values():
            for handler in logger.handlers:
                if handler not in kept and not isinstance(handler, logging.NullHandler):
                    _close(handler)
        with _logging_lock():
            for name, (logger, (handlers, level, propagate, disabled, filters)) in changed.items():
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
        if logging.Logger.manager.disable != self._disable:
            logging.disable(self._disable)
        if logging.getLoggerClass() is not self._logger_class:
            logging.setLoggerClass(self._logger_class)
        if logging.getLogRecordFactory() is not self._record_factory:
            logging.setLogRecordFactory(self._record_factory)


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
