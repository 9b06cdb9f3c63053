"""The thread-affinity rule for one reactor, and what to do when it is broken.

The rule
--------
Each reactor has one *owner* thread: the thread allowed to call its
non-thread-safe APIs.

* From creation until ``run()``, the owner is the thread that created the
  reactor. Calls from any *other* thread are held as candidates, because the
  thread that will run the reactor is not known yet.
* When ``run()`` starts, the thread running it becomes the owner. Candidates
  from that thread are dropped (a thread may set up the reactor it is about to
  run); candidates from every other thread become ``before-run`` violations.
  Calls the creating thread made before it started the thread that runs the
  reactor stay accepted: starting that thread orders them before the loop,
  which is how "run the reactor in a background thread" set-ups work. Calls it
  made *after* starting that thread are not ordered before the loop (they race
  it): ``after-starting-reactor-thread`` violations. To tell them apart, once
  the creating thread starts any thread before ``run()``, its calls are held
  as candidates too, with the number of thread starts so far.
* From then on, any call from a thread other than the owner is a
  ``foreign-thread`` violation.
* A reactor that never runs has its candidates judged against the creating
  thread when the report is made (:meth:`AffinityChecker.flush_pending`).

Costs: the reactor does the fast-path comparison inline
(``get_ident() != checker.owner``); everything here runs only on a mismatch.
"""

from __future__ import annotations

import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from types import FrameType
from typing import Any, NoReturn

from threadcheck import _hidden, _stacks, _threads
from threadcheck._modes import DEFAULT_MODE, Mode
from threadcheck._recorder import Recorder
from threadcheck._violation import (
    BlockingCallAfterStopError,
    BlockingCallInReactorThreadError,
    Kind,
    TestContext,
    ThreadAffinityError,
    ThreadAffinityWarning,
    ThreadInfo,
    Violation,
)

_HELD = -1
"""``owner`` while the creating thread's calls are held (it started a thread
before ``run()``): no thread has this ident, so every call takes the slow path."""

_waiting_to_run: dict[int, weakref.ref[AffinityChecker]] = {}
"""By id: a WeakSet's iteration costs more than a thread start (an exploration
starts threads by the thousand)."""


def _on_thread_start(number: int) -> None:
    for ref in list(_waiting_to_run.values()):
        checker = ref()
        if checker is not None:
            checker.thread_starting(number)


_threads.start_listeners.append(_on_thread_start)


class AffinityChecker:
    """Owner-thread bookkeeping and violation delivery for one reactor.

    Thread safety: ``owner`` is read without a lock from any thread (a single
    attribute read); every method may be called from any thread.
    ``get_ident``, ``current_thread`` and ``lock_factory`` are injectable so
    tests can substitute fakes.
    """

    announce = True
    """Print each violation's headline on stderr as it is raised: a library that
    swallows the error (a WSGI app in a pool thread) may leave the program waiting
    for ever, with nothing printed. Off for the scheduler's reactors, whose
    failing schedules are reported whole."""

    def __init__(
        self,
        mode: Mode | str = DEFAULT_MODE,
        recorder: Recorder | None = None,
        *,
        get_ident: Callable[[], int] = threading.get_ident,
        current_thread: Callable[[], threading.Thread] = threading.current_thread,
        lock_factory: Callable[[], AbstractContextManager[Any]] = threading.Lock,
    ) -> None:
        self.mode = Mode.parse(mode)
        self.recorder = recorder if recorder is not None else Recorder()
        self._get_ident = get_ident
        self._current_thread = current_thread
        self._lock = lock_factory()
        self._pending: list[tuple[Violation, int]] = []  # with the thread starts so far
        self._exempt = threading.local()
        self._warning_registry: dict[Any, Any] = {}
        self._announced_lines: set[str] = set()
        creator = current_thread()
        self.owner: int = get_ident()
        self.owner_name: str = creator.name
        self.creator: int = self.owner
        self.started = False
        self.allowed: frozenset[str] = frozenset()
        """APIs whose calls are recorded but never raised: the running test's
        ``allow=`` (its marker accepts them, so raise mode must not fail it)."""
        key = id(self)
        _waiting_to_run[key] = weakref.ref(self, lambda _: _waiting_to_run.pop(key, None))

    # -- owner changes ------------------------------------------------------

    def thread_starting(self, number: int) -> None:
        """A thread is being started (the ``number``-th); in the starting thread."""
        with self._lock:
            if not self.started and self.owner == self._get_ident():
                self.owner = _HELD  # the creating thread's calls are held from now on

    def reactor_started(self) -> None:
        """Called in the thread that runs the reactor, as ``run()`` begins."""
        ident = self._get_ident()
        running = self._current_thread()
        with self._lock:
            self.owner = ident
            self.owner_name = running.name
            self.started = True
            pending, self._pending = self._pending, []
        _waiting_to_run.pop(id(self), None)
        started_at = _threads.start_number(running)
        for candidate, starts in pending:
            if candidate.thread.ident == ident:
                continue  # set-up by the thread about to run the reactor
            if candidate.thread.ident == self.creator:
                if started_at is None or starts < started_at:
                    continue  # made before the reactor's thread was started: ordered
                candidate = replace(candidate, kind=Kind.AFTER_STARTING_REACTOR_THREAD)
            self._deliver(replace(candidate, reactor_thread=self.owner_info()), raising=False)

    def flush_pending(self) -> None:
        """Judge calls held since before ``run()`` against the creating thread."""
        with self._lock:
            pending, self._pending = self._pending, []
        for candidate, _ in pending:
            if candidate.thread.ident != self.creator:
                self._deliver(replace(candidate, reactor_thread=self.owner_info()), raising=False)

    def owner_info(self) -> ThreadInfo:
        return ThreadInfo(self.owner_name, self.creator if self.owner == _HELD else self.owner)

    # -- the slow path ------------------------------------------------------

    def violation(self, api: str) -> bool:
        """The calling thread is not the owner: record, warn or raise per the mode.

        Returns True when the call was reported (or held until ``run()``) and
        goes on; the caller then runs it under :meth:`exempt`, so that the
        checked APIs Twisted calls inside it are not reported a second time.
        """
        __tracebackhide__ = True  # pytest: the offending call is the user's frame
        if getattr(self._exempt, "depth", 0) or _hidden.is_ours(self._get_ident()):
            # One of our threads ran the program's code: a collection it set off
            # ran a weakref callback or a __del__ there. Not the program's thread.
            return False
        if self._inside_the_last_call():
            return True
        candidate = self._capture(api, Kind.FOREIGN_THREAD)
        with self._lock:
            if candidate.thread.ident == self.owner:
                return False  # ownership moved to this thread since the fast path
            if not self.started:
                held = replace(candidate, kind=Kind.BEFORE_RUN)
                self._pending.append((held, _threads.starts_so_far()))
                return True
        self._deliver(candidate, raising=True)
        return True

    def confined_elsewhere(self, api: str, owner: threading.Thread) -> bool:
        """A call to an object confined to ``owner`` from another thread: delivered
        per the mode; True when the call goes on (to run under :meth:`exempt`)."""
        __tracebackhide__ = True
        if getattr(self._exempt, "depth", 0):
            return False
        if self._inside_the_last_call():
            return True
        violation = replace(
            self._capture(api, Kind.CONFINED_ELSEWHERE),
            reactor_thread=ThreadInfo(owner.name, owner.ident or 0),
        )
        self._deliver(violation, raising=True)
        return True

    def blocking_call_in_reactor(self) -> NoReturn:
        """``blockingCallFromThread`` in the owner thread: record, then always raise."""
        __tracebackhide__ = True
        violation = self._capture("blockingCallFromThread", Kind.BLOCKING_CALL_IN_REACTOR)
        self.recorder.record(violation)
        raise self._announced(BlockingCallInReactorThreadError(violation))

    def blocking_call_after_stop(self) -> NoReturn:
        """``blockingCallFromThread`` once the reactor stopped: record, then always raise."""
        __tracebackhide__ = True
        violation = self._capture("blockingCallFromThread", Kind.BLOCKING_CALL_AFTER_STOP)
        self.recorder.record(violation)
        raise self._announced(BlockingCallAfterStopError(violation))

    def stuck_at_shutdown(self, thread: threading.Thread, frame: FrameType) -> Violation:
        """Record that pool worker ``thread`` (blocked in ``frame``) holds up shutdown."""
        violation = Violation(
            api="ThreadPool.stop",
            kind=Kind.STUCK_AT_SHUTDOWN,
            thread=ThreadInfo(thread.name, thread.ident or 0),
            reactor_thread=self.owner_info(),
            stack=_stacks.intern(_stacks.stack_from(frame)),
            spawn_site=_threads.spawn_site(thread),
            submitted_from=_threads.submission_on(frame),
            test=self.recorder.context,
        )
        self.recorder.record(violation)
        return violation

    @contextmanager
    def exempt(self) -> Iterator[None]:
        """Calls Twisted itself makes on behalf of a thread-safe API are not violations."""
        self._exempt.depth = getattr(self._exempt, "depth", 0) + 1
        try:
            yield
        finally:
            self._exempt.depth -= 1

    def _inside_the_last_call(self) -> bool:
        """Whether this call is made inside the same call of the user's into
        Twisted as this thread's last reported one (``resolver.lookupAddress``
        from a worker: a thread pool, a port, its write, a timeout): one mistake,
        reported once. The same line run again (a loop) is a new call."""
        call = _twisted_call(sys._getframe(2))
        last, self._exempt.call = getattr(self._exempt, "call", None), call
        # The frame is kept until the thread's next report: while it is, no new
        # call's frame can be the same object.
        return last is not None and call is not None and last[0] == call[0] and last[1] is call[1]

    def _capture(self, api: str, kind: Kind) -> Violation:
        thread = self._current_thread()
        return Violation(
            api=api,
            kind=kind,
            thread=ThreadInfo(thread.name, self._get_ident()),
            reactor_thread=self.owner_info(),
            stack=_stacks.intern(_stacks.without_threadcheck(_stacks.capture(skip=2))),
            spawn_site=_threads.spawn_site(thread),
            submitted_from=_threads.current_submission(),
            test=self._charged_to(thread),
        )

    def _charged_to(self, thread: threading.Thread) -> TestContext | None:
        """The running test, unless ``thread`` was started by another one and
        runs its own code (not a pool's job): it outlived its test, and the
        violation belongs to no test (the session fails on it)."""
        test = self.recorder.context
        started = _threads.started_in(thread)
        if (
            test is not None
            and isinstance(started, TestContext)
            and started.nodeid != test.nodeid
            and _threads.runs_its_own_code(thread)
            and _threads.current_submission() is None
        ):
            return None
        return test

    def _deliver(self, violation: Violation, *, raising: bool) -> None:
        __tracebackhide__ = True
        self.recorder.record(violation)
        if self.mode is Mode.RAISE and raising and violation.api not in self.allowed:
            raise self._announced(ThreadAffinityError(violation))
        if self.mode is Mode.WARN:
            self._warn(violation)

    def _announced(self, error: ThreadAffinityError) -> ThreadAffinityError:
        line = f"threadcheck: raising {type(error).__name__}: {error}"
        if self.announce and line not in self._announced_lines:  # a retry loop says it once
            self._announced_lines.add(line)
            try:
                print(line, file=sys.stderr)
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):
                pass  # a closed or missing stderr must not become another error in the call
        return error

    def _warn(self, violation: Violation) -> None:
        where = violation.user_frame()
        filename, lineno = (where.filename, where.lineno) if where else ("<unknown>", 0)
        warnings.warn_explicit(
            violation.headline(),
            ThreadAffinityWarning,
            filename,
            lineno,
            registry=self._warning_registry,
        )


def _twisted_call(frame: FrameType | None) -> tuple[tuple[int, int], FrameType] | None:
    """The innermost user frame above ``frame`` (its id and instruction), and the
    frame of Twisted's it called; None when the user's line did not call into
    Twisted (its own call, or a library's: an ``ExitStack`` running callbacks
    that are each a mistake of their own)."""
    callee, callee_library = None, None
    while frame is not None:
        library = _stacks.classify(frame.f_code.co_filename)
        if library is None:
            if callee is None or callee_library != "twisted":
                return None
            return (id(frame), frame.f_lasti), callee
        if library != "threadcheck":
            callee, callee_library = frame, library
        frame = frame.f_back
    return None
