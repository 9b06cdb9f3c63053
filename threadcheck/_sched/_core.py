"""The controlled scheduler: one controlled thread runs at a time.

Every controlled thread (the thread exploring, the reactor's pool workers,
threads they start) owns a *baton*: a real lock it sleeps on while another
thread has the turn. At each scheduling point the running thread asks the
strategy who runs next and, if it is another thread, releases that thread's
baton and sleeps on its own. A thread that must wait (a lock held, a queue
empty, the reactor idle) is marked blocked and hands the turn on; the thread
that changes what it waits for wakes it. Time is virtual: when every thread
is blocked and some wait has a deadline, the clock jumps to the earliest one;
when none has, that is a deadlock. While some thread could run, letting time
pass to the next deadline is one more choice for the strategy (:data:`TIME`):
the runnable threads are *held* (a preempted thread on a real machine loses
tens of milliseconds), never more than ``max_delay`` seconds in all.

Thread safety: only the thread holding the turn reads or writes scheduler
state. Threads that are not controlled never touch it (primitives check
:meth:`Scheduler.controlled` first). The wall-clock watchdog only reads a
progress counter, and only in :meth:`Scheduler.rescue` takes the turn from a
thread that blocked outside the scheduler's control, which by then runs no
scheduler code.
"""

from __future__ import annotations

import _thread
import math
import select
import sys
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from threading import get_ident
from types import CodeType, FrameType
from typing import Any, NoReturn, Protocol

from threadcheck import _stacks
from threadcheck._races import _footprint
from threadcheck._races._clocks import VectorClock
from threadcheck._sched._loopback import (
    children_alive,
    from_another_process,
    in_process,
    lands_at_once,
    settled,
)
from threadcheck._sched._mute import Muted
from threadcheck._sched._progress import stop_requested

DAEMONS_HELD = "daemon threads held while time passed"
"""Why a finished search is no proof that the other strategies may still
disprove (see :meth:`Scheduler._decide`)."""

VIRTUAL_EPOCH = 1_767_225_600.0
"""The wall clock (``time.time``, ``reactor.seconds()``) as virtual time
starts: 2026-01-01 00:00 UTC, a fixed, realistic wall-clock time."""

CLOCK_START = 10_000.0
"""The monotonic clocks (``time.monotonic``, ``perf_counter``) as virtual time
starts, and the scheduler's :attr:`Scheduler.now`: small, as a real machine's
seconds since boot, so that a nanosecond on is still a later time. asyncio
runs a timer once its clock is past the timer's time by its resolution (1 ns);
at the wall clock's magnitude a float has no nanoseconds, and a pool job's
``asyncio.run`` spun at its first ``asyncio.sleep``'s time for ever."""

WALL_OFFSET = VIRTUAL_EPOCH - CLOCK_START
"""The wall clock's reading at :attr:`Scheduler.now` is ``now + WALL_OFFSET``."""

REAL_IO_WAIT = 0.01
"""Real seconds a wait on real files lasts before deadlines are looked at again."""

REAL_IO = "real I/O (its timing is not controlled)"
"""Why a schedule is no proof, and its replay best effort: it waited on real files."""

REAL_IO_LIMIT = 30.0
"""Real seconds a schedule may wait in all on real files (sockets, pipes) while
no thread can run: past them, the program is stuck (a reply that never comes),
and the schedule fails rather than wait for ever."""

QUIET_PERIOD = 0.25
"""Real seconds sockets that only talk to each other stay quiet before time
jumps, where the kernel's socket queues are not known (:func:`~._loopback.settled`):
bytes sent may reach the other end that much later (two small writes:
Nagle's algorithm holds the second until a delayed ACK, 40 ms or more), and a
reply's timeout must not come first."""
SETTLING = 0.05
"""Real seconds between two looks at the kernel's socket queues while data is
in flight (a delayed ACK lasts up to 40 ms)."""

IO_PATIENCE = 0.5
"""Real seconds the threads waiting on real files wake in the order they began
to wait; past it, whichever is ready (one may wait on another's answer)."""

_real_clock = time.perf_counter  # the program's clocks read virtual time in schedules
_real_select = select.select  # and a controlled thread's select.select waits under it


def _ready(reads: list[Any], writes: list[Any], timeout: float) -> tuple[list[Any], list[Any]]:
    """The files of ``reads`` ready to read and of ``writes`` to write, waiting up
    to ``timeout`` real seconds; all of them when one was closed meanwhile (its
    own call will say so)."""
    try:
        readable, writable, _ = _real_select(reads, writes, [], timeout)
    except (OSError, ValueError):
        return reads, writes
    return readable, writable


TIME = 1 << 20
"""The decision "time passes": offered to strategies among the runnable thread
ids when some wait has a deadline; never a real thread id."""

DEFAULT_MAX_DELAY = 1.0
"""How long (virtual seconds) a runnable thread may be held while time passes:
longer, and a program's own watchdogs and safety timeouts would fire."""

DEFAULT_MAX_STEPS = 20_000
"""Scheduling points a schedule's strategy decides while threads could wait on
each other; past them, threads take fair turns."""
LIVELOCK_STEPS = 10
"""Times the step bound a schedule may take in all while threads could wait on
each other: past it, a livelock (a spin nothing ends)."""
ALONE_STEPS = 50
"""Times :data:`DEFAULT_MAX_STEPS` (or the bound given) that one thread alone
may step: a program's single-threaded start-up (parsing 12,000 lines of
configuration) is no livelock, but a spin on the clock with no other thread
to end it is."""
LOOP_STEPS = 64
"""Steps of one loop that are all points in a schedule; after them, only every
power of two: races show in a loop's first steps, and a long loop over one
thread's own data would otherwise reach the step bound."""
FAIRNESS_BOUND = 256
"""Points in a row a thread may keep the turn while another could run: past it
the next thread runs (a spin-wait on a flag another thread sets would otherwise
spin until the step bound under PCT or a preemption bound)."""
TIME_HORIZON = 3600.0
"""Virtual seconds a schedule may run while time passes often
(:data:`HORIZON_PASSES`): past them, a livelock. A scenario whose Deferred
never fired while a LoopingCall ticked (a heartbeat) ran for ever: each tick
let time pass, and no point counted towards the step bound."""
HORIZON_PASSES = 1000
"""Time passing that many times is needed for the horizon: one long sleep (an
hour's) is no livelock."""
TIME_STEPS = 2
"""Times the step bound that time may pass in a schedule, however little each
time (a 10 ms tick reaches the horizon only after 360,000): past it, a livelock."""
ABORT_STEP_LIMIT = 10_000  # points a thread may pass while unwinding from an abort
DECISIONS_PER_STEP = 3
"""Decisions a schedule may take per point of its step bound: a thread that
blocks and is woken again at once, in library code without points (a loop
polling real sockets), decides without a step."""


class Abort(BaseException):
    """Raised in controlled threads to end a schedule. Not an error of theirs."""


class OutOfTime(BaseException):
    """The exploration's time budget ran out while a schedule ran: it was cut
    short, and is neither a failure nor a schedule explored."""


class TargetError(ValueError):
    """The target cannot be explored as written (a misuse, not a bug in it).

    Raised out of the exploration after the schedule's teardown; its message is
    the one line shown to the user."""

    user_error = True


def refuse_while_exploring(call: str) -> None:
    """TargetError if an exploration runs: the program being explored made
    ``call`` (whose threads would run on, or wait in, the schedule's patches)."""
    if active() is not None:
        raise TargetError(
            f"{call} called by a program being explored: explore the program that "
            "does not call it, or run this one with python"
        )


_active: list[Scheduler] = []


def active() -> Scheduler | None:
    """The scheduler of the schedule running now, if any."""
    return _active[0] if _active else None


def here() -> tuple[Scheduler, ControlledThread] | None:
    """The active scheduler and the calling thread's record, when it is controlled."""
    scheduler = active()
    if scheduler is None:
        return None
    thread = scheduler.controlled()
    return None if thread is None else (scheduler, thread)


_LOOKED_PAST: set[CodeType] = set()


def looked_past(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, a wrapper of ours around library code, which
    :meth:`Scheduler.where` walks past: it is not the driver of a schedule,
    and the user's line that led to a point lies beyond it."""
    _LOOKED_PAST.add(function.__code__)
    return function


def without_points(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, whose points switch no thread while a controlled thread
    runs it: it holds a real lock meanwhile (Twisted's legacy log, an
    executor's submit, the import system's module lock), which another thread
    would wait on for real."""

    @looked_past
    def call(*args: Any, **kwargs: Any) -> Any:
        found = here()
        if found is None:
            return function(*args, **kwargs)
        thread = found[1]
        thread.holding += 1
        try:
            return function(*args, **kwargs)
        finally:
            thread.holding -= 1

    return call


def activate(scheduler: Scheduler | None) -> None:
    """Make ``scheduler`` the active one (None: no schedule runs)."""
    _active[:] = [] if scheduler is None else [scheduler]


class Strategy(Protocol):
    """Chooses who runs next. One instance drives a whole exploration.

    Thread safety: called only by the thread holding the turn.
    """

    def new_execution(self, index: int) -> bool:
        """Prepare schedule ``index``; False when the strategy has nothing left."""

    def next_thread(self, runnable: Sequence[int], current: int | None, step: int) -> int:
        """The thread id (one of ``runnable``) to run from scheduling point ``step``.

        ``current`` is the running thread's id when it could go on, None when
        it just blocked or finished. ``runnable`` ends with :data:`TIME` when
        time may pass instead (the threads are held; the waiter due first runs).
        """

    def next_int(self, bound: int) -> int:
        """A number in ``range(bound)`` for a nondeterministic choice other than a thread."""


@dataclass(eq=False)
class ControlledThread:
    tid: int
    name: str
    daemon: bool
    baton: _thread.LockType = field(repr=False)
    ident: int | None = None
    waiting: str | None = None
    """What it waits for; None while it can run."""
    blocked_frame: FrameType | None = field(default=None, repr=False)
    """Where it blocked: described only if a deadlock is reported."""
    deadline: float | None = None
    waiting_on: object = None
    """The synchronisation object it waits on (see :mod:`threadcheck._races._footprint`)."""
    woken_by: object = None
    """What a thread that woke it released, until it runs again."""
    held_since: float = CLOCK_START
    """Virtual time since which it could run: since it started, or its last wait
    ended. Time passes while it can run for ``max_delay`` in all, not at each
    hold: a thread run one step between holds of a second would otherwise be
    late by as many seconds as the program's safety timeouts need."""
    held_before: float = 0.0
    """How long it was held in its earlier turns of running and waiting, which
    count towards ``max_delay`` too: a reactor held a second before each of its
    iterations (each a wait for I/O) let a client's 3 s timeout expire."""
    finished: bool = False
    holding: int = 0
    """Above 0 while it runs code that holds a real lock (Twisted's legacy log, a
    logging handler's, the import system's lock of a module it imports): its
    points switch no thread, as another would block on that lock for real."""
    joiners: list[ControlledThread] = field(default_factory=list, repr=False)
    abort_steps: int = 0
    abandoned: bool = False
    """Blocked outside the scheduler and given up on: if it ever wakes, it only unwinds."""
    handle: object = field(default=None, repr=False)
    """The ``threading.Thread`` behind it, joined for real once the schedule is over."""
    spawned_at: int = 0
    """The step at which its starter started it (0: it was not started in the schedule)."""
    blocked_on: object = field(default=None, repr=False)
    """The primitive it waits on, for a deadlock's wait-for graph (a lock knows its holder)."""
    end_clock: VectorClock | None = field(default=None, repr=False)
    """What it did, for the race detector's happens-before: received by a join
    or an ``is_alive()`` that sees it finished (None when races are not tracked)."""
    settles: bool = False
    """It runs the thread pool's own code, between two jobs: see :meth:`Scheduler.settle`."""

    @property
    def runnable(self) -> bool:
        return not self.finished and self.waiting is None

    def held_for(self, now: float) -> float:
        """How long it will have been held in all, by ``now``, if it waits no more."""
        return self.held_before + now - self.held_since


@dataclass(eq=False)
class _IoWait:
    """A controlled thread's wait on real files (:meth:`Scheduler.wait_for_io`):
    until one of ``reads`` is ready to read or one of ``writes`` to write."""

    thread: ControlledThread
    reads: Sequence[Any]
    writes: Sequence[Any]
    ends_alone: bool
    """Whether it is a child process's end, which comes whatever this process does."""
    declined: bool = False
    """Whether it did not end when waited for with every other thread held (its
    answer needs one of them): not waited for so again."""
    answered_outside: bool | None = None
    """Whether one of its sockets is another process's (known not to be this
    one's, unlike :attr:`outside`): None until asked (:meth:`Scheduler._may_end_held`)."""
    outside: bool | None = None
    """Whether one of its files talks to another process (its answer comes in
    real time): None until asked (:meth:`Scheduler._waits_outside`)."""
    postponed: float = 0.0
    """Virtual seconds its deadline moved on: the time that passed while threads
    were held, in no real time, which another process's answer never saw."""


@dataclass(frozen=True, slots=True)
class Step:
    """One scheduling point of a schedule, for the step table."""

    index: int
    tid: int
    kind: str
    """access, line, opcode or sync."""
    filename: str
    lineno: int
    function: str
    detail: str
    """What was accessed or done, e.g. ``state.total (store)``."""
    now: float = 0.0
    """Virtual time at the point, in seconds from the schedule's start."""


@dataclass(frozen=True)
class Failure:
    """Why a schedule failed."""

    kind: str
    """exception, deadlock, livelock, violation, unhandled-error, incomplete,
    uncontrolled-blocking, exit, divergence."""
    message: str
    thread: str | None = None
    location: str | None = None
    details: str = ""
    what: str = ""
    """The exception type, or the API of a violation: part of the signature."""
    accesses: tuple[tuple[str, str, int], ...] = ()
    """A data race's two accesses, the earlier first: (thread name, file, line)."""
    waits_for: tuple[tuple[int, str, int | None], ...] = ()
    """A deadlock's wait-for graph: (thread, what it waits for and where, the thread
    holding it, or None when no thread holds it, e.g. a queue nobody will fill)."""
    step: int | None = None
    """The scheduler's step when it happened, where the schedule went on after
    (a violation: its first), for the step table; None when not known."""

    def signature(self) -> str:
        """What a replay or a shrunk schedule must reproduce: the kind of failure
        and its exception type (not the message, which may name other values)."""
        return f"{self.kind}:{self.what}" if self.what else self.kind

    @property
    def hangs(self) -> bool:
        """Whether a rerun would wait as long again (a thread blocked outside
        the scheduler's control, a reply that never came): an exploration
        stops on it, reports it as found and reruns nothing."""
        return self.kind == BLOCKED or self.message.startswith(STUCK_ON_REAL_IO)


STUCK_ON_REAL_IO = "stuck on real I/O"
"""How a deadlock on real files (past :data:`REAL_IO_LIMIT`) begins."""

UNCONTROLLED_NOTED = 1.0
"""Wall seconds a thread may wait outside the scheduler's control before a
failure after the wait is put down to it (its timeout: correct code fails)."""

BLOCKED = "uncontrolled-blocking"
"""The failure of a thread blocked outside the scheduler's control (a real
socket, a C call, a child process): no rerun may repeat it, so an exploration
stops on it and reports it as found."""


class ScheduleFailed(Exception):  # noqa: N818 - it is a result, not a programming error
    """Carries a schedule's :class:`Failure` out of the driver."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


LIBRARY_FRAME = Callable[[str], bool]


class Scheduler:
    """Runs a set of controlled threads one at a time, as ``strategy`` decides."""

    def __init__(
        self,
        strategy: Strategy,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        is_library: Callable[[str], bool] = lambda filename: False,
        is_own: Callable[[str], bool] = lambda filename: False,
        record_trace: bool = True,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        self.strategy = strategy
        self.max_steps = max_steps
        self.max_delay = max_delay
        self.is_library = is_library
        self.is_own = is_own
        self.record_trace = record_trace
        self.threads: list[ControlledThread] = []
        self._by_ident: dict[int, ControlledThread] = {}
        self.now = CLOCK_START
        self._time_passed = 0
        self.step = 0
        self._alone_steps = 0
        """Steps taken by a thread with no other alive: see :data:`ALONE_STEPS`."""
        self._exited = 0
        self.decisions: list[int] = []
        self.trace: list[Step] = []
        self.preemptions: dict[int, str] = {}
        """Steps where the schedule left the no-preemption default, and how: the
        running thread switched out, or another thread than the oldest chosen
        after a block."""
        self.choices: list[tuple[int, int, tuple[int, ...]]] = []
        """Each thread decision: (chosen, the no-preemption default, the runnable threads)."""
        self.preemption_count = 0
        """Choices that switched away from a thread that could go on, or let
        time pass while threads could run (as ``bounded:N`` counts them)."""
        self.strategy_error: Exception | None = None
        """The strategy gave up (a replay that diverged): the schedule means nothing."""
        self.failure: Failure | None = None
        self.aborting = False
        self.progress = 0
        """Bumped at every point and switch; the watchdog reads it."""
        self.timed_out = False
        """The exploration's time ran out: cut short by the watchdog (:meth:`out_of_time`)."""
        self.interrupted = False
        """The user asked to stop while a thread was stuck outside our control
        (the watchdog ended it early) or while the schedule waited on real I/O:
        the schedule ends as interrupted."""
        self.at_exit: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = []
        self.uncontrolled: Failure | None = None
        """The longest wait of a thread outside the scheduler's control that the
        watchdog saw last over :data:`UNCONTROLLED_NOTED` and end before its
        timeout (a lock made before exploring, taken with a timeout): a
        failure after it is that wait's, not an interleaving's."""
        self.misuse: TargetError | None = None
        """A misuse raised in a thread other than the schedule's first: raised
        out of the exploration after the teardown, as the first's is."""
        self.signal_handlers: dict[int, Any] = {}
        """The handlers the program set in this schedule (not installed: see _program)."""
        """``atexit`` registrations the program made in this schedule: run at its end."""
        self._loop_hits: dict[object, int] = {}
        self.longest_hold: tuple[float, str] | None = None
        """The longest a thread was held while time passed: (seconds, its name)."""
        self._timed: dict[int, ControlledThread] = {}
        """Blocked threads with a deadline, by thread id."""
        self._muted = Muted()
        """The program's stdout and stderr while a teardown discards its output."""
        self._io_waiters: dict[int, _IoWait] = {}  # in the order they began
        """Threads blocked until a real file descriptor is ready: (the thread, the
        file, whether to read), by thread id (see :meth:`wait_for_io`)."""
        self._running: ControlledThread | None = None
        self._settler: ControlledThread | None = None
        """The thread in :meth:`settle` or :meth:`let_others_run`, while it waits."""
        self._waits_for: Callable[[ControlledThread], bool] = lambda thread: False
        """Which threads it waits for, until none of them can run."""
        self._settled: set[int] = set()
        """The threads it waits for, and those that settled while it waited."""
        self._streak = 0
        """Points in a row the running thread kept the turn while another could run."""
        self._free = False
        """Past the step bound: threads take fair turns, no strategy decides."""
        self._step_ended: Callable[[int], None] | None = getattr(strategy, "step_ended", None)
        """A strategy that reasons on what each step touched (DPOR) is told, with
        this, where each step of a thread ends: where another thread could run
        next, and where time passes (:data:`TIME`)."""
        self.thinned: set[str] = set()
        """Why some interleavings of this schedule had no scheduling point (the
        fairness bound handed a turn on, a long loop's later steps were not all
        points, real I/O moved the clock) or are not searched (a daemon thread
        held while time passed). An exhausted search is no proof then."""
        self.time_held = 0.0
        """Virtual time passed while some thread could run: at most ``max_delay``
        in all (one request's path through three held threads tripped a 3 s timeout)."""
        self.real_io_waited = 0.0
        """Real seconds no thread could run, waiting on real files (see REAL_IO_LIMIT)."""
        self._quiet: tuple[int, float] | None = None
        """Since when (the step, the real clock) in-process sockets were not ready."""
        self._in_process_seen: tuple[tuple[int, tuple[int, ...]], bool] | None = None
        """The last :meth:`_in_process` answer, for its step and its files."""
        self._settled_seen: tuple[int, float, bool] | None = None
        """(step, real time, whether settled) of the last :meth:`_sockets_settled`."""
        self._peers_outside: dict[tuple[Any, ...], bool] = {}
        """Whether each peer address the schedule's sockets waited on is another
        process's (:func:`~._loopback.from_another_process`)."""
        self._talked_outside = False
        """Whether a thread waited on another process's files: then no time passes
        while threads are held (see :meth:`_held_waits`)."""

    # -- threads ---------------------------------------------------------------

    def controlled(self) -> ControlledThread | None:
        """The calling thread's record, or None when it is not controlled."""
        return self._by_ident.get(get_ident())

    @property
    def running(self) -> ControlledThread | None:
        return self._running

    def adopt_current(self, name: str) -> ControlledThread:
        """Make the calling thread the first controlled thread; it has the turn."""
        thread = self._new(name, daemon=False)
        thread.baton.acquire()
        thread.ident = get_ident()
        self._by_ident[thread.ident] = thread
        self._running = thread
        return thread

    def new_thread(self, name: str, daemon: bool) -> ControlledThread:
        """A thread the running thread is starting; it runs when first chosen."""
        thread = self._new(name, daemon)
        thread.held_since = self.now
        thread.spawned_at = self.step
        thread.baton.acquire()
        return thread

    def _new(self, name: str, daemon: bool) -> ControlledThread:
        thread = ControlledThread(len(self.threads), name, daemon, _thread.allocate_lock())
        self.threads.append(thread)
        return thread

    def enter(self, thread: ControlledThread) -> None:
        """In a new OS thread, before its body: wait for its first turn."""
        thread.ident = get_ident()
        self._by_ident[thread.ident] = thread  # dict writes are atomic; nobody iterates it
        thread.baton.acquire()
        if self.aborting:
            raise Abort
        if _footprint.collecting:  # it could not run before its start
            _footprint.acquired(_footprint.thread(thread.tid), changed=False)

    def exit(self, thread: ControlledThread) -> None:
        """In a thread whose body ended: hand the turn on without waiting for it back."""
        if thread.abandoned:
            return  # the schedule went on without it
        thread.finished = True
        self._exited += 1
        thread.waiting = None
        if _footprint.collecting:  # what a join waits for
            _footprint.released(_footprint.thread(thread.tid))
        for joiner in thread.joiners:
            self.wake(joiner)
        thread.joiners.clear()
        self._by_ident.pop(thread.ident or 0, None)
        try:
            self._ended(thread.tid)
            self._wake_settler()
            following = self._next_after(thread)
            if following is None and self.live_threads():
                self._deadlock(thread)  # its end woke nobody: they wait for ever
        except Abort:  # the schedule failed (the strategy, a deadlock): tear down
            following = self._next_to_abort()
        if following is not None:
            self._hand_to(following)

    def release_adopted(self, thread: ControlledThread) -> None:
        """The adopted thread stops being controlled (the schedule is over)."""
        thread.finished = True
        self._by_ident.pop(thread.ident or 0, None)
        self._running = None

    def live_threads(self) -> list[ControlledThread]:
        return [t for t in self.threads if not t.finished]

    # -- scheduling ----------------------------------------------------------------

    def point(self, kind: str, detail: str = "", frame: FrameType | None = None) -> None:
        """A scheduling point in the running thread: another thread may run now."""
        current = self._running
        if current is None or current.ident != get_ident():
            self._not_its_turn()
        accesses = []
        if _footprint.collecting:
            code = frame.f_code if frame is not None and kind == "access" else None
            accesses = _footprint.at_point(current.ident or 0, detail, code)
        if current.holding:
            _footprint.record(accesses)
            return
        self.progress += 1
        if self.aborting:
            self._abort_here(current)
        self.step += 1
        if len(self.threads) - self._exited == 1:
            self._alone_steps += 1
            if self._alone_steps > ALONE_STEPS * self.max_steps:
                self._livelock(f"{self._alone_steps - 1} scheduling points of one thread alone")
            if len(self.threads) == 1 and not self.record_trace and self._step_ended is None:
                # The program's start, before any other thread: nothing to
                # choose, and nothing it does can race (a start orders it first).
                # DPOR is told even these steps: a start that differs between
                # runs is a program that does not repeat itself, and no proof.
                return
        elif self.step - self._alone_steps > self.max_steps:
            self._past_the_bound()
        if self.record_trace:
            self._record(current, kind, detail, frame)
        runnable = [t.tid for t in self.threads if t.runnable]
        if self._time_may_pass(runnable):
            runnable.append(TIME)
        if len(runnable) > 1:
            self._ended(current.tid)
            if self._streak >= FAIRNESS_BOUND:
                chosen = self._fair_turn(runnable, current)
            elif self._free:
                chosen = current.tid
            else:
                chosen = self._decide(runnable, current.tid)
            if chosen != current.tid:
                self._streak = 0
                following = self._let_time_pass() if chosen == TIME else self.threads[chosen]
                if following is not current:  # held while real I/O did not end: goes on
                    self._switch(current, following)
            else:
                self._streak += 1
        elif self._step_ended is not None:
            # Every point ends a step for a strategy that is told, even with no
            # other thread to run: a step is then the same code in every schedule.
            self._ended(current.tid)
        if accesses:  # the access this point is before: in the step it starts
            _footprint.record(accesses)

    def _past_the_bound(self) -> None:
        """Past the step bound the strategy no longer chooses: each thread keeps
        the turn for :data:`FAIRNESS_BOUND` points, then the next runs (a batch
        job's loops over its own data end so); past :data:`LIVELOCK_STEPS` times
        the bound, nothing ends it: a livelock."""
        if self.step - self._alone_steps > LIVELOCK_STEPS * self.max_steps:
            self._livelock(f"{LIVELOCK_STEPS * self.max_steps} scheduling points")
        if not self._free:
            self._free = True
            self.thinned.add(f"the step bound ({self.max_steps} points: then fair turns)")

    def _fair_turn(self, runnable: list[int], current: ControlledThread) -> int:
        """``current`` kept the turn for :data:`FAIRNESS_BOUND` points while others
        could run (it spins, waiting for one of them): the next in turn runs, not
        asked of the strategy, so no strategy starves a thread into a false livelock."""
        self.thinned.add(f"the fairness bound ({FAIRNESS_BOUND} points in a row)")
        others = [tid for tid in runnable if tid != current.tid]
        chosen = next((tid for tid in others if tid > current.tid), others[0])
        self.preemptions[self.step] = (
            f"fairness: T{current.tid} ran {FAIRNESS_BOUND} points while others waited; "
            + ("time passes" if chosen == TIME else f"T{chosen} runs")
        )
        return chosen

    def loop_step(self, where: object) -> bool:
        """Whether this step of the loop at ``where`` is a scheduling point: the
        first :data:`LOOP_STEPS` of the schedule, then the 128th, 256th, ..."""
        hits = self._loop_hits.get(where, 0) + 1
        self._loop_hits[where] = hits
        if hits <= LOOP_STEPS or hits & (hits - 1) == 0:
            return True
        self.thinned.add(f"loops past {LOOP_STEPS} steps (not every step a point)")
        return False

    def block(
        self,
        why: str,
        deadline: float | None = None,
        on: object = None,
        waiting_for: object = None,
    ) -> None:
        """The running thread waits until another wakes it, or until ``deadline``.

        ``on``: the footprint key of what it waits on, which whoever wakes it releases.
        ``waiting_for``: the primitive (a lock knows its holder) or the thread it
        waits for, named in a deadlock's wait-for graph."""
        current = self._running
        if current is None or current.ident != get_ident():
            self._not_its_turn()
        if self.aborting:
            self._abort_here(current)
        current.waiting = why
        current.held_before += self.now - current.held_since
        current.waiting_on = on
        current.deadline = deadline
        if deadline is not None:
            self._timed[current.tid] = current
            if _footprint.collecting:  # its end depends on the time now
                _footprint.looked_at(_footprint.CLOCK)
        if on is not None and _footprint.collecting:
            _footprint.waits.add(on)
        current.blocked_frame = sys._getframe(1)
        current.blocked_on = waiting_for
        self._ended(current.tid)
        self._wake_settler()
        following = self._next_after(current)
        if following is None:
            self._deadlock(current)
        self._switch(current, following)
        if current.woken_by is not None:  # it could not have gone on before that release
            _footprint.acquired(current.woken_by)
            current.woken_by = None

    def settle(self) -> None:
        """The running thread waits until no thread that :attr:`~ControlledThread.
        settles` can run: the thread pool's workers that ended a job have gone
        idle or taken their next job. The scenario's end (stopping the reactor)
        waits so: when a worker's bookkeeping ends relative to the harness's stop
        is not the program's doing, and no job's code runs meanwhile, but every
        order of it was one more interleaving to explore."""
        self._wait_while(lambda thread: thread.settles, "the thread pool's workers to settle")

    def let_others_run(self, why: str) -> None:
        """The running thread waits until no other thread can run: a reactor
        about to poll real sockets lets them go first, as its blocking poll
        would. (Blocking until "now" instead offered time passing as a choice
        that moved nothing, which a strategy could take for ever.)"""
        current = self._running
        self._wait_while(lambda thread: thread is not current, why)

    def _wait_while(self, waits_for: Callable[[ControlledThread], bool], why: str) -> None:
        current = self._running
        if current is None or current.ident != get_ident():
            self._not_its_turn()
        self._settled = {t.tid for t in self.threads if waits_for(t) and t.runnable}
        self._settled.discard(current.tid)
        if not self._settled:
            return
        if _footprint.collecting:  # a blocked step's waits: what ends this one
            _footprint.waits.update(("settled", tid) for tid in self._settled)
        self._settler, self._waits_for = current, waits_for
        try:
            self.block(why)
        finally:
            self._settler = None
        if _footprint.collecting:  # after every step it waited for, none racing with it
            for tid in sorted(self._settled):
                _footprint.acquired(("settled", tid), changed=False)

    def between_jobs(self, thread: ControlledThread, between: bool) -> None:
        """A pool worker (``thread``, running) starts a job (False) or ended one (True)."""
        thread.settles = between
        if self._settler is not None and not between:
            self._settled_step(thread.tid)
            self._wake_settler()

    def _settled_step(self, tid: int) -> None:
        self._settled.add(tid)
        if _footprint.collecting:  # each worker its own key: their steps stay independent
            _footprint.released(("settled", tid))

    def _wake_settler(self) -> None:
        settler = self._settler
        if settler is None or settler.waiting is None:
            return
        waits_for = self._waits_for
        if not any(t.runnable and waits_for(t) for t in self.threads if t is not settler):
            self.wake(settler)

    def waiting_on_real_io(self) -> ControlledThread | None:
        """The thread that began to wait on real files first, if any waits."""
        first = next(iter(self._io_waiters.values()), None)
        return first.thread if first is not None else None

    def others_runnable(self) -> bool:
        """Whether a thread other than the running one could run now (one that
        waited on a real socket, now ready, included)."""
        if self._io_waiters:
            self._wake_ready_io(0.0)
        return any(t.runnable and t is not self._running for t in self.threads)

    def any_ready(self, reads: Sequence[Any], writes: Sequence[Any]) -> bool:
        """Whether one of ``reads`` is ready to read or of ``writes`` to write, now."""
        if not reads and not writes:
            return False
        readable, writable = _ready(list(reads), list(writes), 0)
        return bool(readable or writable)

    def advance(self, seconds: float) -> None:
        """Move virtual time on (a reactor that waited on real sockets)."""
        self.thinned.add(REAL_IO)
        self.now += seconds
        if self._running is not None:  # it waited, it was not held
            self._running.held_since += seconds
        self.progress += 1  # time goes on with real I/O: nothing is stuck (a long sleep)
        self._waited_on_real_io(seconds)
        self._wake_due()  # a worker's sleep ends meanwhile
        if self._io_waiters:
            self._wake_ready_io(0.0)

    def skip_quiet_time(
        self, reads: Sequence[Any], writes: Sequence[Any], delay: float | None
    ) -> bool:
        """No other thread can run, and the running one would wait on ``reads``
        and ``writes`` (real sockets) for at most ``delay``: when those and the
        other threads' real files only talk to each other, no child process
        lives (:mod:`~threadcheck._sched._loopback`) and none was ready for
        :data:`QUIET_PERIOD` of real time, only time can wake anyone. Virtual
        time then passes at once to the next deadline (``delay``, or a waiting
        thread's) and True is returned; else False: wait in real time."""
        waits = list(self._io_waiters.values())
        all_reads = [*reads, *(file for wait in waits for file in wait.reads)]
        all_writes = [*writes, *(file for wait in waits for file in wait.writes)]
        deadlines = [] if delay is None else [self.now + delay]
        if self._timed:
            deadlines.append(_deadline_order(self._due())[0])
        if not deadlines or not self._only_time_wakes(all_reads, all_writes, min(deadlines)):
            return False
        self._quiet = None
        self.thinned.add(REAL_IO)
        if self._running is not None:  # it waited, it was not held
            self._running.held_since += min(deadlines) - self.now
        self.progress += 1
        self._pass_time_to(min(deadlines))
        return True

    def _nothing_can_wake(self) -> bool:
        """No deadline comes, and the real files waited on only talk to each
        other, quiet (an asyncio loop's wake-up pair, which only another thread
        of the program writes): no thread can ever run again."""
        waits = list(self._io_waiters.values())
        reads = [file for wait in waits for file in wait.reads]
        writes = [file for wait in waits for file in wait.writes]
        return self._only_time_wakes(reads, writes, math.inf)

    def _only_time_wakes(self, reads: list[Any], writes: list[Any], deadline: float) -> bool:
        """Whether only time can wake a thread waiting on ``reads`` and ``writes``
        before ``deadline``: see :meth:`skip_quiet_time`."""
        readable, writable = _ready(reads, writes, 0)
        if readable or writable:
            self._quiet = None  # quiet begins again once they are read
            return False
        if lands_at_once([*reads, *writes]):  # nothing in flight: not ready is quiet
            return not children_alive()
        # This runs at each poll of a wait on real files (every 10 ms): in_process
        # and settled ask the kernel about each of the process's sockets (tens of
        # microseconds, more beside a test suite's hundreds of files), once a step.
        return (
            self._in_process([*reads, *writes])
            and not children_alive()
            and (self._sockets_settled() or self._quiet_long_enough(deadline))
        )

    def _sockets_settled(self) -> bool:
        """Whether nothing the program's sockets sent is in flight
        (:func:`~._loopback.settled`): quiet at once, where waiting for
        :data:`QUIET_PERIOD` made a heartbeat's 0.25 s waits, each too short to
        wait that long for, pass in real time. Read once a step (until a thread
        runs, none sends), and again after :data:`SETTLING` while not."""
        now = _real_clock()
        seen = self._settled_seen
        if seen is None or seen[0] != self.step or (not seen[2] and now - seen[1] >= SETTLING):
            seen = self._settled_seen = (self.step, now, settled())
        return seen[2]

    def _quiet_long_enough(self, deadline: float) -> bool:
        """Whether the files stayed quiet for :data:`QUIET_PERIOD` (where the
        kernel's queues are not known), unless ``deadline`` comes as soon."""
        return deadline - self.now > QUIET_PERIOD and self._quiet_for()

    def _in_process(self, files: list[Any]) -> bool:
        """:func:`in_process` of ``files``, read once a step: until a thread runs,
        no socket of the program opens, connects or closes."""
        key = (self.step, tuple(map(id, files)))
        if self._in_process_seen is None or self._in_process_seen[0] != key:
            self._in_process_seen = (key, in_process(files))
        return self._in_process_seen[1]

    def _quiet_for(self) -> bool:
        """Whether none of the files was ready (its caller looked: one that was
        ends the quiet), nor any thread ran, for :data:`QUIET_PERIOD` of real
        time (so far: this poll begins it, or goes on)."""
        now = _real_clock()
        if self._quiet is None or self._quiet[0] != self.step:
            self._quiet = (self.step, now)
            return False
        return now - self._quiet[1] >= QUIET_PERIOD

    def wait_for_io(
        self, file: Any, read: bool, why: str, deadline: float | None, ends_alone: bool = False
    ) -> bool:
        """The running thread waits until ``file`` (a real file) is ready to
        read (or write), or until ``deadline``: False then. See :meth:`wait_for_any`."""
        reads, writes = ([file], []) if read else ([], [file])
        return self.wait_for_any(reads, writes, why, deadline, ends_alone)

    def wait_for_any(
        self,
        reads: Sequence[Any],
        writes: Sequence[Any],
        why: str,
        deadline: float | None,
        ends_alone: bool = False,
    ) -> bool:
        """The running thread waits until one of ``reads`` is ready to read or
        one of ``writes`` to write, or until ``deadline``: False then. Other threads run
        meanwhile, the reactor that would answer it included; once none can,
        time passes in real time (best effort: I/O timing is not replayed).
        I/O that ``ends_alone`` (a child process's end, not a socket the
        reactor may answer), or that talks to another process, may also end
        while runnable threads are held: one more choice of time passing."""
        current = self._running
        if current is None or current.ident != get_ident():
            self._not_its_turn()
        self.thinned.add(REAL_IO)
        wait = _IoWait(current, reads, writes, ends_alone)
        self._io_waiters[current.tid] = wait
        try:
            self.block(why, deadline)
        finally:
            self._io_waiters.pop(current.tid, None)
        return deadline is None or self.now < deadline + wait.postponed

    def _wake_ready_io(self, timeout: float, only: _IoWait | None = None) -> None:
        """Wake the threads whose file is ready (or ``only`` its thread), waiting
        up to ``timeout`` real seconds for one, which virtual time gains too
        (before they wake: they were not held meanwhile)."""
        waits = [only] if only is not None else list(self._io_waiters.values())
        readers = {file: w.thread for w in waits for file in w.reads}
        writers = {file: w.thread for w in waits for file in w.writes}
        started = _real_clock()
        readable, writable = _ready(list(readers), list(writers), timeout)
        if timeout > 0:
            self.now += _real_clock() - started
        for file in readable:
            self._wake_io_waiter(readers[file])
        for file in writable:
            self._wake_io_waiter(writers[file])

    def _others_ready(self, only: _IoWait) -> bool:
        """Whether a file some other thread waits on is ready now."""
        others = [w for w in self._io_waiters.values() if w is not only]
        reads = [file for w in others for file in w.reads]
        writes = [file for w in others for file in w.writes]
        if not reads and not writes:
            return False
        readable, writable = _ready(reads, writes, 0)
        return bool(readable or writable)

    def _wake_io_waiter(self, thread: ControlledThread) -> None:
        if self._io_waiters.pop(thread.tid, None) is not None and thread.waiting is not None:
            self.wake(thread)

    def _wait_for_real_io(self) -> ControlledThread | None:
        """No thread can run, some wait on real files: wait for one in real time
        (virtual time going on with it) until one is ready or a deadline comes.
        The one that began to wait first, for :data:`IO_PATIENCE` while no
        other is ready: which is ready first is then the same in a replay,
        however long each took."""
        patient_until = _real_clock() + IO_PATIENCE
        while not self.aborting:
            due = self._due() if self._timed else None
            if due is not None and self.skip_quiet_time([], [], None):  # sockets in-process
                self._ended(TIME)
                return due
            if due is None and self._nothing_can_wake():
                return None  # a deadlock: an idle event loop's thread waits for ever too
            first = next(iter(self._io_waiters.values()), None)
            # Patient with the first only while no other is ready: time would pass
            # for one whose answer is there (its reply's timeout, a false failure).
            patient = _real_clock() < patient_until
            only = None
            if first is not None and patient and not self._others_ready(first):
                only = first
            began = _real_clock()
            self._wake_ready_io(REAL_IO_WAIT, only)
            # A child process's end, which comes alone: no thread is stuck out of
            # our control meanwhile (a child's 12 s build was, for the watchdog).
            # A socket that does not answer still is, after the watchdog's wait.
            if any(wait.ends_alone for wait in self._io_waiters.values()):
                self.progress += 1
            self._waited_on_real_io(_real_clock() - began)
            woken = [t for t in self.threads if t.runnable]
            if woken:
                return woken[0]
            if self._timed and _deadline_order(self._due())[0] <= self.now:
                due = self._advance_clock(self._due())
                self._ended(TIME)
                return due
        return self._next_to_abort()

    def _waited_on_real_io(self, seconds: float) -> None:
        """No thread could run for ``seconds`` of real time, waiting on real
        files; past :data:`REAL_IO_LIMIT` in all, the schedule fails as stuck."""
        self.real_io_waited += seconds
        if stop_requested.is_set() and not self.aborting:  # Ctrl-C: no more real waiting
            self.interrupted = True
            self.fail(Failure("interrupted", "interrupted while waiting on real I/O"))
        if self.real_io_waited <= REAL_IO_LIMIT or self.aborting:
            return
        live = [t for t in self.threads if not t.finished]
        self.fail(
            Failure(
                "deadlock",
                f"{STUCK_ON_REAL_IO}: no thread could run for {format_seconds(REAL_IO_LIMIT)} "
                "of real time in all, waiting on sockets or pipes that did not answer (a "
                "reply that never comes?): "
                + ", ".join(
                    f"T{t.tid}({t.name}) {t.waiting or 'polling its sockets'}" for t in live
                ),
                thread=self._running.name if self._running else None,
            )
        )

    def drain(self, me: ControlledThread) -> None:
        """End the schedule: every other live thread unwinds (Abort), then ``me`` goes on."""
        self._tear_down()
        while True:
            others = [t for t in self.threads if not t.finished and t is not me]
            if not others:
                return
            following = others[0]
            self.wake(following)
            self.progress += 1
            self._running = following
            following.baton.release()
            me.baton.acquire()

    def wake(self, thread: ControlledThread, by_time: bool = False) -> None:
        """``thread`` may run again (it rechecks what it waited for)."""
        if _footprint.collecting and thread.waiting is not None:
            # The step that woke it (time passing: the step of TIME) ends its wait,
            # and the wait's object is changed for whoever else looks at it.
            woken_by = ("woken", thread.tid) if by_time else thread.waiting_on
            if woken_by is not None:
                _footprint.released(woken_by)
                thread.woken_by = woken_by
            if by_time and thread.waiting_on is not None:
                _footprint.touch(thread.waiting_on)
        thread.waiting_on = None
        if thread.waiting is not None:
            thread.held_since = self.now
        thread.waiting = None
        thread.deadline = None
        thread.blocked_frame = None
        thread.blocked_on = None
        self._timed.pop(thread.tid, None)

    def _next_after(self, current: ControlledThread) -> ControlledThread | None:
        """Who runs once ``current`` blocked or finished; None: nobody can."""
        if self.aborting:
            return self._next_to_abort()
        runnable = [t.tid for t in self.threads if t.runnable]
        if not runnable:
            if self._io_waiters:
                return self._wait_for_real_io()
            if not self._timed:
                return None
            due = self._advance_clock(self._due())  # nobody is held: time passes, no choice
            self._ended(TIME)
            return due
        if self._time_may_pass(runnable):
            runnable.append(TIME)
        if len(runnable) == 1:
            return self.threads[runnable[0]]
        chosen = self._decide(runnable, None)
        return self._let_time_pass() if chosen == TIME else self.threads[chosen]

    def _time_effects(self) -> frozenset[Hashable]:
        """What :meth:`_let_time_pass` would write now: the clock, and the waits
        of the threads it would wake (the real I/O that may end, the deadlines
        that come first)."""
        waking = [w.thread for w in self._io_waiters.values() if self._may_end_held(w)]
        held = self._held_waits()
        if held:
            soonest = min(_deadline_order(t)[0] for t in held)
            waking += [t for t in held if _deadline_order(t)[0] <= soonest]
        ends: set[Hashable] = {("woken", t.tid) for t in waking}
        ends.update(t.waiting_on for t in waking if t.waiting_on is not None)
        return frozenset({_footprint.CLOCK, *ends})

    def _due(self) -> ControlledThread:
        """The blocked thread whose deadline comes first (by thread id on a tie)."""
        return min(self._timed.values(), key=_deadline_order)

    def _due_while_held(self) -> ControlledThread | None:
        """:meth:`_due` of the waits whose deadline may come while runnable threads
        are held (:meth:`_held_waits`)."""
        timed = self._held_waits()
        return min(timed, key=_deadline_order) if timed else None

    def _held_waits(self) -> list[ControlledThread]:
        """The timed waits that time passing while threads are held may end: not
        one on another process's socket, whose answer comes in real time (a second
        of virtual time passing in no real time timed out a reply that always came
        in one; its deadline moves on instead: :meth:`_postpone_outside_waits`);
        and none at all once a thread waited on another process: virtual time
        passing in no real time would run the program's clock ahead of it (a job
        polling an upstream with a deadline of its own, ``select`` for 0.2 s at a
        time until ``time.monotonic()`` passed it, gave up on an answer that
        always came in time)."""
        if self._talked_outside:
            return []
        timed = [t for t in self._timed.values() if not self._waits_outside(t)]
        return [] if self._talked_outside else timed  # (asking may have told it)

    def _waits_outside(self, thread: ControlledThread) -> bool:
        """Whether ``thread`` waits on real files that talk to another process
        (a child's end, which comes alone, aside)."""
        wait = self._io_waiters.get(thread.tid)
        if wait is None or wait.ends_alone:
            return False
        if wait.outside is None:
            files = [*wait.reads, *wait.writes]
            wait.outside = not (lands_at_once(files) or in_process(files))
            self._talked_outside = self._talked_outside or wait.outside
        return wait.outside

    def _time_may_pass(self, runnable: list[int]) -> bool:
        """Whether time may pass while ``runnable`` are held: a thread's real I/O
        end or the next deadline come within ``max_delay`` of the longest hold."""
        if not (self._timed or self._io_waiters):  # the common case, at every point
            return False
        if self._io_to_end() is not None and self._may_hold_longer(runnable):
            return True
        due = self._due_while_held()
        if due is None:
            return False
        soonest = _deadline_order(due)[0]
        return soonest <= self.now or self._held_at(soonest, runnable) <= self.max_delay

    def _may_hold_longer(self, runnable: list[int]) -> bool:
        """Whether ``runnable`` have all been held less than ``max_delay`` so far."""
        return self._held_at(self.now, runnable) < self.max_delay

    def _held_at(self, when: float, runnable: list[int]) -> float:
        """How long threads will have been held in all by ``when``: any of
        ``runnable``, and all of them along the schedule."""
        held = max(self.threads[tid].held_for(when) for tid in runnable)
        return max(held, self.time_held + when - self.now)

    def _io_to_end(self) -> _IoWait | None:
        """The first-begun wait on real I/O that may end with every thread held."""
        return next((w for w in self._io_waiters.values() if self._may_end_held(w)), None)

    def _may_end_held(self, wait: _IoWait) -> bool:
        """Whether ``wait`` may end while every thread is held: a child process's
        end, or another process's answer, which comes in real time whatever this
        process's threads do (else the second of two jobs' answers could only
        land once the first job's thread blocked: never between its check and
        its act); not once it did not."""
        if wait.declined:
            return False
        if wait.ends_alone:
            return True
        if wait.answered_outside is None:
            files = [*wait.reads, *wait.writes]
            wait.answered_outside = from_another_process(files, self._peers_outside)
        return wait.answered_outside

    def _advance_clock(self, due: ControlledThread) -> ControlledThread:
        """Time passes to ``due``'s deadline, waking every waiter due by then; ``due`` runs."""
        self._pass_time_to(_deadline_order(due)[0])
        return due

    def _pass_time_to(self, deadline: float) -> None:
        """The clock moves on to ``deadline`` (within the time bounds), and every
        waiter due by then wakes."""
        if deadline > self.now:  # (a clock that does not move is the decision bound's)
            self.now = deadline
            self._time_passed += 1
            if not self.aborting:
                self._check_time_bound()
        self._wake_due()

    def _check_time_bound(self) -> None:
        """Past :data:`TIME_HORIZON` or :data:`TIME_STEPS`, the schedule fails and
        ends: its threads unwind from their next point or wait."""
        if self._time_passed > TIME_STEPS * self.max_steps:
            spent = f"time passing {TIME_STEPS * self.max_steps:,} times"
        elif self.now - CLOCK_START > TIME_HORIZON and self._time_passed > HORIZON_PASSES:
            spent = f"{TIME_HORIZON:,.0f} s of virtual time"
        else:
            return
        self._fail_livelock(
            f"time bound exceeded: {spent} without finishing (timers kept firing: "
            "a LoopingCall ticking while the rest waits for ever?)"
        )

    def _wake_due(self) -> None:
        """Wake every waiter whose deadline has come (by now)."""
        for thread in list(self._timed.values()):  # wake() removes from it
            if _deadline_order(thread)[0] <= self.now:
                self.wake(thread, by_time=True)

    def _let_time_pass(self) -> ControlledThread:
        """The strategy chose :data:`TIME`: the runnable threads are held while
        time passes, until a thread's real I/O ends (the one that began to wait
        first: the same in a replay) or else the next deadline comes."""
        before = self.now
        runnable = [t.tid for t in self.threads if t.runnable]
        ended = self._real_io_ends(runnable)
        due = self._due_while_held()
        if ended is None and due is not None and self._time_may_pass(runnable):
            ended = due, f"T{due.tid}'s {due.waiting} ends"  # wake() clears waiting
            self._postpone_outside_waits(max(0.0, _deadline_order(due)[0] - self.now))
            self._advance_clock(due)
        self.time_held += self.now - before
        self._ended(TIME)
        thread, what = ended or (self._held_first(), "nothing ended")
        held = ", ".join(f"T{tid}" for tid in runnable)
        self.preemptions[self.step] = (
            f"time +{format_seconds(self.now - before)}: {what}; {held} held"
        )
        return thread

    def _postpone_outside_waits(self, seconds: float) -> None:
        """``seconds`` of virtual time passed while threads were held, in no real
        time: the deadlines of waits on another process, which answers in real
        time, move on as much (its 1 s answer timed out a 1.5 s wait, the virtual
        clock run ahead by a job's short sleeps while the reactor was held)."""
        if not seconds:
            return
        for wait in self._io_waiters.values():
            deadline = wait.thread.deadline
            if deadline is not None and self._waits_outside(wait.thread):
                wait.thread.deadline = deadline + seconds
                wait.postponed += seconds

    def _real_io_ends(self, runnable: list[int]) -> tuple[ControlledThread, str] | None:
        """Wait in real time (virtual time going on with it), up to
        :data:`IO_PATIENCE`, for the I/O of :meth:`_io_to_end`: its thread and
        what ended, or None. I/O that did not end is not waited for so again:
        it needs a thread that was held."""
        wait = self._io_to_end()
        if wait is None or not self._may_hold_longer(runnable):
            return None
        what = f"T{wait.thread.tid}'s {wait.thread.waiting} ends"
        patient_until = _real_clock() + IO_PATIENCE
        while wait.thread.tid in self._io_waiters and _real_clock() < patient_until:
            self._wake_ready_io(REAL_IO_WAIT, wait)
        if wait.thread.tid in self._io_waiters:
            wait.declined = True
            return None
        return wait.thread, what

    def _held_first(self) -> ControlledThread:
        """The runnable thread held longest (by thread id on a tie)."""
        return min((t for t in self.threads if t.runnable), key=lambda t: (t.held_since, t.tid))

    def _ended(self, tid: int) -> None:
        """A step of ``tid`` (or time passing) ends: the strategy that asked is told."""
        if self._step_ended is None or self.aborting:
            return
        if tid != TIME:
            if self._settler is not None and self._waits_for(self.threads[tid]):
                self._settled_step(tid)
            _footprint.step_ends(self.threads[tid].ident or 0)
        try:
            self._step_ended(tid)
        except Exception as error:
            self.strategy_error = error
            self.fail(Failure("divergence", str(error)))
            raise Abort from None

    def _decide(self, runnable: list[int], current: int | None) -> int:
        if _footprint.collecting:
            _footprint.time_would = self._time_effects() if TIME in runnable else frozenset()
            if TIME in runnable and any(self.threads[t].daemon for t in runnable if t != TIME):
                # Held while time passes, a daemon thread may be cut off by the
                # program's end, half done (a warm-up's config half written):
                # which of its steps the end comes before is not searched.
                self.thinned.add(DAEMONS_HELD)
        try:
            chosen = self.strategy.next_thread(runnable, current, self.step)
            if chosen not in runnable:
                raise RuntimeError(
                    f"strategy chose {choice_name(chosen)}, not among "
                    + ", ".join(map(choice_name, runnable))
                )
        except Exception as error:
            self.strategy_error = error
            self.fail(Failure("divergence", str(error)))
            raise Abort from None
        default = current if current is not None and current in runnable else runnable[0]
        self.decisions.append(chosen)
        if len(self.decisions) > DECISIONS_PER_STEP * self.max_steps:
            self._livelock(f"{len(self.decisions) - 1} scheduling decisions")
        self.choices.append((chosen, default, tuple(runnable)))
        if chosen == TIME or (chosen != current and current in runnable):
            self.preemption_count += 1  # a choice after a thread blocked is none
        if chosen != default:
            self.preemptions[self.step] = (
                f"preempted: T{chosen} runs"
                if current is not None
                else f"blocked: T{chosen} runs, not T{default}"
            )
        return chosen

    def join_all(self, me: ControlledThread) -> None:
        """Wait, as the interpreter does at exit, for every other non-daemon thread."""
        while True:
            pending = [t for t in self.threads if not (t.finished or t.daemon or t is me)]
            if not pending:
                return
            pending[0].joiners.append(me)
            self.block(
                f"join of T{pending[0].tid} ({pending[0].name}) at exit",
                on=_footprint.thread(pending[0].tid),
                waiting_for=pending[0],
            )

    def next_int(self, bound: int) -> int:
        """A recorded nondeterministic choice in ``range(bound)``."""
        try:
            value = self.strategy.next_int(bound)
        except Exception as error:
            self.strategy_error = error
            self.fail(Failure("divergence", str(error)))
            raise Abort from None
        self.decisions.append(-1 - value)  # negative: not a thread id
        return value

    def _switch(self, current: ControlledThread, following: ControlledThread) -> None:
        self.progress += 1
        self._note_hold(following)
        self._running = following
        self._streak = 0
        following.baton.release()
        current.baton.acquire()
        if self.aborting:
            self._abort_here(current)

    def _hand_to(self, following: ControlledThread) -> None:
        self.progress += 1
        self._note_hold(following)
        self._running = following
        self._streak = 0
        following.baton.release()

    def _note_hold(self, following: ControlledThread) -> None:
        held = following.held_for(self.now)
        if held > 0 and (self.longest_hold is None or held > self.longest_hold[0]):
            self.longest_hold = (held, f"T{following.tid} ({following.name})")

    def _record(
        self, current: ControlledThread, kind: str, detail: str, frame: FrameType | None
    ) -> None:
        where = frame if frame is not None else self.where(sys._getframe(2))
        if where is None:
            self.trace.append(
                Step(self.step, current.tid, kind, "", 0, "", detail, self.now - CLOCK_START)
            )
            return
        code = where.f_code
        step = Step(
            self.step,
            current.tid,
            kind,
            code.co_filename,
            where.f_lineno,
            code.co_name,
            detail,
            self.now - CLOCK_START,
        )
        self.trace.append(step)

    def where(self, frame: FrameType | None) -> FrameType | None:
        """The user frame that led to a point, else the library frame that made it.

        threadcheck's own frames lead (the point itself) and may end the walk
        (the driver that runs the schedule): user code above the driver is
        not where the point happened.
        """
        while frame is not None and self.is_own(frame.f_code.co_filename):
            frame = frame.f_back
        innermost = frame
        while frame is not None:
            filename = frame.f_code.co_filename
            if not self.is_library(filename):
                return frame
            if self.is_own(filename) and frame.f_code not in _LOOKED_PAST:
                break
            frame = frame.f_back
        return innermost

    # -- failing and aborting -------------------------------------------------------

    def fail(self, failure: Failure) -> None:
        """Record the schedule's first failure and start tearing it down."""
        if self.failure is None:
            self.failure = failure
        self._tear_down()

    def out_of_time(self) -> None:
        """Called by the watchdog once the exploration's time is spent: every
        thread unwinds from its next point, and nothing failed."""
        self.timed_out = True
        self._tear_down()

    def _tear_down(self) -> None:
        """Every thread unwinds from its next point on. The program's output goes
        nowhere meanwhile: the :class:`Abort` that unwinds its threads reaches its
        own error handlers (Twisted's Deferreds catch it, trial reports it),
        which would print our internals."""
        if not self.aborting:
            self._muted.start()
        self.aborting = True

    def unmute(self) -> None:
        """The teardown is over: the program's output goes where it went."""
        self._muted.stop()

    def _deadlock(self, current: ControlledThread) -> NoReturn:
        live = [t for t in self.threads if not t.finished]
        waits = tuple(
            (t.tid, f"{t.waiting} at {describe(self.where(t.blocked_frame))}", _holder(t))
            for t in live
        )
        self.fail(
            Failure(
                "deadlock",
                "every live thread is blocked: "
                + ", ".join(f"T{t.tid}({t.name}) on {t.waiting}" for t in live),
                thread=current.name,
                details="\n".join(
                    f"T{tid} ({self.threads[tid].name}) waits for {what}"
                    + ("" if holder is None or what.startswith("join") else f", held by T{holder}")
                    for tid, what, holder in waits
                ),
                waits_for=waits,
            )
        )
        current.waiting = None
        raise Abort

    def _livelock(self, spent: str = "") -> NoReturn:
        spent = spent or f"{self.max_steps} scheduling points"
        self._fail_livelock(f"step bound exceeded: {spent} without finishing")
        raise Abort

    def _fail_livelock(self, message: str) -> None:
        self.fail(
            Failure("livelock", message, thread=self._running.name if self._running else None)
        )

    def _abort_here(self, current: ControlledThread) -> NoReturn:
        current.abort_steps += 1
        if current.abort_steps > ABORT_STEP_LIMIT:
            # It catches Abort and carries on: park it for good, let the rest end.
            current.waiting = "abort (ignored Abort)"
            current.finished = True
            following = self._next_to_abort()
            if following is not None:
                self._hand_to(following)
            current.baton.acquire()
        raise Abort

    def _next_to_abort(self) -> ControlledThread | None:
        """While aborting: every other live thread in turn, the adopted one last."""
        live = [t for t in self.threads if not t.finished and t is not self._running]
        others = [t for t in live if t.tid != 0]
        candidates = others or live
        if not candidates:
            return None
        self.wake(candidates[0])
        return candidates[0]

    def _not_its_turn(self) -> NoReturn:
        """A thread calls in without the turn: one given up on as blocked, that
        woke up later (its socket closed as the program's module went). It stops
        here for good: unwinding, it went through the program's error handlers
        (Twisted's thread pool logs "Unhandled Error"), printed over the report."""
        stray = self._by_ident.get(get_ident())
        if stray is not None and stray.abandoned:
            parked = _thread.allocate_lock()
            parked.acquire()
            parked.acquire()  # never released: the process exits past it
        raise Abort("an abandoned thread woke up after its schedule")

    def rescue(self, stuck: ControlledThread, failure: Failure) -> None:
        """From the watchdog: ``stuck`` (not the adopted thread, which runs the
        schedule) blocked outside our control; the others unwind without it."""
        self.fail(failure)
        stuck.finished = stuck.abandoned = True  # its OS thread stays blocked where it is
        following = self._next_to_abort()
        if following is not None:
            self._hand_to(following)


def choice_name(tid: int) -> str:
    """A thread decision as reports name it: ``T2``, or ``time`` for :data:`TIME`."""
    return "time" if tid == TIME else f"T{tid}"


def _holder(thread: ControlledThread) -> int | None:
    """The thread ``thread`` waits for: the one holding the lock it waits for, or
    the one it joins; None when no thread holds what it waits for."""
    on = thread.blocked_on
    holder = on if isinstance(on, ControlledThread) else getattr(on, "holder", None)
    return holder.tid if isinstance(holder, ControlledThread) else None


def _deadline_order(thread: ControlledThread) -> tuple[float, int]:
    assert thread.deadline is not None  # only threads in Scheduler._timed
    return thread.deadline, thread.tid


def format_seconds(seconds: float) -> str:
    """A virtual duration as people read it: ``10 ms``, ``1.5 s``."""
    milliseconds = float(f"{seconds * 1000:.3g}")  # 999.9999 rounds to 1000: "1 s"
    if milliseconds < 1000:
        return f"{milliseconds:g} ms"
    return f"{seconds:.3g} s"


def describe(frame: FrameType | None) -> str:
    if frame is None:
        return "<library code>"
    code = frame.f_code
    return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"


def stack_of(ident: int | None, limit: int = 8) -> str:
    """The innermost frames of a (stuck) OS thread, from the user's call that
    blocked (the scheduler's own frames under it, a wait on real files, would
    fill the excerpt), most recent call last, library runs folded to a line as
    every report shows them (the pool's and Twisted's frames of a job)."""
    frame = _stacks.current_frames().get(ident or 0)
    user = frame
    while user is not None and _stacks.is_own(user.f_code.co_filename):
        user = user.f_back
    start = user or frame  # all of it ours: shown as it is
    if start is None:
        return ""
    return "\n".join(_stacks.format_stack(_stacks.stack_from(start, limit), indent="  "))


def blocked_at(ident: int | None) -> str | None:
    """Where a (stuck) OS thread waits (see :func:`_stacks.where_it_waits`)."""
    frame = _stacks.current_frames().get(ident or 0)
    found = _stacks.where_it_waits(_stacks.stack_from(frame))
    return None if found is None else f"{found.filename}:{found.lineno} in {found.function}"


def iter_runs(trace: Sequence[Step]) -> Iterator[list[Step]]:
    """Consecutive steps of the same thread, grouped."""
    run: list[Step] = []
    for step in trace:
        if run and step.tid != run[-1].tid:
            yield run
            run = []
        run.append(step)
    if run:
        yield run
