"""Quality: a service's bug whose first symptom is a hang.

A connection pool lends connections to blocking queries run in the reactor's
thread pool, each with a timeout (``Deferred.addTimeout``). The planted bug:
the timeout's errback gives the connection back while the query, still
running, gives it back too when it ends. Only when the query is held past the
timeout does it show: ``give`` raises, ``gatherResults`` fails, and the
service never reaches ``reactor.stop()``: the program hangs with the reactor
idle. The report must lead with the error that caused the hang, not the hang.
The fixed twin gives the connection back in one place only, and is clean.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from support import assert_clean, assert_found_and_replayed, explore_program, write_program

pytestmark = [pytest.mark.quality, pytest.mark.slow]

SERVICE = """
import threading
import time

from twisted.internet import defer, reactor, threads


class ConnectionPool:
    def __init__(self, size):
        self._lock = threading.Lock()
        self._free = [f"conn{{i}}" for i in range(size)]

    def take(self):
        with self._lock:
            return self._free.pop()

    def give(self, conn):
        with self._lock:
            if conn in self._free:
                raise RuntimeError(f"{{conn}} returned twice")
            self._free.append(conn)


connections = ConnectionPool(2)


def query(conn, seconds):
    time.sleep(seconds)  # the database driver's blocking call
    return f"rows from {{conn}}"


def run_query(seconds):
    conn = connections.take()

    def work():
        try:
            return query(conn, seconds)
        finally:
            connections.give(conn)

    def on_timeout(failure):
        failure.trap(defer.TimeoutError)
        {on_timeout}
        return "timed out"

    d = threads.deferToThread(work).addTimeout(0.05, reactor)
    return d.addErrback(on_timeout)


@defer.inlineCallbacks
def service():
    yield defer.gatherResults([run_query(0.01), run_query(0.2)])
    yield threads.deferToThread(time.sleep, 0.3)  # the slow query's end
    reactor.stop()


reactor.callWhenRunning(service)
reactor.run()
"""
BUG = "connections.give(conn)  # BUG: the query still holds it, and gives it back too"
FIX = "pass  # the query gives it back when it ends"


def test_the_error_behind_a_hang_is_reported_first(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, SERVICE.format(on_timeout=BUG)))
    assert_found_and_replayed(
        result,
        "threadcheck: unhandled-error: Unhandled error in Deferred (error 0 of a "
        "gatherResults or DeferredList): RuntimeError: conn",
    )
    assert "returned twice\n" in result.stderr.splitlines(keepends=True)[0]
    assert "\n  then deadlock: every live thread is blocked: T0(MainThread) on reactor idle" in (
        result.stderr
    )


def test_its_fixed_twin_is_clean(tmp_path: Path) -> None:
    assert_clean(explore_program(write_program(tmp_path, SERVICE.format(on_timeout=FIX))))
