"""The violation model: what was called, from where, and how that thread came to be."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from threadcheck._stacks import Frame, Stack, innermost_user_frame


class Kind(enum.Enum):
    """Why a call was judged a violation."""

    FOREIGN_THREAD = "foreign-thread"
    """A non-thread-safe API was called from a thread that does not run the reactor."""

    BEFORE_RUN = "before-run"
    """Called before ``run()`` from a thread that neither created nor ran the reactor."""

    AFTER_STARTING_REACTOR_THREAD = "after-starting-reactor-thread"
    """Called by the thread that created the reactor after it started the thread that
    runs it: nothing orders the call before the reactor's loop."""

    STUCK_AT_SHUTDOWN = "stuck-at-shutdown"
    """A thread-pool worker still runs its job while the reactor shuts down: Twisted
    waits for it for ever (``ThreadPool.stop`` joins every worker)."""

    BLOCKING_CALL_IN_REACTOR = "blocking-call-in-reactor"
    """``blockingCallFromThread`` was called in the reactor thread: it would never return."""

    CONFINED_ELSEWHERE = "confined-elsewhere"
    """An object ``confine(obj, thread=...)`` gave to one thread was used from another."""

    STALL = "stall"
    """Not a thread-affinity violation: one callback held the reactor thread longer
    than the stall threshold (reported on its own; it fails nothing)."""

    DATA_RACE = "data-race"
    """Not a call: two accesses to one location, at least one a write, from
    two threads, with no synchronisation ordering them (``--races``)."""

    BLOCKING_CALL_AFTER_STOP = "blocking-call-after-stop"
    """``blockingCallFromThread`` after ``reactor.stop()``: nothing would ever run it
    (twisted#10124: the process hangs, the thread pool waiting for the caller)."""


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    name: str
    ident: int

    def describe(self) -> str:
        return f"{self.name!r} (ident {self.ident})"


@dataclass(frozen=True, slots=True)
class TestContext:
    """The test, and its phase, that was running when a violation was recorded."""

    __test__ = False  # not a test class, whatever pytest's name rules say

    nodeid: str
    """pytest's node id, or trial's test id."""
    phase: str
    """setup, call or teardown."""

    def describe(self) -> str:
        return self.nodeid if self.phase == "call" else f"{self.nodeid} ({self.phase})"


@dataclass(frozen=True, slots=True)
class PriorAccess:
    """The earlier of a data race's two accesses."""

    what: str
    """read, write, update, delete or iteration."""
    thread: ThreadInfo
    stack: Stack
    spawn_site: Stack | None
    submitted_from: Stack | None


_POOL_LOOPS = (
    "concurrent/futures/thread.py",
    "twisted/python/threadpool.py",
    "twisted/_threads/_threadworker.py",
)
"""Files of the thread pools' worker loops (``_worker``, ``work``)."""


@dataclass(frozen=True, slots=True)
class Violation:
    """One non-thread-safe call made from the wrong thread.

    ``stack`` is the offending call's stack, outermost frame first, without
    threadcheck's own frames. ``spawn_site`` is where the offending thread was
    started (None when unknown: the main thread, or threads started before
    tracking began). ``submitted_from`` is the stack that handed the running
    work to a thread pool (``callInThread``/``deferToThread``), if any.
    """

    api: str
    """Qualified name of the call, e.g. ``reactor.callLater`` or ``DelayedCall.cancel``."""
    kind: Kind
    thread: ThreadInfo
    reactor_thread: ThreadInfo
    stack: Stack
    spawn_site: Stack | None
    submitted_from: Stack | None
    test: TestContext | None = None
    """The test during which it was recorded (pytest, trial); None outside tests."""
    expected: str | None = None
    """Why it is accepted (a pytest marker or fixture); None when it counts."""
    detail: str | None = None
    """What else there is to say (a stall: how long, in which callback)."""
    access: str | None = None
    """A data race: what this access did (read, write, update, delete, iteration)."""
    prior: PriorAccess | None = None
    """A data race: the earlier access it conflicts with."""
    within: int | None = None
    """A stall: how many of ``stack``'s innermost frames ran inside the reactor's
    callback (the others are the reactor's loop and the code that ran it)."""

    def user_frame(self) -> Frame | None:
        """The user's line to lead with: the innermost user frame of the call.

        When the thread ran a library callable directly, with no user code on
        its stack (``callInThread(self.sendLine, ...)``,
        ``Thread(target=reactor.stop)``), the user line that handed it over:
        where the work was submitted, else where the thread was started (not
        for a pool's worker: it was started for other work, at an innocent line).
        """
        spawn_site = None if self.runs_pool_jobs() else self.spawn_site
        for stack in (self.stack, self.submitted_from, spawn_site):
            where = innermost_user_frame(stack) if stack is not None else None
            if where is not None:
                return where
        return None

    def runs_pool_jobs(self) -> bool:
        """Whether the thread is a pool's worker, running jobs handed to it."""
        return any(
            frame.function in ("_worker", "work") and frame.filename.endswith(_POOL_LOOPS)
            for frame in self.stack
        )

    def summary(self) -> str:
        where = self.user_frame()
        at = f" at {where.location()}" if where is not None else ""
        return f"{self.headline()}{at}"

    def headline(self) -> str:
        if self.kind is Kind.DATA_RACE and self.prior is not None:
            return (
                f"data race on {self.api}: {self.access} in thread {self.thread.describe()} "
                f"and {self.prior.what} in thread {self.prior.thread.describe()}, "
                "with nothing ordering them"
            )
        if self.kind is Kind.BLOCKING_CALL_IN_REACTOR:
            return (
                f"blockingCallFromThread called in the reactor thread "
                f"{self.thread.describe()}: it would deadlock"
            )
        if self.kind is Kind.BLOCKING_CALL_AFTER_STOP:
            return (
                f"blockingCallFromThread called from thread {self.thread.describe()} "
                "after reactor.stop(): the stopping reactor will never run it, "
                "so it would wait forever"
            )
        if self.kind is Kind.CONFINED_ELSEWHERE:
            return (
                f"{self.api} called from thread {self.thread.describe()}; the object is "
                f"confined to {self.reactor_thread.describe()}"
            )
        if self.kind is Kind.STALL:
            blocked = "" if self.api == "stall" else f" in {self.api}"
            return f"reactor thread stalled{blocked}: {self.detail}"
        if self.kind is Kind.STUCK_AT_SHUTDOWN:
            return (
                f"the reactor's thread pool cannot finish at shutdown: worker "
                f"{self.thread.describe()} is still running its job, and Twisted's "
                "shutdown waits for it for ever"
            )
        if self.kind is Kind.AFTER_STARTING_REACTOR_THREAD:
            return (
                f"{self.api} called from thread {self.thread.describe()}, which created the "
                f"reactor, after it started {self.reactor_thread.describe()} to run it: "
                "the call races the reactor's loop"
            )
        if self.kind is Kind.BEFORE_RUN:
            return (
                f"{self.api} called before run() from thread "
                f"{self.thread.describe()}; the reactor belongs to "
                f"{self.reactor_thread.describe()}"
            )
        return (
            f"{self.api} called from thread {self.thread.describe()}; "
            f"the reactor runs in {self.reactor_thread.describe()}"
        )


class ThreadAffinityError(RuntimeError):
    """Raised in the offending call in ``raise`` mode."""

    __module__ = "threadcheck"  # shown to users by its public name

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.summary())
        self.violation = violation


class BlockingCallInReactorThreadError(ThreadAffinityError):
    """``blockingCallFromThread`` in the reactor thread; raised in every mode.

    Letting the call go on would block the reactor thread forever, waiting for
    the reactor thread to run the function.
    """

    __module__ = "threadcheck"  # shown to users by its public name


class BlockingCallAfterStopError(ThreadAffinityError):
    """``blockingCallFromThread`` once the reactor is stopping or stopped; raised
    at once in every mode, instead of waiting forever for a reactor that will not
    run the function again."""

    __module__ = "threadcheck"  # shown to users by its public name


class ThreadAffinityWarning(RuntimeWarning):
    """Emitted in ``warn`` mode."""

    __module__ = "threadcheck"  # shown to users by its public name
