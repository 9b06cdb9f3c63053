"""``datetime.now()`` and ``utcnow()`` read the schedule's virtual clock while exploring.

They are C functions that read the system clock themselves, past the swapped
``time.time``: a deadline loop on ``datetime.now()`` whose sleeps pass in
virtual time never reached its deadline, and a correct program failed as a
livelock. While exploring, the real ``datetime`` class's ``now`` and
``utcnow`` are replaced *in the class* (:func:`set_in_type`): ``datetime.datetime``
and ``datetime.date`` stay the real classes, so identity, pickling, a program's
subclasses and tables keyed by the class (YAML's representers) hold as ever,
and a library that imported them by name reads the same clock. ``today()``
and ``date.today()`` need nothing: their C code calls ``time.time()``.

Thread safety: stateless; swapped in by the exploring thread.
"""

from __future__ import annotations

import ctypes
import datetime
import gc
import sys
import time
import warnings
from typing import Any

_DATETIME = datetime.datetime
_UTCNOW_DEPRECATED = sys.version_info >= (3, 12)


def _now(cls: type[datetime.datetime], tz: datetime.tzinfo | None = None) -> Any:
    return _made_as(cls, _DATETIME.fromtimestamp(time.time(), tz))


def _made_as(cls: type[datetime.datetime], made: datetime.datetime) -> Any:
    """``made`` as ``cls`` makes it, as the C code does for a subclass: through
    its constructor, never its own ``fromtimestamp`` (which may take other
    arguments)."""
    if cls is _DATETIME:
        return made
    fields = (made.year, made.month, made.day, made.hour, made.minute, made.second)
    return cls(*fields, made.microsecond, made.tzinfo, fold=made.fold)


def _utcnow(cls: type[datetime.datetime]) -> Any:
    if _UTCNOW_DEPRECATED:  # as the real one warns, at the caller's line
        warnings.warn(
            "datetime.datetime.utcnow() is deprecated and scheduled for removal in a "
            "future version. Use timezone-aware objects to represent datetimes in "
            "UTC: datetime.datetime.now(datetime.UTC).",
            DeprecationWarning,
            stacklevel=2,
        )
    utc = _DATETIME.fromtimestamp(time.time(), datetime.timezone.utc)
    return _made_as(cls, utc.replace(tzinfo=None))


def replacements() -> list[tuple[Any, str, Any]]:
    return [(_DATETIME, "now", classmethod(_now)), (_DATETIME, "utcnow", classmethod(_utcnow))]


def set_in_type(cls: type, name: str, value: Any, *, delete: bool = False) -> None:
    """``cls.name = value`` (``del cls.name`` with ``delete``) for a C type that
    refuses it (``datetime``'s): written into the type's own dict, then its
    attribute caches are told (``PyType_Modified``)."""
    [namespace] = gc.get_referents(cls.__dict__)  # the dict behind the mappingproxy
    if delete:
        del namespace[name]
    else:
        namespace[name] = value
    ctypes.pythonapi.PyType_Modified(ctypes.py_object(cls))
