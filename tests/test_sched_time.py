"""Time as a scheduling decision: offered while threads could run, never holding
one beyond ``max_delay``, counted as a preemption, recorded and replayed; every
clock the program reads is the scheduler's virtual one."""

from __future__ import annotations

import asyncio
import datetime
import pickle
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import threads
from twisted.internet.defer import Deferred

import threadcheck
from threadcheck._sched._core import (
    CLOCK_START,
    TIME,
    VIRTUAL_EPOCH,
    WALL_OFFSET,
    Scheduler,
    format_seconds,
)
from threadcheck._sched._runner import Settings
from threadcheck._sched.strategies import BoundedPreemption

from support import write_program


class Recording:
    """A strategy that keeps the default, and records what it was offered."""

    def __init__(self) -> None:
        self.offers: list[tuple[int, ...]] = []

    def new_execution(self, index: int) -> bool:
        return True

    def next_thread(self, runnable: Any, current: int | None, step: int) -> int:
        self.offers.append(tuple(runnable))
        return current if current is not None and current in runnable else runnable[0]

    def next_int(self, bound: int) -> int:
        return 0


def sleeper_and_worker(seconds: float, max_delay: float = 1.0) -> tuple[Scheduler, Recording]:
    """T0 runs; T1 sleeps ``seconds`` and is blocked; T0 passes one point."""
    strategy = Recording()
    scheduler = Scheduler(strategy, max_delay=max_delay)
    scheduler.adopt_current("T0")
    sleeper = scheduler.new_thread("sleeper", daemon=True)
    sleeper.waiting, sleeper.deadline = "sleep", scheduler.now + seconds
    scheduler._timed[sleeper.tid] = sleeper  # as block() records it
    scheduler.point("access")
    return scheduler, strategy


def test_time_is_offered_while_a_thread_could_run_within_max_delay() -> None:
    _, strategy = sleeper_and_worker(0.01)
    assert strategy.offers == [(0, TIME)]


def test_time_is_not_offered_when_it_would_hold_a_thread_longer_than_max_delay() -> None:
    _, strategy = sleeper_and_worker(5.0)
    assert strategy.offers == []  # one runnable thread and no time choice: no decision
    _, strategy = sleeper_and_worker(0.01, max_delay=0)
    assert strategy.offers == []


def test_bounded_search_counts_time_passing_as_a_preemption() -> None:
    search = BoundedPreemption(1)
    search.new_execution(0)
    assert search.next_thread([0, TIME], 0, 0) == 0  # the default never lets time pass
    assert search.new_execution(1)
    assert search.next_thread([0, TIME], 0, 0) == TIME
    search.next_thread([0, 1], 0, 1)  # the bound is spent: no more alternatives
    assert not search.new_execution(2)


def test_durations_read_as_people_write_them() -> None:
    assert format_seconds(0.01) == "10 ms"
    assert format_seconds(0.5) == "500 ms"
    assert format_seconds(1.5) == "1.5 s"


def test_every_clock_reads_virtual_time_and_deadline_loops_end() -> None:
    readings: list[dict[str, float]] = []

    def scenario(reactor: Any) -> Deferred[Any]:
        def poll_until_ready() -> dict[str, float]:
            start = time.monotonic()
            polls = 0
            while time.monotonic() - start < 1.0:  # a deadline loop, as services write them
                time.sleep(0.05)
                polls += 1
            return {
                "polls": polls,
                "time": time.time(),
                "monotonic": time.monotonic(),
                "perf_counter": time.perf_counter(),
                "time_ns": time.time_ns() / 1e9,
                "monotonic_ns": time.monotonic_ns() / 1e9,
                "perf_counter_ns": time.perf_counter_ns() / 1e9,
                "reactor": reactor.seconds(),
            }

        polled = threads.deferToThreadPool(reactor, reactor.getThreadPool(), poll_until_ready)
        return polled.addCallback(readings.append)

    real_clocks = (time.time, time.monotonic, time.perf_counter)
    started = time.monotonic()
    threadcheck.explore(scenario, budget=20).assert_clean()
    assert time.monotonic() - started < 30  # not a second of wall time per poll
    assert (time.time, time.monotonic, time.perf_counter) == real_clocks  # put back
    for reading in readings:
        assert reading.pop("polls") in (20, 21)  # 20 sleeps of 50 ms, give or take rounding
        wall = reading.pop("reactor")
        assert wall >= VIRTUAL_EPOCH + 1.0
        assert reading.pop("time") == pytest.approx(wall, abs=1e-6)
        assert reading.pop("time_ns") == pytest.approx(wall, abs=1e-6)
        # The monotonic clocks: the same time, from a small start (as seconds since boot)
        assert reading == pytest.approx(dict.fromkeys(reading, wall - WALL_OFFSET), abs=1e-6)
        assert CLOCK_START + 1.0 <= reading["monotonic"] < CLOCK_START + 2.0


def test_an_asyncio_loop_in_a_pool_job_sees_its_timers_come() -> None:
    # asyncio runs a timer once its clock is a nanosecond past the timer's time:
    # at the wall clock's magnitude (2026) no float is, and a pool job's
    # asyncio.run spun at its first sleep until the watchdog called it blocked.
    async def fetch_quote(symbol: str) -> str:
        await asyncio.sleep(0.01)
        await asyncio.sleep(0.25)
        return f"{symbol}:42"

    def blocking_lookup(symbol: str) -> str:  # a sync wrapper of an async client
        return asyncio.run(fetch_quote(symbol))

    quotes: list[str] = []

    def scenario(reactor: Any) -> Deferred[Any]:
        pool = reactor.getThreadPool()
        looked_up = threads.deferToThreadPool(reactor, pool, blocking_lookup, "ACME")
        return looked_up.addCallback(quotes.append)

    threadcheck.explore(scenario, budget=20, strategy="random").assert_clean()
    assert quotes == ["ACME:42"] * 21  # the warm-up run and 20 schedules


def test_an_asyncio_loops_long_sleep_passes_in_virtual_time() -> None:
    # The loop waits on its wake-up pair, registered with its selector by file
    # descriptor: a number, not a socket we knew to talk only to its other end,
    # so the sleep passed in real time, and over 10 s was "blocked".
    def nightly_job() -> str:
        async def wait_for_the_window() -> str:
            await asyncio.sleep(12)
            return "ran"

        return asyncio.run(wait_for_the_window())

    ran: list[str] = []

    def scenario(reactor: Any) -> Deferred[Any]:
        job = threads.deferToThreadPool(reactor, reactor.getThreadPool(), nightly_job)
        return job.addCallback(ran.append)

    started = time.monotonic()
    threadcheck.explore(scenario, budget=3, strategy="random").assert_clean()
    assert time.monotonic() - started < 8, "the sleeps passed in real time"
    assert ran == ["ran"] * 4


def test_datetime_reads_the_virtual_clock_and_makes_real_datetimes() -> None:
    # datetime.now() and date.today() read the system clock in C, past time.time:
    # a deadline loop on them spun in real time and failed as a livelock.
    real_classes = (datetime.datetime, datetime.date)
    made_before = datetime.datetime(2020, 1, 1)
    readings: list[dict[str, Any]] = []

    def scenario(reactor: Any) -> Deferred[Any]:
        def poll_until_ready() -> dict[str, Any]:
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=1)
            polls = 0
            while datetime.datetime.now() < deadline:
                time.sleep(0.05)
                polls += 1
            return {
                "polls": polls,
                "time": time.time(),
                "now": datetime.datetime.now(),
                "aware": datetime.datetime.now(datetime.timezone.utc),
                "today": datetime.date.today(),
                "made": datetime.datetime.combine(datetime.date(2021, 5, 1), datetime.time()),
                "isinstance": isinstance(made_before, datetime.datetime),
            }

        polled = threads.deferToThreadPool(reactor, reactor.getThreadPool(), poll_until_ready)
        return polled.addCallback(readings.append)

    threadcheck.explore(scenario, budget=20).assert_clean()
    assert (datetime.datetime, datetime.date) == real_classes  # put back
    assert readings
    for reading in readings:
        assert reading["polls"] in (20, 21)
        now = reading["time"]
        assert now >= VIRTUAL_EPOCH + 1.0
        assert reading["now"].timestamp() == pytest.approx(now, abs=1e-5)
        assert reading["aware"].timestamp() == pytest.approx(now, abs=1e-5)
        assert reading["today"] == real_classes[1].fromtimestamp(now)
        assert {type(reading[key]) for key in ("now", "aware", "made")} == {real_classes[0]}
        assert reading["isinstance"]


class Day(datetime.date):
    """A program's own date type (a billing service's business day)."""

    def label(self) -> str:
        return "D" + self.isoformat()


class UTCStamp(datetime.datetime):
    """A program's own datetime whose fromtimestamp takes no tz (now() never calls it)."""

    @classmethod
    def fromtimestamp(cls, stamp: float) -> datetime.datetime:  # type: ignore[override]
        return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc)


def test_datetime_stays_the_real_class_while_exploring() -> None:
    # The clock is swapped in the real class: a stand-in class broke a program's
    # subclass (it made plain dates), pickling ("not the same object as
    # datetime.date") and tables keyed by the class (YAML's representers).
    keyed_by_class = {datetime.date: "date", datetime.datetime: "datetime"}
    seen: list[tuple[object, ...]] = []

    def scenario(reactor: Any) -> Deferred[Any]:
        def job() -> tuple[object, ...]:
            today = datetime.date.today()
            return (
                type(today) is datetime.date,
                keyed_by_class.get(type(datetime.datetime.now())),
                Day(2024, 1, 2).label(),
                type(Day.today()),
                pickle.loads(pickle.dumps(today)) == today,
                datetime.datetime.now() == datetime.datetime.fromtimestamp(time.time()),
                type(UTCStamp.now()) is type(UTCStamp.utcnow()) is UTCStamp,
            )

        done = threads.deferToThreadPool(reactor, reactor.getThreadPool(), job)
        return done.addCallback(seen.append)

    threadcheck.explore(scenario, budget=3).assert_clean()
    assert seen and set(seen) == {(True, "datetime", "D2024-01-02", Day, True, True, True)}
    put_back = vars(datetime.datetime)["now"]
    assert isinstance(put_back, type(vars(datetime.date)["today"]))


def test_max_delay_is_checked_and_carried_by_the_token(tmp_path: Path) -> None:
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="max_delay must be 0 or more seconds"):
            Settings(max_delay=bad)
    program = write_program(tmp_path, "import time\ntime.sleep(1)\n")
    result = subprocess.run(
        [sys.executable, "-m", "threadcheck", "explore", "--max-delay", "-2", str(program)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        "argument --max-delay: expected 0 or a positive number, got '-2'"
    )


def test_a_failure_that_needed_time_to_pass_replays_with_its_hold() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        order: list[str] = []

        def cpu() -> None:
            order.append("cpu")

        def io() -> None:
            time.sleep(0.01)
            order.append("io")

        pool = reactor.getThreadPool()
        first = threads.deferToThreadPool(reactor, pool, cpu)
        threads.deferToThreadPool(reactor, pool, io)
        return first.addCallback(lambda _: _expect(order == ["cpu"], order))

    result = threadcheck.explore(scenario, budget=2000)
    assert result.found and result.token is not None
    assert result.run is not None and result.run.longest_hold is not None
    assert "time passed while threads could run: T" in result.report()
    assert "(max delay 1 s)" in result.report()
    again = threadcheck.replay(scenario, result.token)
    assert again.failure == result.failure
    assert again.run is not None and again.run.longest_hold == result.run.longest_hold
    clean = threadcheck.explore(scenario, budget=300, max_delay=0)
    assert not clean.found, clean.report()  # the old rule: time passes only when all wait


def _expect(condition: bool, value: object) -> None:
    assert condition, value


def test_a_loops_steps_are_points_at_first_then_at_powers_of_two() -> None:
    scheduler = Scheduler(Recording())
    due = [n for n in range(1, 2000) if scheduler.loop_step("loop")]
    assert due == [*range(1, 65), 128, 256, 512, 1024]
    assert scheduler.loop_step("another loop")  # counted per loop


def test_a_wait_of_zero_that_times_out_lets_a_moment_pass() -> None:
    """An event's or a condition's timed wait takes at least a microsecond of
    virtual time, as a real one does: a deadline loop that waited until exactly
    its end (``as_completed``'s) then sees ``remaining < 0`` and gives up. A
    lock's, a semaphore's or a queue's timeout of 0 is a try: no time passes."""
    import queue
    import threading

    seen: list[float] = []

    def scenario() -> None:
        event = threading.Event()
        condition = threading.Condition()
        start = time.monotonic()
        assert not event.wait(0)
        seen.append(time.monotonic() - start)
        with condition:
            assert not condition.wait(-1)  # negative: a poll, not a wait for ever
        start = time.monotonic()
        assert not threading.Semaphore(0).acquire(timeout=0)
        seen.append(time.monotonic() - start)
        with pytest.raises(ValueError, match="non-negative"):
            queue.Queue().get(timeout=-1)

    threadcheck.explore(scenario, budget=1).assert_clean()
    waited, tried = seen[-2:]  # the schedule's (a warm-up run came first)
    assert 0 < waited < 1e-5
    assert tried == 0


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.9999999, "1 s"),
        (0.9994, "999 ms"),
        (0.01, "10 ms"),
        (0.0123456, "12.3 ms"),
        (1.5, "1.5 s"),
    ],
)
def test_a_duration_is_shown_in_its_unit(seconds: float, shown: str) -> None:
    # Ten holds of 100 ms summed to 0.9999999 s: "held 1e+03 ms".
    assert format_seconds(seconds) == shown
