"""What a program's threads did, for ``threadcheck run --trace``: the reactor's
callbacks, the thread pools' jobs, and the hand-offs between threads.

Core layer: a recorder the reactor package's wrappers report to
(:mod:`threadcheck_reactor._activity`), and the drivers turn into a trace.
Off unless a trace was asked for: nothing here runs otherwise.

Thread safety: :meth:`Activity.submit` and :meth:`Activity.run` are called in
any thread; each appends to one list (atomic under the GIL) and reads a
shared counter (``itertools.count``, atomic too).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_LIMIT = 200_000
"""Events kept; later ones are counted, not kept (a long program stays bounded)."""


@dataclass(frozen=True, slots=True)
class Event:
    kind: str
    """``submit``: work handed on, in the thread that handed it; ``run``: the work
    running, in the thread that ran it."""
    flow: int
    """Pairs a submission with its run."""
    what: str
    """``callFromThread``, ``callInThread`` or ``callLater``, and the callable."""
    thread: int
    thread_name: str
    start_ns: int
    duration_ns: int = 0


class Activity:
    def __init__(
        self, limit: int = DEFAULT_LIMIT, clock: Callable[[], int] = time.perf_counter_ns
    ) -> None:
        self.events: list[Event] = []
        self.dropped = 0
        self.limit = limit
        self.started_ns = clock()
        self._clock = clock
        self._flows = itertools.count(1)

    def submit(self, how: str, work: Callable[..., Any]) -> Callable[..., Any]:
        """``work`` handed on from this thread: what to hand on instead, which
        records its run."""
        flow = next(self._flows)
        what = f"{how} {_name_of(work)}"
        self._add(Event("submit", flow, what, *_thread(), self._clock()))
        return _Traced(self, flow, what, work)

    def _add(self, event: Event) -> None:
        if len(self.events) < self.limit:
            self.events.append(event)
        else:
            self.dropped += 1


class _Traced:
    """``work``, recording its run; looks like ``work`` to whoever inspects it
    (the reactor's check for ``blockingCallFromThread`` reads ``__code__``)."""

    def __init__(self, activity: Activity, flow: int, what: str, work: Callable[..., Any]):
        self._activity = activity
        self._flow = flow
        self._what = what
        self._work = work

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        activity = self._activity
        start = activity._clock()
        try:
            return self._work(*args, **kwargs)
        finally:
            end = activity._clock()
            event = Event("run", self._flow, self._what, *_thread(), start, end - start)
            activity._add(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._work, name)


def _thread() -> tuple[int, str]:
    return threading.get_ident(), threading.current_thread().name


def _name_of(work: Callable[..., Any]) -> str:
    name = getattr(work, "__qualname__", None) or getattr(work, "__name__", None)
    if not name:
        return type(work).__name__
    return str(name).rpartition(".<locals>.")[2]  # Shout.answer, not main.<locals>.Shout.answer
