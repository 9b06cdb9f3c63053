"""Human-readable and JSON reports."""

from __future__ import annotations

import inspect
import io
import json
import os
import re
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from twisted.internet import defer, task
from twisted.internet.protocol import ClientCreator, ServerFactory
from twisted.protocols.basic import LineReceiver
from twisted.python.threadpool import ThreadPool

from threadcheck import Mode, ThreadAffinityWarning, Violation, _stacks, format_report, to_json
from threadcheck._report import MAX_GROUPS_SHOWN, SCHEMA_PATH, finish, fix_for, from_json
from threadcheck._stacks import Frame
from threadcheck._violation import Kind, TestContext, ThreadInfo

from support import JOIN_TIMEOUT, RunningReactor, run_threads


def noop() -> None:
    pass


def ignore(failure: object) -> None:
    pass


def _violations_from(running: RunningReactor, n_threads: int, per_thread: int) -> list[Violation]:
    def hammer() -> None:
        for _ in range(per_thread):
            running.reactor.callWhenRunning(noop)

    run_threads([threading.Thread(target=hammer, name=f"w{i}") for i in range(n_threads)])
    return running.recorder.violations()


def test_human_report_names_api_threads_and_offending_line(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RECORD)

    def offending() -> None:
        running.reactor.callLater(3600, noop)

    thread = threading.Thread(target=offending, name="culprit")
    thread.start()
    thread.join()

    report = format_report(running.recorder.violations())

    assert report.startswith("threadcheck: 1 thread-affinity violation (1 distinct)")
    assert "reactor.callLater called from thread 'culprit'" in report
    assert "the reactor runs in 'reactor'" in report
    assert "offending call: " in report and "in offending" in report
    assert "running.reactor.callLater(3600, noop)" in report
    assert "thread started at (most recent call last):" in report
    assert "thread.start()" in report
    # The call as written, moved whole.
    assert (
        "fix: do it in the reactor thread: "
        "reactor.callFromThread(running.reactor.callLater, 3600, noop)"
    ) in report
    # threadcheck's own frames never show; Twisted's are folded.
    assert "_checked.py" not in report and "_affinity.py" not in report


def test_repeats_are_grouped_with_exact_counts(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RECORD)
    violations = _violations_from(running, n_threads=3, per_thread=50)

    report = format_report(violations)
    document = to_json(violations, "record")

    assert report.startswith("threadcheck: 150 thread-affinity violations (3 distinct)")
    assert "reactor.callWhenRunning: 150" in report
    assert report.count("[x50]") == 3
    assert document["total"] == 150
    assert sum(g["count"] for g in document["violations"]) == 150  # type: ignore[attr-defined]


def test_json_report_matches_the_published_schema(running_reactor: Any, tmp_path: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RECORD)
    _violations_from(running, n_threads=2, per_thread=3)
    path = tmp_path / "report.json"

    stream = io.StringIO()
    assert finish(running.reactor.threadcheck, path, stream).found == 6

    document = json.loads(path.read_text())
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    assert document["counts_by_api"] == {"reactor.callWhenRunning": 6}
    first = document["violations"][0]
    assert first["kind"] == "foreign-thread"
    assert first["stack"][-1]["library"] is None  # the user's line, not threadcheck's
    assert stream.getvalue().startswith("threadcheck: 6 thread-affinity violations")


def test_empty_report(tmp_path: Any, running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RECORD)
    path = tmp_path / "report.json"
    stream = io.StringIO()
    assert finish(running.reactor.threadcheck, path, stream).found == 0
    assert stream.getvalue() == ""
    assert json.loads(path.read_text())["total"] == 0
    assert format_report([]) == ""


def test_human_report_shows_a_bounded_number_of_groups(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RECORD)
    violations = _violations_from(running, n_threads=MAX_GROUPS_SHOWN + 5, per_thread=1)
    report = format_report(violations)
    assert f"[{MAX_GROUPS_SHOWN}] " in report
    assert f"[{MAX_GROUPS_SHOWN + 1}] " not in report
    assert "5 more distinct violations; the JSON report (--json) has them all" in report
    assert len(to_json(violations, "record")["violations"]) == MAX_GROUPS_SHOWN + 5  # type: ignore[arg-type]


def _wait_for_violations(running: RunningReactor, count: int) -> list[Violation]:
    deadline = time.monotonic() + 30
    while len(running.recorder) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return running.recorder.violations()


def _connected_line(running: RunningReactor) -> tuple[Any, Any]:
    """A listening port, and a LineReceiver client connected to it."""
    reactor = running.reactor
    port = running.in_reactor(
        reactor.listenTCP, 0, ServerFactory.forProtocol(LineReceiver), interface="127.0.0.1"
    )
    client = ClientCreator(reactor, LineReceiver)  # type: ignore[no-untyped-call]
    return port, running.in_reactor(client.connectTCP, "127.0.0.1", port.getHost().port)


@pytest.mark.parametrize("mode", [Mode.RECORD, Mode.WARN])
def test_a_library_callable_handed_to_the_pool_is_reported_at_the_handing_line(
    running_reactor: Any, mode: Mode
) -> None:
    running: RunningReactor = running_reactor(mode)
    reactor = running.reactor
    port, line = _connected_line(running)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reactor.callInThread(line.sendLine, b"hello")  # BUG: sendLine is not thread-safe
        handing_line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
        [violation] = _wait_for_violations(running, 1)
    running.in_reactor(line.transport.loseConnection)
    running.in_reactor(port.stopListening)

    where = violation.user_frame()
    assert where is not None and (where.filename, where.lineno) == (__file__, handing_line)
    report = format_report([violation])
    assert f"offending call: {where.location()}  (work handed to the thread pool here)" in report
    assert 'reactor.callInThread(line.sendLine, b"hello")' in report
    assert (
        "fix: sendLine() must run in the reactor thread: hand it over with "
        "reactor.callFromThread(line.sendLine, ...), not callInThread"
    ) in report
    # The pool started its thread for this very work: that stack is shown once.
    assert "thread started at: the same place (the pool started it for this work)" in report
    if mode is Mode.WARN:
        [warning] = [w for w in caught if issubclass(w.category, ThreadAffinityWarning)]
        assert (warning.filename, warning.lineno) == (__file__, handing_line)


@pytest.mark.parametrize("how", ["thread", "executor"])
def test_a_library_callable_a_thread_runs_directly_is_the_call_the_fix_moves(
    running_reactor: Any, how: str
) -> None:
    # Thread(target=line.sendLine): the fix told to move transport.write, which
    # the user's code never calls.
    running: RunningReactor = running_reactor()
    port, line = _connected_line(running)
    if how == "thread":
        (worker := threading.Thread(target=line.sendLine, args=(b"hello",))).start()  # BUG
        worker.join()
    else:
        with ThreadPoolExecutor(1) as executor:
            executor.submit(line.sendLine, b"hello").result()  # BUG
    [violation] = _wait_for_violations(running, 1)
    running.in_reactor(line.transport.loseConnection)
    running.in_reactor(port.stopListening)
    assert violation.api == "transport.write"
    assert format_report([violation]).endswith(
        "fix: sendLine() must run in the reactor thread: hand it over with "
        "reactor.callFromThread(line.sendLine, ...), not to a thread of its own\n"
    )


def test_a_twisted_helper_called_from_a_worker_is_the_call_the_fix_moves(
    running_reactor: Any,
) -> None:
    # sendLine reaches transport.write: the fix told to move transport.write,
    # which the user's code never calls.
    running: RunningReactor = running_reactor()
    reactor = running.reactor
    port, line = _connected_line(running)

    def report_status() -> None:
        line.sendLine(b"status: ok")  # BUG: from a worker thread

    reactor.callInThread(report_status)
    [violation] = _wait_for_violations(running, 1)
    running.in_reactor(line.transport.loseConnection)
    running.in_reactor(port.stopListening)
    report = format_report([violation])
    assert "through twisted: " in report and " in sendLine" in report
    assert (
        "fix: call sendLine() in the reactor thread: reactor.callFromThread(line.sendLine, ...)"
    ) in report


def dispatch(f: Any, *args: Any) -> None:
    f(*args)  # BUG: runs f in the calling thread


def test_a_twisted_helper_called_through_the_programs_dispatcher_moves_that_call(
    running_reactor: Any,
) -> None:
    # The fix named transport.write, which no line of the program calls.
    running: RunningReactor = running_reactor()
    port, line = _connected_line(running)
    running.reactor.callInThread(dispatch, line.sendLine, b"PING")
    [violation] = _wait_for_violations(running, 1)
    running.in_reactor(line.transport.loseConnection)
    running.in_reactor(port.stopListening)
    report = format_report([violation])
    assert "fix: make this call in the reactor thread: reactor.callFromThread(f, *args)" in report


def test_a_cooperative_task_started_from_a_worker_is_waited_for_as_written(
    running_reactor: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fix named `cooperator.coiterate` for `task.coiterate(rows())`, and
    # dropped the iterator.
    running: RunningReactor = running_reactor()
    monkeypatch.setattr(task, "_theCooperator", task.Cooperator())  # this test's alone

    def rows() -> Any:
        yield None

    def export() -> None:
        task.coiterate(rows())  # BUG: from a worker thread

    running.reactor.callInThread(export)
    [violation] = _wait_for_violations(running, 1)
    running.in_reactor(task._theCooperator.stop)
    assert (
        "fix: wait for it from the thread: "
        "threads.blockingCallFromThread(reactor, task.coiterate, rows())"
    ) in format_report([violation])


def test_a_callable_submitted_to_an_executor_is_reported_at_the_submitting_line(
    running_reactor: Any,
) -> None:
    # The executor's one thread was started by an innocent first job: that line
    # was the "offending call" (the thread was started here).
    running: RunningReactor = running_reactor()
    with ThreadPoolExecutor(1) as executor:
        executor.submit(noop).result()
        executor.submit(running.reactor.callLater, 0, noop).result()  # BUG
        submitting_line = inspect.currentframe().f_lineno - 1  # type: ignore[union-attr]
    [violation] = _wait_for_violations(running, 1)
    where = violation.user_frame()
    assert where is not None and (where.filename, where.lineno) == (__file__, submitting_line)
    report = format_report([violation])
    assert f"offending call: {where.location()}  (work handed to the thread pool here)" in report


def test_an_executor_jobs_traceback_has_no_frame_of_ours(running_reactor: Any) -> None:
    # The job once ran through threadcheck's wrapper: its tracebacks showed it.
    running_reactor()

    def fails() -> None:
        raise ValueError("in a job")

    with ThreadPoolExecutor(1) as executor:
        error = executor.submit(fails).exception()
    assert error is not None
    frames = traceback.extract_tb(error.__traceback__)
    assert [frame.name for frame in frames] == ["run", "fails"]
    assert ThreadPoolExecutor.submit.__qualname__ == "ThreadPoolExecutor.submit"


def test_a_job_of_a_pool_that_does_not_say_who_submitted_it_has_no_offending_line(
    running_reactor: Any,
) -> None:
    running: RunningReactor = running_reactor()
    pool = ThreadPool(1, 1, name="own")
    pool.start()
    try:
        pool.callInThread(noop)  # starts its worker: not the offending call
        pool.callInThread(running.reactor.callLater, 0, noop)  # BUG, from a pool we do not track
        [violation] = _wait_for_violations(running, 1)
    finally:
        pool.stop()
    assert violation.user_frame() is None
    report = format_report([violation])
    assert "offending call: unknown: a job handed to a thread pool that does not say who" in report


def test_a_twisted_function_called_from_a_worker_is_fixed_by_its_module_name(
    running_reactor: Any,
) -> None:
    # connectProtocol reaches reactor.connectTCP: the fix named `obj.connectProtocol`,
    # and deferLater (checked itself) `obj.deferLater`.
    from twisted.internet import endpoints, protocol, task

    running: RunningReactor = running_reactor()
    endpoint = endpoints.TCP4ClientEndpoint(running.reactor, "127.0.0.1", 9)
    calls = [
        lambda: endpoints.connectProtocol(endpoint, protocol.Protocol()).addErrback(ignore),
        lambda: task.deferLater(running.reactor, 0, noop),
    ]
    for call in calls:
        run_threads([threading.Thread(target=call)])
    violations = _wait_for_violations(running, 2)
    fixes = [format_report([v]).splitlines()[-1].strip() for v in violations]
    assert fixes == [
        "fix: call connectProtocol() in the reactor thread: "
        "reactor.callFromThread(endpoints.connectProtocol, ...), or, for its result, "
        "threads.blockingCallFromThread(reactor, endpoints.connectProtocol, ...)",
        "fix: call it in the reactor thread: reactor.callFromThread(task.deferLater, ...), "
        "or, for its result, threads.blockingCallFromThread(reactor, task.deferLater, ...)",
    ]


def _fixes_of(running_reactor: Any, calls: tuple[Any, ...], count: int) -> list[str]:
    """The fix lines of the violations each of ``calls`` makes from a thread of its own."""
    running: RunningReactor = running_reactor()
    for call in calls:
        run_threads([threading.Thread(target=call, args=(running.reactor,))])
    return [
        format_report([v]).splitlines()[-1].strip() for v in _wait_for_violations(running, count)
    ]


def resolve_it(reactor: Any) -> None:
    resolving.append(reactor.resolve("localhost"))


resolving: list[Any] = []


def fan_out(reactor: Any) -> None:
    reactor.getThreadPool().callInThread(noop)


def test_a_reactor_call_whose_result_the_thread_uses_is_fixed_for_its_result(
    running_reactor: Any,
) -> None:
    # callFromThread drops what it returns: the resolved address, the pool.
    assert sorted(_fixes_of(running_reactor, (resolve_it, fan_out), 2)) == [
        "fix: do it in the reactor thread, for its result: "
        'threads.blockingCallFromThread(reactor, reactor.resolve, "localhost")',
        "fix: hand work to the pool with reactor.callInThread(f, ...), "
        "which is thread-safe, or take the pool in the reactor thread and pass it to the thread",
    ]


def keep_a_watchdog(reactor: Any) -> None:
    watchdog = reactor.callLater(3600, noop)
    watchdog.cancel()


def chain_on_it(reactor: Any) -> None:
    reactor.resolve("localhost").addErrback(ignore)


def test_a_reactor_call_whose_result_the_line_goes_on_with_is_moved_with_it(
    running_reactor: Any,
) -> None:
    # callFromThread(reactor.callLater, ...) returned None, and the next line's
    # watchdog.cancel() broke; the cancel's fix named `call`, not `watchdog`.
    assert _fixes_of(running_reactor, (keep_a_watchdog, chain_on_it), 3) == [
        "fix: do it in the reactor thread, for its result: watchdog = "
        "threads.blockingCallFromThread(reactor, reactor.callLater, 3600, noop)",
        "fix: do it in the reactor thread: reactor.callFromThread(watchdog.cancel)",
        "fix: do it in the reactor thread: reactor.callFromThread(lambda: "
        'reactor.resolve("localhost").addErrback(ignore))',
    ]


def stop_it(reactor: Any) -> None:
    reactor.stop()


def retry_later(reactor: Any) -> None:
    reactor.callLater(60, print, "expire cache")


def test_a_reactor_call_written_out_is_moved_with_its_arguments(running_reactor: Any) -> None:
    # The fix said reactor.callFromThread(reactor.stop, ...): pasted as
    # written, stop() was given an argument (TypeError); callLater's were lost.
    assert sorted(_fixes_of(running_reactor, (stop_it, retry_later), 2)) == [
        "fix: do it in the reactor thread: "
        'reactor.callFromThread(reactor.callLater, 60, print, "expire cache")',
        "fix: do it in the reactor thread: reactor.callFromThread(reactor.stop)",
    ]


WSLIB = """
class Publisher:
    def __init__(self, reactor):
        self.reactor = reactor

    def publish_later(self, payload):
        self.reactor.callLater(0, print, payload)

    def close(self):  # as autobahn's sendClose: its close frame, then its timeout
        self.reactor.callLater(0, print, "close frame")
        self.reactor.callLater(1, print, "close timed out")

    def abort(self):  # two different wrong-thread calls
        self.reactor.callLater(1, print, "close timed out").cancel()


def retry_later(reactor, f):
    reactor.callLater(1, f)


class Session:
    def __init__(self, reactor):
        self.reactor = reactor

    def __del__(self):  # tells the peer, as pb's RemoteReference does
        self.reactor.callLater(0, print, "closed")


class Client:
    def __init__(self, reactor):
        self.reactor = reactor
        self.timeout = reactor.callLater(30, print, "timed out")

    @property
    def status(self):
        self.reactor.callLater(0, print, "asked")
        return "ok"

    def __call__(self, value):
        self.reactor.callLater(0, print, value)


class Lease:
    def __init__(self, reactor):
        self.expiry = reactor.callLater(60, print, "expired")

    def __del__(self):
        self.expiry.cancel()
"""


@pytest.fixture
def wslib(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """WSLIB, an installed package (in a site-packages folder): a library's code."""
    package = tmp_path / "lib" / "site-packages" / "wslib"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(WSLIB)
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delitem(__import__("sys").modules, "wslib", raising=False)
    import wslib  # type: ignore[import-not-found]

    return wslib


@pytest.mark.quality
def test_an_installed_librarys_call_is_reported_at_the_users_line_with_its_fix(
    running_reactor: Any, wslib: Any
) -> None:
    # As autobahn's sendMessage reaching transport.write from a worker: the
    # offending line and the fix were the library's (transport.write, which the
    # user never calls).
    from wslib import retry_later  # type: ignore[import-not-found]

    running: RunningReactor = running_reactor()
    publisher = wslib.Publisher(running.reactor)
    calls = [
        lambda: publisher.publish_later(b"tick"),  # BUG: a worker publishes
        lambda: wslib.retry_later(running.reactor, noop),  # BUG: a worker retries
        lambda: retry_later(running.reactor, noop),  # BUG: imported by name
    ]
    for call in calls:
        run_threads([threading.Thread(target=call)])
    reports = [format_report([v]) for v in _wait_for_violations(running, 3)]
    for call, report in zip(calls, reports, strict=True):
        line = call.__code__.co_firstlineno
        assert re.search(rf"offending call: \S*test_report\.py:{line} in <lambda>", report), report
        assert "    through wslib: " in report
    assert [report.rstrip().splitlines()[-1].strip() for report in reports] == [
        "fix: call publish_later() in the reactor thread: "
        "reactor.callFromThread(publisher.publish_later, ...)",  # named as the user's line does
        "fix: call retry_later() in the reactor thread: "
        "reactor.callFromThread(wslib.retry_later, ...)",
        "fix: call retry_later() in the reactor thread: "
        "reactor.callFromThread(retry_later, ...)",  # not wslib.retry_later's module path
    ]


def _publisher_called_from_a_thread(
    running_reactor: Any, wslib: Any, method: str
) -> list[Violation]:
    """The two violations of ``Publisher.<method>()`` called by thread 'supervisor'."""
    running: RunningReactor = running_reactor()
    publisher = wslib.Publisher(running.reactor)

    def supervise() -> None:
        getattr(publisher, method)()  # BUG: from a thread

    run_threads([threading.Thread(target=supervise, name="supervisor")])
    return _wait_for_violations(running, 2)


def test_one_library_call_doing_two_wrong_thread_things_is_one_mistake(
    running_reactor: Any, wslib: Any
) -> None:
    # autobahn's sendClose from a thread was two violations at one user line,
    # each with the same fix: "3 distinct" for 2 mistakes.
    violations = _publisher_called_from_a_thread(running_reactor, wslib, "close")
    report = format_report(violations)
    assert report.startswith("threadcheck: 2 thread-affinity violations (1 distinct)"), report


def test_one_mistake_of_two_apis_names_both_and_keeps_their_counts(
    running_reactor: Any, wslib: Any
) -> None:
    # Z50: autobahn's sendClose from a watchdog thread was "[1] transport.write
    # called from thread ... [x4]" with 2 writes and 2 callLaters, and its JSON
    # entry "api": "transport.write", "count": 4.
    violations = _publisher_called_from_a_thread(running_reactor, wslib, "abort")
    report = format_report(violations).splitlines()
    assert report[0] == "threadcheck: 2 thread-affinity violations (1 distinct)", "\n".join(report)
    assert report[3].startswith(
        "[1] reactor.callLater and DelayedCall.cancel called from thread 'supervisor'"
    ), report[3]
    assert report[3].endswith("  [x2: reactor.callLater 1, DelayedCall.cancel 1]"), report[3]
    document = json.loads(json.dumps(to_json(violations, "record")))
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    [entry] = document["violations"]
    assert entry["apis"] == {"reactor.callLater": 1, "DelayedCall.cancel": 1}
    assert entry["summary"].startswith("reactor.callLater and DelayedCall.cancel called")
    again = Counter(v.api for v in from_json(document))
    assert again == Counter(v.api for v in violations) == document["counts_by_api"]


def test_a_call_a_library_makes_from_a_thread_of_its_own_is_reported_as_its(
    tmp_path: Any,
) -> None:
    # carbon's writer thread, which carbon's service started (callInThread) and
    # whose loop calls resumeProducing: nothing of the user's on any stack. The
    # report had no line at all, and its fix ran the endless writer loop in the
    # reactor thread (reactor.callFromThread(obj.writeForever, ...)).
    writer = str(tmp_path / "lib" / "site-packages" / "carbonish" / "writer.py")
    twisted = defer.__file__
    violation = Violation(
        api="reactor.callLater",
        kind=Kind.FOREIGN_THREAD,
        thread=ThreadInfo("PoolThread-twisted.internet.reactor-0", 2),
        reactor_thread=ThreadInfo("MainThread", 1),
        stack=(
            Frame(twisted, 10, "_worker"),
            Frame(writer, 40, "writeForever"),
            Frame(writer, 52, "resume"),
            Frame(twisted, 100, "callLater"),
        ),
        spawn_site=(Frame(twisted, 20, "startService"), Frame(twisted, 30, "callInThread")),
        submitted_from=(Frame(writer, 12, "startService"), Frame(twisted, 30, "callInThread")),
    )
    report = format_report([violation])
    where = Frame(writer, 52, "resume").location()
    offending = f"offending call: {where}, carbonish's own (nothing of yours ran)"
    assert offending in report, report
    assert report.rstrip().splitlines()[-1].strip() == (
        "fix: nothing of yours is on the way: carbonish calls it from a thread of its own,"
        " a bug to report to its maintainers (or keep the feature that runs it off);"
        " --include carbonish also checks its data races"
    )


def test_a_librarys_call_whose_result_is_kept_is_moved_with_blocking_call_from_thread(
    running_reactor: Any, wslib: Any
) -> None:
    # As `d = agent.request(...)` in a pool job: callFromThread would drop the
    # Deferred the job goes on with.
    running: RunningReactor = running_reactor()
    publisher = wslib.Publisher(running.reactor)

    def publish_and_keep() -> None:
        receipt = publisher.publish_later(b"tick")  # BUG: a worker publishes
        del receipt

    run_threads([threading.Thread(target=publish_and_keep)])
    [violation] = _wait_for_violations(running, 1)
    assert format_report([violation]).rstrip().splitlines()[-1].strip() == (
        "fix: call publish_later() in the reactor thread, for its result: "
        "threads.blockingCallFromThread(reactor, publisher.publish_later, ...)"
    )


def test_a_librarys_del_run_by_the_thread_that_dropped_it_is_told_so(
    running_reactor: Any, wslib: Any
) -> None:
    # pb's RemoteReference, dropped by a pool job, decref'd from the worker:
    # the fix said to hand over transport.write, which the user never calls.

    running: RunningReactor = running_reactor()
    held = [wslib.Session(running.reactor), running.in_reactor(wslib.Lease, running.reactor)]
    for _ in range(2):  # BUG: each dropped, its last reference, by a worker
        run_threads([threading.Thread(target=held.pop)])
    violations = _wait_for_violations(running, 2)
    assert [v.api for v in violations] == ["DelayedCall.cancel", "reactor.callLater"]
    calls = ["self.expiry.cancel()", 'self.reactor.callLater(0, print, "closed")']
    for violation, called in zip(violations, calls, strict=True):
        line = WSLIB.splitlines().index(f"        {called}") + 1
        fix = format_report([violation]).rstrip().splitlines()[-1].strip()
        assert fix == (
            f"fix: the object's __del__ (wslib/__init__.py:{line}) ran in this thread, which "
            "dropped its last reference: let the reactor thread drop it (keep it out of the "
            "job, or hand it back with reactor.callFromThread and del it there)"
        )


def test_a_librarys_constructor_property_or_call_is_handed_over_as_written(
    running_reactor: Any, wslib: Any
) -> None:
    # The fix named obj.__init__, obj.status and obj.__call__: none of them
    # the user's call, the property's not even one that moves its read.
    running: RunningReactor = running_reactor()
    reactor = running.reactor
    client = running.in_reactor(wslib.Client, reactor)
    calls = [
        lambda: wslib.Client(reactor),  # BUG: made in a worker
        lambda: client.status,  # BUG: read in a worker
        lambda: client(5),  # BUG: called in a worker
    ]
    for call in calls:
        run_threads([threading.Thread(target=call)])
    fixes = [
        format_report([v]).rstrip().splitlines()[-1].strip()
        for v in _wait_for_violations(running, 3)
    ]
    assert fixes == [
        "fix: make it in the reactor thread: "
        "threads.blockingCallFromThread(reactor, wslib.Client, reactor)",
        "fix: read status in the reactor thread: "
        "threads.blockingCallFromThread(reactor, getattr, client, 'status')",
        "fix: call it in the reactor thread: reactor.callFromThread(client, 5)",
    ]


def test_json_report_reads_back_exactly(running_reactor: Any) -> None:
    running: RunningReactor = running_reactor(Mode.RECORD)
    running.recorder.context = TestContext("tests/test_x.py::test_y", "teardown")
    made = _violations_from(running, n_threads=2, per_thread=3)
    made[0] = replace(made[0], expected="known")

    document = json.loads(json.dumps(to_json(made, "record")))
    read = from_json(document)

    assert Counter(read) == Counter(made)
    assert {v.test for v in read} == {TestContext("tests/test_x.py::test_y", "teardown")}
    with pytest.raises(ValueError, match="not a threadcheck-report version 3 document"):
        from_json({**document, "version": 1})


def test_one_call_from_two_workers_of_a_pool_is_one_group(running_reactor: Any) -> None:
    # Which worker the pool gave the job to is its choice: four identical
    # violations were "4 distinct", one per worker.
    running: RunningReactor = running_reactor(Mode.RECORD)
    pool = ThreadPool(minthreads=2, maxthreads=2, name="jobs")
    started = threading.Barrier(2)

    def job() -> None:
        started.wait(timeout=JOIN_TIMEOUT)  # both workers busy: one job each
        running.reactor.callWhenRunning(noop)

    pool.start()
    try:
        for _ in range(2):
            pool.callInThread(job)
    finally:
        pool.stop()
    violations = running.recorder.violations()
    assert {v.thread.name for v in violations} == {"PoolThread-jobs-0", "PoolThread-jobs-1"}
    report = format_report(violations)
    assert report.startswith("threadcheck: 2 thread-affinity violations (1 distinct)"), report
    assert "[x2]" in report


def test_one_call_from_a_servers_handler_threads_is_one_group(running_reactor: Any) -> None:
    # A socketserver server starts a thread per request, each numbered by
    # Python: the same call from do_GET was "2 distinct", one per request.
    running: RunningReactor = running_reactor(Mode.RECORD)

    def process_request_thread() -> None:
        running.reactor.callWhenRunning(noop)

    for _ in range(2):
        handler = threading.Thread(target=process_request_thread)
        handler.start()
        handler.join(JOIN_TIMEOUT)
    violations = running.recorder.violations()
    assert len({v.thread.name for v in violations}) == 2
    report = format_report(violations)
    assert report.startswith("threadcheck: 2 thread-affinity violations (1 distinct)"), report


def test_a_thread_a_library_started_shows_where_its_starter_was_started() -> None:
    # A socketserver handler's spawn site was "... 6 frames in python ...":
    # the server's serve_forever started it, in a thread of the program's.
    from threadcheck import _threads

    _threads.track_thread_starts()  # as a checked run has it (idempotent)
    handler = threading.Thread(target=noop)
    server = threading.Thread(target=threading.Thread.start, args=(handler,))
    server.start()  # the program's line
    server.join(JOIN_TIMEOUT)
    handler.join(JOIN_TIMEOUT)
    site = _threads.spawn_site(handler)
    assert site is not None
    ours = [f.source for f in site if f.filename == __file__]
    assert ours == ["server.start()  # the program's line"]


def test_a_call_a_finalizer_makes_in_a_worker_is_fixed_in_the_finalizer(
    running_reactor: Any,
) -> None:
    # The fix was "__call__() must run in the reactor thread ... not callInThread".
    import weakref

    from threadcheck._report import fix_for

    running: RunningReactor = running_reactor(Mode.RECORD)

    class Lease:
        pass

    def job() -> None:
        lease = Lease()
        weakref.finalize(lease, running.reactor.callWhenRunning, noop)
        del lease  # its last reference: the finalizer runs here, in the worker

    worker = threading.Thread(target=job)
    worker.start()
    worker.join(JOIN_TIMEOUT)
    [violation] = running.recorder.violations()
    assert fix_for(violation).startswith(
        "a weakref.finalize callback runs in whichever thread drops the object's last "
        "reference: register reactor.callFromThread as the finalizer, weakref.finalize(obj, "
        "reactor.callFromThread, reactor.callWhenRunning, ...)"
    )


def test_a_timeouts_cancel_by_a_workers_callback_is_fixed_at_the_callback(
    running_reactor: Any,
) -> None:
    # "through threadcheck: .../_deferreds.py in callback", and "fix: ...
    # reactor.callFromThread(call.cancel, ...)" for a program with no `call`.
    from twisted.internet.defer import Deferred

    from threadcheck._report import fix_for

    running: RunningReactor = running_reactor(Mode.RECORD)
    d: Deferred[int] = Deferred()
    d.addTimeout(30, running.reactor)

    def worker() -> None:
        d.callback(1)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(JOIN_TIMEOUT)
    [cancel] = [v for v in running.recorder.violations() if v.api == "DelayedCall.cancel"]
    assert fix_for(cancel) == "do it in the reactor thread: reactor.callFromThread(d.callback, 1)"
    report = format_report([cancel])
    assert "through twisted: " in report and "_deferreds.py" not in report


FROM_FUTURE = """
import time
from concurrent.futures import ThreadPoolExecutor
from twisted.internet import reactor
from twisted.internet.defer import Deferred

executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="resolver")

def lookup():
    future = executor.submit(lambda: time.sleep(0.2) or "10.0.0.7")  # a slow resolver
    return Deferred.fromFuture(future)  # BUG: its callback runs in the executor's thread

reactor.callWhenRunning(lookup)
reactor.callLater(0.5, reactor.stop)
reactor.run()
executor.shutdown()
"""


@pytest.mark.slow
def test_a_thread_futures_adapted_deferred_is_fixed_at_the_adaptation(tmp_path: Any) -> None:
    # It pointed at executor.submit ("work handed to the thread pool here") and
    # said "reactor.callFromThread(d.callback, result)": the program has no d.
    import subprocess
    import sys

    program = tmp_path / "resolver.py"
    program.write_text(FROM_FUTURE)
    command = [sys.executable, "-m", "threadcheck", "run", str(program)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert "Deferred.callback called from thread 'resolver_0'" in result.stderr, result.stderr
    assert "fix: Deferred.fromFuture adapts asyncio futures" in result.stderr


def test_a_stalls_fix_names_the_programs_call_that_waits() -> None:
    from threadcheck._report import _waiting_call

    assert _waiting_call("Event.wait", "server.shutdown()") == "server.shutdown"
    assert _waiting_call("Thread.join", "pool.close(5)") == "pool.close, 5"
    assert _waiting_call("Event.wait", "done.wait()") is None  # the table's fix names it
    assert _waiting_call("time.sleep", "time.sleep(3)") is None
    # A library's retry backing off (urllib3's): its call goes to a worker.
    assert _waiting_call("time.sleep", "backoff(3)") == "backoff, 3"
    assert _waiting_call("time.sleep", 'return client.get("/x")') == "client.get, '/x'"
    assert _waiting_call("time.sleep", "body = fetch(url)") == "fetch, url"
    assert _waiting_call("time.sleep", "self.body = fetch(url)") == "fetch, url"
    assert _waiting_call("time.sleep", "cache[url] = fetch(url)") is None
    assert _waiting_call("time.sleep", "body, status = fetch(url)") is None


def test_only_a_package_of_the_programs_own_is_taken_for_the_program(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Installed plainly, threadcheck sits in site-packages too: `explore -m
    # threadcheck.examples.race` took it for the program's package, and its own
    # core, rewritten as user code, recursed in its helpers (CI's first contact).
    from threadcheck import _stacks

    site = "/venv/lib/python3.11/site-packages/"
    monkeypatch.setattr(_stacks, "_LIBRARY_DIRS", [(f"{site}threadcheck/", "threadcheck")])
    assert _stacks.installed_package_of(f"{site}threadcheck/") is None
    assert _stacks.installed_package_of(f"{site}myapp/") == "myapp"
    assert _stacks.installed_package_of("/home/me/project/app.py") is None


def test_a_compiled_module_s_frame_is_its_installed_package_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Z51: Cython frames carry the relative name they were built from
    # (lib/sqlalchemy/engine/_result_cy.py): taken for the program's own code,
    # an exploration's failure was placed there, not at the program's line.
    from threadcheck import _stacks

    site = tmp_path / "lib" / "python3.11" / "site-packages" / "cylib"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(site.parent))
    monkeypatch.delitem(sys.modules, "cylib", raising=False)
    __import__("cylib")
    monkeypatch.chdir(tmp_path)
    assert _stacks.classify("lib/cylib/engine/_result_cy.py") == "cylib"
    assert _stacks.classify("cylib/_speedups.pyx") == "cylib"
    assert _stacks.classify("service.py") is None  # compiled from a name of the program's
    (tmp_path / "src" / "cylib").mkdir(parents=True)
    (tmp_path / "src" / "cylib" / "mod.py").write_text("")
    monkeypatch.setattr(_stacks, "STARTED_IN", str(tmp_path))
    assert _stacks.classify("src/cylib/mod.py") is None  # a file of the checkout here


def test_one_call_into_twisted_that_breaks_the_rule_twice_is_one_violation(
    running_reactor: Any,
) -> None:
    # A MultiService stopping two TimerServices from a worker (each LoopingCall's
    # stop, each DelayedCall's cancel) was two violations with two fixes; a
    # loop's own repeated call stays one violation per call.
    from twisted.application import internet, service

    running: RunningReactor = running_reactor(Mode.RECORD)
    top = service.MultiService()
    for _ in range(2):
        internet.TimerService(60, noop).setServiceParent(top)
    running.in_reactor(top.startService)

    def retire() -> None:
        top.stopService()  # BUG: one mistake
        for _ in range(3):
            running.reactor.callLater(3600, noop)  # BUG: three calls of one line

    run_threads([threading.Thread(target=retire, name="retirer")])
    violations = running.recorder.violations()
    report = format_report(violations)
    assert report.startswith("threadcheck: 4 thread-affinity violations (2 distinct)"), report
    assert report.count("offending call: ") == 2, report
    assert "reactor.callFromThread(top.stopService, ...)" in report
    running.in_reactor(lambda: [c.cancel() for c in running.reactor.getDelayedCalls()])


def test_each_turn_of_a_loop_through_a_twisted_helper_is_a_call_of_its_own(
    running_reactor: Any,
) -> None:
    # A worker's sendLine to three connections was one violation: the second
    # call's frame took the first's place, and looked like the same call going on.
    running: RunningReactor = running_reactor(Mode.RECORD)
    port, client = _connected_line(running)

    def broadcast() -> None:
        for _ in range(3):
            client.sendLine(b"hello")  # BUG: from a worker, three times

    run_threads([threading.Thread(target=broadcast, name="broadcaster")])
    report = format_report(running.recorder.violations())
    assert report.startswith("threadcheck: 3 thread-affinity violations (1 distinct)"), report
    running.in_reactor(client.transport.loseConnection)
    running.in_reactor(port.stopListening)


def test_callbacks_a_library_runs_for_one_line_are_mistakes_of_their_own(
    running_reactor: Any,
) -> None:
    # An ExitStack unwinding ran a DelayedCall's cancel and a Deferred's
    # callback from a worker: reported as one, the cancel never named.
    import contextlib

    from twisted.internet.defer import Deferred

    running: RunningReactor = running_reactor(Mode.RECORD)
    timeout = running.in_reactor(running.reactor.callLater, 3600, noop)
    [done] = running.in_reactor(lambda: [Deferred()])  # listed: not waited for

    def job() -> None:
        with contextlib.ExitStack() as cleanup:  # BUG: its exit runs both here
            cleanup.callback(timeout.cancel)
            cleanup.callback(done.callback, "ok")

    run_threads([threading.Thread(target=job, name="worker")])
    report = format_report(running.recorder.violations())
    assert report.startswith("threadcheck: 2 thread-affinity violations (2 distinct)"), report


def test_a_timer_given_a_twisted_method_is_reported_where_it_was_made(
    running_reactor: Any,
) -> None:
    # Three watchdog timers made on three lines and started in one loop were
    # all reported at the loop's `timer.start()`: which timer was it?
    running: RunningReactor = running_reactor(Mode.RECORD)
    early = running.in_reactor(running.reactor.callLater, 3600, noop)
    late = running.in_reactor(running.reactor.callLater, 3600, noop)
    timers = [
        threading.Timer(0, early.cancel),  # BUG: cancelled in the timer's thread
        threading.Timer(0, late.cancel),  # BUG: this one too
    ]
    for timer in timers:
        timer.start()
    for timer in timers:
        timer.join()
    report = format_report(running.recorder.violations())
    assert report.startswith("threadcheck: 2 thread-affinity violations (2 distinct)"), report
    for written in ("threading.Timer(0, early.cancel)", "threading.Timer(0, late.cancel)"):
        assert f"(the thread was made here)\n        {written}," in report, report
    assert "fix: do it in the reactor thread: reactor.callFromThread(early.cancel)" in report


def test_a_datagram_handed_to_an_executor_keeps_its_address_in_the_fix(
    running_reactor: Any,
) -> None:
    # The fix was `reactor.callFromThread(port.write, data)`: an unconnected UDP
    # port then raises for want of the address the user's line gave.
    from twisted.internet.protocol import DatagramProtocol

    running: RunningReactor = running_reactor(Mode.RECORD)
    port = running.in_reactor(
        running.reactor.listenUDP, 0, DatagramProtocol(), interface="127.0.0.1"
    )
    with ThreadPoolExecutor(1) as executor:
        executor.submit(port.write, b"ping", ("127.0.0.1", 9)).result()  # BUG
    running.in_reactor(port.stopListening)
    report = format_report(running.recorder.violations())
    assert (
        'fix: do it in the reactor thread: reactor.callFromThread(port.write, b"ping", '
        '("127.0.0.1", 9))'
    ) in report, report


def test_a_file_named_relative_to_where_the_user_started_is_read_after_a_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `trial --reactor=threadcheck pkg/test_udp.py` compiles the test by that
    # relative name, then runs it in _trial_temp: its failures had no source
    # lines, and fixes that could not quote the user's call (`semaphore` for `sem`).
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "test_udp.py").write_text("sem.acquire()  # BUG\n")
    (tmp_path / "_trial_temp").mkdir()
    monkeypatch.setattr(_stacks, "STARTED_IN", str(tmp_path))
    monkeypatch.chdir(tmp_path / "_trial_temp")
    frame = _stacks.Frame(os.path.join("pkg", "test_udp.py"), 1, "work")
    assert frame.source == "sem.acquire()  # BUG"


def test_the_programs_code_run_in_one_of_our_threads_is_not_its_violation(
    running_reactor: Any,
) -> None:
    # A collection set off in threadcheck's stall watcher ran foolscap's weakref
    # callback there (reactor.callLater): charged to the program's test as a
    # violation from 'Dummy-54', the watcher being past its own end.
    from threadcheck import _hidden

    running: RunningReactor = running_reactor(Mode.RECORD)
    ours = threading.Thread(target=lambda: running.reactor.callLater(3600, noop))
    _hidden.hide(ours)
    run_threads([ours])
    assert running.recorder.violations() == []
    running.in_reactor(lambda: [c.cancel() for c in running.reactor.getDelayedCalls()])


class _CollectedAsItStarts(threading.Event):
    """A thread's start event whose set() first runs a program's __del__, as a
    collection set off there does (races' tracked Event.set allocates)."""

    def __init__(self, finalizer: Any) -> None:
        super().__init__()
        self.finalizer = finalizer

    def set(self) -> None:
        self.finalizer()
        super().set()


def test_the_programs_code_run_as_one_of_our_threads_starts_is_not_its_violation(
    running_reactor: Any,
) -> None:
    # A PB reference's __del__ (transport.write) run by a collection in the
    # shutdown watch's start, before Python knew that thread (a dummy one):
    # reported as the program's call, the watch's ident not yet alive.
    from threadcheck import _hidden

    running: RunningReactor = running_reactor(Mode.RECORD)
    ours = threading.Thread(target=noop, name="threadcheck-shutdown-watch")
    ours._started = _CollectedAsItStarts(  # type: ignore[attr-defined]
        lambda: running.reactor.callLater(3600, noop)
    )
    _hidden.hide(ours)
    run_threads([ours])
    assert running.recorder.violations() == []
    running.in_reactor(lambda: [c.cancel() for c in running.reactor.getDelayedCalls()])


COROUTINES = """\
import time

async def refresh(cache):
    time.sleep(0.5)  # BUG: blocks the loop
    cache.clear()

async def reload(queue):
    return queue.get()  # BUG: waits in the reactor thread

def plain():
    time.sleep(0.5)

async def upstream(client):
    return client.get("/x")  # BUG: a library's retry sleeps

async def login(session):
    session.token = fetch_token()  # BUG: its sleep blocks the loop

def fetch_token():
    time.sleep(0.5)
    return "token"
"""


@pytest.mark.parametrize(
    ("driver", "function", "line", "api", "fix"),
    [
        ("asyncio", "refresh", 4, "time.sleep", "await asyncio.sleep(seconds)"),
        ("twisted", "refresh", 4, "time.sleep", "await task.deferLater(reactor, seconds)"),
        ("asyncio", "reload", 8, "Queue.get", "await asyncio.to_thread(queue.get)"),
        ("twisted", "reload", 8, "Queue.get", "await threads.deferToThread(queue.get)"),
        ("asyncio", "plain", 11, "time.sleep", "task.deferLater(reactor, seconds, f)"),
        ("twisted", "upstream", 14, "time.sleep", "await threads.deferToThread(client.get, '/x')"),
        ("asyncio", "upstream", 14, "time.sleep", "await asyncio.to_thread(client.get, '/x')"),
    ],
)
def test_a_stall_in_an_async_def_is_fixed_with_an_await_on_what_runs_it(
    tmp_path: Any, driver: str, function: str, line: int, api: str, fix: str
) -> None:
    # A blocking sleep inside `async def` on the asyncio reactor was told to
    # use task.deferLater(reactor, seconds, f), a callback API, in an asyncio task.
    import asyncio.events

    program = tmp_path / "service.py"
    program.write_text(COROUTINES)
    runner = asyncio.events.__file__ if driver == "asyncio" else defer.__file__
    stall = stall_in(api, runner, Frame(str(program), line, function))
    assert fix_for(stall).endswith(fix), fix_for(stall)


def stall_in(api: str, runner: str, *frames: Frame) -> Violation:
    """A reactor stall at ``api`` in the program's ``frames`` (innermost last),
    run by ``runner`` (asyncio's task step, a Deferred's callbacks)."""
    return Violation(
        api=api,
        kind=Kind.STALL,
        thread=ThreadInfo("MainThread", 1),
        reactor_thread=ThreadInfo("MainThread", 1),
        stack=(Frame(runner, 80, "_run"), *frames, Frame(runner, 90, "wait")),
        spawn_site=None,
        submitted_from=None,
        within=len(frames) + 1,
    )


def test_an_async_def_is_known_by_its_relative_path_after_trial_s_chdir(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `trial pkg/test_x.py` compiles pkg/test_x.py by that name, then moves to
    # _trial_temp: the header was looked for there, so the fix was a callback's.
    from threadcheck import _stacks

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "service.py").write_text(COROUTINES)
    (tmp_path / "_trial_temp").mkdir()
    monkeypatch.setattr(_stacks, "STARTED_IN", str(tmp_path))
    monkeypatch.chdir(tmp_path / "_trial_temp")
    stall = stall_in("time.sleep", defer.__file__, Frame("pkg/service.py", 4, "refresh"))
    assert fix_for(stall).endswith("await task.deferLater(reactor, seconds)"), fix_for(stall)


@pytest.mark.parametrize(
    ("driver", "fix"),
    [
        ("twisted", "await threads.deferToThread(fetch_token)"),
        ("asyncio", "await asyncio.to_thread(fetch_token)"),
        (None, "wait without blocking: task.deferLater(reactor, seconds, f)"),
    ],
)
def test_a_stall_in_a_plain_helper_a_coroutine_calls_is_handed_over_by_the_coroutine(
    tmp_path: Any, driver: str | None, fix: str
) -> None:
    # Told task.deferLater(reactor, seconds, f) inside fetch_token, whose caller
    # wants its value: the coroutine that calls it hands the call to a worker.
    import asyncio.events

    program = tmp_path / "service.py"
    program.write_text(COROUTINES)
    runner = asyncio.events.__file__ if driver == "asyncio" else defer.__file__
    login = Frame(str(program), 17, "login" if driver else "plain")
    stall = stall_in("time.sleep", runner, login, Frame(str(program), 20, "fetch_token"))
    assert fix_for(stall).endswith(fix), fix_for(stall)
    if driver:
        assert "from the coroutine that calls it (" in fix_for(stall)
        assert "service.py:17 in login)" in fix_for(stall)
