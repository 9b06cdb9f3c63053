"""The asyncio reactor's transports (streams, datagrams, pipes) are the loop's: checked so."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from threadcheck import Kind, Mode, ThreadAffinityError, _fixes
from threadcheck._report import fix_for
from threadcheck_reactor._loop import TRANSPORT_APIS

from support import RunningReactor, assert_run_of_twin, loop_of


@pytest.fixture
def connected(
    asyncio_reactor: Callable[[Mode], RunningReactor],
) -> Iterator[tuple[RunningReactor, Any]]:
    """A raise-mode asyncio reactor and a stream writer it made over a socket pair."""
    running = asyncio_reactor(Mode.RAISE)
    ours, theirs = socket.socketpair()

    async def open_stream() -> Any:
        return (await asyncio.open_connection(sock=ours))[1]

    writer = running.in_reactor(_as_deferred, running, open_stream)
    yield running, writer
    running.in_reactor(writer.transport.abort)
    theirs.close()


def _as_deferred(running: RunningReactor, coroutine: Callable[[], Any]) -> Any:
    from twisted.internet.defer import Deferred

    return Deferred.fromFuture(asyncio.ensure_future(coroutine(), loop=loop_of(running)))


STREAM_CALLS: dict[str, Callable[[Any], object]] = {
    "write": lambda transport: transport.write(b"ping\n"),
    "writelines": lambda transport: transport.writelines([b"ping", b"\n"]),
    "write_eof": lambda transport: transport.write_eof(),
    "close": lambda transport: transport.close(),
    "abort": lambda transport: transport.abort(),
    "pause_reading": lambda transport: transport.pause_reading(),
    "resume_reading": lambda transport: transport.resume_reading(),
    "set_write_buffer_limits": lambda transport: transport.set_write_buffer_limits(high=4096),
}


def test_every_checked_transport_method_is_tested() -> None:
    assert {f"asyncio.transport.{name}" for name in [*STREAM_CALLS, "sendto"]} == set(
        TRANSPORT_APIS
    )


@pytest.mark.parametrize("method", sorted(STREAM_CALLS))
def test_a_stream_transport_raises_from_a_worker_at_the_users_line(
    method: str, connected: tuple[RunningReactor, Any]
) -> None:
    running, writer = connected
    with pytest.raises(ThreadAffinityError) as raised:
        STREAM_CALLS[method](writer.transport)  # this test's thread is not the reactor's

    violation = raised.value.violation
    assert (violation.api, violation.kind) == (f"asyncio.transport.{method}", Kind.FOREIGN_THREAD)
    assert violation.stack[-1].filename == __file__
    assert running.recorder.violations() == [violation]


@pytest.mark.parametrize("method", sorted(STREAM_CALLS))
def test_a_stream_transport_is_silent_in_the_reactor_thread(
    method: str, connected: tuple[RunningReactor, Any]
) -> None:
    running, writer = connected
    running.in_reactor(STREAM_CALLS[method], writer.transport)
    assert running.recorder.violations() == []


def test_a_stream_writers_write_from_a_worker_gets_the_loops_hand_over(
    asyncio_reactor: Callable[[Mode], RunningReactor],
) -> None:
    running = asyncio_reactor(Mode.RECORD)
    ours, theirs = socket.socketpair()

    async def open_stream() -> Any:
        return (await asyncio.open_connection(sock=ours))[1]

    writer = running.in_reactor(_as_deferred, running, open_stream)
    writer.write(b"ping\n")  # the bug: from this (worker) thread
    loop_of(running).call_soon_threadsafe(writer.write, b"pong\n")  # the fix: silent
    running.in_reactor(writer.transport.close)
    assert theirs.recv(100) == b"ping\npong\n"
    theirs.close()

    [violation] = running.recorder.violations()
    assert violation.api == "asyncio.transport.write"
    assert fix_for(violation).endswith('loop.call_soon_threadsafe(writer.write, b"ping\\n")')


def test_a_datagram_transports_sendto_is_checked(
    asyncio_reactor: Callable[[Mode], RunningReactor],
) -> None:
    running = asyncio_reactor(Mode.RECORD)

    async def endpoint() -> Any:
        loop = asyncio.get_running_loop()
        made = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        return made[0]

    transport = running.in_reactor(_as_deferred, running, endpoint)
    address = transport.get_extra_info("sockname")
    transport.sendto(b"beat", address)  # from this (worker) thread
    running.in_reactor(transport.close)
    assert [v.api for v in running.recorder.violations()] == ["asyncio.transport.sendto"]


def test_a_pipe_transport_is_checked(asyncio_reactor: Callable[[Mode], RunningReactor]) -> None:
    running = asyncio_reactor(Mode.RECORD)
    read_end, write_end = os.pipe()
    pipe = os.fdopen(write_end, "wb", buffering=0)

    async def connect() -> Any:
        loop = asyncio.get_running_loop()
        return (await loop.connect_write_pipe(asyncio.Protocol, pipe))[0]

    transport = running.in_reactor(_as_deferred, running, connect)
    transport.write(b"log line\n")  # from this (worker) thread
    running.in_reactor(transport.close)
    assert os.read(read_end, 100) == b"log line\n"
    os.close(read_end)
    assert [v.api for v in running.recorder.violations()] == ["asyncio.transport.write"]


def test_a_plain_asyncio_loop_in_another_thread_is_not_the_reactors(
    asyncio_reactor: Callable[[Mode], RunningReactor],
) -> None:
    # A program may run its own loop in a thread: its transports are its own.
    running = asyncio_reactor(Mode.RAISE)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="own loop")
    thread.start()
    ours, theirs = socket.socketpair()
    try:

        async def open_stream() -> Any:
            return (await asyncio.open_connection(sock=ours))[1]

        writer = asyncio.run_coroutine_threadsafe(open_stream(), loop).result(30)
        asyncio.run_coroutine_threadsafe(_write_and_close(writer), loop).result(30)
        assert theirs.recv(100) == b"hello"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()
        theirs.close()
    assert running.recorder.violations() == []


async def _write_and_close(writer: Any) -> None:
    writer.write(b"hello")
    await writer.drain()
    writer.close()


@pytest.mark.parametrize(
    ("offending", "fix"),
    [
        ("writer.write(data)", "loop.call_soon_threadsafe(writer.write, data)"),
        (
            "self._out.writelines(lines)  # flush",
            "loop.call_soon_threadsafe(self._out.writelines, lines)",
        ),
        ("conn.transport.close()", "loop.call_soon_threadsafe(conn.transport.close)"),
        ("send(frame)", "loop.call_soon_threadsafe(transport.write, ...)"),
    ],
)
def test_the_fix_hands_over_the_call_the_worker_made(offending: str, fix: str) -> None:
    method = fix.split("(")[1].split(",")[0].split(".")[-1].rstrip(")")
    assert _fixes.object_api_fix(f"asyncio.transport.{method}", offending) == (
        f"hand it to the loop's thread: {fix}"
    )


# A chat relay on Twisted's asyncio reactor: each message is moderated by a
# blocking call in a pool job, which then writes it to the client's stream.
CHAT_RELAY = """
import asyncio, logging, threading, time
from twisted.internet import asyncioreactor
asyncioreactor.install()
from twisted.internet import defer, reactor, threads

log = logging.getLogger("relay")
_banned = None
_banned_lock = threading.Lock()

def banned_words():
    global _banned
    with _banned_lock:
        if _banned is None:  # a lazy cache: the first job loads the list
            time.sleep(0.01)  # the moderation service: blocking I/O
            _banned = {{"spam"}}
        return _banned

def moderate_and_send(writer, loop, line):
    words = set(line.decode().split())
    reply = b"blocked\\n" if words & banned_words() else line
    {send}

async def handle(reader, writer):
    loop = asyncio.get_running_loop()
    line = await reader.readline()
    await defer.Deferred.asFuture(
        threads.deferToThread(moderate_and_send, writer, loop, line), loop
    )
    await asyncio.sleep(0.01)
    await writer.drain()
    writer.close()

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    replies = []
    for text in (b"hello\\n", b"buy spam\\n"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(text)
        replies.append(await asyncio.wait_for(reader.readline(), timeout=5))
        writer.close()
    server.close()
    print(replies)

def run():
    d = defer.Deferred.fromFuture(asyncio.ensure_future(main()))
    d.addErrback(lambda f: print("failed", f.value))
    d.addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(run)
reactor.run()
"""


@pytest.mark.quality
@pytest.mark.parametrize(
    ("send", "planted"),
    [
        ("writer.write(reply)", True),
        ("loop.call_soon_threadsafe(writer.write, reply)", False),
    ],
    ids=["planted", "fixed"],
)
def test_a_pool_job_writing_to_an_asyncio_stream_is_reported_at_its_line(
    tmp_path: Any, send: str, planted: bool
) -> None:
    assert_run_of_twin(
        tmp_path / "relay.py",
        CHAT_RELAY,
        "send",
        send,
        planted=planted,
        prints="[b'hello\\n', b'blocked\\n']",
        counted="asyncio.transport.write: 2",  # both messages
        fix="hand it to the loop's thread: loop.call_soon_threadsafe(writer.write, reply)",
    )
