"""Where a thread was started, and which stack submitted the work it runs.

Both are recorded eagerly (the stacks are gone later) but cheaply, as
``(file, line, function)`` triples; they are only read when a violation is
reported.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import CodeType, FrameType, TracebackType
from typing import Any, TypeVar

from threadcheck import _stacks

_R = TypeVar("_R")

_SPAWN_ATTR = "_threadcheck_spawn_site"
_MADE_ATTR = "_threadcheck_made_at"
_MADE_DEPTH = 4
"""Frames kept of the stack that made a thread: through ``Timer.__init__`` to the user's line."""
_PARENT_ATTR = "_threadcheck_started_by"
_START_ATTR = "_threadcheck_start_number"
_starts = 0
"""Threads started since tracking began: a clock for "before or after that start"."""
start_listeners: list[Callable[[int], None]] = []
"""Called in the starting thread with the start's number, before the thread runs."""
_original_start: Callable[[threading.Thread], None] | None = None
_patch_lock = threading.Lock()
_DURING_ATTR = "_threadcheck_started_during"
started_during: Callable[[], object] | None = None
"""What is running as a thread starts (a test runner's current test), kept on
the thread: a thread that outlives its test is not charged to the next one."""


def track_thread_starts() -> None:
    """Record the stack that starts each ``threading.Thread`` from now on.

    Process-wide and idempotent; undone by :func:`stop_tracking_thread_starts`.
    """
    global _original_start
    with _patch_lock:
        if _original_start is not None:
            return
        original = threading.Thread.start
        _original_start = original

        def start(self: threading.Thread) -> None:
            global _starts
            setattr(self, _SPAWN_ATTR, _stacks.capture_raw(skip=1))
            # Weakly: a Timer that starts the next would keep every earlier one.
            setattr(self, _PARENT_ATTR, weakref.ref(threading.current_thread()))
            with _patch_lock:
                _starts += 1
                number = _starts
            setattr(self, _START_ATTR, number)
            if started_during is not None:
                setattr(self, _DURING_ATTR, started_during())
            for listener in start_listeners:
                listener(number)
            original(self)

        start.__doc__ = original.__doc__
        threading.Thread.start = start  # type: ignore[method-assign,assignment]
        _track_thread_making()
        _track_executor_submissions()


def _track_thread_making() -> None:
    """Each thread keeps the few frames that made it: a thread given a library
    callable (``Timer(5, d.cancel)``) was handed it there, maybe lines before
    its ``start()``."""
    original: Any = threading.Thread.__init__
    _undo.append((threading.Thread, "__init__", original))

    @functools.wraps(original)
    def making(self: threading.Thread, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        setattr(self, _MADE_ATTR, _stacks.capture_raw(skip=1, limit=_MADE_DEPTH))

    threading.Thread.__init__ = making  # type: ignore[method-assign]


def _track_executor_submissions() -> None:
    """Each job a ``ThreadPoolExecutor`` is given (``submit``, ``map``) keeps the
    stack that submitted it, found by :func:`submission_on` in the frame that
    runs it: a job's violation names the line that submitted it. Its function
    runs as before: no frame of ours in its tracebacks."""
    global _WORK_ITEM_RUN
    from concurrent.futures import thread

    work_item: Any = thread._WorkItem  # type: ignore[attr-defined]
    original = work_item.__init__
    _undo.append((work_item, "__init__", original))
    _WORK_ITEM_RUN = work_item.run.__code__

    def remembering(self: Any, future: Any, fn: Any, args: Any, kwargs: Any) -> None:
        original(self, future, fn, args, kwargs)
        self._threadcheck_submission = _stacks.capture_raw(skip=1)

    work_item.__init__ = remembering


_WORK_ITEM_RUN: CodeType | None = None
"""``concurrent.futures``' ``_WorkItem.run``, once tracked: its ``self`` knows who submitted it."""


_undo: list[tuple[Any, str, Any]] = []


def stop_tracking_thread_starts() -> None:
    global _original_start
    with _patch_lock:
        if _original_start is not None:
            threading.Thread.start = _original_start  # type: ignore[method-assign,assignment]
            _original_start = None
        while _undo:
            owner, name, original = _undo.pop()
            setattr(owner, name, original)


def starts_so_far() -> int:
    return _starts


def start_number(thread: threading.Thread) -> int | None:
    """When ``thread`` was started (see :func:`starts_so_far`); None if untracked."""
    number: int | None = getattr(thread, _START_ATTR, None)
    return number


def started_in(thread: threading.Thread) -> object | None:
    """What :data:`started_during` said as ``thread`` started; None if nothing."""
    return getattr(thread, _DURING_ATTR, None)


def runs_its_own_code(thread: threading.Thread) -> bool:
    """Whether ``thread`` runs user code of its own (its target, or its class's
    ``run``), not a pool's loop running work that others hand it."""
    run = (
        getattr(thread, "_target", None)
        or (thread.function if isinstance(thread, threading.Timer) else None)
        or getattr(type(thread), "run", None)
    )
    code = _code_of(run)
    return code is not None and _stacks.is_user_code(code.co_filename)


def _code_of(function: object) -> CodeType | None:
    """The code a callable runs: through ``functools.partial`` (and its kind), a
    bound method, an object's ``__call__``."""
    for _ in range(8):  # a partial of a partial...
        inner = getattr(function, "func", None)
        if inner is None or not callable(inner):
            break
        function = inner
    code = getattr(function, "__code__", None)
    if code is None and callable(function):
        code = getattr(type(function).__call__, "__code__", None)
    return code if isinstance(code, CodeType) else None


def join_outliving(timeout: float) -> None:
    """Wait up to ``timeout`` seconds in all for the non-daemon threads started
    during something (a test) that run their own code to end, as the
    interpreter's exit would wait for them: what they do before they end is
    then not lost. (Not a pool's idle workers: they wait for work, not to end.)"""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        if started_in(thread) is not None and runs_its_own_code(thread):
            thread.join(max(0.0, deadline - time.monotonic()))


def spawn_site(thread: threading.Thread) -> _stacks.Stack | None:
    """The stack that started ``thread``; None if it started before tracking. A
    thread a library started for it (a ``socketserver`` server's handler each)
    has no frame of the program's: the site of the thread that started it
    comes first, back to one of the program's (its ``server_thread.start()``)."""
    raw: _stacks.RawStack | None = getattr(thread, _SPAWN_ATTR, None)
    if raw is None:
        return None
    stack = _stacks.materialize(raw)
    handed = _handed_at(thread, stack)
    if handed is not None:
        return handed
    started_by = getattr(thread, _PARENT_ATTR, None)
    parent = started_by() if started_by is not None else None
    if parent is None or parent is thread or any(f.library is None for f in stack):
        return stack
    return (spawn_site(parent) or ()) + stack


def _handed_at(thread: threading.Thread, started: _stacks.Stack) -> _stacks.Stack | None:
    """Where ``thread`` was made, for a thread given a library callable by a
    user's line other than the one that started it; else None."""
    made: _stacks.RawStack | None = getattr(thread, _MADE_ATTR, None)
    given = getattr(thread, "_target", None) is not None or isinstance(thread, threading.Timer)
    if made is None or not given or runs_its_own_code(thread):
        return None
    stack = _stacks.materialize(made)
    user = _stacks.innermost_user_frame(stack)
    if user is None or user == _stacks.innermost_user_frame(started):
        return None
    return stack


def current_submission() -> _stacks.Stack | None:
    """The stack that submitted the work this thread is running, if known:
    found in the innermost :func:`run_submitted` frame on this thread's stack
    (read only when something is reported, so submitting stays cheap)."""
    return submission_on(sys._getframe(1))


def submission_on(frame: FrameType | None) -> _stacks.Stack | None:
    """The submitting stack of the work running in the stack ending in ``frame``."""
    while frame is not None:
        if frame.f_code is _RUN_SUBMITTED or frame.f_code is _WORK_ITEM_RUN:
            raw = submission_in(frame)
            return None if raw is None else _stacks.materialize(raw)
        frame = frame.f_back
    return None


def submission_in(frame: FrameType) -> _stacks.RawStack | None:
    """The submitting stack ``frame`` keeps, if it runs submitted work: a pool's
    job (:func:`run_submitted`) or an executor's (``_WorkItem.run``)."""
    code = frame.f_code
    if code is _RUN_SUBMITTED:
        raw: _stacks.RawStack = frame.f_locals["submission"]
        return raw
    if code is _WORK_ITEM_RUN:
        return getattr(frame.f_locals.get("self"), "_threadcheck_submission", None)
    return None


def run_submitted(
    submission: _stacks.RawStack, func: Callable[..., _R], /, *args: Any, **kwargs: Any
) -> _R:
    """Run ``func``; ``submission``, a local here, is what :func:`current_submission` finds."""
    __tracebackhide__ = True
    return func(*args, **kwargs)


_RUN_SUBMITTED = run_submitted.__code__


def runs_submitted_work(traceback: TracebackType | None) -> bool:
    """Whether ``traceback`` passes through work that :func:`run_submitted` ran
    (a thread-pool job)."""
    while traceback is not None:
        if traceback.tb_frame.f_code is _RUN_SUBMITTED:
            return True
        traceback = traceback.tb_next
    return False
