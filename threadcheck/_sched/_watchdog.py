"""The wall-clock watchdog: a thread that blocked outside the scheduler's control.

A real socket, a C call, a lock made before exploring: the running thread
passes no scheduling point for ``timeout`` wall seconds. That schedule fails
("uncontrolled-blocking", with where the thread is blocked), the exploration
stops there, and the process does not hang on the blocked thread at exit:

* a worker thread is abandoned (it stays blocked; the others are torn down);
* the exploring thread itself (T0: the reactor thread of a scenario, the main
  thread of a program), when it is the main thread, is interrupted by a
  signal whose handler raises :class:`Abort` in it: blocking system calls
  return (Python runs handlers while it retries them);
* a thread that cannot be interrupted ends the process, with one line, as the
  last resort (outside pytest; inside, the test fails once the call returns).

Thread safety: the watchdog thread only reads the scheduler's progress counter
until it decides a thread is stuck; then it takes the turn as
:meth:`Scheduler.rescue` describes, or signals the main thread.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import replace
from types import FrameType
from typing import Any

from threadcheck import _hidden, _stacks
from threadcheck._races import _rewrite
from threadcheck._sched._children import kill_waited_children
from threadcheck._sched._core import (
    BLOCKED,
    UNCONTROLLED_NOTED,
    Abort,
    ControlledThread,
    Failure,
    Scheduler,
    blocked_at,
    stack_of,
)
from threadcheck._sched._progress import exit_now, stop_requested

BUSY_LIMIT = 6
"""Times the watchdog's wait a thread may spend on a CPU running Python code
without a scheduling point before it is taken for stuck all the same (spinning
on a real lock). CPU time, not wall time: a loaded machine (a CI runner) slows
a long batch job's clock, not the CPU the job takes."""
HURRIED = 0.5
"""Wall seconds without a point, once the user asked to stop, before a thread
counts as stuck: the schedule then ends as interrupted, not as a failure."""
RUNNING_ON = 2.0
"""Wall seconds a schedule may still run, making progress, once the user asked
to stop: then it ends as interrupted."""

_INTERRUPT = getattr(signal, "SIGUSR2", None)

_abandoned: list[str] = []
"""Threads left blocked by some exploration of this process."""


def abandoned_threads() -> list[str]:
    """The threads explorations left blocked outside the scheduler's control."""
    return list(_abandoned)


def _abandon(name: str) -> None:
    if not _abandoned:
        # Runs before the interpreter joins its threads, unless a driver exits first.
        with contextlib.suppress(RuntimeError):  # already shutting down
            threading._register_atexit(_exit_at_shutdown)  # type: ignore[attr-defined]
    _abandoned.append(name)


def _exit_at_shutdown() -> None:
    sys.stderr.write(
        f"threadcheck: not waiting for {', '.join(_abandoned)}, still blocked outside the "
        "scheduler's control\n"
    )
    exit_if_abandoned(1)


def exit_if_abandoned(status: int) -> None:
    """End the process now with ``status`` if a blocked thread would hang its exit
    (the interpreter joins every non-daemon thread); else return."""
    if not _abandoned:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    exit_now(status)


class Watchdog:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._scheduler: Scheduler | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="threadcheck-watchdog", daemon=True
        )
        _hidden.hide(self._thread)
        self._interrupting = False
        self.deadline: float | None = None
        """``time.monotonic()`` past which a schedule is cut short (``--time``)."""
        self._previous_handler: Any = None
        self._main: int | None = None

    def start(self) -> None:
        """Called by the exploring thread: it may be interrupted when it is the main one."""
        if _INTERRUPT is not None and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(_INTERRUPT, self._interrupted)
            self._main = threading.get_ident()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._main is not None:
            signal.signal(_INTERRUPT, self._previous_handler)  # type: ignore[arg-type]

    def watch(self, scheduler: Scheduler | None) -> None:
        self._scheduler = scheduler
        self._interrupting = False

    def _interrupted(self, signum: int, frame: FrameType | None) -> None:
        if self._interrupting:
            self._interrupting = False
            raise Abort("blocked outside the scheduler's control")
        previous = self._previous_handler
        if callable(previous):
            previous(signum, frame)

    def _loop(self) -> None:
        seen: tuple[Scheduler | None, int, tuple[int, int] | None] = (None, -1, None)
        since = progressed = time.monotonic()
        counted: tuple[Scheduler | None, int] = (None, -1)
        spent = _Spent(None)
        hurried_at: float | None = None
        spending = _Spending()
        while not self._stop.wait(min(0.2, self.timeout / 4)):
            scheduler = self._scheduler
            if scheduler is None:
                continue
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline and not scheduler.aborting:
                scheduler.out_of_time()  # a long schedule, the warm-up's say: --time holds
            # A thread running long Python code between points (a batch job's
            # loop, slowed by a loaded machine) moves on: it is not blocked.
            now = (scheduler, scheduler.progress, _position(scheduler.running))
            stopping = stop_requested.is_set()
            if stopping and hurried_at is None:
                hurried_at = time.monotonic()
            if hurried_at is not None and time.monotonic() - hurried_at > RUNNING_ON:
                self._end_interrupted(scheduler)
            # Ctrl-C, or the time spent: a thread that passes no point soon is stuck.
            hurried = stopping or scheduler.timed_out
            if now[:2] != counted or _rewrite.rewriting:  # compiling an import: busy
                counted, progressed = now[:2], time.monotonic()
                spent = _Spent(scheduler.running)
            if now != seen or spending.busy(scheduler.running) or _rewrite.rewriting:
                seen, since = now, time.monotonic()
            elif not hurried and time.monotonic() - since > UNCONTROLLED_NOTED:
                _note_uncontrolled(scheduler, time.monotonic() - since)
            # ... but not for ever: a loop spinning on a real lock moves too.
            idle_for = time.monotonic() - progressed
            spinning = (
                idle_for > HURRIED
                if hurried
                else _spinning(idle_for, spent.seconds(scheduler.running), self.timeout)
            )
            if spinning or time.monotonic() - since > (HURRIED if hurried else self.timeout):
                if stopping:
                    scheduler.interrupted = True
                self._rescue(scheduler, spinning)
                since = progressed = time.monotonic()
                spent = _Spent(scheduler.running)

    @staticmethod
    def _end_interrupted(scheduler: Scheduler) -> None:
        """Ctrl-C came, and the schedule still runs on, making progress (a loop
        polling real I/O no selector of ours waits in): it ends now."""
        if not scheduler.aborting:
            scheduler.interrupted = True
            scheduler.fail(Failure("interrupted", "interrupted while the schedule still ran"))

    def _rescue(self, scheduler: Scheduler, spinning: bool = False) -> None:
        stuck = scheduler.running
        if stuck is None:
            return
        if scheduler.aborting and stuck.tid == 0 and self._interrupting:
            self._give_up(scheduler.failure)  # the interrupt did not take
            return
        # Aborting or not: a thread the teardown does not unwind (a library
        # spinning with no point, the schedule cut short by --time or Ctrl-C) is
        # left where it is, or interrupted, as one stuck before it.
        named = stuck if spinning else _whose_wait(scheduler, stuck)
        # A wait the scheduler knows of (a child process, a socket read) is named.
        why = (
            f"waiting on {named.waiting}"
            if named.waiting
            else "a real socket, a C call, a lock created before exploring, an installed "
            "library's own lock: --include it?"
        )
        held = (
            f"ran for over {BUSY_LIMIT * self.timeout:g} s without a scheduling point"
            f"{_innermost(stuck)} (spinning on a real lock or a flag only another thread "
            "sets, or a library's work too long for one step: --include it?)"
            if spinning
            else f"blocked outside the scheduler's control for over {self.timeout:g} s ({why})"
        )
        failure = Failure(
            BLOCKED,
            f"T{named.tid} ({named.name}) {held}",
            thread=named.name,
            location=blocked_at(named.ident),
            details=stack_of(named.ident),
        )
        if stuck.tid != 0:
            # Abandoned first: the rescue lets the exploration end, and its
            # exit_if_abandoned must already know (under load it ran first, and
            # the process exited as if nothing were left blocked).
            _abandon(stuck.name)
            kill_waited_children()  # the schedule ends: its children with it
            scheduler.rescue(stuck, failure)
        elif self._main is not None and stuck.ident == self._main:
            scheduler.fail(failure)
            self._interrupting = True
            signal.pthread_kill(self._main, _INTERRUPT)  # type: ignore[arg-type]
        else:
            self._give_up(failure)

    def _give_up(self, failure: Failure | None) -> None:
        # The exploring thread is stuck for good: nothing can take the turn back.
        if failure is not None:
            sys.stderr.write(f"threadcheck: {failure.message}\n{failure.details}\n")
        sys.stderr.flush()
        exit_now(2)


def _note_uncontrolled(scheduler: Scheduler, seconds: float) -> None:
    """The running thread has waited ``seconds`` outside the scheduler's control
    (no point, no CPU, no wait of the scheduler's): noted, in case the wait ends
    by its own timeout (see :attr:`Scheduler.uncontrolled`)."""
    stuck = scheduler.running
    if stuck is None or scheduler.aborting or scheduler.failure is not None:
        return
    named = _whose_wait(scheduler, stuck)
    if named.waiting:
        return  # a wait the scheduler knows of (real I/O): its own reports
    noted = scheduler.uncontrolled
    if noted is not None and noted.thread == named.name:  # the same wait, longer
        scheduler.uncontrolled = replace(noted, message=_waited(named, seconds))
        return
    scheduler.uncontrolled = Failure(
        BLOCKED,
        _waited(named, seconds),
        thread=named.name,
        location=blocked_at(named.ident),
        details=stack_of(named.ident),
    )


def _waited(thread: ControlledThread, seconds: float) -> str:
    return (
        f"T{thread.tid} ({thread.name}) waited {seconds:.1f} s outside the scheduler's control"
        " (a lock or condition made before exploring, a real socket, a C call: make it in"
        " the scenario, or --include its library)"
    )


def _whose_wait(scheduler: Scheduler, stuck: ControlledThread) -> ControlledThread:
    """The thread whose wait is blocked: ``stuck``, the one that ran last, or,
    once that one ended, the first waiting on real I/O (the last runner's OS
    thread waits for it: a finished thread was named)."""
    if stuck.finished or stuck.waiting is None:
        return scheduler.waiting_on_real_io() or stuck
    return stuck


def _position(thread: ControlledThread | None) -> tuple[int, int] | None:
    """Where ``thread`` runs now: its innermost frame and instruction."""
    frame = sys._current_frames().get(thread.ident or 0) if thread is not None else None
    return None if frame is None else (id(frame), frame.f_lasti)


def _innermost(thread: ControlledThread) -> str:
    """`` in <file:line in function>``: where ``thread`` runs (a library's loop
    the report's stack folds), or nothing once it ended."""
    frame = sys._current_frames().get(thread.ident or 0)
    if frame is None:
        return ""
    return f", last in {_stacks.stack_from(frame, limit=1)[-1].location()}"


BUSY_SHARE = 0.25
"""The share of the time since the last look a thread must have spent on a CPU
to count as moving: a tight loop is seen at the same instruction each time
(the one where it lets others have the GIL), but spends all of it (half, on a
loaded machine); a thread blocked in a call, or polling every few
milliseconds, next to none."""


class _Spending:
    """Whether the thread looked at spent :data:`BUSY_SHARE` of the time since
    the last look on a CPU (Linux's per-thread clock; never, where there is none)."""

    def __init__(self) -> None:
        self._last: tuple[int, float, float] | None = None

    def busy(self, thread: ControlledThread | None) -> bool:
        ident = _ident(thread)
        now = (ident, time.monotonic(), _cpu_seconds(ident))
        last, self._last = self._last, now
        if last is None or last[0] != ident or now[1] <= last[1]:
            return False
        return now[2] - last[2] > BUSY_SHARE * (now[1] - last[1])


def _spinning(wall: float, cpu: float, timeout: float) -> bool:
    """Whether a thread that passed no point for ``wall`` seconds, ``cpu`` of
    them on a CPU, is stuck: past :data:`BUSY_LIMIT` on a CPU (a batch job is
    judged by the work it did, however loaded the machine), or past it on the
    wall clock with under :data:`BUSY_SHARE` of it on one (a loop seen at a new
    line each look that mostly waits: one seen waiting at the same place is
    blocked, after one wait)."""
    limit = BUSY_LIMIT * timeout
    return cpu > limit or (wall > limit and cpu < BUSY_SHARE * wall)


class _Spent:
    """The CPU time a thread has spent since this was made (0 for another
    thread, or where the CPU clock is not known: then the watchdog's wall
    clock check, :data:`BUSY_SHARE`, is the one that acts)."""

    def __init__(self, thread: ControlledThread | None) -> None:
        self._ident = _ident(thread)
        self._start = _cpu_seconds(self._ident)

    def seconds(self, thread: ControlledThread | None) -> float:
        ident = _ident(thread)
        return _cpu_seconds(ident) - self._start if ident == self._ident else 0.0


def _ident(thread: ControlledThread | None) -> int:
    """``thread``'s OS ident, 0 for none (not started, or no thread)."""
    return (thread.ident or 0) if thread is not None else 0


def _cpu_seconds(ident: int) -> float:
    """The CPU time thread ``ident`` has spent (0 where that is not known)."""
    try:
        return time.clock_gettime(time.pthread_getcpuclockid(ident))
    except (AttributeError, OSError, OverflowError, ValueError):  # not Linux, gone
        return 0.0
