"""Primitives the program made before the exploration, made afresh for each schedule.

A scenario's module (a test module, or one it imports) made ``_lock =
threading.Lock()`` when it was imported, before the exploration: a real lock.
A thread held inside ``with _lock:`` left the other blocked on it outside the
scheduler's control, and correct code failed as "uncontrolled-blocking" after
10 s. Those kept as a user module's globals, or as attributes of its classes,
are swapped for scheduled ones while exploring: fresh in each schedule (one
cut short may leave its lock held), in the state the original was in (an
event set, a semaphore's count), and put back afterwards. Primitives kept
elsewhere (an object a fixture made) stay real.

Thread safety: called by the exploring thread, outside schedules.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
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
            found += [
                (holder, name, value)
                for name, value in list(vars(holder).items())
                if isinstance(value, _KINDS)
            ]
    return found


def fresh(found: list[Found]) -> list[tuple[Any, str, Any]]:
    """(holder, name, scheduled twin) for each found primitive: a condition's
    lock, if found too, is its twin's lock."""
    twins: dict[int, Any] = {}
    made: list[tuple[Any, str, Any]] = []
    # Locks first: conditions made over them take their twins.
    for holder, name, real in sorted(found, key=lambda f: isinstance(f[2], threading.Condition)):
        twin = twins.get(id(real))
        if twin is None:
            twin = twins[id(real)] = _twin(real, twins)
            twin._footprint_key = ("sync", type(twin).__qualname__, _name_of(holder), name)
        made.append((holder, name, twin))
    return made


def _twin(real: Any, twins: dict[int, Any]) -> Any:
    if isinstance(real, _LOCK):
        return _primitives.Lock()
    if isinstance(real, _RLOCK):
        return _primitives.RLock()
    if isinstance(real, threading.Condition):
        lock = twins.get(id(real._lock))  # type: ignore[attr-defined]
        return _primitives.Condition(lock)
    if isinstance(real, threading.Event):
        return _set_if(_primitives.Event(), real.is_set())
    bounded = isinstance(real, threading.BoundedSemaphore)
    twin = (
        _primitives.BoundedSemaphore(real._initial_value)  # type: ignore[attr-defined]
        if bounded
        else _primitives.Semaphore()
    )
    twin._value = real._value  # type: ignore[attr-defined]  # units held now stay held
    return twin


def _set_if(event: _primitives.Event, flag: bool) -> _primitives.Event:
    if flag:
        event._flag = True
    return event


def _name_of(holder: Any) -> str:
    return holder.__name__ if isinstance(holder, ModuleType) else holder.__qualname__
