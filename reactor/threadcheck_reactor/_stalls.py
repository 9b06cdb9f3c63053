"""The stall watchdog: a callback that holds the reactor thread too long.

A daemon thread samples the reactor thread's stack every half of the
threshold. Only a reactor callback can stall: the frame just inside the
innermost of the reactor's dispatch frames, found by code object
(``runUntilCurrent`` for a DelayedCall or a ``callFromThread`` call,
``_doReadOrWrite``/``_readOrWrite`` for I/O, asyncio's ``Handle._run``, the
system event triggers' firing). A thread with no dispatch frame on its stack
is not inside a callback: pytest's hooks and fixtures running in the
reactor's thread while pytest-twisted's greenlet holds the reactor suspended,
say. Nor is a test up to its first wait, which pytest-twisted runs in a
reactor callback (what resumes it is a Deferred callback: that one is). The
same callback frame seen busy for at least the threshold is one stall,
reported once: where the reactor thread is blocked, the callback and how the
reactor came to run it, and the known blocking call it sits in, if any
(``time.sleep``, ``Queue.get``, ``Thread.join``, ``Lock.acquire``...).

Sampling resolution: a stall is seen once it has lasted between the threshold
and 1.5 times it. The reactor thread pays nothing: no hook runs in it.

Stalls are findings, not thread-affinity violations: they are reported on
their own and do not fail a run or a test (a loaded CI machine stalls too).

Thread safety: ``start``/``stop`` from the reactor thread; the watchdog
thread only reads the reactor thread's frames.
"""

from __future__ import annotations

import dis
import os
import selectors
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from twisted.internet import base
from twisted.internet.defer import Deferred

from threadcheck import _hidden, _stacks
from threadcheck._affinity import AffinityChecker
from threadcheck._violation import Kind, Violation

DEFAULT_THRESHOLD = 0.1
"""Seconds one callback may hold the reactor thread (``THREADCHECK_STALL_MS``)."""

_SELECTOR_WAITS = frozenset(
    cls.select.__code__
    for cls in vars(selectors).values()
    if isinstance(cls, type) and issubclass(cls, selectors.BaseSelector) and "select" in vars(cls)
)


def code_of(function: object) -> CodeType | None:
    """``function``'s code object; None for anything else (a builtin, say)."""
    code = getattr(function, "__code__", None)
    return code if isinstance(code, CodeType) else None


# Where every reactor runs the system event triggers (callWhenRunning,
# addSystemEventTrigger); the reactor names its own dispatch (see StallWatch).
_TRIGGER_DISPATCH = frozenset(
    code
    for function in (base._ThreePhaseEvent.fireEvent, base._ThreePhaseEvent._continueFiring)
    if (code := code_of(function)) is not None
)

_DEFERRED_CALLBACKS = code_of(Deferred._runCallbacks)

# Test runners that run the test itself in a reactor callback (pytest-twisted:
# each test body and async fixture): the test's own code, not a callback of the
# program under test.
_TEST_RUNNERS = frozenset({"pytest_twisted"})

# What lies between the reactor's dispatch and a test runner's code.
_PLUMBING = frozenset({"twisted", "threadcheck", "python", "decorator"})

# A blocking wait seen as (file name end, function) among the innermost frames.
_WAITS_IN_PYTHON = (
    ("queue.py", "get", "Queue.get"),
    ("queue.py", "put", "Queue.put"),
    ("threading.py", "join", "Thread.join"),
    ("threading.py", "wait", "Condition.wait"),
    ("threading.py", "acquire", "Semaphore.acquire"),
    ("threads.py", "blockingCallFromThread", "blockingCallFromThread"),
)

# A blocking C function the innermost Python frame is calling, by the name it loads.
_C_CALLS = {
    "sleep": "time.sleep",
    "acquire": "Lock.acquire",
    "join": "Thread.join",
    "recv": "socket.recv",
    "accept": "socket.accept",
    "connect": "socket.connect",
    "select": "select",
    "read": "a blocking read",
    "urlopen": "urlopen",
    "getaddrinfo": "socket.getaddrinfo",
    "gethostbyname": "socket.gethostbyname",
}


def threshold_from_environment(default: float | None = DEFAULT_THRESHOLD) -> float | None:
    """``THREADCHECK_STALL_MS`` in seconds (0: off); ``default`` when unset."""
    value = os.environ.get("THREADCHECK_STALL_MS")
    if value is None or not value.strip():
        return default
    return threshold_from_milliseconds(value, "THREADCHECK_STALL_MS")


_LONGEST_MS = 86_400_000
"""A day: longer (inf) overflowed the watch thread's clock arithmetic."""


def threshold_from_milliseconds(text: str, what: str) -> float | None:
    """``text`` milliseconds in seconds (0: off); ValueError in one line if it is not."""
    try:
        milliseconds = float(text)
    except ValueError:
        milliseconds = float("nan")
    if not 0 <= milliseconds <= _LONGEST_MS:  # not `< 0`: also refuses nan
        raise ValueError(f"{what} takes milliseconds up to a day (0: off), got {text!r}")
    return milliseconds / 1000 if milliseconds > 0 else None


class StallWatch:
    """Watches one running reactor's thread for callbacks over ``threshold`` seconds.

    ``current_frames`` and ``clock`` are injectable, so tests can drive it
    with fakes; ``poll_codes`` are the reactor's own waits (its doIteration),
    ``dispatch_codes`` where it hands its thread to a callback, ``shutdown_codes``
    callbacks of its own shutdown that wait for other threads (joining the
    thread pool: the shutdown watch reports a worker that never finishes).
    """

    def __init__(
        self,
        checker: AffinityChecker,
        threshold: float,
        poll_codes: frozenset[CodeType],
        dispatch_codes: frozenset[CodeType],
        shutdown_codes: frozenset[CodeType] = frozenset(),
        *,
        current_frames: Callable[[], dict[int, FrameType]] = _stacks.current_frames,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._checker = checker
        self._threshold = threshold
        self._idle_codes = poll_codes | _SELECTOR_WAITS
        self._dispatch_codes = dispatch_codes | _TRIGGER_DISPATCH
        self._shutdown_codes = shutdown_codes
        self._current_frames = current_frames
        self._clock = clock
        self._stopped = threading.Event()
        self._callback: FrameType | None = None
        self._since = 0.0
        self._reported = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._watch, name="threadcheck-stall-watch", daemon=True
        )
        _hidden.hide(self._thread)  # from a leaked-thread check of the program's
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._callback = None  # no frame kept alive

    def _watch(self) -> None:
        while not self._stopped.wait(self._threshold / 2):
            self.sample()

    def sample(self) -> Violation | None:
        """Look at the reactor thread once; the stall reported now, if any."""
        frame = self._current_frames().get(self._checker.owner)
        callback = None if frame is None else self._running_callback(frame)
        now = self._clock()
        if callback is None or callback is not self._callback:
            self._callback, self._since, self._reported = callback, now, False
            return None
        if self._reported or now - self._since < self._threshold:
            return None
        self._reported = True
        assert frame is not None
        if _runs_the_test(callback, frame):
            return None  # the test's own code, handed to the reactor by its runner
        if callback.f_code in self._shutdown_codes:
            return None  # the reactor serves nothing more: a shutdown waiting is no stall
        return self._report(frame, callback, now - self._since)

    def _running_callback(self, frame: FrameType) -> FrameType | None:
        """The frame just inside the innermost dispatch, the same one for as long
        as the callback runs (threadcheck's check around it, say); None when the
        reactor is not inside a callback (idle, between callbacks, its thread
        running other code)."""
        if frame.f_code in self._idle_codes:
            return None
        inner: FrameType | None = None
        walker: FrameType | None = frame
        while walker is not None:
            if walker.f_code in self._dispatch_codes:
                return inner
            inner, walker = walker, walker.f_back
        return None

    def _report(self, frame: FrameType, callback: FrameType, seconds: float) -> Violation:
        stack = _stacks.intern(_stacks.stack_from(frame))
        blocking = blocking_call(frame)
        detail = (
            f"held the reactor thread for at least {seconds * 1000:.0f} ms "
            f"(threshold {self._threshold * 1000:.0f} ms) inside a reactor callback: "
            f"{describe_callback(callback, frame)}"
        )
        stall = Violation(
            api=blocking or "stall",
            kind=Kind.STALL,
            thread=self._checker.owner_info(),
            reactor_thread=self._checker.owner_info(),
            stack=stack,
            spawn_site=None,
            submitted_from=None,
            test=self._checker.recorder.context,
            detail=detail,
            within=_depth(frame, callback),
        )
        self._checker.recorder.record_stall(stall)
        return stall


def _depth(innermost: FrameType, callback: FrameType) -> int:
    """Frames from ``callback`` to ``innermost``, both counted."""
    depth, walker = 1, innermost
    while walker is not callback and walker.f_back is not None:
        depth, walker = depth + 1, walker.f_back
    return depth


def _runs_the_test(callback: FrameType, innermost: FrameType) -> bool:
    """Whether the first code inside the reactor's ``callback`` past Twisted's
    and threadcheck's is a test runner's: pytest-twisted's, running the test in
    a DelayedCall, or in a ``blockingCallFromThread`` when the reactor runs in
    another thread."""
    for frame in reversed(_chain(callback, innermost)):  # outermost first
        if _stacks.classify(frame.f_code.co_filename) not in _PLUMBING:
            module = frame.f_globals.get("__name__")
            return isinstance(module, str) and module.partition(".")[0] in _TEST_RUNNERS
    return False


def blocking_call(frame: FrameType) -> str | None:
    """The known blocking call the stack ending in ``frame`` waits in, if any."""
    walker: FrameType | None = frame
    for _ in range(4):  # the wait is within a few frames of the innermost
        if walker is None:
            break
        filename, function = walker.f_code.co_filename, walker.f_code.co_name
        for suffix, name, label in _WAITS_IN_PYTHON:
            if filename.endswith(suffix) and function == name:
                return _refine(walker, label)
        walker = walker.f_back
    called = _called_name(frame)
    return _C_CALLS.get(called) if called is not None else None


def _refine(frame: FrameType, label: str) -> str:
    """Condition.wait inside Event.wait is Event.wait (inside Thread.start, the
    new thread's start handshake: Thread.start); inside Queue.get, Queue.get."""
    if label != "Condition.wait":
        return label
    caller = frame.f_back
    while caller is not None and _threading_function(caller) is not None:
        if caller.f_code.co_name == "wait":
            # Thread.start waits on its Event for the new thread to run.
            starting = _threading_function(caller.f_back) == "start"
            return "Thread.start" if starting else "Event.wait"
        caller = caller.f_back
    if caller is not None and caller.f_code.co_filename.endswith("queue.py"):
        return f"Queue.{caller.f_code.co_name}"
    return label


def _threading_function(frame: FrameType | None) -> str | None:
    """The name of ``frame``'s function if it is ``threading``'s own."""
    if frame is None or not frame.f_code.co_filename.endswith("threading.py"):
        return None
    return frame.f_code.co_name


def _called_name(frame: FrameType) -> str | None:
    """The blocking function the statement ``frame`` is in calls, by the names it loads."""
    names: list[str] = []
    current = ""
    for instruction in dis.get_instructions(frame.f_code):
        if instruction.offset > frame.f_lasti:
            break
        if instruction.starts_line:
            names.clear()  # only the current statement's
        if instruction.opname in ("LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME"):
            names.append(str(instruction.argval))
        current = instruction.opname
    if current in _ENTERING_WITH:
        return "acquire"  # blocked in a C __enter__: `with lock:`
    return next((name for name in reversed(names) if name in _C_CALLS), None)


_ENTERING_WITH = frozenset({"BEFORE_WITH", "SETUP_WITH"})
"""The instruction that calls ``__enter__`` (3.11+; 3.10). One written in
Python has a frame of its own: blocked in one without, it is a lock's."""


def _scheduled_at(call: base.DelayedCall) -> str:
    """Where ``callLater`` was called: known when Twisted's ``DelayedCall.debug``
    is on (it keeps every call's creation stack, at a cost)."""
    creator = getattr(call, "creator", None)
    if not creator:
        return (
            " (reactor.callLater, or callFromThread on the asyncio reactor; "
            "DelayedCall.debug = True shows where it was scheduled)"
        )
    for entry in reversed(creator):
        first = entry.strip().splitlines()[0]  # File "x.py", line 3, in f
        if "twisted" not in first and "threadcheck" not in first:
            return f" scheduled at {first}"
    return ""


def _chain(root: FrameType, innermost: FrameType) -> list[FrameType]:
    """The frames from ``innermost`` out to ``root``, innermost first."""
    chain: list[FrameType] = []
    walker: FrameType | None = innermost
    while walker is not None:
        chain.append(walker)
        if walker is root:
            break
        walker = walker.f_back
    return chain


def _named_callback(root: FrameType, innermost: FrameType) -> FrameType:
    """The function to name for the callback that ``root`` (just inside the
    dispatch) runs: the outermost user function in it (Twisted's Deferred
    machinery and threadcheck's checks wrap it), else the outermost frame that
    is not threadcheck's."""
    chain = _chain(root, innermost)
    libraries = [_stacks.classify(frame.f_code.co_filename) for frame in chain]
    for frame, library in zip(reversed(chain), reversed(libraries), strict=True):
        if library is None:
            return frame
    for frame, library in zip(reversed(chain), reversed(libraries), strict=True):
        if library != "threadcheck":
            return frame
    return root


def describe_callback(callback: FrameType, innermost: FrameType) -> str:
    """The callback, and how the reactor came to run it (a DelayedCall,
    callFromThread, I/O...); ``callback`` is the frame just inside the dispatch."""
    named = _named_callback(callback, innermost)
    code = named.f_code
    where = _stacks.Frame(code.co_filename, code.co_firstlineno, code.co_name).location()
    if _fired_by_a_deferred(named, callback):
        where += " (a Deferred callback)"
    dispatcher = callback.f_back
    assert dispatcher is not None  # the reactor's dispatch frame
    return f"{where}, {_how_run(dispatcher)}"


def _fired_by_a_deferred(named: FrameType, callback: FrameType) -> bool:
    """Whether a Deferred fired ``named`` within the reactor's ``callback``."""
    walker = named.f_back
    while walker is not None and walker is not callback.f_back:
        if walker.f_code is _DEFERRED_CALLBACKS:
            return True
        walker = walker.f_back
    return False


def _how_run(dispatcher: FrameType) -> str:
    """How the reactor came to run the callback, from its dispatch frame."""
    scheduled = dispatcher.f_locals
    name = dispatcher.f_code.co_name
    if name == "runUntilCurrent":
        # Its DelayedCall loop comes after its callFromThread loop: `call` first.
        call: Any = scheduled.get("call")
        if isinstance(call, base.DelayedCall):
            return f"run by a DelayedCall{_scheduled_at(call)}"
        return "handed over with reactor.callFromThread"
    if "selectable" in scheduled:
        return f"run for I/O on {type(scheduled['selectable']).__name__}"
    if name == "_run":
        return "run by the asyncio event loop"
    return "run as a system event trigger"
