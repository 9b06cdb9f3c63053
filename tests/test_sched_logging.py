"""Logging's registry is put back after each schedule, and a handler's code
(user code, under the handler's real lock) never switches threads."""

from __future__ import annotations

import io
import logging
from typing import Any

from twisted.internet import threads
from twisted.internet.defer import Deferred, gatherResults

import threadcheck
from threadcheck._sched._logging import LoggingRegistry


def test_the_registry_is_restored_and_added_handlers_closed() -> None:
    registry = LoggingRegistry()
    kept = logging.getLogger("threadcheck-test.kept")
    kept.setLevel(logging.WARNING)
    registry.capture()
    stream = io.StringIO()
    added = logging.StreamHandler(stream)
    kept.addHandler(added)
    kept.setLevel(logging.DEBUG)
    kept.propagate = False
    made = logging.getLogger("threadcheck-test.made")
    library = logging.NullHandler()  # what a library imported meanwhile adds
    made.addHandler(library)
    made.addHandler(logging.StreamHandler(stream))
    made.setLevel(logging.ERROR)
    logging.disable(logging.CRITICAL)
    registry.restore()
    assert (kept.handlers, kept.level, kept.propagate) == ([], logging.WARNING, True)
    assert (made.handlers, made.level) == ([library], logging.NOTSET)  # as a new logger's
    assert logging.getLogger("threadcheck-test.made") is made  # a library may hold it
    assert logging.root.manager.disable == logging.NOTSET
    assert added not in logging._handlerList or added() is None  # type: ignore[attr-defined]


class Counting(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] = self.counts.get(record.levelname, 0) + 1


def test_a_handler_added_by_each_schedule_sees_that_schedule_alone() -> None:
    seen: list[int] = []

    def scenario(reactor: Any) -> Deferred[Any]:
        log = logging.getLogger("threadcheck-test.service")
        log.setLevel(logging.INFO)
        handler = Counting()
        log.addHandler(handler)  # as the program's start would, on every schedule

        def job(n: int) -> None:
            log.info("job %d", n)
            log.info("job %d done", n)

        pool = reactor.getThreadPool()
        jobs = [threads.deferToThreadPool(reactor, pool, job, n) for n in (1, 2)]
        return gatherResults(jobs).addCallback(lambda _: seen.append(len(log.handlers)))

    for strategy in ("dpor", "random"):
        result = threadcheck.explore(scenario, strategy=strategy, budget=100)
        assert not result.found and not result.inconclusive, result.report()
    assert set(seen) == {1}
    assert logging.getLogger("threadcheck-test.service").handlers == []


def test_twisted_logging_begun_by_a_schedule_is_put_back() -> None:
    """A program that begins Twisted logging (observers, stdout and stderr
    pointed at the log, warnings routed there) does so in every schedule: each
    starts from the state before the exploration, which is the state after it."""
    import sys
    import warnings

    from twisted.logger import globalLogBeginner, globalLogPublisher, textFileLogObserver

    before = (list(globalLogPublisher._observers), sys.stdout, sys.stderr, warnings.showwarning)
    counts: list[int] = []

    def scenario(reactor: Any) -> None:
        output = io.StringIO()
        globalLogBeginner.beginLoggingTo([textFileLogObserver(output)])
        globalLogPublisher.addObserver(lambda event: None)
        counts.append(len(globalLogPublisher._observers))
        print("into the log")  # sys.stdout is the log's now
        assert "into the log" in output.getvalue()

    threadcheck.explore(scenario, budget=5, strategy="random").assert_clean()
    assert len(counts) == 6 and len(set(counts)) == 1  # a warm-up and 5 schedules, alike
    after = (list(globalLogPublisher._observers), sys.stdout, sys.stderr, warnings.showwarning)
    assert after == before


def test_a_file_handler_a_schedule_made_is_closed_after_it(tmp_path: Any) -> None:
    # Its lock is the scheduler's RLock; closed outside the schedule, by the
    # exploring thread, it was taken and never let go (the owner's ident was
    # compared with `is`), and the exploration hung for ever.
    log = tmp_path / "service.log"

    def scenario(reactor: Any) -> Deferred[Any]:
        handler = logging.FileHandler(log)
        logging.getLogger("threadcheck-test.file").addHandler(handler)
        job = threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), logging.getLogger("threadcheck-test.file").error, "x"
        )
        return job

    result = threadcheck.explore(scenario, budget=5)
    result.assert_clean()
    assert result.schedules >= 1
    assert logging.getLogger("threadcheck-test.file").handlers == []
    assert log.read_text().count("x\n") >= 1
