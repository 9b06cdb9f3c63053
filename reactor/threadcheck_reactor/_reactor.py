"""Twisted's own reactors with thread-affinity checks on their non-thread-safe APIs."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from threading import current_thread, get_ident
from traceback import format_stack
from types import CodeType, FrameType
from typing import Any, TypeVar

from twisted.internet import threads
from twisted.internet.base import DelayedCall
from twisted.internet.posixbase import PosixReactorBase
from twisted.python.runtime import platform

from threadcheck import _threads
from threadcheck._affinity import AffinityChecker
from threadcheck._modes import DEFAULT_MODE, Mode
from threadcheck._races import _access as _race_access
from threadcheck._races._clocks import run_received, send
from threadcheck._recorder import Recorder
from threadcheck_reactor import _deferreds, _running, _task, _transports, _web
from threadcheck_reactor._checked import checked
from threadcheck_reactor._delayedcall import (
    DELAYED_CALL_APIS,
    INLINE_INIT,
    CheckedDelayedCall,
    delayed_call_type,
    new_delayed_call,
)
from threadcheck_reactor._loop import LOOP_APIS, TRANSPORT_APIS
from threadcheck_reactor._shutdown import StuckPoolWatch
from threadcheck_reactor._stalls import (
    DEFAULT_THRESHOLD,
    StallWatch,
    code_of,
    threshold_from_environment,
)
from threadcheck_reactor._threadpool import SubmissionTrackingThreadPool

# Every reactor method that must only be called in the reactor thread.
# callLater is checked by the mixin itself (its DelayedCall is checked too);
# callFromThread, callInThread and wakeUp are thread-safe and stay unchecked.
NOT_THREAD_SAFE: tuple[str, ...] = (
    "callWhenRunning",
    "addSystemEventTrigger",
    "removeSystemEventTrigger",
    "fireSystemEvent",
    "stop",
    "crash",
    "iterate",
    "addReader",
    "addWriter",
    "removeReader",
    "removeWriter",
    "removeAll",
    "listenTCP",
    "connectTCP",
    "listenUDP",
    "listenMulticast",
    "listenUNIX",
    "connectUNIX",
    "listenUNIXDatagram",
    "connectUNIXDatagram",
    "listenSSL",
    "connectSSL",
    "adoptStreamPort",
    "adoptStreamConnection",
    "adoptDatagramPort",
    "spawnProcess",
    "resolve",
    "getThreadPool",
    "suggestThreadPoolSize",
)


CHECKED_APIS: frozenset[str] = frozenset(
    [f"reactor.{name}" for name in ("callLater", *NOT_THREAD_SAFE)]
    + [*DELAYED_CALL_APIS, "blockingCallFromThread"]
    + [*_deferreds.DEFERRED_APIS, *_deferreds.PRIMITIVE_APIS]
    + [*_transports.APIS, *_web.APIS, *_task.APIS, *LOOP_APIS, *TRANSPORT_APIS]
)
"""Every API name a violation can carry, as reports and the pytest marker spell it."""


def allowed_apis(allow: object, what: str) -> list[str]:
    """``allow`` as checked API names, or ValueError: one line naming ``what``.

    A misspelt name gets the closest checked one, not the whole list.
    """
    if isinstance(allow, str) or not isinstance(allow, (list, tuple, set, frozenset)):
        raise ValueError(f"{what} takes a list of API names")
    names = list(allow)
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{what} takes a list of API names")
        if name not in CHECKED_APIS:
            close = difflib.get_close_matches(name, sorted(CHECKED_APIS), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}?" if close else "docs/checks.md lists the APIs"
            raise ValueError(f"{what}: {name!r} is not a checked API; {hint}")
    return names


def _inner_code(outer: Callable[..., Any], name: str) -> object:
    for const in outer.__code__.co_consts:
        if getattr(const, "co_name", None) == name:
            return const
    raise ImportError(f"cannot find {name} inside {outer.__qualname__}; unsupported Twisted?")


# blockingCallFromThread hands this closure to callFromThread and then blocks.
_BLOCKING_CALL_CODE = _inner_code(threads.blockingCallFromThread, "_callFromThread")


def _is_blocking_call(f: Callable[..., Any]) -> bool:
    """Whether ``f``, handed to ``callFromThread``, is a blockingCallFromThread's
    (whose thread waits until the reactor has run it)."""
    return getattr(f, "__code__", None) is _BLOCKING_CALL_CODE


class InstrumentedReactorType(type):
    """Metaclass of the instrumented reactors: each compares equal to the Twisted
    reactor class it instruments (``instruments=`` in its class statement).

    Frameworks check which reactor is installed by comparing classes: scrapy's
    ``verify_installed_reactor`` requires ``type(reactor) ==`` the class its
    ``TWISTED_REACTOR`` setting names (``AsyncioSelectorReactor`` by default),
    and refuses anything else. So ``ThreadCheckAsyncioReactor ==
    AsyncioSelectorReactor`` (either way round) and their hashes agree. All else
    stays its own: ``is``, ``isinstance(reactor, ThreadCheckMixin)``, and the
    name and module (a child process re-creates its parent's reactor from
    ``type(reactor).__module__``). A subclass equals only itself.
    """

    def __new__(
        mcs,
        name: str,
        bases: tuple[type, ...],
        namespace: dict[str, Any],
        *,
        instruments: type | None = None,
    ) -> InstrumentedReactorType:
        namespace["_threadcheck_instruments"] = instruments  # its own, never inherited
        return super().__new__(mcs, name, bases, namespace)

    def __eq__(cls, other: object) -> bool:
        return cls is other or other is vars(cls)["_threadcheck_instruments"]

    def __hash__(cls) -> int:
        return type.__hash__(vars(cls)["_threadcheck_instruments"] or cls)


class ThreadCheckMixin(PosixReactorBase, metaclass=InstrumentedReactorType):
    """Thread-affinity checks over a concrete Twisted reactor.

    Thread safety: exactly that of the Twisted reactor underneath. The
    methods named in :data:`NOT_THREAD_SAFE`, ``callLater`` and the returned
    ``DelayedCall``'s ``cancel``/``reset``/``delay`` must be called in the
    reactor thread, and report a violation otherwise (see
    :mod:`threadcheck._affinity` for the rule before ``run()``).
    ``callFromThread``, ``callInThread`` and ``wakeUp`` may be called from any
    thread; ``callFromThread`` raises
    :class:`~threadcheck.BlockingCallInReactorThreadError` when it is
    ``blockingCallFromThread`` calling it in the running reactor's thread, and
    :class:`~threadcheck.BlockingCallAfterStopError` when it is
    ``blockingCallFromThread`` in another thread once the stopping reactor
    will no longer run it (its shutdown's 'before' phase is over).

    Creating one starts recording where threads are started, process-wide
    (:func:`threadcheck.track_thread_starts`), so reports can say where the
    offending thread came from.
    """

    _threadcheck: AffinityChecker

    def __init__(
        self,
        mode: Mode | str = DEFAULT_MODE,
        recorder: Recorder | None = None,
        *,
        checker: AffinityChecker | None = None,
        **twisted_args: Any,
    ) -> None:
        """``checker`` injects a ready checker (``mode`` and ``recorder`` are then
        unused); ``twisted_args`` go to the Twisted reactor's own constructor
        (asyncio's ``eventloop``)."""
        # Set up before Twisted's __init__, which already calls checked APIs.
        self._threadcheck = checker if checker is not None else AffinityChecker(mode, recorder)
        self._threadcheck_delayed_call = self._delayed_call_type(self._threadcheck)
        if type(self).stall_threshold == DEFAULT_THRESHOLD:  # not set by a subclass
            self.stall_threshold = threshold_from_environment()
        self._stall_watch: StallWatch | None = None
        _threads.track_thread_starts()
        _running.patch()  # before any Deferred the program makes for it
        super().__init__(**twisted_args)

    def _delayed_call_type(self, checker: AffinityChecker) -> type[CheckedDelayedCall]:
        return delayed_call_type(checker)

    def dispose(self) -> None:
        """Close the reactor's file descriptors now, once it has stopped: an
        exploration or a stress run makes thousands of reactors (as Twisted's
        own test builders clean up theirs). From any thread: the one that ran
        it may have ended (a program that ran its reactor in a thread of its own)."""
        with self._threadcheck.exempt():  # our clean-up, not the program's call
            for reader in list(self._internalReaders):
                self.removeReader(reader)
                reader.connectionLost(None)
            self._internalReaders.clear()
            # A daemon thread of the program may still call callFromThread (it is
            # thread-safe): it queues the call, as on a stopped reactor, and wakes nothing.
            self.waker = None
            self.disconnectAll()
        poller = getattr(self, "_poller", None)
        if poller is not None and hasattr(poller, "close"):
            poller.close()  # epoll

    @property
    def threadcheck(self) -> AffinityChecker:
        """This reactor's checker: its mode, recorder and owner thread."""
        return self._threadcheck

    # callLater and callFromThread are the hot paths. They inline Twisted's
    # few-line bodies (ReactorBase.callLater/callFromThread) instead of calling
    # super(): a second Python frame and argument repacking would cost about
    # five times the check itself. tests/test_twisted_conformance.py runs Twisted's own
    # reactor tests on these classes to catch any drift from Twisted.

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> DelayedCall:
        checker = self._threadcheck
        if get_ident() != checker.owner:
            __tracebackhide__ = True  # pytest shows the user's call, not this check
            # No exemption needed: nothing below calls another checked API.
            checker.violation("reactor.callLater")
        assert delay >= 0, f"{delay} is not greater than or equal to 0 seconds"
        seconds = self.seconds
        call = new_delayed_call(self._threadcheck_delayed_call)
        if INLINE_INIT:
            # DelayedCall.__init__'s body, written out: calling the class costs
            # more than the check (callLater schedule-only 1.13 -> under 1.0).
            call.time, call.func, call.args, call.kw = seconds() + delay, callable, args, kw
            call.resetter = self._moveCallLaterSooner
            call.canceller = self._cancelCallLater
            call.seconds = seconds
            call.cancelled = call.called = 0
            call.delayed_time = 0.0
            if call.debug:
                call.creator = format_stack()[:-1]
        else:
            DelayedCall.__init__(
                call,
                seconds() + delay,
                callable,
                args,
                kw,
                self._cancelCallLater,
                self._moveCallLaterSooner,
                seconds=seconds,
            )
        self._newTimedCalls.append(call)
        return call

    def callFromThread(self, f: Callable[..., Any], *args: object, **kwargs: object) -> None:
        if self._stopped and self._startedBefore:  # stopping or stopped (not: not yet run)
            self._check_call_while_stopping(f)
        elif get_ident() == self._threadcheck.owner:
            self._check_call_from_reactor_thread(f)
        assert callable(f), f"{f} is not callable"
        if _race_access.enabled:  # the call happens after what this thread did so far
            self.threadCallQueue.append((run_received, (send(), f, args, kwargs), {}))
        else:
            self.threadCallQueue.append((f, args, kwargs))
        self.wakeUp()

    def _check_call_from_reactor_thread(self, f: Callable[..., Any]) -> None:
        # Before run() too: the owner is then the thread that made the reactor
        # and started no other (a trial test body, before the reactor spins),
        # the one that will run it; waiting in it would wait for ever.
        if _is_blocking_call(f):
            self._threadcheck.blocking_call_in_reactor()

    def _check_call_while_stopping(self, f: Callable[..., Any]) -> None:
        if not _is_blocking_call(f):
            return
        if self.running and get_ident() == self._threadcheck.owner:
            self._threadcheck.blocking_call_in_reactor()  # a shutdown trigger, say
        if self._still_serving_calls():
            return
        if current_thread().daemon:
            # Its wait holds up nothing: Python exits without it (a heartbeat
            # still beating as the program ends). It waits, as under Twisted.
            return
        # Also when the reactor thread has ended and this thread has its old ident.
        self._threadcheck.blocking_call_after_stop()

    def _still_serving_calls(self) -> bool:
        """Whether a stopping reactor will still run calls from threads: until its
        shutdown event fires, and while its 'before' triggers' Deferreds are
        pending (a graceful shutdown waiting for its workers, which may hand
        their results over with blockingCallFromThread)."""
        if self._justStopped:
            return True
        shutdown = self._eventTriggers.get("shutdown")
        return shutdown is not None and shutdown.state == "BEFORE"

    def callInThread(self, _callable: Callable[..., Any], *args: object, **kwargs: object) -> None:
        self._pool_for_a_call().callInThread(_callable, *args, **kwargs)

    def _pool_for_a_call(self) -> Any:
        # Twisted's callInThread goes through getThreadPool(), which is not
        # thread-safe on its own; reach the pool directly so that this
        # thread-safe API does not report itself.
        pool = self.threadpool
        if pool is None:
            with self._threadcheck.exempt():
                pool = self.getThreadPool()
        return pool

    shutdown_grace: float | None = 5.0
    """Seconds the thread pool may take to finish at shutdown before its stuck
    workers are reported (:mod:`threadcheck_reactor._shutdown`); None: never."""

    def _stopThreadPool(self) -> None:
        before = self._watch_before_stop
        if before is not None:
            before.cancel()
        self._serve_late_blocking_calls()
        if self.shutdown_grace is None or self.threadpool is None:
            super()._stopThreadPool()
            return
        watch = StuckPoolWatch(
            self.threadpool, self._threadcheck, self.shutdown_grace, reported=self._stuck
        )
        watch.start()
        try:
            super()._stopThreadPool()
        finally:
            watch.cancel()

    _watch_before_stop: StuckPoolWatch | None = None

    def _serve_late_blocking_calls(self) -> None:
        """Run the blockingCallFromThread calls accepted while the 'before'
        triggers ran (the reactor was still serving them), which the ended loop
        will not: the pool's join would wait for ever on their threads
        (twisted#10124). Other calls from threads are dropped, as Twisted does."""
        queue = self.threadCallQueue
        late = [call for call in list(queue) if _is_blocking_call(call[0])]
        for call in late:
            queue.remove(call)
            f, args, kwargs = call
            f(*args, **kwargs)

    def _watch_shutdown(self) -> None:
        """Shutdown begins: its 'before' triggers may wait on a job's Deferred
        (``TimerService.stopService``), which a stuck job never fires."""
        if self.shutdown_grace is None or self.threadpool is None:
            return
        self._watch_before_stop = StuckPoolWatch(
            self.threadpool, self._threadcheck, self.shutdown_grace, True, self._stuck
        )
        self._watch_before_stop.start()

    def _initThreadPool(self) -> None:
        super()._initThreadPool()
        assert self.threadpool is not None
        # Keep Twisted's own construction; the subclass only adds submission stacks.
        self.threadpool.__class__ = SubmissionTrackingThreadPool
        self._stuck: set[int] = set()  # workers reported stuck at shutdown
        with self._threadcheck.exempt():
            self.addSystemEventTrigger("before", "shutdown", self._watch_shutdown)

    stall_threshold: float | None = DEFAULT_THRESHOLD
    """Seconds one callback may hold the running reactor's thread before it is
    reported as a stall (:mod:`threadcheck_reactor._stalls`); None: not watched.
    Set from ``THREADCHECK_STALL_MS`` (0: off) when the reactor is made."""

    _threadcheck_in_run = False
    _threadcheck_entered = False

    signalled_while_stopping: Callable[[int], object] | None = None
    """Called with the signal when SIGINT or SIGTERM comes while the reactor is
    already shutting down (``threadcheck run`` reports and exits): Twisted's
    handlers only ask it to stop again, so a shutdown stuck on a pool job that
    waits for ever ignored them for ever."""

    def sigInt(self, number: int, frame: FrameType | None = None) -> None:
        stopping = self._stopped and self._threadcheck_in_run
        super().sigInt(number, frame)
        self._signalled(number, stopping)

    def sigTerm(self, number: int, frame: FrameType | None = None) -> None:
        stopping = self._stopped and self._threadcheck_in_run
        super().sigTerm(number, frame)
        self._signalled(number, stopping)

    def _signalled(self, number: int, stopping: bool) -> None:
        hook = self.signalled_while_stopping
        if stopping and hook is not None:
            hook(number)

    def run(self, installSignalHandlers: bool = True) -> None:
        # Deferreds, transports and the like are checked while run() runs
        # (threadcheck_reactor._running), entered once startRunning has moved
        # ownership to this thread.
        self._threadcheck_in_run = True
        try:
            super().run(installSignalHandlers)
        finally:
            self._threadcheck_in_run = False
            if self._stall_watch is not None:
                self._stall_watch.stop()
                self._stall_watch = None
            if self._threadcheck_entered:
                self._threadcheck_entered = False
                _running.leave(self._threadcheck, self)

    def _poll_codes(self) -> frozenset[CodeType]:
        """Where this reactor waits for I/O: its thread is idle there, not stalled."""
        return self._codes_of("doIteration")

    def _dispatch_codes(self) -> frozenset[CodeType]:
        """Where this reactor hands its thread to a callback (DelayedCalls and
        callFromThread calls, I/O): only a callback can stall it."""
        return self._codes_of("runUntilCurrent", "_doReadOrWrite", "_readOrWrite")

    def _codes_of(self, *methods: str) -> frozenset[CodeType]:
        found = (code_of(getattr(type(self), method, None)) for method in methods)
        return frozenset(code for code in found if code is not None)

    def startRunning(self, installSignalHandlers: bool = True) -> None:
        # Twisted raises below for a second run(); only a real start moves ownership.
        if not (self._started or self._startedBefore):
            self._threadcheck.reactor_started()
        if self._threadcheck_in_run and not self._threadcheck_entered:
            # Before Twisted's startRunning: it runs the startup triggers.
            _running.enter(self._threadcheck, self)
            self._threadcheck_entered = True
            if self.stall_threshold is not None:
                # The race detector slows the program's code (up to 20x): its
                # time is not the program's stall.
                slowed = RACES_SLOWDOWN if _race_access.enabled else 1
                self._stall_watch = StallWatch(
                    self._threadcheck,
                    self.stall_threshold * slowed,
                    self._poll_codes(),
                    self._dispatch_codes(),
                    self._codes_of("_stopThreadPool"),
                )
                self._stall_watch.start()
        super().startRunning(installSignalHandlers)


RACES_SLOWDOWN = 20
"""How much longer a callback may hold the reactor thread under ``--races``."""

_R = TypeVar("_R", bound=type[ThreadCheckMixin])


def instrumented(cls: _R) -> _R:
    """Wrap each of :data:`NOT_THREAD_SAFE` that ``cls`` has with the affinity check."""
    for name in NOT_THREAD_SAFE:
        method = getattr(cls, name, None)
        if method is not None:
            setattr(cls, name, checked(f"reactor.{name}", method))
    return cls


from twisted.internet.selectreactor import SelectReactor  # noqa: E402


@instrumented
class ThreadCheckSelectReactor(ThreadCheckMixin, SelectReactor, instruments=SelectReactor):
    """Twisted's select() reactor, with thread-affinity checks."""


REACTOR_KINDS: dict[str, type[ThreadCheckMixin]] = {"select": ThreadCheckSelectReactor}
"""Every instrumented reactor of Twisted's select/poll/epoll this platform has, by
name, the default last."""

# The same choice as twisted.internet.default: epoll on Linux, poll on other
# POSIX systems but macOS, select everywhere else.
if platform.getType() == "posix" and not platform.isMacOSX():
    from twisted.internet.pollreactor import PollReactor

    @instrumented
    class ThreadCheckPollReactor(ThreadCheckMixin, PollReactor, instruments=PollReactor):
        """Twisted's poll() reactor, with thread-affinity checks."""

    REACTOR_KINDS["poll"] = ThreadCheckPollReactor

if platform.isLinux():
    from twisted.internet.epollreactor import EPollReactor

    @instrumented
    class ThreadCheckEPollReactor(ThreadCheckMixin, EPollReactor, instruments=EPollReactor):
        """Twisted's epoll() reactor, with thread-affinity checks."""

    REACTOR_KINDS["epoll"] = ThreadCheckEPollReactor

_running.register(_deferreds.patches)
_running.register(_transports.patches)
_running.register(_web.patches)
_running.register(_task.patches)

REACTOR_CLASSES: list[type[ThreadCheckMixin]] = list(REACTOR_KINDS.values())
"""Every instrumented reactor this platform supports, the default last."""

ThreadCheckReactor = REACTOR_CLASSES[-1]
"""The instrumented version of Twisted's default reactor on this platform."""


def install() -> None:
    """Install the reactor the way ``--reactor=threadcheck`` does.

    Twisted's convention: a child process re-creates its parent's reactor with
    ``import <type(reactor).__module__>; install()`` (Twisted's own tests do).
    The child then reports into its parent's report. Through Twisted's plugin
    (as trial's option does), which names threadcheck's driver: the reactor
    does not import it.
    """
    from twisted.application.reactors import installReactor

    installReactor("threadcheck")  # type: ignore[no-untyped-call]
