"""Quality: Twisted objects used from a worker are reported under their own names.

For each check, on a real running instrumented reactor:

* planted: a worker uses an object the reactor thread has (a Deferred it made,
  a transport, a request...): exactly one violation, under the object's own
  API name, whose offending line is the worker's call and whose fix is
  ``reactor.callFromThread(<that object's method>, ...)``;
* fixed twin: the worker hands the same call over with ``callFromThread``:
  silent;
* the same call in the reactor thread: silent;
* an object private to the worker (made there, never touched by the reactor
  thread): silent.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from twisted.internet import defer, protocol, task
from twisted.internet.defer import Deferred
from twisted.web import http, server
from twisted.web.test.requesthelper import DummyChannel

from threadcheck import Kind, Mode
from threadcheck._report import format_report

from support import RunningReactor, run_in_thread

pytestmark = pytest.mark.quality


@dataclass
class Case:
    api: str
    make: Callable[[Any], Any]
    """In the reactor thread: the object the worker then uses."""
    use: Callable[[Any], object]
    """In the worker (or handed over): the call under test, on its own line."""
    fix: str


class Connected(protocol.Protocol):
    def connectionMade(self) -> None:
        self.factory.connected.callback(self)  # type: ignore[attr-defined]


def tcp_pair(reactor: Any) -> Deferred[Any]:
    """A loopback connection; fires with the client's transport (its port and connector)."""
    server_factory = protocol.Factory.forProtocol(protocol.Protocol)
    port = reactor.listenTCP(0, server_factory, interface="127.0.0.1")
    client_factory = protocol.ClientFactory.forProtocol(Connected)
    client_factory.connected = Deferred()  # type: ignore[attr-defined]
    connector = reactor.connectTCP("127.0.0.1", port.getHost().port, client_factory)
    client_factory.connected.addCallback(lambda p: p.transport)  # type: ignore[attr-defined]
    client_factory.connected.addCallback(lambda t: (t, port, connector))  # type: ignore[attr-defined]
    return client_factory.connected  # type: ignore[attr-defined, no-any-return]


def shared_deferred(reactor: Any) -> list[Deferred[Any]]:
    """In a list: a Deferred handed back through blockingCallFromThread would be waited for."""
    d: Deferred[Any] = Deferred()
    d.addCallback(lambda result: result)
    return [d]


def cancellable_deferred(reactor: Any) -> list[Deferred[Any]]:
    d: Deferred[Any] = Deferred()
    d.addErrback(lambda failure: None)  # the CancelledError
    return [d]


def waiting_task(reactor: Any) -> Any:
    return task.Cooperator(started=True).cooperate(iter([1, 2, 3]))


def unscheduled_loop(reactor: Any) -> task.LoopingCall:
    loop = task.LoopingCall(lambda: None)
    loop.clock = reactor
    return loop


def running_loop(reactor: Any) -> task.LoopingCall:
    loop = unscheduled_loop(reactor)
    loop.start(3600, now=False)
    return loop


def a_request(reactor: Any) -> http.Request:
    return server.Request(DummyChannel(), False)


class _Connector:
    def connect(self) -> None:
        pass


def retrying_factory(reactor: Any) -> protocol.ReconnectingClientFactory:
    """A factory whose retry is pending on the reactor."""
    factory = protocol.ReconnectingClientFactory()
    factory.clock = reactor
    factory.retry(_Connector())  # type: ignore[arg-type]
    return factory


def port_after_stop(reactor: Any) -> Deferred[Any]:
    return tcp_pair(reactor).addCallback(lambda trio: trio[1])


CASES = [
    Case(
        "Deferred.callback", shared_deferred, lambda box: box[0].callback(1), "box[0].callback, 1)"
    ),
    Case(
        "Deferred.errback",
        shared_deferred,
        lambda box: box[0].errback(ValueError()),
        "box[0].errback, ValueError())",
    ),
    Case("Deferred.cancel", cancellable_deferred, lambda box: box[0].cancel(), "box[0].cancel)"),
    Case("DeferredQueue.put", lambda r: defer.DeferredQueue(), lambda q: q.put(1), "q.put, 1)"),
    Case(
        "DeferredQueue.get",
        lambda r: defer.DeferredQueue(),
        lambda q: q.get(),
        "threads.blockingCallFromThread(reactor, q.get)",  # as the user wrote it
    ),
    Case(
        "DeferredLock.acquire",
        lambda r: defer.DeferredLock(),
        lambda lock: lock.acquire(),
        "threads.blockingCallFromThread(reactor, lock.acquire)",
    ),
    Case(
        "DeferredLock.release",
        lambda r: defer.DeferredLock().acquire(),
        lambda lock: lock.release(),
        "lock.release)",
    ),
    Case(
        "DeferredSemaphore.release",
        lambda r: defer.DeferredSemaphore(1).acquire(),
        lambda semaphore: semaphore.release(),
        "semaphore.release)",
    ),
    Case(
        "DeferredLock.run",
        lambda r: defer.DeferredLock(),
        lambda lock: lock.run(int, "1"),
        'lock.run, int, "1")',
    ),
    Case(
        "DeferredSemaphore.run",
        lambda r: defer.DeferredSemaphore(2),
        lambda semaphore: semaphore.run(int, "1"),
        'semaphore.run, int, "1")',
    ),
    Case(
        "ReconnectingClientFactory.stopTrying",
        retrying_factory,
        lambda factory: factory.stopTrying(),
        "factory.stopTrying)",
    ),
    Case("transport.write", tcp_pair, lambda t: t[0].write(b"x"), 't[0].write, b"x")'),
    Case(
        "transport.writeSequence",
        tcp_pair,
        lambda t: t[0].writeSequence([b"x"]),
        't[0].writeSequence, [b"x"])',
    ),
    Case(
        "transport.loseConnection",
        tcp_pair,
        lambda t: t[0].loseConnection(),
        "t[0].loseConnection)",
    ),
    Case(
        "transport.abortConnection",
        tcp_pair,
        lambda t: t[0].abortConnection(),
        "t[0].abortConnection)",
    ),
    Case(
        "transport.pauseProducing",
        tcp_pair,
        lambda t: t[0].pauseProducing(),
        "t[0].pauseProducing)",
    ),
    Case("port.stopListening", tcp_pair, lambda t: t[1].stopListening(), "t[1].stopListening)"),
    Case("connector.disconnect", tcp_pair, lambda t: t[2].disconnect(), "t[2].disconnect)"),
    Case("request.write", a_request, lambda request: request.write(b"x"), 'request.write, b"x")'),
    Case(
        "request.setHeader",
        a_request,
        lambda request: request.setHeader(b"a", b"b"),
        'request.setHeader, b"a", b"b")',
    ),
    Case(
        "request.setResponseCode",
        a_request,
        lambda request: request.setResponseCode(404),
        "request.setResponseCode, 404)",
    ),
    Case("request.finish", a_request, lambda request: request.finish(), "request.finish)"),
    Case(
        "request.addCookie",
        a_request,
        lambda request: request.addCookie(b"k", b"v"),
        'request.addCookie, b"k", b"v")',
    ),
    Case(
        "request.redirect",
        a_request,
        lambda request: request.redirect(b"/x"),
        'request.redirect, b"/x")',
    ),
    Case(
        "request.notifyFinish",
        a_request,
        lambda request: request.notifyFinish(),
        "request.notifyFinish() in the reactor thread",
    ),
    Case(
        "LoopingCall.start",
        unscheduled_loop,
        lambda loop: loop.start(3600, now=False),
        "loop.start, 3600, now=False)",
    ),
    Case("LoopingCall.stop", running_loop, lambda loop: loop.stop(), "loop.stop)"),
    Case(
        "Cooperator.cooperate",
        lambda r: task.Cooperator(started=True),
        lambda cooperator: cooperator.cooperate(iter([])),
        "cooperator.cooperate, iter([]))",
    ),
    Case(
        "CooperativeTask.pause",
        waiting_task,
        lambda cooperative: cooperative.pause(),
        "cooperative.pause)",
    ),
    Case(
        "task.deferLater",
        lambda r: r,
        lambda reactor: task.deferLater(reactor, 3600, lambda: None).addErrback(lambda f: None),
        "",
    ),
]


@pytest.fixture
def running() -> Iterator[RunningReactor]:
    running = RunningReactor(Mode.RECORD)
    try:
        yield running
    finally:
        running.stop()


def _settle(running: RunningReactor) -> None:
    running.in_reactor(lambda: None)  # every handed-over call has run


@pytest.mark.parametrize("case", CASES, ids=[case.api for case in CASES])
def test_a_worker_using_the_reactors_object_is_reported_at_its_call(
    running: RunningReactor, case: Case
) -> None:
    obj = running.in_reactor(case.make, running.reactor)
    run_in_thread(lambda: case.use(obj), name="worker")
    _settle(running)
    [violation] = running.recorder.violations()
    assert (violation.api, violation.kind, violation.thread.name) == (
        case.api,
        Kind.FOREIGN_THREAD,
        "worker",
    )
    where = violation.user_frame()
    assert where is not None and where.filename == __file__
    assert "case.use" not in where.source and where.function == "<lambda>"
    lines = format_report([violation]).splitlines()
    first = lines.index(next(line for line in lines if line.startswith("[1] ")))
    assert lines[first].startswith(f"[1] {case.api} called from thread 'worker'")
    assert lines[first + 1].startswith("    offending call: ")
    assert lines[first + 1].endswith(f"test_objects_quality.py:{where.lineno} in <lambda>")
    [fix] = [line for line in lines if line.startswith("    fix: ")]
    assert case.fix in fix


@pytest.mark.parametrize("case", CASES, ids=[case.api for case in CASES])
def test_the_fixed_twin_hands_it_over_and_is_silent(running: RunningReactor, case: Case) -> None:
    obj = running.in_reactor(case.make, running.reactor)
    run_in_thread(lambda: running.reactor.callFromThread(case.use, obj), name="worker")
    _settle(running)
    assert running.recorder.violations() == []


@pytest.mark.parametrize("case", CASES, ids=[case.api for case in CASES])
def test_silent_in_the_reactor_thread(running: RunningReactor, case: Case) -> None:
    obj = running.in_reactor(case.make, running.reactor)
    running.in_reactor(lambda: [case.use(obj)])  # not waiting for a Deferred it returns
    assert running.recorder.violations() == []


def worker_deferred() -> None:
    d: Deferred[int] = Deferred()
    d.addCallback(lambda result: result + 1)
    d.callback(1)
    defer.succeed(2).addCallback(lambda result: result)


def worker_queue_and_lock() -> None:
    queue: defer.DeferredQueue[int] = defer.DeferredQueue()
    queue.put(1)
    queue.get().addCallback(lambda item: item)
    lock = defer.DeferredLock()
    lock.acquire().addCallback(lambda locked: locked.release())
    lock.run(int, "1")
    defer.DeferredSemaphore(2).run(int, "1")


def worker_clock() -> None:
    clock = task.Clock()
    loop = task.LoopingCall(lambda: None)
    loop.clock = clock
    loop.start(1)
    clock.advance(3)
    loop.stop()
    task.deferLater(clock, 1, lambda: None)
    clock.advance(1)
    factory = protocol.ReconnectingClientFactory()
    factory.clock = clock
    factory.retry(_Connector())  # type: ignore[arg-type]
    factory.stopTrying()


def worker_cooperator() -> None:
    cooperator = task.Cooperator(scheduler=lambda tick: task.Clock().callLater(0, tick))
    cooperator.cooperate(iter([1, 2]))


@pytest.mark.parametrize(
    "worker", [worker_deferred, worker_queue_and_lock, worker_clock, worker_cooperator]
)
def test_objects_private_to_a_worker_are_silent(
    running: RunningReactor, worker: Callable[[], None]
) -> None:
    run_in_thread(worker, name="worker")
    assert running.recorder.violations() == []


def test_a_process_transport_written_from_a_worker_is_reported(running: RunningReactor) -> None:
    reading = [sys.executable, "-c", "import sys; sys.stdin.read()"]
    process = running.in_reactor(
        lambda: [running.reactor.spawnProcess(protocol.ProcessProtocol(), reading[0], reading)]
    )[0]
    try:
        run_in_thread(lambda: process.write(b"x"), name="worker")
    finally:
        running.in_reactor(process.closeStdin)  # the child reads to the end and exits
    [violation] = running.recorder.violations()
    assert (violation.api, violation.thread.name) == ("process.write", "worker")
    fix = format_report([violation]).split("fix: ", 1)[1]
    assert 'reactor.callFromThread(process.write, b"x")' in fix


def test_a_worker_deferred_the_reactor_chains_into_a_deferredlist_is_shared(
    running: RunningReactor,
) -> None:
    # twisted#9469: the worker made it, the reactor waits on it, the worker fires it.
    made: list[Deferred[int]] = []
    run_in_thread(lambda: made.append(Deferred()), name="worker")
    gathered = running.in_reactor(lambda: [defer.DeferredList(made)])
    run_in_thread(lambda: made[0].callback(1), name="worker")
    [violation] = running.recorder.violations()
    assert violation.api == "Deferred.callback"
    assert gathered[0].called  # and the DeferredList's callbacks ran in the worker


def test_a_worker_deferred_returned_from_a_reactor_callback_is_shared(
    running: RunningReactor,
) -> None:
    made: list[Deferred[int]] = []
    run_in_thread(lambda: made.append(Deferred()), name="worker")
    outer = running.in_reactor(lambda: [defer.succeed(0).addCallback(lambda _: made[0])])
    run_in_thread(lambda: made[0].callback(1), name="worker")
    [violation] = running.recorder.violations()
    assert violation.api == "Deferred.callback"
    assert outer[0].result == 1


LAZY_WEB = """
from twisted.internet import reactor, threads

def start():
    from twisted.web import resource, server  # imported once the reactor runs
    from twisted.web.client import Agent, readBody

    class Slow(resource.Resource):
        isLeaf = True

        def render_GET(self, request):
            def work():
                request.setHeader(b"x-job", b"1")  # BUG: in a worker
            threads.deferToThread(work).addCallback(lambda _: request.finish())
            return server.NOT_DONE_YET

    port = reactor.listenTCP(0, server.Site(Slow()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/".encode()
    Agent(reactor).request(b"GET", url).addCallback(readBody).addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(start)
reactor.run()
"""


@pytest.mark.slow
def test_a_request_of_twisted_web_imported_while_the_reactor_runs_is_checked(
    tmp_path: Any,
) -> None:
    # Late modules were patched only when a reactor was made or started: a
    # callback's `from twisted.web import server` left its requests unchecked.
    program = tmp_path / "lazy_web.py"
    program.write_text(LAZY_WEB)
    command = [sys.executable, "-m", "threadcheck", "run", str(program)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert "threadcheck: 1 thread-affinity violation (1 distinct)" in result.stderr
    assert "[1] request.setHeader called from thread" in result.stderr
