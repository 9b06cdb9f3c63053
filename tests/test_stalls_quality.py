"""Quality: the stall watchdog names a callback that blocks the reactor thread.

Planted: a callback that blocks the running reactor's thread for 0.3 s in a
known blocking call is reported once, as that call, at the callback's line,
with how the reactor came to run it, on every instrumented reactor. Fixed
twins (the same wait in a worker, an idle reactor, short callbacks, the
reactor's thread blocked outside any reactor callback) are silent. Threshold
50 ms.
"""

from __future__ import annotations

import contextlib
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import greenlet
import pytest
from twisted.internet import threads
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.python.threadpool import ThreadPool

from threadcheck import Kind, Mode
from threadcheck._races import _access as _race_access
from threadcheck._report import format_stalls
from threadcheck_reactor import REACTOR_CLASSES, ThreadCheckMixin, ThreadCheckReactor
from threadcheck_reactor._asyncio import ThreadCheckAsyncioReactor
from threadcheck_reactor._reactor import RACES_SLOWDOWN
from threadcheck_reactor._stalls import StallWatch

from support import JOIN_TIMEOUT, RunningReactor

pytestmark = pytest.mark.quality

BLOCK = 0.3


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch) -> Iterator[RunningReactor]:
    monkeypatch.setenv("THREADCHECK_STALL_MS", "50")
    running = RunningReactor(Mode.RECORD)
    try:
        yield running
    finally:
        running.stop()


def sleeps() -> None:
    time.sleep(BLOCK)


def waits_on_a_queue() -> None:
    with contextlib.suppress(queue.Empty):
        queue.Queue().get(timeout=BLOCK)


def joins_a_thread() -> None:
    worker = threading.Thread(target=time.sleep, args=(BLOCK,))
    worker.start()
    worker.join()


def _held_by_another_thread() -> threading.Lock:
    """A lock another thread holds for BLOCK seconds from now."""
    lock = threading.Lock()
    held = threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            time.sleep(BLOCK)

    threading.Thread(target=hold).start()
    held.wait()
    return lock


def waits_for_a_held_lock() -> None:
    lock = _held_by_another_thread()
    lock.acquire()
    lock.release()


def enters_a_held_lock() -> None:
    lock = _held_by_another_thread()
    with lock:  # the usual spelling: it was a bare "stall", with the generic fix
        pass


def waits_on_an_event() -> None:
    threading.Event().wait(BLOCK)


class _SlowToStart(threading.Thread):
    def _bootstrap_inner(self) -> None:
        time.sleep(BLOCK)  # a loaded machine (or --races) before the new thread runs
        super()._bootstrap_inner()  # type: ignore[misc]


def starts_a_thread() -> None:
    # Thread.start waits on an Event: it was "Event.wait", whose fix
    # (deferToThread(event.wait)) named a wait the program never wrote.
    _SlowToStart(target=time.sleep, args=(0,)).start()


class Service:
    def __init__(self) -> None:
        self.ready = threading.Event()

    def start(self) -> None:
        self.ready.wait(BLOCK)  # the program's own start(): its Event.wait, not Thread.start's


def computes() -> None:
    deadline = time.monotonic() + BLOCK
    while time.monotonic() < deadline:
        pass


PLANTED: list[tuple[Callable[[], None], str, str]] = [
    (sleeps, "time.sleep", "time.sleep(BLOCK)"),
    (waits_on_a_queue, "Queue.get", "queue.Queue().get(timeout=BLOCK)"),
    (joins_a_thread, "Thread.join", "worker.join()"),
    (waits_for_a_held_lock, "Lock.acquire", "lock.acquire()"),
    (
        enters_a_held_lock,
        "Lock.acquire",
        'with lock:  # the usual spelling: it was a bare "stall", with the generic fix',
    ),
    (waits_on_an_event, "Event.wait", "threading.Event().wait(BLOCK)"),
    (starts_a_thread, "Thread.start", "_SlowToStart(target=time.sleep, args=(0,)).start()"),
    (
        Service().start,
        "Event.wait",
        "self.ready.wait(BLOCK)  # the program's own start(): its Event.wait, not Thread.start's",
    ),
    (computes, "stall", "while time.monotonic() < deadline:"),
]


@pytest.mark.parametrize(
    ("callback", "name", "line"), PLANTED, ids=[p[0].__name__ for p in PLANTED]
)
def test_a_blocking_callback_is_reported_once_as_its_blocking_call(
    running: RunningReactor, callback: Callable[[], None], name: str, line: str
) -> None:
    running.in_reactor(callback)
    # Exactly once for this callback (a loaded machine may stall the harness too).
    [stall] = [s for s in running.recorder.stalls() if f"in {callback.__name__}," in str(s.detail)]
    assert (stall.api, stall.kind) == (name, Kind.STALL)
    assert running.recorder.violations() == []  # a stall is no violation
    report = format_stalls([stall]).splitlines()
    assert report[2].startswith("[1] reactor thread stalled")
    assert f"in {callback.__name__}" in report[2]  # the callback...
    assert "reactor.callFromThread" in report[2]  # ...and how it was scheduled
    blocked_at = report.index(next(text for text in report if "blocked at:" in text))
    assert report[blocked_at].endswith(f"in {callback.__name__}")
    assert report[blocked_at + 1].strip() == line
    assert report[-1].startswith("    fix: ")


def test_a_wait_in_a_lambda_is_handed_to_a_worker_alone(running: RunningReactor) -> None:
    # `reactor.callLater(0.01, lambda: (t.join(), reactor.stop()))`: the fix
    # handed the whole line to a worker, callLater and stop with it (each a
    # thread-affinity bug of its own there).
    worker = threading.Thread(target=time.sleep, args=(BLOCK,))
    worker.start()
    running.in_reactor(lambda: (worker.join(), None))  # BUG: the reactor waits
    [stall] = [s for s in running.recorder.stalls() if s.api == "Thread.join"]
    [fix] = [line for line in format_stalls([stall]).splitlines() if "fix: " in line]
    assert fix == (
        "    fix: wait in a worker: threads.deferToThread(worker.join), and go on in its callback"
    )


def fires_a_deferred_whose_callback_waits() -> None:
    worker = threading.Thread(target=time.sleep, args=(BLOCK,))
    worker.start()
    done: Deferred[None] = Deferred()
    done.addCallback(worker.join)  # not the program's code: as trial runs `addCleanup(t.join)`
    done.callback(None)


def test_a_wait_in_a_deferred_s_callback_is_not_handed_over_with_its_firing(
    running: RunningReactor,
) -> None:
    # Z50: "fix: wait in a worker: threads.deferToThread(done.callback, got)",
    # which threadcheck then reported as Deferred.callback from a worker.
    running.in_reactor(fires_a_deferred_whose_callback_waits)
    [stall] = [s for s in running.recorder.stalls() if s.api == "Thread.join"]
    report = format_stalls([stall]).splitlines()
    blocked_at = report.index(next(text for text in report if "blocked at:" in text))
    assert report[blocked_at + 1].strip() == "done.callback(None)"
    assert re.fullmatch(
        r"    fix: the wait is in a Deferred callback this line fires \(\S*threading\.py:\d+ in"
        r" join\): there, wait in a worker: threads\.deferToThread\(thread\.join\); this line"
        r" stays in the reactor thread",
        report[-1],
    ), report[-1]


def test_the_same_wait_in_a_worker_is_silent(running: RunningReactor) -> None:
    reactor = running.reactor
    running.in_reactor(
        lambda: threads.deferToThreadPool(reactor, reactor.getThreadPool(), time.sleep, BLOCK)
    )
    assert running.recorder.stalls() == []


def test_an_idle_reactor_and_short_callbacks_are_silent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADCHECK_STALL_MS", "150")  # room for a loaded machine
    patient = RunningReactor(Mode.RECORD)
    try:
        for _ in range(30):
            patient.in_reactor(time.sleep, 0.01)  # 10 ms each, 300 ms in all
        time.sleep(BLOCK)  # the reactor waits for I/O meanwhile
    finally:
        patient.stop()
    assert patient.recorder.stalls() == []


def test_stalls_are_not_watched_when_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADCHECK_STALL_MS", "0")
    running = RunningReactor(Mode.RECORD)
    try:
        running.in_reactor(sleeps)
    finally:
        running.stop()
    assert running.reactor.stall_threshold is None
    assert running.recorder.stalls() == []


def blocks_in_a_deferred_callback(result: object) -> None:
    threading.Event().wait(BLOCK)


def test_a_deferred_callback_handed_over_is_named_with_how_it_came(
    running: RunningReactor,
) -> None:
    # The check wrapping Deferred.callback is threadcheck's: the user's callback is named.
    d: Deferred[None] = running.in_reactor(
        lambda: [Deferred().addCallback(blocks_in_a_deferred_callback)]
    )[0]
    running.reactor.callFromThread(d.callback, None)
    running.in_reactor(lambda: None)
    [stall] = [s for s in running.recorder.stalls() if "blocks_in_a" in str(s.detail)]
    assert stall.api == "Event.wait"
    line = blocks_in_a_deferred_callback.__code__.co_firstlineno
    assert re.fullmatch(
        r"held the reactor thread for at least \d+ ms \(threshold 50 ms\) inside a reactor "
        rf"callback: \S*test_stalls_quality\.py:{line} in blocks_in_a_deferred_callback "
        r"\(a Deferred callback\), handed over with reactor\.callFromThread",
        str(stall.detail),
    )


# -- every kind of reactor callback, on every instrumented reactor ----------

DELAYED_CALL = (
    "run by a DelayedCall (reactor.callLater, or callFromThread on the asyncio reactor; "
    "DelayedCall.debug = True shows where it was scheduled)"
)
CLASSES = [*REACTOR_CLASSES, ThreadCheckAsyncioReactor]


def sleeps_then_signals(done: threading.Event) -> None:
    time.sleep(BLOCK)
    done.set()


class SleepsOnData(Protocol):
    def __init__(self, done: threading.Event) -> None:
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        time.sleep(BLOCK)
        self.done.set()


def by_call_later(running: RunningReactor, done: threading.Event) -> None:
    running.in_reactor(running.reactor.callLater, 0, sleeps_then_signals, done)


def by_call_from_thread(running: RunningReactor, done: threading.Event) -> None:
    running.reactor.callFromThread(sleeps_then_signals, done)


def by_io(running: RunningReactor, done: threading.Event) -> None:
    factory = Factory.forProtocol(lambda: SleepsOnData(done))
    port = running.in_reactor(running.reactor.listenTCP, 0, factory, interface="127.0.0.1")
    with socket.create_connection(("127.0.0.1", port.getHost().port)) as client:
        client.sendall(b"x")
        assert done.wait(JOIN_TIMEOUT)


def by_a_shutdown_trigger(running: RunningReactor, done: threading.Event) -> None:
    trigger = running.reactor.addSystemEventTrigger
    running.in_reactor(trigger, "before", "shutdown", sleeps_then_signals, done)
    running.stop()


def by_the_asyncio_loop(running: RunningReactor, done: threading.Event) -> None:
    running.reactor._asyncioEventloop.call_soon_threadsafe(sleeps_then_signals, done)  # type: ignore[attr-defined]


def _how(scheduled: Callable[[RunningReactor, threading.Event], None], reactor: type) -> str:
    if scheduled is by_call_from_thread and reactor is not ThreadCheckAsyncioReactor:
        return "handed over with reactor.callFromThread"
    return {
        by_call_later: DELAYED_CALL,
        by_call_from_thread: DELAYED_CALL,  # the asyncio reactor's goes through callLater
        by_io: "run for I/O on Server",
        by_a_shutdown_trigger: "run as a system event trigger",
        by_the_asyncio_loop: "run by the asyncio event loop",
    }[scheduled]


KINDS = [
    (reactor, scheduled)
    for reactor in CLASSES
    for scheduled in (by_call_later, by_call_from_thread, by_io, by_a_shutdown_trigger)
] + [(ThreadCheckAsyncioReactor, by_the_asyncio_loop)]


@pytest.mark.parametrize(
    ("reactor_type", "scheduled"),
    KINDS,
    ids=[f"{reactor.__name__}-{scheduled.__name__}" for reactor, scheduled in KINDS],
)
def test_each_kind_of_reactor_callback_is_reported_with_how_it_ran(
    monkeypatch: pytest.MonkeyPatch,
    reactor_type: type[ThreadCheckMixin],
    scheduled: Callable[[RunningReactor, threading.Event], None],
) -> None:
    monkeypatch.setenv("THREADCHECK_STALL_MS", "50")
    running = RunningReactor(Mode.RECORD, reactor_type)
    done = threading.Event()
    try:
        scheduled(running, done)
        assert done.wait(JOIN_TIMEOUT)
    finally:
        running.stop()
    callback = SleepsOnData.dataReceived if scheduled is by_io else sleeps_then_signals
    [stall] = [
        s for s in running.recorder.stalls() if f" in {callback.__name__}," in str(s.detail)
    ]
    assert stall.api == "time.sleep"
    assert re.fullmatch(
        r"held the reactor thread for at least \d+ ms \(threshold 50 ms\) inside a reactor "
        rf"callback: \S*test_stalls_quality\.py:{callback.__code__.co_firstlineno} "
        rf"in {callback.__name__}, {re.escape(_how(scheduled, reactor_type))}",
        str(stall.detail),
    )


# -- StallWatch.sample on the reactor thread's real frames, with a fake clock --

THRESHOLD = 0.1


def _watch(reactor: ThreadCheckMixin, times: list[float]) -> StallWatch:
    """A watch sampled by hand, its clock reading ``times`` one per sample."""
    return StallWatch(
        reactor.threadcheck,
        THRESHOLD,
        reactor._poll_codes(),
        reactor._dispatch_codes(),
        clock=iter(times).__next__,
    )


def test_sample_reports_a_callback_once_it_has_held_the_thread_for_the_threshold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("THREADCHECK_STALL_MS", "0")  # only the watch sampled here
    running = RunningReactor(Mode.RECORD)
    entered, release = threading.Event(), threading.Event()

    def holds() -> None:
        entered.set()
        release.wait(JOIN_TIMEOUT)

    watch = _watch(running.reactor, [0.0, THRESHOLD / 2, THRESHOLD, 2 * THRESHOLD])
    try:
        running.reactor.callFromThread(holds)
        assert entered.wait(JOIN_TIMEOUT)
        samples = [watch.sample() for _ in range(4)]
    finally:
        release.set()
        running.stop()
    assert samples[:2] == [None, None]  # not yet the threshold
    assert samples[3] is None  # reported once
    stall = samples[2]
    assert stall is not None and running.recorder.stalls() == [stall]
    assert (stall.api, stall.kind) == ("Event.wait", Kind.STALL)
    line = holds.__code__.co_firstlineno
    assert re.fullmatch(
        r"held the reactor thread for at least 100 ms \(threshold 100 ms\) inside a reactor "
        rf"callback: \S*test_stalls_quality\.py:{line} in holds, "
        r"handed over with reactor\.callFromThread",
        str(stall.detail),
    )


def test_sample_of_the_reactor_thread_outside_its_callbacks_is_no_stall() -> None:
    # As under pytest-twisted: the reactor runs in a greenlet, and the thread's
    # own code (pytest's) runs while the reactor is suspended in a callback.
    reactor = ThreadCheckReactor(Mode.RECORD)
    reactor.stall_threshold = None  # only the watch sampled here
    outside, release = threading.Event(), threading.Event()
    thread_code: list[greenlet.greenlet] = []
    reactor.callLater(0, lambda: thread_code[0].switch())  # from a callback to the thread's code

    def thread_main() -> None:
        thread_code.append(greenlet.getcurrent())
        reactor_greenlet = greenlet.greenlet(reactor.run)
        reactor_greenlet.switch(installSignalHandlers=False)
        outside.set()
        release.wait(JOIN_TIMEOUT)  # blocked in the reactor's thread, outside its callbacks
        reactor.stop()
        reactor_greenlet.switch()  # lets run() return

    thread = threading.Thread(target=thread_main, name="reactor")
    thread.start()
    try:
        assert outside.wait(JOIN_TIMEOUT)
        watch = _watch(reactor, [0.0, THRESHOLD, 10 * THRESHOLD])
        samples = [watch.sample() for _ in range(3)]
    finally:
        release.set()
        thread.join(JOIN_TIMEOUT)
    assert not thread.is_alive() and not reactor.running
    assert samples == [None, None, None]
    assert reactor.threadcheck.recorder.stalls() == []


# -- end to end: pytest --threadcheck beside pytest-twisted, threadcheck run --


def assert_lines(actual: list[str], expected: list[str]) -> None:
    """``actual`` is ``expected`` line for line; ``<n>`` stands for a number,
    ``<any>`` for any text."""
    assert len(actual) == len(expected), "\n".join(actual)
    for line, wanted in zip(actual, expected, strict=True):
        pattern = re.escape(wanted).replace("<n>", r"\d+").replace("<any>", ".+")
        assert re.fullmatch(pattern, line), f"{line!r} is not {wanted!r}"


def threadcheck_section(result: pytest.RunResult) -> list[str]:
    """The lines of pytest's threadcheck section, up to the outcome line."""
    lines = result.stdout.lines
    start = next(i for i, line in enumerate(lines) if re.fullmatch(r"=+ threadcheck =+", line))
    return lines[start + 1 : -1]


PYTEST_TWISTED_REACTORS = [[], ["--reactor=asyncio"]]

NOT_IN_A_CALLBACK_CONFTEST = """
import gc
import time

import pytest


def slow_collection(phase, info):
    if phase == "stop":
        time.sleep(0.3)


@pytest.fixture
def sleeps():
    time.sleep(0.3)
    yield
    time.sleep(0.3)  # the reactor runs by now: it started for the test's call


@pytest.fixture(autouse=True)
def collects_garbage():
    yield
    gc.callbacks.append(slow_collection)
    try:
        gc.collect()  # 0.3 s
    finally:
        gc.callbacks.remove(slow_collection)


def pytest_terminal_summary():
    time.sleep(0.3)  # a pytest hook, before threadcheck's summary
"""


@pytest.mark.slow
@pytest.mark.parametrize("reactor", PYTEST_TWISTED_REACTORS, ids=["default", "asyncio"])
def test_pytest_code_fixtures_and_test_bodies_in_the_reactor_thread_are_no_stall(
    pytester: pytest.Pytester, reactor: list[str]
) -> None:
    # pytest-twisted runs the test body in a DelayedCall, and pytest's code
    # (fixtures, hooks) in the reactor's thread while the reactor is suspended.
    pytester.makeconftest(NOT_IN_A_CALLBACK_CONFTEST)
    pytester.makepyfile(
        test_sleepy="import time\n\n\ndef test_sleeps(sleeps):\n    time.sleep(0.3)\n"
    )
    result = pytester.runpytest_subprocess(
        "--threadcheck", "-p", "hypothesispytest", *reactor, timeout=120
    )
    result.assert_outcomes(passed=1)
    [plugins] = [line for line in result.stdout.lines if line.startswith("plugins: ")]
    loaded = {name.rsplit("-", 1)[0] for name in plugins.removeprefix("plugins: ").split(", ")}
    assert {"twisted", "hypothesis"} <= loaded  # pytest-twisted's and hypothesis's plugins
    assert "reactor stall" not in result.stdout.str()
    assert threadcheck_section(result) == ["", "threadcheck: no thread-affinity violations"]


REACTOR_IN_A_THREAD_CONFTEST = """
import threading

from twisted.internet import reactor

started = threading.Event()
reactor.callWhenRunning(started.set)
threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False}, daemon=True).start()
started.wait()
"""


@pytest.mark.slow
def test_a_test_body_handed_to_a_reactor_in_another_thread_is_no_stall(
    pytester: pytest.Pytester,
) -> None:
    # The reactor already runs: pytest-twisted hands the test to its thread
    # with blockingCallFromThread.
    pytester.makeconftest(REACTOR_IN_A_THREAD_CONFTEST)
    pytester.makepyfile(
        test_handed_over="""
        import time

        import pytest_twisted
        from twisted.internet import reactor, task


        @pytest_twisted.inlineCallbacks
        def test_sleeps_in_the_reactor_thread():
            time.sleep(0.3)
            yield task.deferLater(reactor, 0, lambda: None)
        """
    )
    result = pytester.runpytest_subprocess("--threadcheck", timeout=120)
    result.assert_outcomes(passed=1)
    assert threadcheck_section(result) == ["", "threadcheck: no thread-affinity violations"]


# The same slow callback at the same lines (7 and 8) in a test and a program.
SLOW_CALLBACK_TEST = """\
import time

import pytest_twisted
from twisted.internet import defer, reactor


def slow(done):
    time.sleep(0.3)
    done.callback(None)


@pytest_twisted.inlineCallbacks
def test_waits_for_a_slow_callback():
    done = defer.Deferred()
    reactor.callLater(0, slow, done)
    yield done
"""

SLOW_CALLBACK_PROGRAM = """\
import time

from twisted.internet import reactor


# a reactor callback
def slow():
    time.sleep(0.3)
    reactor.stop()


reactor.callLater(0, slow)
reactor.run()
"""


def slow_callback_stall(file: str, during: list[str], caller: list[str]) -> list[str]:
    """The stall report of ``slow`` in ``file``: ``during`` is the line naming
    the test, if any, ``caller`` the stack's lines above the reactor's frames."""
    return [
        "[1] reactor thread stalled in time.sleep: held the reactor thread for at least <n> ms "
        f"(threshold 100 ms) inside a reactor callback: {file}:7 in slow, run by a DelayedCall "
        "(reactor.callLater, or callFromThread on the asyncio reactor; DelayedCall.debug = True "
        "shows where it was scheduled)",
        *during,
        f"    blocked at: {file}:8 in slow",
        "        time.sleep(0.3)",
        "    stack (most recent call last):",
        *caller,
        "      ... <n> frames in <any> ...",
        f"      {file}:8 in slow",
        "          time.sleep(0.3)",
        "    fix: wait without blocking: task.deferLater(reactor, seconds, f)",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("reactor", PYTEST_TWISTED_REACTORS, ids=["default", "asyncio"])
def test_a_slow_reactor_callback_is_reported_under_pytest_twisted(
    pytester: pytest.Pytester, reactor: list[str]
) -> None:
    pytester.makepyfile(test_slow=SLOW_CALLBACK_TEST)
    result = pytester.runpytest_subprocess("--threadcheck", *reactor, timeout=120)
    result.assert_outcomes(passed=1)
    during = ["    during test: test_slow.py::test_waits_for_a_slow_callback"]
    stall = slow_callback_stall("test_slow.py", during, caller=[])
    assert_lines(
        threadcheck_section(result),
        [
            "",
            "threadcheck: no thread-affinity violations",
            "",
            "threadcheck: 1 reactor stall (reported, not failures)",
            "",
            *stall,
        ],
    )


@pytest.mark.slow
def test_a_slow_reactor_callback_is_reported_under_threadcheck_run(tmp_path: Path) -> None:
    (tmp_path / "prog.py").write_text(SLOW_CALLBACK_PROGRAM)
    result = subprocess.run(
        [sys.executable, "-m", "threadcheck", "run", "prog.py"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr  # stalls fail nothing
    caller = [
        "      ... <n> frames in python, threadcheck ...",
        "      prog.py:13 in <module>",
        "          reactor.run()",
    ]
    assert_lines(
        result.stderr.splitlines(),
        [
            "threadcheck: 1 reactor stall (reported, not failures)",
            "",
            *slow_callback_stall("prog.py", during=[], caller=caller),
            "threadcheck: no thread-affinity violations found",
        ],
    )


@pytest.mark.parametrize("races", [False, True], ids=["plain", "races"])
def test_the_race_detectors_own_slowdown_is_no_stall(
    monkeypatch: pytest.MonkeyPatch, races: bool
) -> None:
    # A counting loop of 20 ms took 200 ms under --races: the detector's time
    # was reported as the program's stall.
    monkeypatch.setattr(_race_access, "enabled", races)
    monkeypatch.setenv("THREADCHECK_STALL_MS", "50")
    reactor = ThreadCheckReactor(Mode.RECORD)
    thresholds = []

    def watched() -> None:
        thresholds.append(reactor._stall_watch._threshold)
        reactor.stop()

    reactor.callWhenRunning(watched)
    reactor.run(installSignalHandlers=False)
    assert thresholds == [0.05 * RACES_SLOWDOWN if races else 0.05]


@pytest.mark.parametrize("reactor_class", REACTOR_CLASSES, ids=lambda c: c.__name__)
def test_a_shutdown_waiting_for_its_pool_job_is_no_stall_a_blocking_trigger_is(
    monkeypatch: pytest.MonkeyPatch, reactor_class: type[ThreadCheckMixin]
) -> None:
    """A service stopped while an upload runs in its pool: Twisted's shutdown
    joins the pool (no stall: the reactor serves nothing more, and a worker that
    never ends is the shutdown watch's). Its 'before shutdown' trigger that
    flushes a cache with a blocking sleep does stall the reactor: reported."""
    monkeypatch.setenv("THREADCHECK_STALL_MS", "50")
    reactor = reactor_class(Mode.RECORD)

    def upload() -> None:
        time.sleep(3 * BLOCK)  # still running when the flush is done

    def flush_cache() -> None:
        time.sleep(BLOCK)  # BUG: blocks the reactor thread

    reactor.addSystemEventTrigger("before", "shutdown", flush_cache)
    reactor.callWhenRunning(reactor.callInThread, upload)
    reactor.callWhenRunning(reactor.callLater, 0.01, reactor.stop)
    reactor.run(installSignalHandlers=False)
    [stall] = reactor.threadcheck.recorder.stalls()
    assert stall.api == "time.sleep"
    assert "in flush_cache, run as a system event trigger" in (stall.detail or "")


@pytest.mark.parametrize("stopped", ["during", "before, in a worker"])
def test_a_pool_stopped_by_a_shutdown_trigger_is_shown_where_it_waits(
    monkeypatch: pytest.MonkeyPatch, stopped: str
) -> None:
    """A ThreadPool of the program's, stopped at shutdown as Twisted's docs do
    (a 'during' trigger) while a job runs: the reactor thread joins it. The
    report said it waited at ``reactor.run()`` and to run the reactor in a worker."""
    monkeypatch.setenv("THREADCHECK_STALL_MS", "50")
    reactor = ThreadCheckReactor(Mode.RECORD)
    pool = ThreadPool(minthreads=1, maxthreads=1, name="export")
    pool.start()
    if stopped == "during":
        reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    else:  # the fix the report gives
        reactor.addSystemEventTrigger(
            "before",
            "shutdown",
            lambda: threads.deferToThreadPool(reactor, reactor.getThreadPool(), pool.stop),
        )
    reactor.callWhenRunning(pool.callInThread, time.sleep, BLOCK)
    reactor.callWhenRunning(reactor.callLater, 0.01, reactor.stop)
    reactor.run(installSignalHandlers=False)
    stalls = reactor.threadcheck.recorder.stalls()
    if stopped != "during":
        assert stalls == []
        return
    lines = format_stalls(stalls).splitlines()
    assert re.fullmatch(r"    blocked at: .*threadpool\.py:\d+ in stop", lines[3]), lines
    assert lines[-1] == (
        "    fix: run it in a worker, which shutdown waits for: reactor.addSystemEventTrigger("
        '"before", "shutdown", threads.deferToThread, f), f the trigger (stop)'
    )


def test_the_stall_watch_is_not_among_the_program_s_threads(running: RunningReactor) -> None:
    # A service's leaked-thread check at shutdown named threadcheck-stall-watch.
    names = running.in_reactor(lambda: [t.name for t in threading.enumerate()])
    assert not any(name.startswith("threadcheck") for name in names), names
    assert running.in_reactor(threading.active_count) == len(names)
