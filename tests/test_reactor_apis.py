"""Every non-thread-safe reactor API: reported from a worker, silent in the reactor thread."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.internet import protocol
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred

from threadcheck import Kind, Mode, ThreadAffinityError
from threadcheck_reactor import NOT_THREAD_SAFE, ThreadCheckMixin, ThreadCheckReactor

from support import RunningReactor


def noop(*args: object) -> None:
    pass


class PipeDescriptor(FileDescriptor):
    """A readable/writable descriptor over a socketpair end, for add/removeReader/Writer."""

    def __init__(self, reactor: Any) -> None:
        super().__init__(reactor)
        self.sock, self.peer = socket.socketpair()
        self.connected = 1

    def fileno(self) -> int:
        return self.sock.fileno()

    def doRead(self) -> None:
        self.sock.recv(1024)

    def doWrite(self) -> None:
        return None

    def close(self) -> None:
        self.sock.close()
        self.peer.close()


@dataclass
class Context:
    """What an API call needs, made in the reactor thread; cleaned up there too."""

    reactor: ThreadCheckMixin
    tmp: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    cleanups: list[Callable[[], object]] = field(default_factory=list)

    def tempdir(self) -> str:
        return self.tmp

    def clean_up(self) -> Deferred[object]:
        """In the reactor thread; fires when ports have really closed."""
        return gatherResults([maybeDeferred(c) for c in reversed(self.cleanups)])


@dataclass(frozen=True)
class ApiCall:
    """How to call one API: ``setup`` and ``call`` both receive the Context."""

    call: Callable[[Context], object]
    setup: Callable[[Context], None] = noop
    # stop/crash/iterate disturb a running reactor; their silent case is
    # checked on their own reactor, as its last act (or before run for iterate).
    disruptive: bool = False


def _listen(ctx: Context) -> None:
    port = ctx.reactor.listenTCP(
        0, protocol.Factory.forProtocol(protocol.Protocol), 50, "127.0.0.1"
    )
    ctx.values["port"] = port
    ctx.cleanups.append(port.stopListening)


def _descriptor(ctx: Context) -> None:
    fd = PipeDescriptor(ctx.reactor)
    ctx.values["fd"] = fd
    ctx.cleanups.append(fd.close)
    ctx.cleanups.append(lambda: (ctx.reactor.removeReader(fd), ctx.reactor.removeWriter(fd)))


def _added_descriptor(ctx: Context) -> None:
    _descriptor(ctx)
    ctx.reactor.addReader(ctx.values["fd"])
    ctx.reactor.addWriter(ctx.values["fd"])


def _trigger(ctx: Context) -> None:
    ctx.values["trigger"] = ctx.reactor.addSystemEventTrigger("before", "tc-test", noop)


def _delayed_call(ctx: Context) -> None:
    call = ctx.reactor.callLater(3600, noop)
    ctx.values["call"] = call
    ctx.cleanups.append(lambda: call.active() and call.cancel())


def _unix_server(ctx: Context) -> None:
    path = os.path.join(ctx.tempdir(), "s")
    port = ctx.reactor.listenUNIX(path, protocol.Factory.forProtocol(protocol.Protocol))
    ctx.values["path"] = path
    ctx.cleanups.append(port.stopListening)


def _unix_datagram_server(ctx: Context) -> None:
    path = os.path.join(ctx.tempdir(), "d")
    port = ctx.reactor.listenUNIXDatagram(path, protocol.DatagramProtocol())
    ctx.values["path"] = path
    ctx.cleanups.append(port.stopListening)


def _socket(ctx: Context, kind: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    ctx.cleanups.append(sock.close)
    return sock


def _listening_socket(ctx: Context) -> None:
    sock = _socket(ctx, socket.SOCK_STREAM)
    sock.listen(5)
    ctx.values["sock"] = sock


def _connected_socket(ctx: Context) -> None:
    server = _socket(ctx, socket.SOCK_STREAM)
    server.listen(5)
    client = socket.create_connection(server.getsockname())
    ctx.cleanups.append(client.close)
    client.setblocking(False)
    ctx.values["sock"] = client


def _udp_socket(ctx: Context) -> None:
    ctx.values["sock"] = _socket(ctx, socket.SOCK_DGRAM)


def _stop_port(ctx: Context, port: Any) -> Any:
    ctx.cleanups.append(port.stopListening)
    return port


def _disconnect(ctx: Context, connector: Any) -> Any:
    ctx.cleanups.append(connector.disconnect)
    return connector


CLIENT = protocol.ClientFactory.forProtocol(protocol.Protocol)
SERVER = protocol.Factory.forProtocol(protocol.Protocol)


API_CALLS: dict[str, ApiCall] = {
    "reactor.callLater": ApiCall(
        lambda c: c.cleanups.append(c.reactor.callLater(3600, noop).cancel)
    ),
    "reactor.callWhenRunning": ApiCall(lambda c: c.reactor.callWhenRunning(noop)),
    "reactor.addSystemEventTrigger": ApiCall(
        lambda c: c.reactor.addSystemEventTrigger("before", "tc-test", noop)
    ),
    "reactor.removeSystemEventTrigger": ApiCall(
        lambda c: c.reactor.removeSystemEventTrigger(c.values["trigger"]), _trigger
    ),
    "reactor.fireSystemEvent": ApiCall(lambda c: c.reactor.fireSystemEvent("tc-test")),
    "reactor.stop": ApiCall(lambda c: c.reactor.stop(), disruptive=True),
    "reactor.crash": ApiCall(lambda c: c.reactor.crash(), disruptive=True),
    "reactor.iterate": ApiCall(lambda c: c.reactor.iterate(0), disruptive=True),
    "reactor.addReader": ApiCall(lambda c: c.reactor.addReader(c.values["fd"]), _descriptor),
    "reactor.addWriter": ApiCall(lambda c: c.reactor.addWriter(c.values["fd"]), _descriptor),
    "reactor.removeReader": ApiCall(
        lambda c: c.reactor.removeReader(c.values["fd"]), _added_descriptor
    ),
    "reactor.removeWriter": ApiCall(
        lambda c: c.reactor.removeWriter(c.values["fd"]), _added_descriptor
    ),
    "reactor.removeAll": ApiCall(lambda c: c.reactor.removeAll()),
    "reactor.listenTCP": ApiCall(
        lambda c: _stop_port(c, c.reactor.listenTCP(0, SERVER, 50, "127.0.0.1"))
    ),
    "reactor.connectTCP": ApiCall(
        lambda c: _disconnect(
            c, c.reactor.connectTCP("127.0.0.1", c.values["port"].getHost().port, CLIENT)
        ),
        _listen,
    ),
    "reactor.listenUDP": ApiCall(
        lambda c: _stop_port(c, c.reactor.listenUDP(0, protocol.DatagramProtocol(), "127.0.0.1"))
    ),
    "reactor.listenMulticast": ApiCall(
        lambda c: _stop_port(
            c, c.reactor.listenMulticast(0, protocol.DatagramProtocol(), listenMultiple=True)
        )
    ),
    "reactor.listenUNIX": ApiCall(
        lambda c: _stop_port(c, c.reactor.listenUNIX(os.path.join(c.tempdir(), "l"), SERVER))
    ),
    "reactor.connectUNIX": ApiCall(
        lambda c: _disconnect(c, c.reactor.connectUNIX(c.values["path"], CLIENT)), _unix_server
    ),
    "reactor.listenUNIXDatagram": ApiCall(
        lambda c: _stop_port(
            c,
            c.reactor.listenUNIXDatagram(
                os.path.join(c.tempdir(), "u"), protocol.DatagramProtocol()
            ),
        )
    ),
    "reactor.connectUNIXDatagram": ApiCall(
        lambda c: _stop_port(
            c,
            c.reactor.connectUNIXDatagram(
                c.values["path"],
                protocol.ConnectedDatagramProtocol(),
                bindAddress=os.path.join(c.tempdir(), "b"),
            ),
        ),
        _unix_datagram_server,
    ),
    "reactor.listenSSL": ApiCall(
        lambda c: _stop_port(c, c.reactor.listenSSL(0, SERVER, _ssl_server(), 50, "127.0.0.1"))
    ),
    "reactor.connectSSL": ApiCall(
        lambda c: _disconnect(
            c,
            c.reactor.connectSSL(
                "127.0.0.1", c.values["port"].getHost().port, CLIENT, _ssl_client()
            ),
        ),
        _listen,
    ),
    "reactor.adoptStreamPort": ApiCall(
        lambda c: _stop_port(
            c, c.reactor.adoptStreamPort(c.values["sock"].fileno(), socket.AF_INET, SERVER)
        ),
        _listening_socket,
    ),
    "reactor.adoptStreamConnection": ApiCall(
        lambda c: c.reactor.adoptStreamConnection(
            c.values["sock"].fileno(), socket.AF_INET, SERVER
        ),
        _connected_socket,
    ),
    "reactor.adoptDatagramPort": ApiCall(
        lambda c: _stop_port(
            c,
            c.reactor.adoptDatagramPort(
                c.values["sock"].fileno(), socket.AF_INET, protocol.DatagramProtocol()
            ),
        ),
        _udp_socket,
    ),
    "reactor.spawnProcess": ApiCall(
        lambda c: c.reactor.spawnProcess(
            protocol.ProcessProtocol(), sys.executable, [sys.executable, "-c", "pass"]
        )
    ),
    "reactor.resolve": ApiCall(lambda c: c.reactor.resolve("127.0.0.1")),
    "reactor.getThreadPool": ApiCall(lambda c: c.reactor.getThreadPool()),
    "reactor.suggestThreadPoolSize": ApiCall(lambda c: c.reactor.suggestThreadPoolSize(4)),
    "DelayedCall.cancel": ApiCall(lambda c: c.values["call"].cancel(), _delayed_call),
    "DelayedCall.reset": ApiCall(lambda c: c.values["call"].reset(7200), _delayed_call),
    "DelayedCall.delay": ApiCall(lambda c: c.values["call"].delay(10), _delayed_call),
}

SSL_APIS = {"reactor.listenSSL", "reactor.connectSSL"}


def _ssl_server() -> Any:
    from twisted.internet import ssl
    from twisted.test import __file__ as twisted_test_file

    pem = os.path.join(os.path.dirname(twisted_test_file), "server.pem")
    return ssl.DefaultOpenSSLContextFactory(pem, pem)


def _ssl_client() -> Any:
    from twisted.internet import ssl

    return ssl.ClientContextFactory()


def _skip_without_tls(api: str) -> None:
    if api in SSL_APIS:
        pytest.importorskip("OpenSSL", reason="TLS calls need pyOpenSSL (Twisted[tls])")


def test_every_instrumented_api_is_tested() -> None:
    instrumented = {
        f"reactor.{name}" for name in NOT_THREAD_SAFE if hasattr(ThreadCheckReactor, name)
    }
    instrumented |= {
        "reactor.callLater",
        "DelayedCall.cancel",
        "DelayedCall.reset",
        "DelayedCall.delay",
    }
    assert instrumented == set(API_CALLS)


@pytest.fixture
def context_in(
    running_reactor: Any, tmp_path: Any
) -> Iterator[Callable[[Mode], tuple[RunningReactor, Context]]]:
    made: list[tuple[RunningReactor, Context]] = []

    def make(mode: Mode) -> tuple[RunningReactor, Context]:
        running = running_reactor(mode)
        made.append((running, Context(running.reactor, str(tmp_path))))
        return made[-1]

    yield make
    for running, ctx in made:
        running.in_reactor(ctx.clean_up)


@pytest.mark.parametrize("api", sorted(API_CALLS))
def test_raises_from_a_worker_thread(api: str, context_in: Any) -> None:
    running, ctx = context_in(Mode.RAISE)
    api_call = API_CALLS[api]
    running.in_reactor(api_call.setup, ctx)

    with pytest.raises(ThreadAffinityError) as raised:
        api_call.call(ctx)  # this test's thread is not the reactor thread

    violation = raised.value.violation
    assert (violation.api, violation.kind) == (api, Kind.FOREIGN_THREAD)
    assert violation.reactor_thread.name == "reactor"
    assert running.recorder.violations() == [violation]
    # The check names the offending line of this test, not threadcheck's frames.
    assert violation.stack[-1].filename == API_CALLS[api].call.__code__.co_filename


@pytest.mark.parametrize("api", sorted(name for name, c in API_CALLS.items() if not c.disruptive))
def test_records_from_a_worker_thread_and_lets_the_call_happen(api: str, context_in: Any) -> None:
    _skip_without_tls(api)
    running, ctx = context_in(Mode.RECORD)
    running.in_reactor(API_CALLS[api].setup, ctx)

    API_CALLS[api].call(ctx)

    [violation] = running.recorder.violations()
    assert violation.api == api


@pytest.mark.parametrize("api", sorted(name for name, c in API_CALLS.items() if not c.disruptive))
def test_silent_in_the_reactor_thread(api: str, context_in: Any) -> None:
    _skip_without_tls(api)
    running, ctx = context_in(Mode.RAISE)
    api_call = API_CALLS[api]

    running.in_reactor(lambda: (api_call.setup(ctx), api_call.call(ctx)))

    assert running.recorder.violations() == []


@pytest.mark.parametrize("api", ["reactor.stop", "reactor.crash"])
def test_stopping_apis_are_silent_in_the_reactor_thread(api: str, running_reactor: Any) -> None:
    running = running_reactor(Mode.RAISE)
    running.reactor.callFromThread(API_CALLS[api].call, Context(running.reactor))
    running.thread.join(30)
    assert not running.thread.is_alive()
    assert running.recorder.violations() == []


def test_iterate_is_silent_in_the_owner_thread() -> None:
    reactor = ThreadCheckReactor(Mode.RAISE)
    reactor.iterate(0)  # never run: the creating thread owns it
    assert reactor.threadcheck.recorder.violations() == []


def test_delayed_calls_refuse_what_twisteds_refuse() -> None:
    # The checked DelayedCall writes Twisted's cancel/reset bodies out: same errors.
    from twisted.internet import error

    reactor = ThreadCheckReactor("record")
    call = reactor.callLater(10, lambda: None)
    call.reset(5)
    assert call.getTime() == pytest.approx(reactor.seconds() + 5, abs=1)
    call.reset(20)  # later: delayed, not moved
    assert call.active() and call.delayed_time > 0
    call.cancel()
    with pytest.raises(error.AlreadyCancelled):
        call.cancel()
    with pytest.raises(error.AlreadyCancelled):
        call.reset(1)
    fired = reactor.callLater(0, lambda: None)
    reactor.runUntilCurrent()
    with pytest.raises(error.AlreadyCalled):
        fired.cancel()
    with pytest.raises(error.AlreadyCalled):
        fired.reset(1)
    assert reactor.threadcheck.recorder.violations() == []


@pytest.mark.parametrize("inline", [True, False], ids=["written-out", "twisteds-init"])
@pytest.mark.parametrize("debug", [False, True])
def test_call_later_makes_the_call_twisteds_init_makes(
    inline: bool, debug: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # callLater sets the DelayedCall up itself while Twisted's __init__ is the
    # one it copies (and calls __init__ otherwise): the same state either way.
    from twisted.internet.base import DelayedCall
    from twisted.internet.epollreactor import EPollReactor

    from threadcheck_reactor import _reactor

    monkeypatch.setattr(_reactor, "INLINE_INIT", inline)
    monkeypatch.setattr(DelayedCall, "debug", debug)
    ours, theirs = ThreadCheckReactor("record"), EPollReactor()

    def made(reactor: Any) -> dict[str, Any]:
        call = reactor.callLater(5, noop, 1, key=2)  # the creator's last line: this one
        state = dict(vars(call))
        assert state.pop("resetter") == reactor._moveCallLaterSooner
        assert state.pop("canceller") == reactor._cancelCallLater
        assert state.pop("seconds") == reactor.seconds
        state["time"] = round(state["time"] - reactor.seconds())
        return state

    assert made(ours) == made(theirs)
    assert ("creator" in made(ours)) is debug
