"""Running schedules: one at a time, each on a fresh scheduler and reactor.

An :class:`Explorer` holds what lives for a whole exploration (the patched
primitives, the scheduling points, the watchdog) and runs one schedule at a
time: a fresh scheduler and a fresh scheduled reactor, the target run in the
calling thread (which becomes controlled thread T0 and runs the reactor),
then every other thread joined or torn down. Determinism: the cyclic GC is
collected before and paused during each schedule, default thread names count
from 1 in each, and the thread pool's set order is fixed.

Thread safety: an Explorer is used by one thread at a time.
"""

from __future__ import annotations

import functools
import gc
import itertools
import os
import random
import re
import sys
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from threadcheck import __version__ as threadcheck_version
from threadcheck import _arguments, _stacks, _threads
from threadcheck._races import _access, _detector, _footprint
from threadcheck._sched import _token
from threadcheck._sched._alarm import DeferredAlarm
from threadcheck._sched._carriers import Carriers
from threadcheck._sched._core import (
    BLOCKED,
    DEFAULT_MAX_DELAY,
    DEFAULT_MAX_STEPS,
    REAL_IO,
    Abort,
    Failure,
    OutOfTime,
    Scheduler,
    Strategy,
    TargetError,
    activate,
    refuse_while_exploring,
)
from threadcheck._sched._logging import LoggingRegistry
from threadcheck._sched._patch import Patches, reseed_randomness
from threadcheck._sched._points import DEFAULT_GRANULARITY, Instrumentation
from threadcheck._sched._program import (
    CONTROLLED_ATTR,
    give_back_executors,
    revive_executors,
    run_at_exit,
    stop_idle_executor_workers,
    thread_failure,
)
from threadcheck._sched._report import WARM_UP, ScheduleRun, short_location
from threadcheck._sched._seed import hash_seed
from threadcheck._sched._twisted_logging import TwistedLogging
from threadcheck._sched._watchdog import Watchdog
from threadcheck._sched.strategies import Plan, Replay
from threadcheck._violation import (
    BlockingCallAfterStopError,
    BlockingCallInReactorThreadError,
    ThreadAffinityError,
)

if TYPE_CHECKING:
    from threadcheck._violation import Violation
    from threadcheck_reactor._scheduled import ScheduledMixin

DEFAULT_STALL_TIMEOUT = 10.0
FULL_COLLECTION_EVERY = 64
"""Schedules between whole garbage collections."""


@dataclass(frozen=True)
class Settings:
    granularity: str = DEFAULT_GRANULARITY
    include: tuple[str, ...] = ()
    """Folders or files instrumented although they are library code (installed
    packages, say): their accesses become scheduling points too."""
    max_steps: int = DEFAULT_MAX_STEPS
    max_delay: float = DEFAULT_MAX_DELAY
    """Virtual seconds a runnable thread may be held while time passes (0: time
    passes only when every thread waits)."""
    stall_timeout: float = DEFAULT_STALL_TIMEOUT
    """Wall seconds without a scheduling point before a thread counts as blocked
    outside the scheduler's control."""
    races: bool = False
    """A data race (:mod:`threadcheck._races`) fails the schedule it happens in."""
    footprints: bool = False
    """User code is rewritten and each step's footprint gathered (the ``dpor``
    strategy's dependence, :mod:`threadcheck._races._footprint`)."""

    helper_points: bool = True
    """3.10, 3.11: when user code is rewritten (``footprints``, as the default
    strategy does), its helpers are its scheduling points (False: instruction
    tracing, the points a token recorded before them had)."""

    def __post_init__(self) -> None:
        delay = self.max_delay
        if not _arguments.is_number(delay) or not 0 <= delay < float("inf"):  # nan too
            raise ValueError(f"max_delay must be 0 or more seconds, not {delay!r}")


def rewritten_at_access(settings: Settings) -> Settings:
    """``settings`` for a new run: at granularity 'access' user code runs rewritten,
    whatever the strategy (a library object's method call, ``f.write()``, is a
    point only there), so that points, and tokens, are the same everywhere."""
    if settings.granularity != DEFAULT_GRANULARITY:
        return settings
    return replace(settings, footprints=True)


class Target(Protocol):
    """What a schedule runs, in controlled thread T0."""

    description: str

    def run(self, reactor: Any) -> Failure | None:
        """Run on ``reactor`` (not yet running); the target's own failure, if any."""


class Explorer:
    def __init__(
        self,
        target: Target,
        settings: Settings = Settings(),
        *,
        collect_first: bool = True,
        random_seed: int = 0,
    ) -> None:
        self.target = target
        self.random_seed = random_seed
        """Every schedule starts the program's randomness from it (the token's seed)."""
        self._random_state: object = None
        self.collect_first = collect_first
        self.settings = settings
        self.is_user = _stacks.user_code(settings.include)
        helpers = settings.helper_points and settings.footprints
        self.instrumentation = Instrumentation(settings.granularity, self.is_user, helpers=helpers)
        self.patches = Patches(
            self.is_user,
            on_thread_start=self.instrumentation.thread_started,
            on_thread_end=self.instrumentation.thread_ended,
        )
        # Asked for every frame a traced schedule's points walk (a third of a
        # warm-up's tracing): one cache lookup each.
        self._is_library = functools.cache(lambda filename: not self.is_user(filename))
        self._is_own = functools.cache(lambda name: _stacks.classify(name) == "threadcheck")
        self.watchdog = Watchdog(settings.stall_timeout)
        self.carriers = Carriers(lambda thread: hasattr(thread, CONTROLLED_ATTR))
        self._gc_was_enabled = True
        self._schedules = 0
        self._entropies = 0
        """OS randomness seeds handed out (see :meth:`run`): one a schedule run."""
        self._nonce = os.urandom(6).hex()
        """Of this exploration: another's schedules draw other bytes."""
        self._thread_counter: Any = None
        self._executor_counter: Any = None
        self._reactor_class: type[ScheduledMixin] | None = None
        self._affinity: set[int] | None = None
        self.logging = LoggingRegistry()
        self.twisted_logging = TwistedLogging()
        self._give_back: Callable[[], None] | None = None
        self.alarm = DeferredAlarm()

    def __enter__(self) -> Explorer:
        # The inner one would run its schedules on this one's patched threads
        # and locks, and never end.
        refuse_while_exploring("threadcheck.explore() (or replay, run)")
        # Imported now, not in the first schedule: from a source tree its module
        # code would count as user code there, and that schedule alone would
        # differ (a replay in a fresh process would diverge).
        from threadcheck_reactor._scheduled import ScheduledReactor

        self._reactor_class = ScheduledReactor
        _threads.track_thread_starts()  # before our patch of Thread.start, which wraps it
        self._gc_was_enabled = gc.isenabled()
        # Everything alive now outlives the exploration: frozen, the per-schedule
        # collections only walk what the schedules made (7 ms -> well under 1 ms).
        # Only the young generations are collected first (the test's own recent
        # garbage): a whole collection costs ~40 ms with a few libraries loaded,
        # and older garbage frozen with the rest is collected after unfreeze.
        # (A single run skips even that.)
        if self.collect_first:
            gc.collect(1)
        gc.freeze()
        self._thread_counter = getattr(threading, "_counter", None)
        self._executor_counter = ThreadPoolExecutor._counter  # type: ignore[attr-defined]
        self._random_state = random.getstate()
        self._showwarning = warnings.showwarning
        warnings.showwarning = _shown_once(warnings.showwarning)
        self._unraisablehook = sys.unraisablehook
        sys.unraisablehook = _aborts_unsaid(sys.unraisablehook)
        self.watchdog.start()
        self._affinity = _pin_to_one_cpu()
        self.twisted_logging.capture()
        self.logging.capture()
        if _detector.active():
            # A session's detector (pytest --threadcheck-races) is lent, not
            # stopped after: the next explored test's races went unseen.
            self._give_back = _detector.lend()
        elif self.settings.races:
            # Before the patches: what they wrap (Thread.start, the real locks)
            # is then the detector's, which carries happens-before.
            from threadcheck_reactor import _race_edges  # every ThreadPool's jobs, as run's

            _detector.start(None, self.is_user, edges=[_race_edges.install])
        elif self.settings.footprints:
            _detector.start(None, self.is_user, include=self.settings.include, detect=False)
        if self.settings.races or self.settings.footprints:
            rewrite_for_races = getattr(self.target, "rewrite_for_races", None)
            if rewrite_for_races is not None:
                rewrite_for_races()
        self.alarm.install()
        self.patches.install()
        self.carriers.install()
        try:
            self.instrumentation.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.patches.uninstall()  # first: nothing may keep the swapped primitives
            give_back_executors()
            self.alarm.uninstall()
            self.carriers.close()
            self.instrumentation.stop()
        finally:
            if self._give_back is not None:
                self._give_back()
            elif self.settings.races or self.settings.footprints:
                _detector.stop()
            self.watchdog.stop()
            self.twisted_logging.release()
            if self._affinity is not None:
                os.sched_setaffinity(0, self._affinity)
        if self._thread_counter is not None:
            threading._counter = self._thread_counter  # type: ignore[attr-defined]
        if self._executor_counter is not None:
            ThreadPoolExecutor._counter = self._executor_counter  # type: ignore[attr-defined]
        random.setstate(self._random_state)  # type: ignore[arg-type]
        warnings.showwarning = self._showwarning
        _collect_leftovers(0)  # the last schedule's (the others' are collected)
        sys.unraisablehook = self._unraisablehook
        gc.unfreeze()
        if self._gc_was_enabled:
            gc.enable()

    def warm_up(self) -> ScheduleRun:
        """One schedule run and forgotten, before exploring and before replaying:
        what the program fills on first use (a library's lazy cache, an event
        system's listeners) is filled then, so recorded schedules and their
        replays in a fresh process start from the same state."""
        run = self.run(Plan([]), WARM_UP)  # traced: its failure may be the one reported
        assert run is not None  # a plan never runs out
        if getattr(self.target, "fresh_user_code", False):
            self.instrumentation.drop_tracing()
        return run

    def run(
        self,
        strategy: Strategy,
        index: int,
        *,
        record_trace: bool = True,
        entropy: str | None = None,
    ) -> ScheduleRun | None:
        """Run schedule ``index`` of ``strategy``; None when the strategy is exhausted.
        ``entropy``: the OS randomness it draws (a rerun's, a replay's); else fresh."""
        if not strategy.new_execution(index):
            return None
        if entropy is None:
            self._entropies += 1
            entropy = f"{self._nonce}/{self._entropies}"
        scheduler = Scheduler(
            strategy,
            max_steps=self.settings.max_steps,
            max_delay=self.settings.max_delay,
            is_library=self._is_library,
            is_own=self._is_own,
            record_trace=record_trace,
        )
        # What the previous schedules still referenced as they ended (their
        # schedulers, threads, Thread objects) went to generation 1, where with
        # the GC paused it would stay for the whole exploration (+13 KB a
        # schedule): collected with everything else every few schedules (a
        # collection of generation 1 each schedule cost as much, and found
        # nothing still referenced one schedule later).
        self._schedules += 1
        if self._schedules % FULL_COLLECTION_EVERY == 0:
            _collect_leftovers()
        gc.disable()
        threading._counter = itertools.count(1).__next__  # type: ignore[attr-defined]
        # An executor's default thread names too (ThreadPoolExecutor-0_0): a failure
        # message that names them reads the same in the exploration and its replay.
        ThreadPoolExecutor._counter = itertools.count().__next__  # type: ignore[attr-defined]
        reseed_randomness(self.random_seed, entropy)
        revive_executors()
        _access.forget_types()
        self.patches.restart()
        errors = _LoggedErrors()
        errors.start()
        reactor: Any = None
        target_failure: Failure | None = None
        interrupted = False
        misuse: TargetError | None = None
        _footprint.collecting = getattr(strategy, "needs_footprints", False)
        activate(scheduler)
        me = scheduler.adopt_current(threading.current_thread().name)
        # settrace (3.10, 3.11) is unset in a thread whose trace function raised,
        # as Abort does when a schedule is torn down at one of T0's points: every
        # later schedule would run T0's code without points. Set it again.
        self.instrumentation.thread_started()
        self.watchdog.watch(scheduler)
        try:
            assert self._reactor_class is not None, "run() outside the Explorer context"
            reactor = self._reactor_class(scheduler, "record")
            reactor.schedule_index = index
            if self.settings.races:
                _detector.begin(reactor.threadcheck.recorder)
            target_failure = self.target.run(reactor)
            stop_idle_executor_workers(scheduler)
            scheduler.join_all(me)
            run_at_exit(scheduler, me)
        except Abort:
            pass
        except KeyboardInterrupt:
            interrupted = True
        except TargetError as error:
            misuse = error
        except BaseException as error:
            scheduler.fail(thread_failure(me.name, error))
        finally:
            try:
                scheduler.drain(me)
            finally:
                scheduler.unmute()
            _footprint.collecting = False
            self._traced_if_missed(scheduler)
            self.watchdog.watch(None)
            scheduler.release_adopted(me)
            activate(None)
            _join_os_threads(scheduler)
            self.logging.restore()
            if reactor is not None:
                reactor.dispose()
            violation = _first_violation(reactor)
            # Unhandled errors in Deferreds are logged when collected. With the GC
            # paused, nothing the schedule made left generation 0; what is still
            # referenced here would survive into generation 1 and, with the GC
            # paused, stay for the whole exploration (a reactor, its checker and
            # its threads each schedule: memory and per-thread-start cost grew).
            reactor = None
            _collect_leftovers(0)
            errors.stop()
            self.twisted_logging.restore()  # after errors.stop: the program's observers go
        if interrupted or scheduler.interrupted:
            raise KeyboardInterrupt  # after the teardown: the user stops the exploration
        if scheduler.timed_out:
            raise OutOfTime  # after the teardown: what the cut schedule did means nothing
        self.alarm.fire_if_pending()  # after the teardown: pytest-timeout's, say
        misuse = misuse or scheduler.misuse
        if misuse is not None:
            raise misuse
        if scheduler.strategy_error is not None:
            raise scheduler.strategy_error
        failed = scheduler.failure or target_failure
        if failed is not None and _ASYNCIO_REACTOR in failed.message:
            raise TargetError(_ASKS_FOR_ASYNCIO)  # not a failure of any schedule's
        logged = errors.first or (errors.handled if failed is not None else None)
        failure = _after_uncontrolled(
            scheduler.uncontrolled, _cause(failed, _first(logged, violation))
        )
        return _schedule_run(index, scheduler, failure, entropy)

    def _traced_if_missed(self, scheduler: Scheduler) -> None:
        """Untraced, the program imported a user module that was not rewritten: its
        code ran with no points, and no footprint. Traced from the next schedule."""
        missed = getattr(self.target, "unrewritten", None)
        if missed and self.instrumentation.untraced():
            self.instrumentation.trace_again()
            scheduler.thinned.add(f"user code run without points ({missed}, not rewritten)")

    def rerun(self, run: ScheduleRun) -> ScheduleRun:
        """``run`` again (its decisions, its OS randomness), its step trace recorded."""
        again = self.run(Replay(run.decisions), 0, entropy=run.entropy)
        assert again is not None
        return again


_ASYNCIO_REACTOR = "twisted.internet.asyncioreactor.AsyncioSelectorReactor)"
"""The end of scrapy's refusal of any other reactor than the one it asks for
("The installed reactor (...) does not match the requested one (...)")."""
_ASKS_FOR_ASYNCIO = (
    "the program asks for Twisted's asyncio reactor, and refuses another: explore runs"
    " programs on its own scheduled reactor, which cannot drive asyncio's event loop; check"
    " this program with `threadcheck run`, or have it use the default reactor (scrapy:"
    " -s TWISTED_REACTOR=twisted.internet.epollreactor.EPollReactor)"
)


def _pin_to_one_cpu() -> set[int] | None:
    """Pin the exploring thread, and so every thread it starts, to one CPU.

    Only one controlled thread runs at a time; on one CPU a hand-off does not
    wait for another CPU to wake up (measured: 19 -> 12 microseconds a
    hand-off, 760 -> 1,080 schedules/s on 3.12). pytest-xdist workers take
    different CPUs. Returns the affinity to restore, None when not pinned.
    """
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
    slot = int(worker) if worker.isdigit() else os.getpid()
    os.sched_setaffinity(0, {cpus[slot % len(cpus)]})
    return set(cpus)


def _collect_leftovers(generation: int = 2) -> None:
    """Collect what ended schedules left, their finalizers' errors unsaid: an
    object cut off with its schedule (an asyncio loop whose daemon thread
    never returned, freed with its wake-up socket already closed) was never
    finalized in the program's own process, which ended with its threads."""
    hook = sys.unraisablehook
    sys.unraisablehook = _unsaid
    try:
        gc.collect(generation)
    finally:
        sys.unraisablehook = hook


def _unsaid(unraisable: Any) -> None:
    pass


def _after_uncontrolled(noted: Failure | None, failure: Failure | None) -> Failure | None:
    """``failure``, or, when a thread waited outside the scheduler's control
    before it (``noted``), that wait, then it: a wait that ended by its own
    timeout (a pool's lock made before exploring, taken with 2 s) failed
    correct code, shrunk to "it fails without a preemption" (Z51)."""
    if noted is None or failure is None or failure.kind in (BLOCKED, "interrupted"):
        return failure
    then = f"then {failure.kind}: {failure.message}"
    return replace(
        noted,
        message=f"{noted.message}; {then}",
        details=f"{noted.details}\n\n{then}\n{failure.details}".rstrip(),
    )


def _aborts_unsaid(hook: Callable[[Any], object]) -> Callable[[Any], object]:
    """``hook``, but for our :class:`Abort` raised in a weakref callback or a
    ``__del__`` as a schedule is torn down (an executor's ``weakref_cb``
    putting to its queue as its thread unwound): not the program's error
    (pytest warned of each, and failed the test under ``-W error``)."""

    def unraisablehook(unraisable: Any) -> object:
        if isinstance(unraisable.exc_value, Abort):
            return None
        return hook(unraisable)

    return unraisablehook


def _schedule_run(
    index: int, scheduler: Scheduler, failure: Failure | None, entropy: str
) -> ScheduleRun:
    # The digest needs the trace; explorations skip it for speed and count
    # distinct schedules by their decisions instead.
    points = ((s.tid, s.kind, os.path.basename(s.filename), s.lineno) for s in scheduler.trace)
    return ScheduleRun(
        index=index,
        failure=failure,
        decisions=scheduler.decisions,
        choices=scheduler.choices,
        trace=scheduler.trace,
        preemptions=scheduler.preemptions,
        steps=scheduler.step,
        digest=_token.digest(points),
        thread_names=[t.name for t in scheduler.threads],
        spawned_at=tuple(t.spawned_at for t in scheduler.threads),
        thinned=frozenset(scheduler.thinned),
        longest_hold=scheduler.longest_hold,
        time_held=scheduler.time_held,
        entropy=entropy,
        preemption_count=scheduler.preemption_count,
    )


def _join_os_threads(scheduler: Scheduler) -> None:
    for thread in scheduler.threads:
        handle = thread.handle
        if thread.abandoned or not isinstance(handle, threading.Thread):
            continue  # an abandoned thread is still blocked where the watchdog found it
        if handle is not threading.current_thread():
            handle.join(5.0)


CONSEQUENCES = frozenset({"deadlock", "livelock", "incomplete"})
"""Failures that an error logged or a thread-affinity violation earlier in the
schedule may have caused: an exception in a callback chain that was to stop
the reactor, a reactor call from a worker thread that never wakes it. So is
an exit with a bare status (see :func:`_caused_by`)."""


_OUR_ERRORS = tuple(
    error.__name__
    for error in (
        ThreadAffinityError,
        BlockingCallInReactorThreadError,
        BlockingCallAfterStopError,
    )
)
"""What a thread-affinity check raises into the program (a blocking call that
would deadlock): an exception or exit status that carries one is its consequence."""


def _cause(failure: Failure | None, earlier: Failure | None) -> Failure | None:
    """The failure to report: an exception first; an unhandled error or a
    violation (``earlier``) before what it may have caused, which its details
    then name: a deadlock, or an exception that carries the error a check raised."""
    if earlier is None:
        return failure
    if failure is None:
        return earlier
    if _caused_by(failure, earlier):
        return _followed_by(earlier, failure)
    return _preceded_by(failure, earlier)


def _followed_by(earlier: Failure, failure: Failure) -> Failure:
    """``earlier``, its details naming the ``failure`` that came of it."""
    then = f"then {failure.kind}: {failure.message}"
    return replace(earlier, details=f"{then}\n\n{earlier.details}".rstrip())


def _preceded_by(failure: Failure, earlier: Failure) -> Failure:
    """``failure``, its details naming the error logged or the violation in the
    same schedule (a pool job's exception left in a Deferred nobody handled,
    then an assert on what the job was to do): a root cause, not dropped."""
    if earlier.message in failure.message:  # the same error, seen twice
        return failure
    where = f" at {short_location(earlier.location)}" if earlier.location else ""
    before = f"also in this schedule, {earlier.kind}: {earlier.message}{where}"
    details = f"{failure.details.rstrip()}\n\n{before}\n{earlier.details.strip()}"
    return replace(failure, details=details.strip())


def _first(error: Failure | None, violation: Failure | None) -> Failure | None:
    """A violation before an unhandled error, which its details name: a reactor
    call from a worker thread loses wake-ups, and what fails next (a watchdog's
    ``reactor.stop()`` once the reactor stopped) is its consequence. The error
    the violation's check raised (a blocking call refused) is not named."""
    if error is None or violation is None:
        return error or violation
    return violation if error.what in _OUR_ERRORS else _followed_by(violation, error)


def _caused_by(failure: Failure, earlier: Failure) -> bool:
    if failure.kind in CONSEQUENCES:
        return True
    if failure.kind == "exit" and ": " not in failure.message:
        # sys.exit(1) once main's Deferred failed (task.react, an errback that
        # logs and stops): the logged error says why, the status does not.
        return True
    if earlier.kind == "violation" and earlier.what == "blockingCallFromThread":
        # Its check raised into the program (a wait that would never end): what
        # failed after it came of it, however the program words it ("result not
        # saved", an exit status), and the hang is the bug to show.
        return True
    said = f"{failure.what} {failure.message} {failure.details}"
    return earlier.kind == "violation" and any(name in said for name in _OUR_ERRORS)


def _first_violation(reactor: Any) -> Failure | None:
    if reactor is None:
        return None
    checker = reactor.threadcheck
    checker.flush_pending()
    violations = checker.recorder.violations()
    if not violations:
        return None
    from threadcheck._report import format_report

    first = violations[0]
    where = first.user_frame()
    return Failure(
        "violation",
        first.headline(),
        thread=first.thread.name,
        location=where.location() if where else None,
        details=format_report(violations),
        what=first.api,
        accesses=_race_accesses(first),
        step=getattr(reactor, "first_violation_step", None),
    )


def _race_accesses(violation: Violation) -> tuple[tuple[str, str, int], ...]:
    """A data race's earlier and later access: their threads and user lines."""
    prior = violation.prior
    if prior is None:
        return ()
    accesses = []
    for thread, stack in ((prior.thread, prior.stack), (violation.thread, violation.stack)):
        frame = _stacks.innermost_user_frame(stack)
        if frame is None:
            return ()
        accesses.append((thread.name, frame.filename, frame.lineno))
    return tuple(accesses)


class _LoggedErrors:
    """Failures Twisted logs during a schedule: unhandled errors in Deferreds,
    exceptions in reactor callbacks. Abort is the scheduler's, not an error.

    A failure the program logs itself, with a message of its own
    (``log.failure("fetch failed, using the cache", f)``, ``log.err(f, "...")``),
    is one it handled, as with ``logging.exception``: it is kept apart
    (:attr:`handled`), to say why the schedule failed if it fails otherwise.
    ``d.addErrback(log.err)``, without a message, is an unhandled one."""

    def __init__(self) -> None:
        self.first: Failure | None = None
        self.handled: Failure | None = None

    def start(self) -> None:
        from twisted.logger import globalLogPublisher

        globalLogPublisher.addObserver(self)  # type: ignore[arg-type]

    def stop(self) -> None:
        from twisted.logger import globalLogPublisher

        globalLogPublisher.removeObserver(self)  # type: ignore[arg-type]

    def __call__(self, event: dict[str, Any]) -> None:
        failure = event.get("log_failure", event.get("failure"))  # new and legacy keys
        if failure is None or self.first is not None or failure.check(Abort):
            return
        handled = _logged_by_the_program(event)
        if handled and self.handled is not None:
            return
        from twisted.internet.defer import FirstError
        from twisted.logger import formatEvent

        # Its first line: a legacy log.err() formats the traceback after it.
        said = formatEvent(event).partition("\n")[0].rstrip(": ") or _logged_by(event)
        details = _without_our_frames(failure.getTraceback())
        while failure.check(FirstError):  # gatherResults': what failed in it is the error
            said += f" (error {failure.value.index} of a gatherResults or DeferredList)"
            failure = failure.value.subFailure
            details = f"{_without_our_frames(failure.getTraceback())}\n{details}"
        value = str(failure.value)
        logged = Failure(
            "unhandled-error",
            f"{said}: {failure.type.__name__}" + (f": {value}" if value else ""),
            location=_failure_location(failure),
            details=details,
            what=failure.type.__name__,
        )
        if handled:
            self.handled = logged
        else:
            self.first = logged


_FRAME = re.compile(r'  File "(.+)", line \d+, in ')


def _without_our_frames(traceback: str) -> str:
    """A traceback without threadcheck's own frames (the wrapper a pool job runs in)."""
    kept = []
    ours = False
    for line in traceback.splitlines():
        frame = _FRAME.match(line)
        if frame is not None:
            ours = _stacks.classify(frame.group(1)) == "threadcheck"
        elif not line.startswith("    "):  # the source line under a frame is indented
            ours = False
        if not ours:
            kept.append(line)
    return "\n".join(kept) + "\n"


def _logged_by_the_program(event: dict[str, Any]) -> bool:
    """Whether the program logged this failure itself, with its own message."""
    namespace = str(event.get("log_namespace", ""))
    if namespace == "log_legacy":  # twisted.python.log.err(failure, why)
        return event.get("why") is not None
    return not namespace.startswith("twisted.") and bool(event.get("log_format"))


def _logged_by(event: dict[str, Any]) -> str:
    """What an error logged without a message was (a Deferred's, collected unhandled)."""
    namespace = str(event.get("log_namespace", ""))
    return "Unhandled error in Deferred" if namespace == "twisted.internet.defer" else "Logged"


def _failure_location(failure: Any) -> str | None:
    frames = [f for f in failure.frames if _stacks.classify(f[1]) is None]
    if not frames:
        return None
    name, filename, line = frames[-1][:3]
    return f"{filename}:{line} in {name}"


def environment(settings: Settings) -> dict[str, Any]:
    """What a token records of the run's settings and versions."""
    import twisted

    return {
        "python": ".".join(map(str, sys.version_info[:3])),
        "twisted": twisted.__version__,
        "threadcheck": threadcheck_version,
        "hashseed": hash_seed(),
        "optimize": sys.flags.optimize,
        "granularity": settings.granularity,
        "include": list(settings.include),
        "max_delay": settings.max_delay,
        "races": settings.races,
        "rewritten": settings.footprints,
    }


def make_token(
    run: ScheduleRun,
    env: dict[str, Any],
    strategy: str,
    seed: int,
    target: Target,
    *,
    rerun_diverged: bool = False,
) -> str:
    """``rerun_diverged``: the exploration's own rerun of ``run`` went elsewhere
    (a replay that does too is then told the hash seed is not why)."""
    assert run.failure is not None
    return _token.encode(
        {
            **env,
            "target": target.description,
            "strategy": strategy,
            "seed": seed,
            "index": run.index,
            "entropy": run.entropy,
            "decisions": _token.run_length(run.decisions),
            "points": run.steps,
            "digest": run.digest if run.trace else "",  # "": where it went was not traced
            "failure": run.failure.signature(),
            "real_io": REAL_IO in run.thinned,
            "rerun_diverged": rerun_diverged,
        }
    )


def run_plan(explorer: Explorer, preemptions: list[tuple[int, int]]) -> tuple[ScheduleRun, Plan]:
    """One schedule under a preemption plan (shrinking, Hypothesis)."""
    plan = Plan(preemptions)
    run = explorer.run(plan, 0)
    assert run is not None
    return run, plan


def _shown_once(show: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` that shows each warning once in the exploration:
    a program run afresh each schedule has a fresh ``__warningregistry__``, and
    its DeprecationWarning came 2,000 times."""
    shown: set[tuple[str, type[Warning], str, int]] = set()

    def show_once(
        message: Warning | str, category: type[Warning], filename: str, lineno: int, *rest: Any
    ) -> None:
        key = (str(message), category, filename, lineno)
        if key not in shown:
            shown.add(key)
            show(message, category, filename, lineno, *rest)

    return show_once
