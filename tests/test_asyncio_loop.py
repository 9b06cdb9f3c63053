"""The asyncio reactor's event loop: its non-thread-safe methods are checked as the reactor's."""

from __future__ import annotations

import ast
import asyncio
import inspect
import socket
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

from threadcheck import Kind, Mode, ThreadAffinityError, _fixes
from threadcheck._report import fix_for
from threadcheck_reactor._asyncio import ThreadCheckAsyncioReactor
from threadcheck_reactor._loop import LOOP_APIS

from support import RunningReactor, assert_run_of_twin, loop_of


def noop(*args: object) -> None:
    pass


async def nothing() -> None:
    pass


def _with_socket(loop: Any, register: str, unregister: str) -> None:
    left, right = socket.socketpair()
    try:
        getattr(loop, register)(left, noop)
        getattr(loop, unregister)(left)
    finally:
        left.close()
        right.close()


def _create_task(loop: Any) -> None:
    coroutine = nothing()
    try:
        loop.create_task(coroutine).cancel()
    finally:
        coroutine.close()  # when refused before a task took it


CALLS: dict[str, Callable[[Any], object]] = {
    "loop.call_soon": lambda loop: loop.call_soon(noop),
    "loop.call_later": lambda loop: loop.call_later(3600, noop).cancel(),
    "loop.call_at": lambda loop: loop.call_at(loop.time() + 3600, noop).cancel(),
    "loop.create_task": _create_task,
    "loop.add_reader": lambda loop: _with_socket(loop, "add_reader", "remove_reader"),
    "loop.add_writer": lambda loop: _with_socket(loop, "add_writer", "remove_writer"),
    "loop.remove_reader": lambda loop: loop.remove_reader(socket.socket()),
    "loop.remove_writer": lambda loop: loop.remove_writer(socket.socket()),
    "loop.stop": lambda loop: loop.stop(),
}


def test_every_checked_loop_method_is_tested() -> None:
    assert set(CALLS) == set(LOOP_APIS)


@pytest.mark.parametrize("api", sorted(CALLS))
def test_raises_from_a_worker_thread_at_the_users_line(
    api: str, asyncio_reactor: Callable[[Mode], RunningReactor]
) -> None:
    running = asyncio_reactor(Mode.RAISE)
    with pytest.raises(ThreadAffinityError) as raised:
        CALLS[api](loop_of(running))  # this test's thread is not the reactor's

    violation = raised.value.violation
    assert (violation.api, violation.kind) == (api, Kind.FOREIGN_THREAD)
    assert violation.reactor_thread.name == "reactor"
    assert violation.stack[-1].filename == __file__
    assert running.recorder.violations() == [violation]


@pytest.mark.parametrize("api", sorted(CALLS))
def test_silent_in_the_reactor_thread(
    api: str, asyncio_reactor: Callable[[Mode], RunningReactor]
) -> None:
    running = asyncio_reactor(Mode.RAISE)
    running.in_reactor(CALLS[api], loop_of(running))
    assert running.recorder.violations() == []


def test_a_future_completed_from_a_worker_is_reported_with_the_asyncio_fix(
    asyncio_reactor: Callable[[Mode], RunningReactor],
) -> None:
    running = asyncio_reactor(Mode.RECORD)
    loop = loop_of(running)

    def waiting() -> asyncio.Future[int]:
        future: asyncio.Future[int] = loop.create_future()
        future.add_done_callback(noop)  # its completion then schedules this
        return future

    future = running.in_reactor(lambda: [waiting()])[0]
    future.set_result(3)  # the bug: from this (worker) thread

    [violation] = running.recorder.violations()
    assert violation.api == "loop.call_soon"
    assert violation.stack[-1].filename == __file__
    assert fix_for(violation).endswith("loop.call_soon_threadsafe(future.set_result, 3)")


def test_the_thread_safe_hand_overs_are_silent(
    asyncio_reactor: Callable[[Mode], RunningReactor],
) -> None:
    running = asyncio_reactor(Mode.RAISE)
    loop = loop_of(running)

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    done = asyncio.run_coroutine_threadsafe(answer(), loop)
    assert done.result(timeout=30) == 42
    future = running.in_reactor(lambda: [loop.create_future()])[0]
    loop.call_soon_threadsafe(future.set_result, 1)
    running.in_reactor(noop)  # the hand-over has run when this returns
    assert future.result() == 1
    assert running.recorder.violations() == []


def test_one_mistake_is_one_violation(
    asyncio_reactor: Callable[[Mode], RunningReactor],
) -> None:
    running = asyncio_reactor(Mode.RECORD)
    _create_task(loop_of(running))  # create_task calls call_soon inside
    assert [v.api for v in running.recorder.violations()] == ["loop.create_task"]


@pytest.mark.parametrize(
    ("offending", "handed_over"),
    [
        ('loop.call_soon(print, "hello")', 'loop.call_soon_threadsafe(print, "hello")'),
        ("done.set()  # the worker finished", "loop.call_soon_threadsafe(done.set)"),
        ("self.task.cancel()", "loop.call_soon_threadsafe(self.task.cancel)"),
        ("jobs.put_nowait(item)", "loop.call_soon_threadsafe(jobs.put_nowait, item)"),
        ("waiter.set_exception(error)", "loop.call_soon_threadsafe(waiter.set_exception, error)"),
        (  # a lambda's closing parenthesis was taken into the arguments
            "cfut.add_done_callback(lambda f: afut.set_result(f.result()))  # BUG",
            "loop.call_soon_threadsafe(afut.set_result, f.result())",
        ),
    ],
)
def test_a_call_soon_fix_hands_over_the_call_the_worker_made(
    offending: str, handed_over: str
) -> None:
    # Every loop.call_soon said "a future completed here: fut.set_result".
    fix = _fixes.object_api_fix("loop.call_soon", offending)
    assert fix == f"hand it to the loop's thread: {handed_over}"


def test_a_call_soon_from_a_line_it_cannot_read_gets_the_general_fix() -> None:
    fix = _fixes.object_api_fix("loop.call_soon", "watchdog.start()")
    assert fix is not None and fix.startswith("hand it to the loop's thread: ")
    assert "loop.call_soon_threadsafe(f, ...)" in fix


def test_in_raise_mode_a_refused_future_completion_still_wakes_its_waiter(
    asyncio_reactor: Callable[[Mode], RunningReactor],
) -> None:
    # Refused inside set_result, which had marked the future done: what
    # awaited it waited for ever.
    running = asyncio_reactor(Mode.RAISE)
    loop = loop_of(running)
    waiting = asyncio.run_coroutine_threadsafe(_wait_for_future(loop), loop).result(30)
    future, woken = waiting
    with pytest.raises(ThreadAffinityError):
        future.set_result("addr")
    assert asyncio.run_coroutine_threadsafe(asyncio.wait_for(woken, 30), loop).result(30) == "addr"


async def _wait_for_future(loop: Any) -> tuple[Any, Any]:
    future = loop.create_future()

    async def wait() -> Any:
        return await future

    return future, loop.create_task(wait())


@pytest.mark.parametrize(
    ("api", "fix"),
    [
        ("loop.create_task", "asyncio.run_coroutine_threadsafe(coro, loop)"),
        ("loop.call_later", "loop.call_soon_threadsafe(loop.call_later, ...)"),
    ],
)
def test_the_fix_is_asyncios_hand_over(
    api: str, fix: str, asyncio_reactor: Callable[[Mode], RunningReactor]
) -> None:
    running = asyncio_reactor(Mode.RECORD)
    CALLS[api](loop_of(running))
    [violation] = running.recorder.violations()
    assert fix in fix_for(violation)


# A price service on Twisted's asyncio reactor: an async handler awaits an
# asyncio future that a pool job (a blocking lookup with a timeout) completes.
PRICE_SERVICE = """
import asyncio, logging, socket, threading, time
from twisted.internet import asyncioreactor
asyncioreactor.install()
from twisted.internet import defer, reactor, threads

log = logging.getLogger("prices")
_cache = {{}}
_cache_lock = threading.Lock()

def lookup(symbol, loop, future):
    try:
        socket.getaddrinfo("127.0.0.1", 80)  # the quote server: blocking I/O
        time.sleep(0.01)
        with _cache_lock:
            price = _cache.setdefault(symbol, 100 + len(symbol))
    except OSError as error:
        price = error
    {complete}

async def quote(symbol):
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    reactor.callInThread(lookup, symbol, loop, future)
    return await asyncio.wait_for(future, timeout=5)

async def main():
    prices = await asyncio.gather(quote("ACME"), quote("INITECH"))
    log.info("prices %s", prices)
    print(prices)

def run():
    d = defer.Deferred.fromFuture(asyncio.ensure_future(main()))
    d.addErrback(lambda f: print("failed", f.value))
    d.addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(run)
reactor.run()
"""


@pytest.mark.quality
@pytest.mark.parametrize(
    ("complete", "planted"),
    [
        ("future.set_result(price)", True),
        ("loop.call_soon_threadsafe(future.set_result, price)", False),
    ],
    ids=["planted", "fixed"],
)
def test_a_pool_job_completing_an_asyncio_future_is_reported_at_its_line(
    tmp_path: Any, complete: str, planted: bool
) -> None:
    assert_run_of_twin(
        tmp_path / "prices.py",
        PRICE_SERVICE,
        "complete",
        complete,
        planted=planted,
        prints="[104, 107]",
        counted="loop.call_soon: 2",  # both jobs
        fix="hand it to the loop's thread: loop.call_soon_threadsafe(future.set_result, price)",
    )


ASYNCIO_CODE_INLINED = {
    "call_soon": [
        "self._check_closed()",
        "if self._debug:\n    self._check_thread()\n"
        "    self._check_callback(callback, 'call_soon')",
        "handle = self._call_soon(callback, args, context)",
        "if handle._source_traceback:\n    del handle._source_traceback[-1]",
        "return handle",
    ],
    "_call_soon": [
        "handle = events.Handle(callback, args, self, context)",
        "if handle._source_traceback:\n    del handle._source_traceback[-1]",
        "self._ready.append(handle)",
        "return handle",
    ],
    "_check_closed": ["if self._closed:\n    raise RuntimeError('Event loop is closed')"],
}
"""What _loop's call_soon writes out, as Python 3.10 to 3.13 have it."""


@pytest.mark.parametrize("name", sorted(ASYNCIO_CODE_INLINED))
def test_the_code_the_checked_call_soon_inlines_is_asyncios(name: str) -> None:
    # A Python that changes it must change _loop._checked_call_soon too.
    function = getattr(asyncio.BaseEventLoop, name)
    [definition] = ast.parse(textwrap.dedent(inspect.getsource(function))).body
    assert isinstance(definition, ast.FunctionDef)
    statements = definition.body[1:] if ast.get_docstring(definition) else definition.body
    assert [ast.unparse(s) for s in statements] == ASYNCIO_CODE_INLINED[name]


def test_a_loop_class_overriding_what_is_inlined_keeps_its_own() -> None:
    class Tracing(asyncio.SelectorEventLoop):
        def _call_soon(self, *args: Any) -> Any:
            self.scheduled = getattr(self, "scheduled", 0) + 1
            return super()._call_soon(*args)

    loop = Tracing()
    try:
        reactor = ThreadCheckAsyncioReactor(eventloop=loop)
        loop.call_soon(noop)
        assert loop.scheduled == 1
        assert reactor.threadcheck.recorder.violations() == []
    finally:
        loop.close()


def test_a_call_later_from_a_worker_is_one_violation_not_one_per_loop_call(
    asyncio_reactor: Callable[[Mode], RunningReactor],
) -> None:
    # The reactor's callLater reschedules asyncio's timer (loop.call_at).
    running = asyncio_reactor(Mode.RECORD)
    running.reactor.callLater(0, noop)
    assert [v.api for v in running.recorder.violations()] == ["reactor.callLater"]
