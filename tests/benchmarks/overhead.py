"""Throughput of the instrumented reactor against Twisted's own, measured in one run.

    python tests/benchmarks/overhead.py [--rounds N]

Prints, per workload, the median time of each reactor and the median of the
per-round ratios (instrumented / plain; 1.00 means no overhead). Rounds alternate which reactor
goes first so that drift hits both alike, and the cyclic GC is collected before
and paused during each run (as timeit does) so that one reactor's garbage is
not timed against the other. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.base import ReactorBase

from threadcheck_reactor import ThreadCheckMixin, ThreadCheckReactor, _running

# The Twisted class the instrumented default reactor wraps.
PLAIN: type[ReactorBase] = next(
    base for base in ThreadCheckReactor.__bases__ if base is not ThreadCheckMixin
)
CALLS = 50_000
THREADS = 4


def noop() -> None:
    pass


def call_later_throughput(make: Callable[[], Any]) -> float:
    """Seconds to schedule CALLS callLater(0, ...) in the reactor thread and run them all."""
    reactor = make()
    fired = [0]
    elapsed = [0.0]

    def tick() -> None:
        fired[0] += 1
        if fired[0] == CALLS:
            elapsed[0] = time.perf_counter() - start[0]
            reactor.stop()

    start = [0.0]

    def schedule() -> None:
        start[0] = time.perf_counter()
        call_later = reactor.callLater
        for _ in range(CALLS):
            call_later(0, tick)

    reactor.callWhenRunning(schedule)
    reactor.run(installSignalHandlers=False)
    return elapsed[0]


def call_from_thread_throughput(make: Callable[[], Any]) -> float:
    """Seconds for THREADS workers to callFromThread CALLS calls in all, until all have run."""
    reactor = make()
    per_thread = CALLS // THREADS
    ran = [0]
    elapsed = [0.0]
    go = threading.Barrier(THREADS + 1)

    def tick() -> None:
        ran[0] += 1
        if ran[0] == per_thread * THREADS:
            elapsed[0] = time.perf_counter() - start[0]
            reactor.stop()

    def worker() -> None:
        go.wait()
        call_from_thread = reactor.callFromThread
        for _ in range(per_thread):
            call_from_thread(tick)

    workers = [threading.Thread(target=worker) for _ in range(THREADS)]
    for w in workers:
        w.start()
    start = [0.0]

    def release() -> None:
        start[0] = time.perf_counter()
        go.wait()

    reactor.callWhenRunning(release)
    reactor.run(installSignalHandlers=False)
    for w in workers:
        w.join()
    return elapsed[0]


def schedule_only(make: Callable[[], Any]) -> float:
    """Seconds for CALLS bare callLater calls (the check's worst case: nothing else runs)."""
    reactor = make()
    call_later = reactor.callLater
    start = time.perf_counter()
    for _ in range(CALLS):
        call_later(3600, noop)
    return time.perf_counter() - start


ROUND_TRIPS = 3_000
CHURN = 50_000
CHAINS = 20_000
ECHOES = 2_000
REQUESTS = 2000


def _run_until(reactor: Any, start: Callable[[Callable[[], None]], None]) -> float:
    """Run ``reactor`` until ``start(done)`` calls ``done()``; seconds in between."""
    times = [0.0, 0.0]

    def done() -> None:
        times[1] = time.perf_counter()
        reactor.stop()

    def begin() -> None:
        times[0] = time.perf_counter()
        start(done)

    reactor.callWhenRunning(begin)
    reactor.run(installSignalHandlers=False)
    return times[1] - times[0]


def defer_to_thread_round_trips(make: Callable[[], Any]) -> float:
    """Seconds for ROUND_TRIPS deferToThread calls, each waiting for the one before."""
    from twisted.internet.threads import deferToThreadPool

    reactor = make()
    pool = reactor.getThreadPool()

    def start(done: Callable[[], None]) -> None:
        left = [ROUND_TRIPS]

        def again(_: object = None) -> None:
            left[0] -= 1
            if left[0] == 0:
                done()
            else:
                deferToThreadPool(reactor, pool, noop).addCallback(again)

        again()

    return _run_until(reactor, start)


def delayed_call_churn(make: Callable[[], Any]) -> float:
    """Seconds to reset CHURN pending calls once each and cancel them (a timeout's life)."""
    reactor = make()
    calls = [reactor.callLater(3600, noop) for _ in range(CHURN)]
    start = time.perf_counter()
    for call in calls:
        call.reset(1800)
    for call in calls:
        call.cancel()
    return time.perf_counter() - start


def deferred_chains(make: Callable[[], Any]) -> float:
    """Seconds to build and fire CHAINS Deferreds of five callbacks in the reactor thread."""
    from twisted.internet.defer import Deferred

    reactor = make()

    def start(done: Callable[[], None]) -> None:
        for n in range(CHAINS):
            d: Deferred[int] = Deferred()
            for _ in range(5):
                d.addCallback(lambda value: value + 1)
            d.callback(n)
        done()

    return _run_until(reactor, start)


def _request_loop(
    reactor: Any, server: Any, request: bytes, response_ends: bytes, count: int
) -> float:
    """Seconds for ``count`` request/response round trips over one loopback TCP
    connection to ``server`` (a factory); a response is whole when its bytes so
    far end with ``response_ends``."""
    from twisted.internet.protocol import ClientFactory, Protocol

    done: list[Callable[[], None]] = []

    class Client(Protocol):
        left = count
        buffer = b""

        def connectionMade(self) -> None:
            self.transport.write(request)  # type: ignore[union-attr]

        def dataReceived(self, data: bytes) -> None:
            self.buffer += data
            if not self.buffer.endswith(response_ends):
                return
            self.buffer = b""
            self.left -= 1
            if self.left == 0:
                done[0]()
                self.transport.loseConnection()  # type: ignore[union-attr]
            else:
                self.transport.write(request)  # type: ignore[union-attr]

    port = reactor.listenTCP(0, server, interface="127.0.0.1")

    def start(finished: Callable[[], None]) -> None:
        done.append(finished)
        reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(Client))

    elapsed = _run_until(reactor, start)
    port.stopListening()
    return elapsed


def tcp_echo(make: Callable[[], Any]) -> float:
    """Seconds for ECHOES request/response round trips over one loopback TCP connection."""
    from twisted.internet.protocol import Protocol, ServerFactory

    class Echo(Protocol):
        def dataReceived(self, data: bytes) -> None:
            self.transport.write(data)  # type: ignore[union-attr]

    message = b"x" * 63 + b"."
    return _request_loop(make(), ServerFactory.forProtocol(Echo), message, b".", ECHOES)


def web_requests(make: Callable[[], Any]) -> float:
    """Seconds for REQUESTS keep-alive HTTP requests to a twisted.web resource."""
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    class Hello(Resource):
        isLeaf = True  # noqa: N815 - Twisted's name

        def render_GET(self, request: Any) -> bytes:
            request.setHeader(b"content-type", b"text/plain")
            return b"hello"

    site = Site(Hello())
    site.log = lambda request: None  # type: ignore[method-assign]  # no access log
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    return _request_loop(make(), site, request, b"hello", REQUESTS)


ASYNCIO_TASKS = 2_000
ASYNCIO_STEPS = 10


def asyncio_tasks(make: Callable[[], Any]) -> float:
    """Seconds for ASYNCIO_TASKS asyncio tasks of ASYNCIO_STEPS awaits each, on the
    asyncio reactor (each step a loop.call_soon, each task a create_task and a future)."""
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    from threadcheck_reactor._asyncio import ThreadCheckAsyncioReactor

    cls = ThreadCheckAsyncioReactor if make is ThreadCheckReactor else AsyncioSelectorReactor
    loop = asyncio.new_event_loop()
    reactor = cls(eventloop=loop)

    async def steps() -> None:
        for _ in range(ASYNCIO_STEPS):
            await asyncio.sleep(0)
            future = loop.create_future()
            loop.call_soon(future.set_result, None)
            await future

    def start(done: Callable[[], None]) -> None:
        tasks = [loop.create_task(steps()) for _ in range(ASYNCIO_TASKS)]
        asyncio.gather(*tasks).add_done_callback(lambda _: done())

    try:
        return _run_until(reactor, start)
    finally:
        loop.close()


WORKLOADS: dict[str, Callable[[Callable[[], Any]], float]] = {
    "callLater throughput (schedule + run)": call_later_throughput,
    "callFromThread throughput (4 threads)": call_from_thread_throughput,
    "callLater, schedule only": schedule_only,
    f"deferToThread round trips ({ROUND_TRIPS})": defer_to_thread_round_trips,
    f"DelayedCall reset+cancel ({CHURN})": delayed_call_churn,
    f"Deferred chains fired ({CHAINS}x5)": deferred_chains,
    f"TCP echo over loopback ({ECHOES})": tcp_echo,
    f"web request/response ({REQUESTS})": web_requests,
    f"asyncio reactor: tasks ({ASYNCIO_TASKS}x{ASYNCIO_STEPS})": asyncio_tasks,
}


def _without_gc(workload: Callable[[Callable[[], Any]], float], cls: type) -> float:
    if cls is PLAIN:
        # Twisted's own Deferreds, transports and requests: the instrumented
        # reactor patched its checks in (making it again patches them again).
        _running.unpatch()
    gc.collect()
    gc.disable()
    try:
        return workload(cls)
    finally:
        gc.enable()


def measure(rounds: int, only: str | None = None) -> None:
    print(f"{PLAIN.__name__} vs {ThreadCheckReactor.__name__}, {CALLS} calls, {rounds} rounds")
    print("ratio = instrumented/plain time, median of per-round pairs [min-max]")
    for name, workload in WORKLOADS.items():
        if only is not None and only.lower() not in name.lower():
            continue
        plain: list[float] = []
        checked: list[float] = []
        for round_ in range(rounds):
            order = [(plain, PLAIN), (checked, ThreadCheckReactor)]
            for times, cls in order if round_ % 2 == 0 else reversed(order):
                times.append(_without_gc(workload, cls))
        ratios = [c / p for p, c in zip(plain, checked, strict=True)]
        print(
            f"{name:42s} plain {statistics.median(plain) * 1e3:7.2f} ms  "
            f"instrumented {statistics.median(checked) * 1e3:7.2f} ms  "
            f"ratio {statistics.median(ratios):.3f} [{min(ratios):.2f}-{max(ratios):.2f}]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", help="the workloads whose name holds this text")
    args = parser.parse_args()
    measure(args.rounds, args.only)


if __name__ == "__main__":
    main()
