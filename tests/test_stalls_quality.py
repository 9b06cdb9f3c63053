"""Quality: the stall watchdog names a callback that blocks the reactor thread.

Planted: a callback that blocks the running reactor's thread for 0.3 s in a
known blocking call is reported once, as that call, at the callback's line.
Fixed twins (the same wait in a worker, an idle reactor, short callbacks) are
silent. Threshold 50 ms.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from twisted.internet import threads
from twisted.internet.defer import Deferred

from threadcheck import Kind, Mode
from threadcheck._report import format_stalls

from support import RunningReactor

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


def waits_for_a_held_lock() -> None:
    lock = threading.Lock()
    held = threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            time.sleep(BLOCK)

    threading.Thread(target=hold).start()
    held.wait()
    lock.acquire()
    lock.release()


def waits_on_an_event() -> None:
    threading.Event().wait(BLOCK)


def computes() -> None:
    deadline = time.monotonic() + BLOCK
    while time.monotonic() < deadline:
        pass


PLANTED: list[tuple[Callable[[], None], str, str]] = [
    (sleeps, "time.sleep", "time.sleep(BLOCK)"),
    (waits_on_a_queue, "Queue.get", "queue.Queue().get(timeout=BLOCK)"),
    (joins_a_thread, "Thread.join", "worker.join()"),
    (waits_for_a_held_lock, "Lock.acquire", "lock.acquire()"),
    (waits_on_an_event, "Event.wait", "threading.Event().wait(BLOCK)"),
    (computes, "stall", "while time.monotonic() < deadline:"),
]


@pytest.mark.parametrize(("callback", "name", "line"), PLANTED, ids=[p[1] for p in PLANTED])
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
    assert "in blocks_in_a_deferred_callback, handed over with reactor.callFromThread" in str(
        stall.detail
    )
