"""Primitives the program made before the exploration, made afresh for each schedule.

A scenario's module (a test module, or one it imports) made ``_lock =
threading.Lock()`` when it was imported, before the exploration: a real lock.
A thread held inside ``with _lock:`` left the other blocked on it outside the
scheduler's control, and correct code failed as "uncontrolled-blocking" after
10 s. Those kept as a user module's globals, or as attributes of its classes,
are swapped for scheduled ones while exploring: fresh in each schedule (one
cut short may leave its lock held), in the state the original was in (an
event set, a semaphore's count), and put back afterwards. Primitives kept
elsewhere (an object a fixture made), or bound elsewhere too (a default
argument, the lock of a Condition), stay real: swapped in one place only,
they would be two, excluding nothing between them.

Thread safety: called by the exploring thread, outside schedules.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from threadcheck._sched import _primitives

Found = tuple[Any, str, Any]
"""(holder, name, the real primitive): a module's global or a class's attribute."""

_LOCK = type(threading.Lock())
_RLOCK = type(threading.RLock())
_KINDS = (_LOCK, _RLOCK, threading.Condition, threading.Event, threading.Semaphore)
"""Real primitives' types, taken before any exploration swaps the names
(BoundedSemaphore is a Semaphore)."""


def find(modules: Iterable[ModuleType]) -> list[Found]:
    """The real primitives kept by ``modules`` and by the classes they define."""
    found: list[Found] = []
    for module in modules:
        holders: list[Any] = [module]
        holders += [
            value
            for value in vars(module).values()
            if isinstance(value, type) and value.__module__ == module.__name__
        ]
        for holder in holders:
            namespace = vars(holder)
            found += [
                (holder, name, namespace[name])
                for name in list(namespace)
                if isinstance(namespace[name], _KINDS) and _swappable(namespace, name)
            ]
    return found


def _swappable(namespace: Mapping[str, Any], name: str) -> bool:
    """Whether ``namespace`` alone holds the primitive, which is then swapped
    whole. One bound elsewhere too (a default argument, an object's attribute,
    the lock a Condition was made over) would be two once swapped, and exclude
    nothing between the two: it stays real, as does a Condition over a lock of
    its caller's."""
    if _references(namespace, name) > _alone(type(namespace)):  # counted before any local
        return False
    value = namespace[name]
    return not isinstance(value, threading.Condition) or _own_lock(value)


def _own_lock(condition: Any) -> bool:
    # Its own: referenced by the condition and the lock's methods it binds.
    kind: type = type(condition._lock)
    return sys.getrefcount(condition._lock) <= _alone_in_a_condition(kind)


def _references(namespace: Mapping[str, Any], name: str) -> int:
    return sys.getrefcount(namespace[name])


@functools.cache
def _alone(kind: type) -> int:
    """The references to a lock a namespace of ``kind`` alone holds, as counted here."""
    lock = threading.Lock()
    namespace = vars(type("Probe", (), {"x": lock})) if kind is not dict else {"x": lock}
    del lock
    return _references(namespace, "x")


@functools.cache
def _alone_in_a_condition(kind: type) -> int:
    """The references to a lock of ``kind`` a Condition made over it alone holds."""
    make: Any = {_LOCK: threading.Lock, _RLOCK: threading.RLock}.get(kind)
    if make is None:
        return 0  # a lock of another kind: not one a Condition makes
    condition: Any = threading.Condition(make())
    return sys.getrefcount(condition._lock)


def fresh(found: list[Found]) -> list[tuple[Any, str, Any]]:
    """(holder, name, scheduled twin) for each found primitive."""
    made: list[tuple[Any, str, Any]] = []
    for holder, name, real in found:
        twin = _twin(real)
        twin._footprint_key = ("sync", type(twin).__qualname__, _name_of(holder), name)
        made.append((holder, name, twin))
    return made


def _twin(real: Any) -> Any:
    if isinstance(real, _LOCK):
        return _primitives.Lock()
    if isinstance(real, _RLOCK):
        return _primitives.RLock()
    if isinstance(real, threading.Condition):
        return _primitives.Condition()  # over a lock of its own, as the original
    if isinstance(real, threading.Event):
        event = _primitives.Event()
        event._flag = real.is_set()
        return event
    bounded = isinstance(real, threading.BoundedSemaphore)
    twin = (
        _primitives.BoundedSemaphore(real._initial_value)  # type: ignore[attr-defined]
        if bounded
        else _primitives.Semaphore()
    )
    twin._value = real._value  # type: ignore[attr-defined]  # units held now stay held
    return twin


def _name_of(holder: Any) -> str:
    return holder.__name__ if isinstance(holder, ModuleType) else holder.__qualname__
