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
  Calls the creating thread made before ``run()`` stay accepted even if
  another thread runs the reactor: starting that thread orders them before the
  loop, which is how "run the reactor in a background thread" set-ups work.
* From then on, any call from a thread other than the owner is a
  ``foreign-thread`` violation.
* A reactor that never runs has its candidates judged against the creating
  thread when the report is made (:meth:`AffinityChecker.flush_pending`).

Costs: the reactor does the fast-path comparison inline
(``get_ident() != checker.owner``); everything here runs only on a mismatch.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any, NoReturn

from threadcheck import _stacks, _threads
from threadcheck._modes import DEFAULT_MODE, Mode
from threadcheck._recorder import Recorder
from threadcheck._violation import (
    BlockingCallAfterStopError,
    BlockingCallInReactorThreadError,
    Kind,
    ThreadAffinityError,
    ThreadAffinityWarning,
    ThreadInfo,
    Violation,
)


class AffinityChecker:
    """Owner-thread bookkeeping and violation delivery for one reactor.

    Thread safety: ``owner`` is read without a lock from any thread (a single
    attribute read); every method may be called from any thread.
    ``get_ident``, ``current_thread`` and ``lock_factory`` are injectable so
    tests can substitute fakes.
    """

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
        self._pending: list[Violation] = []
        self._exempt = threading.local()
        self._warning_registry: dict[Any, Any] = {}
        creator = current_thread()
        self.owner: int = get_ident()
        self.owner_name: str = creator.name
        self.started = False

    # -- owner changes ------------------------------------------------------

    def reactor_started(self) -> None:
        """Called in the thread that runs the reactor, as ``run()`` begins."""
        ident = self._get_ident()
        with self._lock:
            self.owner = ident
            self.owner_name = self._current_thread().name
            self.started = True
            pending, self._pending = self._pending, []
        for candidate in pending:
            if candidate.thread.ident != ident:
                self._deliver(replace(candidate, reactor_thread=self.owner_info()), raising=False)

    def flush_pending(self) -> None:
        """Judge calls held since before ``run()`` against the current owner."""
        with self._lock:
            pending, self._pending = self._pending, []
        for candidate in pending:
            self._deliver(replace(candidate, reactor_thread=self.owner_info()), raising=False)

    def owner_info(self) -> ThreadInfo:
        return ThreadInfo(self.owner_name, self.owner)

    # -- the slow path ------------------------------------------------------

    def violation(self, api: str) -> bool:
        """The calling thread is not the owner: record, warn or raise per the mode.

        Returns True when the call was reported (or held until ``run()``) and
        goes on; the caller then runs it under :meth:`exempt`, so that the
        checked APIs Twisted calls inside it are not reported a second time.
        """
        __tracebackhide__ = True  # pytest: the offending call is the user's frame
        if getattr(self._exempt, "depth", 0):
            return False
        candidate = self._capture(api, Kind.FOREIGN_THREAD)
        with self._lock:
            if candidate.thread.ident == self.owner:
                return False  # ownership moved to this thread since the fast path
            if not self.started:
                self._pending.append(replace(candidate, kind=Kind.BEFORE_RUN))
                return True
        self._deliver(candidate, raising=True)
        return True

    def blocking_call_in_reactor(self) -> NoReturn:
        """``blockingCallFromThread`` in the owner thread: record, then always raise."""
        __tracebackhide__ = True
        violation = self._capture("blockingCallFromThread", Kind.BLOCKING_CALL_IN_REACTOR)
        self.recorder.record(violation)
        raise BlockingCallInReactorThreadError(violation)

    def blocking_call_after_stop(self) -> NoReturn:
        """``blockingCallFromThread`` once the reactor stopped: record, then always raise."""
        __tracebackhide__ = True
        violation = self._capture("blockingCallFromThread", Kind.BLOCKING_CALL_AFTER_STOP)
        self.recorder.record(violation)
        raise BlockingCallAfterStopError(violation)

    @contextmanager
    def exempt(self) -> Iterator[None]:
        """Calls Twisted itself makes on behalf of a thread-safe API are not violations."""
        self._exempt.depth = getattr(self._exempt, "depth", 0) + 1
        try:
            yield
        finally:
            self._exempt.depth -= 1

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
            test=self.recorder.context,
        )

    def _deliver(self, violation: Violation, *, raising: bool) -> None:
        __tracebackhide__ = True
        self.recorder.record(violation)
        if self.mode is Mode.RAISE and raising:
            raise ThreadAffinityError(violation)
        if self.mode is Mode.WARN:
            self._warn(violation)

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
