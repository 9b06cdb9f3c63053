"""Quality: the standard library's ``logging`` in explored programs.

A handler's filters run before it takes its lock, and may be user code: a
filter that counts records loses a count when two threads log at once. They
once ran with no scheduling point (the whole of ``Handler.handle`` switched no
thread), and the buggy program was "proved" by every strategy.

A handler made during a schedule has the scheduler's lock, so its ``emit``
may wait too: one that hands each record to the reactor with
``blockingCallFromThread`` once held a real lock while it waited, and the
other thread that logged blocked outside the scheduler's control (10 s, then a
failure). A handler made before exploring (pytest's log capture, a test
module's) keeps its real lock: its filters keep their points all the same.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

import threadcheck

from support import assert_clean, assert_found_and_replayed, explore_program, write_program

pytestmark = [pytest.mark.quality, pytest.mark.slow]

COUNTED = """
import io
import logging
import threading

from twisted.internet import defer, reactor, task, threads


class CountingFilter(logging.Filter):
    def __init__(self):
        super().__init__()
        self.seen = 0
        self.lock = threading.Lock()

    def filter(self, record):
        {count}
        return True


counter = CountingFilter()
handler = logging.StreamHandler(io.StringIO())  # a log file, in the real service
handler.addFilter(counter)
log = logging.getLogger("svc")
log.addHandler(handler)
log.setLevel(logging.WARNING)
log.propagate = False

work = [threads.deferToThread(log.warning, "job %d", i) for i in range(2)]
work.append(task.deferLater(reactor, 0, log.warning, "tick"))
defer.gatherResults(work).addBoth(lambda _: reactor.stop())
reactor.run()
if counter.seen != 3:
    raise SystemExit(f"lost count: {{counter.seen}}")
"""
COUNT_BUG = "self.seen += 1  # BUG: filters run outside the handler's lock"
COUNT_FIX = "with self.lock:\n            self.seen += 1"


def test_a_filter_that_loses_a_count_is_found(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, COUNTED.format(count=COUNT_BUG)))
    assert_found_and_replayed(
        result, "threadcheck: exit: the program exited with status 1: lost count: 2"
    )


def test_its_locked_twin_is_clean(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, COUNTED.format(count=COUNT_FIX)))
    assert_clean(result)


def test_a_handler_that_waits_on_the_reactor_is_explored_to_the_end(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        """
        import logging
        from twisted.internet import defer, reactor, threads

        sink = []

        class ReactorHandler(logging.Handler):
            def emit(self, record):
                threads.blockingCallFromThread(reactor, sink.append, record.getMessage())

        log = logging.getLogger("jobs")
        log.addHandler(ReactorHandler())
        log.setLevel(logging.INFO)
        log.propagate = False

        def job(i):
            log.info("job %d", i)

        jobs = defer.gatherResults([threads.deferToThread(job, i) for i in range(2)])
        jobs.addBoth(lambda _: reactor.stop())
        reactor.run()
        assert sorted(sink) == ["job 0", "job 1"], sink
        """,
    )
    assert_clean(explore_program(program))


class _Counting(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.seen = 0

    def filter(self, record: logging.LogRecord) -> bool:
        seen = self.seen  # BUG: read, then written back
        self.seen = seen + 1
        return True


_counting = _Counting()
_made_before = logging.Handler()  # its lock is real: made before any exploration
_made_before.emit = lambda record: None  # type: ignore[method-assign]
_made_before.addFilter(_counting)
_log = logging.getLogger("threadcheck.tests.made-before")
_log.addHandler(_made_before)
_log.propagate = False


def _two_threads_log(reactor: Any) -> None:
    _counting.seen = 0
    workers = [threading.Thread(target=_log.warning, args=("job",)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert _counting.seen == 2, f"lost count: {_counting.seen}"


def test_a_handler_made_before_exploring_keeps_its_filters_points() -> None:
    result = threadcheck.explore(_two_threads_log, budget=2000)
    assert result.found and result.failure is not None, result.report()
    assert "lost count: 1" in result.failure.message
