"""Our trace function beside another one (coverage's, a debugger's), 3.10 and 3.11.

A thread has one ``sys.settrace`` function. Ours replaced coverage's in every
controlled thread, so the lines a schedule ran were never counted (a suite's
coverage fell from 100 % to 45 % once a test was explored), and a stress run
left new threads untraced for the rest of the session. A chained trace
function hands every event to the other one first, then to ours:

* coverage's C tracer reinstalls itself at each call (its faster C entry):
  ours is set again at once, and the object it installed is the one to call;
* coverage gets its lines in a frame whose instructions we trace (opcode events
  are ours alone), and its returns in every frame, which keep its per-frame
  stack balanced;
* where ours raises (:class:`~threadcheck._sched._core.Abort` tearing a schedule
  down), CPython drops both: the other one is remembered per OS thread, for
  when the thread is traced again.

Thread safety: a chained function is made for, and called by, one thread; the
per-thread memory is a dict written only by the thread whose ident keys it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from threading import get_ident
from types import FrameType
from typing import Any

from threadcheck import _stacks
from threadcheck._sched._core import without_points

Tracer = Callable[..., Any]

_CHAINED = "__threadcheck_chained__"

settrace = sys.settrace
gettrace = sys.gettrace
"""The real ones: while we trace, the program's ``sys.settrace`` goes through
:class:`~threadcheck._sched._points._Tracing`, which chains it with ours (3.10
and 3.11), or ``_points._program_settrace`` where we set none (``sys.monitoring``
on 3.12 and later, ``sync`` granularity): both keep a function the program's
own code sets from threadcheck's frames (:func:`without_ours`)."""


def without_ours(theirs: Tracer) -> Tracer:
    """The program's trace function (a profiler's, pdb's, the ``trace``
    module's), not called for threadcheck's own frames: it counted our calls,
    and its code's scheduling points, taken inside the scheduler's own, broke
    its bookkeeping (an internal error)."""
    if hasattr(theirs, "__threadcheck_filters__"):
        return theirs

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if _ours(frame) or _called_by_ours(frame):
            return None
        return _held(theirs)(frame, event, arg)

    tracer.__threadcheck_filters__ = theirs  # type: ignore[attr-defined]
    return tracer


def _held(trace: Tracer) -> Tracer:
    """``trace`` (and the local functions it returns) taking no thread switch: a
    trace function runs between two of the program's steps, not as one."""
    call = without_points(trace)

    def held(frame: FrameType, event: str, arg: Any) -> Any:
        local = call(frame, event, arg)
        return None if local is None else held if local is trace else _held(local)

    return held


def _ours(frame: FrameType) -> bool:
    filename = frame.f_code.co_filename
    return filename.startswith("<threadcheck") or _stacks.classify(filename) == "threadcheck"


def _called_by_ours(frame: FrameType) -> bool:
    """Whether ``frame``, of library code (the standard library's, a dataclass's
    ``__init__``), runs for threadcheck's code: called by it, or by library code
    it called. The program's own frames are the program's, whoever calls them."""
    if _programs(frame):
        return False
    caller = frame.f_back
    while caller is not None:
        if _ours(caller):
            return True
        if _programs(caller):
            return False
        caller = caller.f_back
    return False


def _programs(frame: FrameType) -> bool:
    """A frame of the program's files (not code made from text: a dataclass's
    ``__init__`` is whoever's made the class)."""
    filename = frame.f_code.co_filename
    return not filename.startswith("<") and _stacks.classify(filename) is None


def set_by_program(caller: FrameType) -> bool:
    """Whether ``sys.settrace`` was called by the program's own code: a
    library's tracer (coverage's, which installs its C tracer from it) is
    left as it is."""
    return _programs(caller)


def unfiltered(tracer: Any) -> Any:
    """What :func:`without_ours` was given: what the program set."""
    return getattr(tracer, "__threadcheck_filters__", tracer)


def is_chained(tracer: object) -> bool:
    return getattr(tracer, _CHAINED, False)


def chained(ours: Tracer, theirs: Tracer, remembered: dict[int, Tracer]) -> Tracer:
    """The global trace function of this thread: ``theirs``, then ``ours``."""
    ident = get_ident()
    remembered[ident] = theirs
    other = [theirs]

    def on_call(frame: FrameType, event: str, arg: Any) -> Any:
        their_local = other[0](frame, event, arg)
        now = gettrace()
        if now is not on_call:  # it installed itself (or its per-thread tracer)
            if now is not None:
                other[0] = remembered[ident] = now
            settrace(on_call)
        our_local = ours(frame, event, arg)
        if our_local is None or their_local is None:
            return our_local if their_local is None else their_local
        frame.f_trace_lines = True  # theirs counts lines; opcode events stay ours
        return _both(their_local, our_local)

    setattr(on_call, _CHAINED, True)
    return on_call


def _both(theirs: Tracer, ours: Tracer) -> Tracer:
    """One frame's local trace function: theirs first, so that it sees every
    event even when ours raises. Each returns the function for the frame's next
    events; None keeps the one it has, as CPython does with a frame's own."""

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal theirs, ours
        if event != "opcode":
            theirs = theirs(frame, event, arg) or theirs
        ours = ours(frame, event, arg) or ours
        return local

    return local


def chained_hook(ours: Tracer, hook: Tracer, remembered: dict[int, Tracer]) -> Tracer:
    """For ``threading.settrace``: each new thread gets its own chained function,
    over the other one's hook (coverage's, which makes that thread's tracer)."""

    def first_call(frame: FrameType, event: str, arg: Any) -> Any:
        tracer = chained(ours, hook, remembered)
        settrace(tracer)
        return tracer(frame, event, arg)

    return first_call
