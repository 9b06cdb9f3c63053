"""Carrier threads: controlled threads run on reused OS threads, as if each were new."""

from __future__ import annotations

import contextvars
import os
import threading
import time
from typing import Any

import pytest

import threadcheck
from threadcheck._sched._carriers import Carriers, thread_locals_clearer

CARRIED = Carriers(lambda thread: True).available
"""With ctypes (and, on 3.13, the thread state's local key found)."""

_local = threading.local()
_variable: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


def test_a_thread_sees_no_thread_local_data_or_context_of_an_earlier_one() -> None:
    seen: list[tuple[Any, str]] = []

    def worker() -> None:
        seen.append((getattr(_local, "connection", None), _variable.get()))
        _local.connection = "opened by an earlier thread"  # a per-thread cache
        _variable.set("set by an earlier thread")

    def scenario() -> None:
        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()

    threadcheck.explore(scenario, budget=50).assert_clean()
    assert seen and set(seen) == {(None, "none")}, set(seen)


def test_threads_are_carried_by_a_few_os_threads_and_joined_as_usual() -> None:
    native: set[int] = set()
    states: list[tuple[bool, bool]] = []

    def scenario() -> None:
        slept: list[bool] = []

        def sleeper() -> None:
            time.sleep(0.5)
            slept.append(True)

        workers = [threading.Thread(target=lambda: native.add(threading.get_native_id()))]
        workers.append(threading.Thread(target=sleeper))
        for worker in workers:
            worker.start()
        workers[1].join(0.1)  # times out in virtual time, unless time passed before
        states.append((workers[1].is_alive(), not slept))
        for worker in workers:
            worker.join()
        states.append((workers[1].is_alive(), False))

    threadcheck.explore(scenario, budget=200).assert_clean()
    assert (True, True) in states and all(alive == expected for alive, expected in states)
    if CARRIED:
        assert len(native) <= 3, len(native)  # not one per schedule
    else:
        assert len(native) > 3


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs /proc")
def test_the_carriers_end_with_the_exploration() -> None:
    def tasks() -> int:
        return len(os.listdir("/proc/self/task"))

    def scenario() -> None:
        thread = threading.Thread(target=int)
        thread.start()
        thread.join()

    before = tasks()
    threadcheck.explore(scenario, budget=20).assert_clean()
    deadline = time.monotonic() + 5
    while tasks() > before and time.monotonic() < deadline:
        time.sleep(0.01)  # a carrier leaves its loop, then its OS thread exits
    # Fewer is no leftover: an earlier test's thread may end meanwhile (CI, 3.10:
    # 3 after, 4 before, on a loaded machine).
    assert tasks() <= before


def test_a_thread_that_raises_fails_its_schedule_and_its_carrier_goes_on() -> None:
    def scenario() -> None:
        thread = threading.Thread(target=lambda: 1 / 0, name="divider")
        thread.start()
        thread.join()

    result = threadcheck.explore(scenario, budget=20)
    assert result.found and result.failure is not None
    assert result.failure.what == "ZeroDivisionError", result.failure
    assert result.failure.thread == "divider"
    threadcheck.explore(lambda: threading.Thread(target=int).start(), budget=20).assert_clean()


def test_a_daemon_left_waiting_ends_with_its_schedule() -> None:
    """A heartbeat that waits forever is unwound at the schedule's end; its
    carrier then carries the next schedule's threads."""
    native: set[int] = set()

    def scenario() -> None:
        stop = threading.Event()

        def heartbeat() -> None:
            native.add(threading.get_native_id())
            while not stop.wait(30):
                pass

        threading.Thread(target=heartbeat, daemon=True).start()

    threadcheck.explore(scenario, budget=100).assert_clean()
    if CARRIED:
        assert len(native) <= 2, len(native)


class _Connection(threading.local):
    def __init__(self) -> None:
        self.opened = 0


def test_clearing_drops_only_the_calling_threads_local_data() -> None:
    """What a carrier does between two bodies, checked on its own: the thread
    sees no data of its earlier body (a local subclass is set up again), and
    other threads keep theirs."""
    clear = thread_locals_clearer()
    if clear is None:
        pytest.skip("no ctypes: every controlled thread gets a new OS thread")
    plain = threading.local()
    plain.value = "main's"
    connection = _Connection()
    connection.opened = 5
    seen: list[Any] = []

    def body() -> None:
        plain.value = "the earlier body's"
        connection.opened += 1
        clear()
        seen.append((getattr(plain, "value", None), connection.opened))
        plain.value = "the next body's"  # new data can be set after clearing
        seen.append(plain.value)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [(None, 0), "the next body's"]
    assert (plain.value, connection.opened) == ("main's", 5)
