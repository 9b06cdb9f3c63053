"""The instrumented reactors under threadcheck's controlled scheduler.

Still Twisted's own reactors, loop, DelayedCalls, Deferreds, ``Team``,
``ThreadWorker`` and ``LockWorker``; the mixin only takes over what would
otherwise escape the scheduler:

* the idle wait: instead of sleeping in ``epoll_wait`` while holding the turn,
  the reactor blocks in the scheduler until ``wakeUp`` or until virtual time
  reaches its next timed call, then polls for real with a zero timeout;
* time: ``seconds()`` is the scheduler's virtual clock, so DelayedCalls and
  LoopingCalls fire when the scheduler advances it;
* the thread pool: Twisted's ``Team`` around a scheduler lock and queues, its
  workers hashed by creation order (``Team`` keeps idle workers in a set, and
  ``set.pop()`` would otherwise pick by identity, differently on every run);
* ``callFromThread`` is a scheduling point.

Affinity checks stay on. Thread safety: as the reactor underneath; the
scheduler runs one controlled thread at a time.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType, ModuleType
from typing import Any, cast

from twisted.internet.base import DelayedCall

from threadcheck import _stacks
from threadcheck._affinity import AffinityChecker
from threadcheck._modes import DEFAULT_MODE, Mode
from threadcheck._races import _footprint
from threadcheck._recorder import Recorder
from threadcheck._sched._core import (
    REAL_IO,
    WALL_OFFSET,
    ControlledThread,
    Scheduler,
    TargetError,
    active,
)
from threadcheck._sched._pool import scheduled_team
from threadcheck._violation import Violation
from threadcheck_reactor._delayedcall import CheckedDelayedCall, delayed_call_type
from threadcheck_reactor._reactor import REACTOR_CLASSES, InstrumentedReactorType, ThreadCheckMixin
from threadcheck_reactor._threadpool import SubmissionTrackingThreadPool

REACTOR = ("reactor",)
"""The footprint key of the reactor's state that threads hand work through."""

REAL_IO_POLL = 0.01  # wall seconds a reactor with real sockets waits when nothing else can run


class ScheduledThreadPool(SubmissionTrackingThreadPool):
    """Twisted's ThreadPool whose team coordinates and queues through the scheduler."""

    def _pool(  # type: ignore[override]
        self, currentLimit: Callable[[], int], threadFactory: Callable[..., Any]
    ) -> Any:
        return scheduled_team(currentLimit, threadFactory)


class ScheduledMixin(ThreadCheckMixin):
    """Hands the reactor's waiting, time and thread pool to ``scheduler``."""

    schedule_index = 0
    """Which schedule of the exploration this reactor runs (set by the explorer)."""

    shutdown_grace = None  # a stuck worker is the scheduler's deadlock, found in virtual time
    stall_threshold = None  # wall time means nothing under the scheduler

    _reused_delayed_call: type[CheckedDelayedCall] | None = None

    def __init__(
        self,
        scheduler: Scheduler,
        mode: Mode | str = DEFAULT_MODE,
        recorder: Recorder | None = None,
        *,
        checker: AffinityChecker | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._idle: ControlledThread | None = None
        super().__init__(mode, recorder or _StepNoting(scheduler), checker=checker)
        self.threadcheck.announce = False
        process = _process()
        self._children_before = set(process.reapProcessHandlers) if process else set()

    @property
    def scheduler(self) -> Scheduler:
        return self._scheduler

    @property
    def first_violation_step(self) -> int | None:
        """The scheduler's step when the first violation was recorded."""
        recorder = self.threadcheck.recorder
        return recorder.first_step() if isinstance(recorder, _StepNoting) else None

    def dispose(self) -> None:
        super().dispose()
        _end_children(self._children_before)
        self._disposed = True

    _disposed = False

    def _used_after_its_schedule(self, api: str) -> None:
        """A later schedule gives this reactor work: a library bound it in an
        earlier run (APScheduler's ``TwistedScheduler()``, txaio's loop) and
        the work would never run (a false proof, or a false deadlock)."""
        scheduler = active()
        if scheduler is None or scheduler is self._scheduler or scheduler.controlled() is None:
            return
        if scheduler.misuse is not None:
            return
        frame = _keeping_frame(sys._getframe(1))
        caller = None if frame is None else _stacks.stack_from(frame, limit=1)[0]
        calling = None if frame is None else frame.f_locals.get("self")
        scheduler.misuse = TargetError(_stale(api, caller, _kept_by(self, calling)))

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> DelayedCall:
        if self._disposed:
            self._used_after_its_schedule("callLater")
        return super().callLater(delay, callable, *args, **kw)

    def callWhenRunning(self, callable: Callable[..., Any], *args: object, **kw: object) -> Any:
        if self._disposed:
            self._used_after_its_schedule("callWhenRunning")
        return super().callWhenRunning(callable, *args, **kw)

    def addSystemEventTrigger(
        self,
        phase: str,
        eventType: str,
        callable: Callable[..., Any],
        *args: object,
        **kw: object,
    ) -> Any:
        # A thread pool's stop at shutdown, on a reactor no schedule runs: the
        # pool's threads were never stopped, a false deadlock at exit.
        if self._disposed:
            self._used_after_its_schedule("addSystemEventTrigger")
        return super().addSystemEventTrigger(phase, eventType, callable, *args, **kw)

    def callInThread(self, _callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        if self._disposed:
            self._used_after_its_schedule("callInThread")
        # Not super(): one frame more and the pool's record of who submitted
        # the job (its innermost frames) would stop short of the user's call.
        self._pool_for_a_call().callInThread(_callable, *args, **kwargs)

    def _delayed_call_type(self, checker: AffinityChecker) -> type[CheckedDelayedCall]:
        # One schedule's reactor lives at a time: its class is rebound, not made
        # anew (making a class costs ~25 us, a tenth of an empty schedule).
        reused = ScheduledMixin._reused_delayed_call
        if reused is None:
            reused = ScheduledMixin._reused_delayed_call = delayed_call_type(checker)
        reused._threadcheck = checker
        return reused

    def seconds(self) -> float:
        if _footprint.collecting:
            _footprint.looked_at(_footprint.CLOCK)
        return self._scheduler.now + WALL_OFFSET

    def _deadline(self, delay: float) -> float:
        """The scheduler's time at which ``seconds()`` reads ``seconds() + delay``
        (a DelayedCall's time) exactly: ``now + delay`` may read a float's step
        less at the wall clock's magnitude, and the call would not be due yet."""
        return self._scheduler.now + WALL_OFFSET + delay - WALL_OFFSET

    def callFromThread(self, f: Callable[..., Any], *args: object, **kwargs: object) -> None:
        if self._disposed:
            self._used_after_its_schedule("callFromThread")
        if self._scheduler.controlled() is not None:
            self._scheduler.point("sync", "callFromThread")
            if _footprint.collecting:
                _footprint.touch(REACTOR)
        super().callFromThread(f, *args, **kwargs)

    def wakeUp(self) -> None:
        super().wakeUp()
        idle = self._idle
        if idle is not None and self._scheduler.controlled() is not None:
            self._scheduler.wake(idle)

    def doIteration(self, delay: float | None) -> None:
        scheduler = self._scheduler
        if scheduler.aborting:
            self.crash()  # leave run() without shutdown triggers: the schedule is over
            return
        if self._real_io():
            self._iterate_with_real_io(delay)
            return
        if delay == 0 or self.threadCallQueue:
            scheduler.point("sync", "reactor iteration")
        else:
            self._idle = scheduler.controlled()
            try:
                scheduler.block(
                    "reactor idle", None if delay is None else self._deadline(delay), REACTOR
                )
            finally:
                self._idle = None
        if _footprint.collecting:  # it runs what threads handed it
            _footprint.touch(REACTOR)
        super().doIteration(0)  # drain the waker; dispatch real I/O that is ready

    def _real_io(self) -> bool:
        internal = self._internalReaders  # the waker, and the SIGCHLD waker run() adds
        return (
            any(r not in internal for r in self.getReaders())
            or bool(self.getWriters())
            or _children_running()
        )

    def _iterate_with_real_io(self, delay: float | None) -> None:
        # Sockets and child processes are not under the scheduler's control:
        # poll them for real (best effort; such schedules replay only as far
        # as I/O repeats). No proof either, even if what they brought was
        # always there when polled (dpor's 36 schedules of a crawl against the
        # program's own server, each polled without waiting, were "proved").
        self._scheduler.thinned.add(REAL_IO)
        self._poll_real_io(delay)
        if _children_running():
            # Reap as the SIGCHLD handler would: a schedule runs without
            # signal handlers, and a child that closed its pipes before it
            # exited is otherwise never reaped (processEnded never comes).
            _process().reapAllProcesses()

    def _poll_real_io(self, delay: float | None) -> None:
        scheduler = self._scheduler
        if delay == 0 or self.threadCallQueue:
            scheduler.point("sync", "reactor iteration (real I/O)")
            super().doIteration(0)
            return
        if scheduler.others_runnable():
            if scheduler.any_ready(*self._sockets()):
                # What landed is handled now, as a poll that found it ready
                # returns at once, while the others run on (a handshake's
                # onOpen only ever came once a pool job's loop was done, Z50).
                scheduler.point("sync", "reactor iteration (real I/O)")
                super().doIteration(0)
                return
            # Idle: let the other threads run first, as a blocking poll would.
            self._idle = scheduler.controlled()
            try:
                scheduler.let_others_run("reactor idle (real I/O)")
            finally:
                self._idle = None
            super().doIteration(0)
            return
        if delay is not None:
            delay = self._deadline(delay) - scheduler.now
        if not _children_running() and scheduler.skip_quiet_time(*self._sockets(), delay):
            return  # its sockets only talk to each other: the next deadline comes at once
        wait = REAL_IO_POLL if delay is None else min(delay, REAL_IO_POLL)
        super().doIteration(wait)
        scheduler.advance(wait)

    def _sockets(self) -> tuple[list[Any], list[Any]]:
        """The real files the reactor reads and writes (its waker left out): a
        connection's or a port's socket, else the object itself (not a socket)."""
        internal = self._internalReaders
        reads = [getattr(r, "socket", r) for r in self.getReaders() if r not in internal]
        return reads, [getattr(w, "socket", w) for w in self.getWriters()]

    def _initThreadPool(self) -> None:
        self.threadpool = ScheduledThreadPool(0, 10, "twisted.internet.reactor")
        self._threadpoolStartupID = self.callWhenRunning(self.threadpool.start)
        self.threadpoolShutdownID = self.addSystemEventTrigger(
            "during", "shutdown", self._stopThreadPool
        )


def _process() -> Any:
    """``twisted.internet.process`` if imported (else no process was spawned)."""
    return sys.modules.get("twisted.internet.process")


def _children_running() -> bool:
    """Whether a process of ``spawnProcess`` has not been reaped yet: it ends
    in real time, so the reactor waits on it as on a socket (an idle wait
    would be a false deadlock)."""
    process = _process()
    return process is not None and bool(process.reapProcessHandlers)


def _end_children(before: set[int]) -> None:
    """Kill and reap the processes spawned since ``before`` that still run: a
    schedule's children end with it, as its threads do (and a later schedule
    would otherwise reap them, calling back a protocol of a finished run)."""
    process = _process()
    if process is None:
        return
    for pid in set(process.reapProcessHandlers) - before:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        del process.reapProcessHandlers[pid]


_REACTOR_MACHINERY = os.path.join("twisted", "internet", "")


def _keeps_it(frame: _stacks.Frame) -> bool:
    """Whether ``frame`` may be the code that kept the reactor: not the reactor's
    own machinery (a connection's start), which merely carries the call out."""
    return frame.library != "threadcheck" and _REACTOR_MACHINERY not in frame.filename


def _stale(api: str, caller: _stacks.Frame | None, kept_by: str | None) -> str:
    """The one line for a reactor of an earlier schedule given work by ``caller``;
    ``kept_by``: what keeps it, and the fix (see :func:`_kept_by`), when known."""
    at = ""
    if caller is not None:
        library = caller.library
        at = f", at {caller.location()}" + (f" ({library})" if library else "")
    keeps = (
        kept_by
        if kept_by is not None
        else "that code keeps the reactor it first saw (bound when its module was"
        " imported: `clock = reactor`, a default `reactor=reactor` argument; APScheduler's"
        " TwistedScheduler(), txaio's loop); give it the reactor of each run (pass"
        " reactor=reactor, or set the attribute it keeps)"
    )
    return (
        f"reactor.{api} was given work on the reactor of an earlier schedule{at}, which no"
        f" schedule runs again: {keeps}, or check this with `threadcheck run`"
    )


def _keeping_frame(frame: FrameType | None) -> FrameType | None:
    """The innermost frame from ``frame`` out that may have kept the reactor
    (see :func:`_keeps_it`): its ``self`` is the object whose method gave it work."""
    while frame is not None:
        code = frame.f_code
        if _keeps_it(_stacks.Frame(code.co_filename, frame.f_lineno, code.co_name)):
            return frame
        frame = frame.f_back
    return None


def _kept_by(reactor: Any, calling: object | None = None) -> str | None:
    """What keeps ``reactor`` after its schedule, and the fix: the object whose
    method gave it work (``calling``) when that object holds it, else a module
    global, or the attribute of an object a global holds (treq's process-wide
    ``HTTPConnectionPool``, its ``_reactor``); None when nothing tells (a
    closure, a frame, an object nothing global holds)."""
    holders = list(_holders(reactor))
    # The caller's own, a library's global holds, first: klein's `from
    # twisted.internet import reactor`, a global of an earlier schedule too, was
    # blamed for treq's pool's call. (Not one the program holds: made in this
    # run, given the reactor by the global named next.)
    where = None if calling is None else _global_holding(calling, libraries_only=True)
    kept_in = next((attribute for owner, attribute in holders if owner is calling), None)
    if where is not None and kept_in is not None:
        return _object_keeps(calling, kept_in, where)
    # Or one its attribute holds (txaio's API object, its _config.loop: klein's
    # server module, holding an earlier schedule's reactor too, was named).
    for owner, attribute in holders:
        if calling is not None and _attribute_holding(calling, owner) is not None:
            where = _global_holding(owner, libraries_only=True)
            if where is not None:
                return _object_keeps(owner, attribute, where)
    # A global first: an object of this run may have been given it from one
    # (APScheduler's TwistedScheduler() takes its module's default_reactor).
    for owner, attribute in holders:
        if isinstance(owner, ModuleType):
            return (
                f"the global {owner.__name__}.{attribute} keeps it, set in an earlier"
                " schedule; give it the reactor of each run"
            )
    for owner, attribute in holders:
        cls = type(owner)
        if isinstance(owner, type) or cls.__module__.startswith("threadcheck"):
            continue
        where = _global_holding(owner)
        if where is None:
            continue  # one of that schedule's own objects, maybe: not a culprit
        return _object_keeps(owner, attribute, where)
    return None


def _object_keeps(owner: object, attribute: str, where: str) -> str:
    """An object ``owner`` keeps it in ``attribute``, held by the global ``where``."""
    cls = type(owner)
    settable = "[" not in where  # a global's own: the program may set its attribute
    name = f"{cls.__module__}.{cls.__qualname__}"
    return (
        f"{'an' if name[0] in 'aeiou' else 'a'} {name} keeps it (its {attribute}), held by"
        f" {where}, made in an earlier schedule; make one per run, with the reactor"
        " of that run"
        + (f", or set {where}.{attribute} = reactor in each run" if settable else "")
    )


def _attribute_holding(obj: object, held: object) -> str | None:
    """The name of ``obj``'s attribute bound to ``held``, if any."""
    namespace = getattr(obj, "__dict__", None)
    if not isinstance(namespace, dict):
        return None
    return next((name for name, value in namespace.items() if value is held), None)


def _holders(reactor: Any) -> Iterator[tuple[object, str]]:
    """The modules and objects with an attribute bound to ``reactor``, and its name."""
    for referrer in gc.get_referrers(reactor):
        # An instance's attributes are its own (3.11+: no dict of their own) or a dict's.
        owners = gc.get_referrers(referrer) if isinstance(referrer, dict) else [referrer]
        for owner in owners:
            namespace = getattr(owner, "__dict__", None)
            if not isinstance(namespace, dict) or (
                referrer is not namespace and referrer is not owner
            ):
                continue
            attribute = next((k for k, v in namespace.items() if v is reactor), None)
            if attribute is not None:
                yield owner, attribute


def _global_holding(obj: object, depth: int = 1, libraries_only: bool = False) -> str | None:
    """``module.name`` of a module global bound to ``obj`` (or ``module.name[i]``
    of a global list holding it: treq's ``_global_pool``), if any; a library's
    module only, with ``libraries_only`` (the program's run anew each schedule)."""
    for referrer in gc.get_referrers(obj):
        if isinstance(referrer, dict):
            name = next((k for k, v in referrer.items() if v is obj), None)
            module = sys.modules.get(str(referrer.get("__name__", "")))
            if name is not None and module is not None and vars(module) is referrer:
                if (
                    libraries_only
                    and _stacks.classify(getattr(module, "__file__", None) or "") is None
                ):
                    continue
                return f"{module.__name__}.{name}"
        elif isinstance(referrer, list) and depth > 0:
            index = next((i for i, item in enumerate(referrer) if item is obj), None)
            held = _global_holding(referrer, depth - 1, libraries_only)
            if held is not None and index is not None:
                return f"{held}[{index}]"
    return None


def _scheduled(cls: type[ThreadCheckMixin]) -> type[ScheduledMixin]:
    name = "Scheduled" + cls.__name__.removeprefix("ThreadCheck")
    namespace = {"__doc__": f"{cls.__doc__} Under the scheduler."}
    # Equal to Twisted's class too, as the instrumented one is: scrapy's
    # TWISTED_REACTOR check compares type(reactor) with it on every schedule.
    twisteds = vars(cls)["_threadcheck_instruments"]
    made = InstrumentedReactorType(name, (ScheduledMixin, cls), namespace, instruments=twisteds)
    made.__module__ = __name__
    return cast("type[ScheduledMixin]", made)


SCHEDULED_CLASSES: list[type[ScheduledMixin]] = [_scheduled(cls) for cls in REACTOR_CLASSES]
"""Every instrumented reactor class under the scheduler, the default last."""

ScheduledReactor = SCHEDULED_CLASSES[-1]


class _StepNoting(Recorder):
    """A recorder that notes the scheduler's step at each violation made live
    (not one held since before ``run()`` and judged later): the schedule goes
    on after it, and the step table shows where it was made.

    Thread safety: as :class:`Recorder`'s; the steps are kept under its lock."""

    def __init__(self, scheduler: Scheduler) -> None:
        super().__init__()
        self._scheduler = scheduler
        self._steps: list[int | None] = []

    def record(self, violation: Violation) -> None:
        live = violation.thread.ident == threading.get_ident()
        with self._lock:
            self._steps.append(self._scheduler.step if live else None)
            self._violations.append(violation)

    def clear(self) -> list[Violation]:
        with self._lock:
            self._steps = []
        return super().clear()

    def first_step(self) -> int | None:
        with self._lock:
            return self._steps[0] if self._steps else None
