"""sqlite3 while exploring: a connection waits for another's lock in virtual time.

SQLite lets one connection write at a time. Another that wants to write waits
in C, sleeping and trying again for its connection's ``timeout`` (5 s by
default), then raises ``OperationalError: database is locked``. In a schedule
the writer is held while the other sleeps in real time: a schedule that held a
writer inside its transaction failed 5 s later with that error, where the
real program waits a few milliseconds.

While exploring, a connection made in a controlled thread has no busy timeout
of its own. A statement (or commit) that finds the database locked sleeps in
virtual time, a wait the writer can run through, and tries again, until the
connection's timeout has passed in virtual time: then it raises as SQLite
would. Elsewhere ``sqlite3.connect`` is SQLite's own.

Thread safety: the connections act in controlled threads, one at a time.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from threadcheck._sched import _primitives
from threadcheck._sched._core import here

T = TypeVar("T")

DEFAULT_TIMEOUT = 5.0
"""sqlite3.connect's own default."""
_BUSY = ("database is locked", "database table is locked")
_FIRST_PAUSE = 0.001
_LONGEST_PAUSE = 0.1


def replacements() -> list[tuple[Any, str, Any]]:
    """(target, name, replacement) for :class:`~threadcheck._sched._patch.Patches`."""
    connect = _scheduled_connect(sqlite3.connect)
    return [(sqlite3, "connect", connect), (sqlite3.dbapi2, "connect", connect)]


def _scheduled_connect(real: Callable[..., Any]) -> Callable[..., Any]:
    def connect(*args: Any, **kwargs: Any) -> Any:
        if here() is None:
            return real(*args, **kwargs)
        if len(args) > 1:
            timeout, args = args[1], (args[0], 0.0, *args[2:])
        else:
            timeout, kwargs["timeout"] = kwargs.get("timeout", DEFAULT_TIMEOUT), 0.0
        if len(args) > 5:  # a factory given by position: the program's own class
            args = (*args[:5], _waiting(args[5]), *args[6:])
        else:
            kwargs["factory"] = _waiting(kwargs.get("factory", sqlite3.Connection))
        connection = real(*args, **kwargs)
        connection._threadcheck_timeout = timeout
        return connection

    return connect


_made: dict[type, type] = {}


def _waiting(factory: type) -> type:
    """``factory`` (sqlite3.Connection or the program's subclass), waiting in the scheduler."""
    kind = _made.get(factory)
    if kind is None:
        # In the factory's module: user code's calls of its methods stay a
        # library's (points that change the connection), as SQLite's own are.
        namespace = {"__module__": factory.__module__}
        kind = _made[factory] = type(factory.__name__, (_WaitingConnection, factory), namespace)
    return kind


def _retried(connection: Any, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    timeout = getattr(connection, "_threadcheck_timeout", DEFAULT_TIMEOUT)
    deadline = time.monotonic() + timeout  # virtual: this is a controlled thread
    pause = _FIRST_PAUSE
    while True:
        try:
            return method(*args, **kwargs)
        except sqlite3.OperationalError as error:
            if str(error) not in _BUSY or time.monotonic() >= deadline:
                raise
        _primitives.sleep(pause)
        pause = min(pause * 2, _LONGEST_PAUSE)


class _WaitingCursor(sqlite3.Cursor):
    __module__ = sqlite3.Cursor.__module__  # a library's, as _waiting's connections

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return _retried(self.connection, super().execute, *args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return _retried(self.connection, super().executemany, *args, **kwargs)

    def executescript(self, *args: Any, **kwargs: Any) -> Any:
        return _retried(self.connection, super().executescript, *args, **kwargs)


class _WaitingConnection:
    """Mixed in before sqlite3.Connection (or the program's subclass)."""

    def cursor(self, factory: Any = _WaitingCursor) -> Any:
        return super().cursor(factory)  # type: ignore[misc]

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        return self.cursor().execute(*args, **kwargs)

    def executemany(self, *args: Any, **kwargs: Any) -> Any:
        return self.cursor().executemany(*args, **kwargs)

    def executescript(self, *args: Any, **kwargs: Any) -> Any:
        return self.cursor().executescript(*args, **kwargs)

    def commit(self) -> None:
        _retried(self, super().commit)  # type: ignore[misc]

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        # SQLite's own commits in C, past commit() above: as it does, a commit
        # that fails is rolled back (the database unlocked) and raised.
        if kind is not None:
            return bool(super().__exit__(kind, value, traceback))  # type: ignore[misc]
        try:
            self.commit()
        except BaseException:
            self.rollback()  # type: ignore[attr-defined]
            raise
        return False
