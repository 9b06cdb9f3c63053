"""Vector clocks: each thread's, and the snapshots that carry one thread's
past to another along a synchronisation edge.

A thread's clock ``vc`` maps thread numbers (``tid``, never reused, unlike
idents) to the last step of that thread it has seen; its own entry is
``clock``. An access made at ``(tid, clock)`` happens before thread ``T``'s
present iff ``clock <= T.vc.get(tid, 0)``.

Thread safety: a thread reads and writes only its own :class:`ThreadClock`;
:func:`send` snapshots are immutable once made. The registry of clocks by
ident is a dict (single operations, safe under the GIL and free-threaded).
"""

from __future__ import annotations

import itertools
import threading
from _thread import get_ident
from typing import Any

VectorClock = dict[int, int]

_numbers = itertools.count(1)


class ThreadClock:
    """One thread's place in happens-before order."""

    __slots__ = (
        "clock",
        "frame_key",
        "frame_stack",
        "frame_submission",
        "frame_submission_at",
        "ident",
        "thread",
        "tid",
        "vc",
    )

    def __init__(self, thread: threading.Thread | None, inherited: VectorClock | None) -> None:
        self.tid = next(_numbers)  # itertools.count is atomic under the GIL
        self.vc: VectorClock = dict(inherited) if inherited else {}
        self.clock = self.vc[self.tid] = 1
        self.thread = thread
        self.ident = get_ident()
        # The stack last captured in this thread, outside the accessing frame,
        # and where its innermost frame was (see _shadow._outer).
        self.frame_key: tuple[int, object, int] | None = None
        self.frame_stack: tuple[Any, ...] = ()
        self.frame_submission: tuple[Any, ...] | None = None
        self.frame_submission_at: int | None = None
        """How many frames out from that innermost one the job's frame was."""

    def tick(self) -> None:
        self.clock += 1
        self.vc[self.tid] = self.clock


_ACTIVE: dict[int, threading.Thread] = getattr(threading, "_active", {})
"""threading's own record of the threads it knows, by ident."""

clocks: dict[int, ThreadClock] = {}
"""The clock of each live thread, by ident (a thread's start replaces a dead
one's with the same ident)."""


def current() -> ThreadClock:
    """The calling thread's clock; a thread not started under the detector
    (the main thread, one started before) gets one with no past."""
    clock = clocks.get(get_ident())
    if clock is None:
        # Not threading.current_thread(): for a thread threading did not start,
        # it makes a dummy Thread, whose Event's lock would come back here.
        clock = clocks[get_ident()] = ThreadClock(_ACTIVE.get(get_ident()), None)
    return clock


tracking = False
"""Off, hand-offs carry nothing (tracked locks made while detecting live on)."""


def send() -> VectorClock | None:
    """What the calling thread has done so far, for whoever receives it next;
    later steps of this thread are not part of it."""
    if not tracking:
        return None
    clock = current()
    snapshot = dict(clock.vc)
    clock.tick()
    return snapshot


def receive(snapshot: VectorClock | None) -> None:
    """Everything ``snapshot`` saw now happens before the calling thread's next step."""
    if not snapshot:
        return
    vc = current().vc
    for tid, step in snapshot.items():
        if vc.get(tid, 0) < step:
            vc[tid] = step


def merge(into: VectorClock | None, snapshot: VectorClock | None) -> VectorClock | None:
    """What both saw: for a hand-off several threads send through (an event set
    twice, a semaphore released by two)."""
    if not snapshot:
        return into
    if not into:
        return snapshot
    merged = dict(into)
    for tid, step in snapshot.items():
        if merged.get(tid, 0) < step:
            merged[tid] = step
    return merged


imported: dict[str, VectorClock] = {}
"""Each rewritten module's end of import, by name: another thread's import of
it that finds it done receives it (the import lock orders them)."""


def module_imported(name: str) -> None:
    """The calling thread ran module ``name``'s code to its end."""
    snapshot = send()
    if snapshot is not None:
        imported[name] = snapshot


def begin_thread(thread: threading.Thread | None, inherited: VectorClock | None) -> None:
    """The calling thread starts: what its starter did before ``start()`` happened before."""
    clocks[get_ident()] = ThreadClock(thread, inherited)


def end_thread() -> VectorClock | None:
    """The calling thread ends: its final snapshot, for whoever joins it."""
    snapshot = send()
    clocks.pop(get_ident(), None)
    return snapshot


def reset() -> None:
    clocks.clear()
    imported.clear()


def run_received(
    snapshot: VectorClock, f: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Call ``f`` once ``snapshot`` is received: for hand-offs that carry a
    callable to another thread (``callFromThread``, a thread pool's job)."""
    receive(snapshot)
    return f(*args, **kwargs)
