"""What the running step of a schedule touched: the dependence DPOR reasons with.

While :data:`collecting`, the rewritten code's access helpers (:mod:`._access`)
and the scheduler's primitives add each location they touch, and the
scheduler hands the sets to its strategy at the end of each step (see
``Scheduler.point``). Locations must name the same thing in every schedule of
an exploration, as the strategy compares steps of different schedules: so an
object is named by its type, not its address (``Account.balance`` is one
location for every account), and a synchronisation object by its type and the
line that made it. Two objects confused is a conflict too many, never one
missed: the search does more, and stays right.

A wait is not a look: a thread that blocks on a lock, a queue, an event or a
join records nothing of it in that step. The step that ends its wait records
the object, and *acquires* it: it could not have run before the release that
woke it (had that release come first, it would not have blocked, and gone on
to the same state). A condition's waiter does record its wait, since a notify
before it is lost.

Thread safety: only the thread holding the scheduler's turn runs, so the sets
need no lock; a thread outside the scheduler that runs rewritten code meanwhile
can only add conflicts.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Hashable
from typing import Any

collecting = False

reads: set[Hashable] = set()
writes: set[Hashable] = set()
acquires: set[Hashable] = set()
"""What the step was woken by: it could not have run before that release."""
releases: set[Hashable] = set()
"""The waits the step ended (it woke their threads)."""

_KEYS = (str, int, float, bytes, bool, type(None))
_OWN = os.path.dirname(os.path.dirname(__file__))  # the threadcheck package's folder


def location(obj: Any, key: Any) -> Hashable:
    """``obj``'s ``key`` (an attribute's name, a container's key, a variable's name)."""
    if key is not WHOLE and type(key) not in _KEYS:
        key = "*"  # an object as a key: every such key is one location
    return type(obj).__qualname__, key


WHOLE: Hashable = ("whole",)
"""The key of a container as a whole: its size, its order, what iterating it sees."""


def read(obj: Any, key: Any) -> None:
    reads.add(location(obj, key))


def write(obj: Any, key: Any) -> None:
    writes.add(location(obj, key))


def name_at_creation(obj: Any) -> None:
    """Name the synchronisation object ``obj`` (its ``_footprint_key``) by its type
    and, while collecting, the first line outside threadcheck that is making it."""
    if not collecting:
        obj._footprint_key = ("sync", type(obj).__qualname__)
        return
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_OWN):
        frame = frame.f_back  # type: ignore[assignment]
    where = (frame.f_code.co_filename, frame.f_lineno) if frame is not None else None
    obj._footprint_key = ("sync", type(obj).__qualname__, where)


def touch(key: Hashable) -> None:
    """A synchronisation operation (or an effect nobody sees the details of) on ``key``."""
    writes.add(key)


def looked_at(key: Hashable) -> None:
    """A synchronisation object's state read, not changed (``Event.is_set``)."""
    reads.add(key)


def take() -> tuple[frozenset[Hashable], ...]:
    """The step's (reads, writes, acquires, releases), and a fresh start for the next."""
    taken = (frozenset(reads), frozenset(writes), frozenset(acquires), frozenset(releases))
    reads.clear()
    writes.clear()
    acquires.clear()
    releases.clear()
    return taken


def clear() -> None:
    reads.clear()
    writes.clear()
    acquires.clear()
    releases.clear()
