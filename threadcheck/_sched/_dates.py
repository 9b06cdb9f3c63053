"""``datetime.now()`` and its kin read the schedule's virtual clock while exploring.

``datetime.now()``, ``utcnow()``, ``today()`` and ``date.today()`` are C
functions that read the system clock themselves, past the swapped
``time.time``: a deadline loop on ``datetime.now()`` whose sleeps pass in
virtual time never reached its deadline, and a correct program failed as a
livelock. While exploring, the ``datetime`` module's ``datetime`` and
``date`` (and the names user modules imported) are subclasses whose clock
methods read ``time.time()``, virtual in controlled threads and real
elsewhere. Whatever they make is a real ``datetime``/``date`` (pickled,
compared and printed as ever), and ``isinstance`` against them answers for
the real classes.

Thread safety: stateless; the classes are swapped in by the exploring thread.
"""

from __future__ import annotations

import datetime
import sys
import time
import warnings
from typing import Any

_DATETIME = datetime.datetime
_DATE = datetime.date
_UTCNOW_DEPRECATED = sys.version_info >= (3, 12)


class _AnswersForTheReal(type):
    """``isinstance(x, datetime)`` holds for every real ``datetime``, as before the swap."""

    _real: type

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, cls._real)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, cls._real)


class VirtualDateTime(_DATETIME, metaclass=_AnswersForTheReal):
    _real = _DATETIME

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # The constructors (combine, strptime, fromisoformat) come here too.
        return _DATETIME(*args, **kwargs)

    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> Any:
        return _DATETIME.fromtimestamp(time.time(), tz)

    @classmethod
    def today(cls) -> Any:
        return _DATETIME.fromtimestamp(time.time())

    @classmethod
    def utcnow(cls) -> Any:
        if _UTCNOW_DEPRECATED:  # as the real one warns, at the caller's line
            warnings.warn(
                "datetime.datetime.utcnow() is deprecated and scheduled for removal in a "
                "future version. Use timezone-aware objects to represent datetimes in "
                "UTC: datetime.datetime.now(datetime.UTC).",
                DeprecationWarning,
                stacklevel=2,
            )
        return _DATETIME.fromtimestamp(time.time(), datetime.timezone.utc).replace(tzinfo=None)


class VirtualDate(_DATE, metaclass=_AnswersForTheReal):
    _real = _DATE

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _DATE(*args, **kwargs)

    @classmethod
    def today(cls) -> Any:
        return _DATE.fromtimestamp(time.time())


def replacements() -> list[tuple[Any, str, Any]]:
    return [(datetime, "datetime", VirtualDateTime), (datetime, "date", VirtualDate)]
