"""``functools.cached_property`` while exploring: its look and its fill take part.

The descriptor looks into the instance's ``__dict__``, then fills it, in the
standard library, which has no scheduling points and records no access. So
two threads that both miss and compute the value twice (3.12 and newer, where
the descriptor holds no lock) touched nothing in common that dpor could see,
and it called such a program proved. Before 3.12 the descriptor holds one real
``RLock``, made with its class: a thread held inside the getter blocked the
other outside the scheduler's control.

In controlled threads, the look is a scheduling point that reads the
attribute's location and the fill writes it, in the step that ends the
getter; before 3.12 the lock is a scheduled ``RLock``, one per descriptor and
schedule. Everywhere else the standard library's own ``__get__`` runs.

Thread safety: the replacement acts only in controlled threads, one at a time;
:func:`restart` is called by the exploring thread as a schedule starts.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import CodeType
from typing import Any

from threadcheck._races import _access, _footprint
from threadcheck._races._shadow import Site, add_site
from threadcheck._sched import _primitives
from threadcheck._sched._core import here

LOCKED = sys.version_info < (3, 12)
"""Whether this Python's cached_property computes under a lock."""

_NOT_FOUND = object()
_locks: dict[int, _primitives.RLock] = {}
"""This schedule's lock of each descriptor, by its id (descriptors outlive schedules)."""
_sites: dict[CodeType, int] = {}
"""Each getter's site (its first line), by its code (the same in every schedule)."""


def restart() -> None:
    """As a schedule starts: locks made in the last one are not used again."""
    _locks.clear()


def replacements() -> list[tuple[Any, str, Any]]:
    """(target, name, replacement) for :class:`~threadcheck._sched._patch.Patches`."""
    cached_property = functools.cached_property
    return [(cached_property, "__get__", _scheduled_get(cached_property.__get__))]


def _scheduled_get(real_get: Callable[..., Any]) -> Callable[..., Any]:
    def get(self: Any, instance: Any, owner: type | None = None) -> Any:
        name = self.attrname
        if instance is None or name is None or here() is None:
            return real_get(self, instance, owner)
        cache = getattr(instance, "__dict__", None)
        if cache is None:  # __slots__: the standard library's error
            return real_get(self, instance, owner)
        if _access.on_handover is not None:  # called here: the point names our caller
            _access.on_handover(_site_of(self), "cached_property")
        where = _footprint.location(instance, name) if _footprint.collecting else None
        if where is not None:
            _footprint.reads.add(where)
        value = cache.get(name, _NOT_FOUND)
        if value is not _NOT_FOUND:
            return value
        if not LOCKED:
            return _fill(self, instance, cache, where)
        lock = _locks.get(id(self))
        if lock is None:
            lock = _locks[id(self)] = _primitives.RLock()
        with lock:
            value = cache.get(name, _NOT_FOUND)
            return _fill(self, instance, cache, where) if value is _NOT_FOUND else value

    return get


def _fill(descriptor: Any, instance: Any, cache: dict[str, Any], where: Any) -> Any:
    """``where``: the attribute's location, when dpor collects what steps touch."""
    value = descriptor.func(instance)
    if where is not None:
        _footprint.writes.add(where)
    cache[descriptor.attrname] = value
    return value


def _site_of(descriptor: Any) -> int:
    code = descriptor.func.__code__
    site = _sites.get(code)
    if site is None:
        name = descriptor.attrname
        where = Site(code.co_filename, code.co_firstlineno, name, "attribute", name)
        site = _sites[code] = add_site(where)
    return site
