"""Sockets that only talk to each other, none ready: time jumps to the next deadline.

A listening server's 60 s shutdown timer took 60 s of real time a schedule
(and failed as "stuck on real I/O" past 30 s); a pool job's ``recv`` with a
40 s timeout, against the program's own silent server, waited 40 real seconds.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from twisted.internet import protocol, threads
from twisted.internet.defer import Deferred

import threadcheck
from threadcheck._sched import _core, _loopback
from threadcheck._sched._loopback import in_process

from support import assert_found_and_replayed, explore_program, write_program


@pytest.fixture
def connected() -> Iterator[tuple[socket.socket, socket.socket, socket.socket]]:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    yield server, client, accepted
    for sock in (server, client, accepted):
        sock.close()


@contextlib.contextmanager
def peer_process(source: str) -> Iterator[int]:
    """The port of another process, running ``source`` (which prints it first),
    killed after the block."""
    peer = subprocess.Popen([sys.executable, "-c", source], stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None
        yield int(peer.stdout.readline())
    finally:
        peer.kill()
        peer.wait()


def test_a_listening_socket_and_both_ends_of_a_connection_are_in_process(
    connected: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    server, client, accepted = connected
    assert in_process([server])
    assert in_process([client, accepted])
    assert in_process([server, client, accepted])


def test_only_a_socket_to_another_process_is_answered_from_outside(
    connected: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    server, client, accepted = connected
    assert not _loopback.from_another_process([server, client, accepted])
    with (
        peer_process(QUICK_PEER) as port,
        socket.create_connection(("127.0.0.1", port)) as upstream,
    ):
        assert _loopback.from_another_process([client, upstream])
        peers: dict[tuple[Any, ...], bool] = {}
        assert _loopback.from_another_process([upstream], peers)
        with mock.patch.object(_loopback, "own_tcp_sockets", side_effect=AssertionError):
            assert _loopback.from_another_process([upstream], peers)  # read once


@pytest.mark.skipif(_loopback.own_tcp_sockets() is None, reason="Linux's /proc and TCP_INFO")
def test_the_process_s_tcp_sockets_are_asked_of_the_kernel_each_once(
    connected: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    # They were read from /proc/net/tcp, every socket of the network namespace
    # (7 ms a read on a VM, at every step where all threads wait on sockets).
    server, client, accepted = connected
    descriptors = len(os.listdir("/proc/self/fd"))
    own = _loopback.own_tcp_sockets() or []
    assert len(os.listdir("/proc/self/fd")) == descriptors  # its duplicates closed
    at_server = sorted(end.state for end in own if end.address == server.getsockname())
    assert at_server == [1, _loopback._TCP_LISTEN]  # it, and the end it accepted
    assert [end.state for end in own if end.address == client.getsockname()] == [1]
    left, right = socket.socketpair()  # not TCP
    with left, right:
        assert len(_loopback.own_tcp_sockets() or []) == len(own)
    client.sendall(b"x" * 1000)
    assert accepted.recv(1000)
    deadline = time.monotonic() + 5
    while not _loopback.settled():  # its acknowledgement comes in microseconds
        assert time.monotonic() < deadline


def test_one_end_alone_another_family_or_a_closed_socket_is_not(
    connected: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    server, _client, accepted = connected
    assert not in_process([accepted, server])  # its peer (the client) may be anyone's
    left, right = socket.socketpair()
    with left, right:
        assert not in_process([left, right])
    assert not in_process([object()])
    closed = socket.socket()
    closed.close()
    assert not in_process([closed])


def test_an_end_whose_peer_listens_here_is_in_process(
    connected: tuple[socket.socket, socket.socket, socket.socket],
) -> None:
    # A connection the program's own server never accepts (a black-hole
    # upstream): its timeouts passed in real time, 10 s a schedule.
    server, client, _accepted = connected
    assert in_process([client])
    unaccepted = socket.create_connection(server.getsockname())
    with unaccepted:
        assert in_process([unaccepted])


def test_an_end_whose_peer_listens_in_another_process_is_not() -> None:
    listen = "import socket, time; s = socket.create_server(('127.0.0.1', 0)); "
    listen += "print(s.getsockname()[1], flush=True); time.sleep(60)"
    with peer_process(listen) as port, socket.create_connection(("127.0.0.1", port)) as client:
        assert not in_process([client])


@pytest.fixture
def real_io_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # Waited in real time, these schedules failed as stuck past the limit (their
    # timeouts are 40-80 s). 2 s, not less: a loaded machine's polls add up.
    monkeypatch.setattr(_core, "REAL_IO_LIMIT", 2.0)


@pytest.mark.slow  # 20-50 s: once in the slow tier, not in each Python's fast tier
@pytest.mark.usefixtures("real_io_limit")
def test_a_listening_server_s_far_timer_comes_at_once() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        port = reactor.listenTCP(0, protocol.ServerFactory(), interface="127.0.0.1")
        later: Deferred[None] = Deferred()
        reactor.callLater(60, later.callback, None)
        return later.addCallback(lambda _: port.stopListening())

    result = threadcheck.explore(scenario, budget=3)
    result.assert_clean()
    assert result.schedules == 3
    assert "real I/O" in result.report()  # still no proof: real sockets were open


def test_sockets_polled_without_waiting_are_no_proof_either() -> None:
    # Z49: dpor "proved" a crawl against the program's own server: each of its
    # 36 schedules found what the sockets brought there when polled, never
    # waited on them, and only a wait counted as real I/O.
    def scenario(reactor: Any) -> Deferred[Any]:
        port = reactor.listenTCP(0, protocol.ServerFactory(), interface="127.0.0.1")
        polled: Deferred[None] = Deferred()
        reactor.callLater(0, lambda: reactor.callLater(0, polled.callback, None))
        return polled.addCallback(lambda _: port.stopListening())

    result = threadcheck.explore(scenario, strategy="dpor")
    assert result.exhausted and not result.proof, result.report()
    assert "real I/O" in result.report()


@pytest.mark.usefixtures("real_io_limit")
def test_a_pool_job_s_recv_times_out_in_virtual_time_against_a_silent_server() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        port = reactor.listenTCP(0, protocol.ServerFactory.forProtocol(protocol.Protocol))
        address = ("127.0.0.1", port.getHost().port)

        def ask() -> bytes:
            with socket.create_connection(address, timeout=40) as sock:
                sock.sendall(b"PING\r\n")
                try:
                    return sock.recv(100)
                except TimeoutError:
                    return b"fallback"

        def check(answer: bytes) -> Deferred[None]:
            assert answer == b"fallback"
            return port.stopListening()

        pool = reactor.getThreadPool()
        return threads.deferToThreadPool(reactor, pool, ask).addCallback(check)

    threadcheck.explore(scenario, budget=5).assert_clean()


@pytest.mark.usefixtures("real_io_limit")
def test_a_heartbeat_thread_does_not_make_a_slow_page_wait_in_real_time() -> None:
    # Z49: a server and its client in one program, the page 4 s late, and a
    # heartbeat thread waking every 0.25 s: each wake ran a thread, and the
    # sockets had to be quiet for 0.25 s of real time again before time could
    # jump, longer than the heartbeat's next wait: 4 s of real time a schedule.
    from twisted.web import client, resource, server

    class Late(resource.Resource):
        isLeaf = True  # noqa: N815 - twisted.web's name

        def __init__(self, reactor: Any) -> None:
            super().__init__()
            self.reactor = reactor

        def render_GET(self, request: Any) -> object:
            self.reactor.callLater(4, lambda: (request.write(b"late"), request.finish()))
            return server.NOT_DONE_YET

    def read_body(response: Any) -> Deferred[bytes]:
        with warnings.catch_warnings():  # Twisted's own: its transports have no abortConnection
            warnings.simplefilter("ignore", DeprecationWarning)
            return client.readBody(response)

    def scenario(reactor: Any) -> Deferred[Any]:
        stop = threading.Event()

        def heartbeat() -> None:
            while not stop.wait(0.25):
                pass

        port = reactor.listenTCP(0, server.Site(Late(reactor)), interface="127.0.0.1")
        threading.Thread(target=heartbeat, daemon=True).start()
        url = f"http://127.0.0.1:{port.getHost().port}/".encode()
        page = client.Agent(reactor).request(b"GET", url).addCallback(read_body)

        def done(body: bytes) -> Deferred[None]:
            assert body == b"late"
            stop.set()
            return port.stopListening()

        return page.addCallback(done)

    threadcheck.explore(scenario, budget=3).assert_clean()


@pytest.mark.usefixtures("real_io_limit")
def test_a_pool_job_s_timeouts_pass_in_virtual_time_against_a_server_that_never_accepts() -> None:
    def scenario(reactor: Any) -> Deferred[Any]:
        black_hole = socket.create_server(("127.0.0.1", 0))  # an upstream that never accepts

        def fetch() -> bytes:
            for _ in range(2):  # a retry
                try:
                    with socket.create_connection(black_hole.getsockname(), timeout=40) as sock:
                        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
                        return sock.recv(100)
                except TimeoutError:
                    pass
            return b"cached"

        def check(answer: bytes) -> None:
            black_hole.close()
            assert answer == b"cached"

        pool = reactor.getThreadPool()
        return threads.deferToThreadPool(reactor, pool, fetch).addCallback(check)

    # 80 s of timeouts a schedule, in real time, failed past the 0.5 s limit.
    threadcheck.explore(scenario, budget=3).assert_clean()


def test_a_pair_end_known_by_its_number_alone_is_in_process_while_it_is_that_end() -> None:
    # multiprocessing.Pipe() keeps only the descriptors of a socket pair's ends.
    left, right = socket.socketpair()
    _loopback.record_pair((left, right))
    ends = [left.detach(), right.detach()]
    assert in_process(ends)
    assert _loopback.lands_at_once(ends)
    for end in ends:
        os.close(end)
    with socket.socket() as other:  # most likely at one of the numbers now
        assert not in_process([*ends, other.fileno()])


@pytest.mark.usefixtures("real_io_limit")
def test_a_multiprocessing_pipe_polled_with_a_timeout_times_out_in_virtual_time() -> None:
    # Its poll waited 5 real seconds each schedule (and, past the limit, failed as stuck).
    def scenario(reactor: Any) -> Deferred[Any]:
        parent, child = multiprocessing.Pipe()

        def consume() -> str:
            return str(parent.recv()) if parent.poll(5.0) else "timeout"

        def check(answer: str) -> None:
            assert answer == "timeout"
            parent.close()
            child.close()

        return threads.deferToThread(consume).addCallback(check)

    result = threadcheck.explore(scenario, budget=3)
    result.assert_clean()
    assert result.schedules == 3


@pytest.mark.usefixtures("real_io_limit")
def test_threads_that_wait_on_each_other_s_sockets_time_out_in_virtual_time() -> None:
    # No reactor in the way: every controlled thread waits on a socket.
    def scenario(reactor: Any) -> None:
        server = socket.create_server(("127.0.0.1", 0))
        answers: list[bytes] = []

        def ask() -> None:
            with socket.create_connection(server.getsockname(), timeout=20) as sock:
                try:
                    answers.append(sock.recv(10))
                except TimeoutError:
                    answers.append(b"timed out")

        asker = threading.Thread(target=ask)
        asker.start()
        with server, server.accept()[0] as conn:
            conn.settimeout(40)
            assert conn.recv(10) == b""  # the asker gave up first, and hung up
        asker.join()
        assert answers == [b"timed out"]

    threadcheck.explore(scenario, budget=5).assert_clean()


CONNECTS_BACK = """
import socket, sys, time
time.sleep(0.4)  # a sidecar's start-up
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as sock:
    sock.sendall(b"hello")
"""


def test_a_child_process_may_still_connect_back_so_time_does_not_jump() -> None:
    # A listening socket alone is in the process, but a sidecar it started
    # connects to it in its own time: the accept timed out at once.
    def scenario(reactor: Any) -> None:
        with socket.create_server(("127.0.0.1", 0)) as server:
            server.settimeout(10)
            port = server.getsockname()[1]
            child = subprocess.Popen([sys.executable, "-c", CONNECTS_BACK, str(port)])
            try:
                conn, _ = server.accept()
                with conn:
                    conn.settimeout(10)
                    assert conn.recv(5) == b"hello"
            finally:
                child.wait()

    threadcheck.explore(scenario, budget=2).assert_clean()


SILENT_PEER = "import socket, time; s = socket.create_server(('127.0.0.1', 0)); "
SILENT_PEER += "print(s.getsockname()[1], flush=True); time.sleep(60)"


@pytest.mark.slow  # 5 s, mostly waiting
def test_a_wait_on_another_process_reads_the_socket_tables_once_a_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # /proc/net/tcp lists every socket of the machine's network namespace: read
    # at each 10 ms poll of a wait on a peer elsewhere, it took a quarter of
    # a loaded CI runner's CPU for the wait's whole length.
    reads = mock.Mock(wraps=in_process)  # not the test's code: no points of its own
    monkeypatch.setattr(_core, "in_process", reads)
    with peer_process(SILENT_PEER) as port:

        def scenario(reactor: Any) -> Deferred[Any]:
            def ask() -> bytes:
                with socket.create_connection(("127.0.0.1", port), timeout=0.6) as sock:
                    try:
                        return sock.recv(100)
                    except TimeoutError:
                        return b"fallback"

            pool = reactor.getThreadPool()
            job = threads.deferToThreadPool(reactor, pool, ask)
            return job.addCallback(lambda answer: assert_equal(answer, b"fallback"))

        result = threadcheck.explore(scenario, budget=2)
    result.assert_clean()
    assert 0 < reads.call_count <= 4 * 3  # a few a schedule (the warm-up's and 2)


def assert_equal(found: object, expected: object) -> None:
    assert found == expected


SLOW_PEER = """
import socket, sys, threading, time
server = socket.create_server(("127.0.0.1", 0))
print(server.getsockname()[1], flush=True)

def answer(conn):
    time.sleep(0.3)  # a slow upstream: it always answers in 0.3 s
    conn.sendall(b"hello")
    time.sleep(5)

while True:
    conn, _ = server.accept()
    threading.Thread(target=answer, args=(conn,), daemon=True).start()
"""

ASKS_WHILE_A_JOB_NAPS = """
import select, socket, sys, time
from twisted.internet import reactor, threads
from twisted.internet.defer import gatherResults
{ask}
def nap():
    for _ in range(20):
        time.sleep(0.05)

answers = []
jobs = [threads.deferToThread(ask), threads.deferToThread(nap)]
gatherResults(jobs).addBoth(lambda r: (answers.append(r), reactor.stop()))
reactor.run()
assert answers == [[b"hello", None]], answers
"""


ASKS_WITH_A_TIMEOUT = """
def ask():
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.6) as sock:
        try:
            return sock.recv(10)
        except TimeoutError:
            return b"timed out"
"""
ASKS_BY_A_DEADLINE = """
def ask():
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5) as sock:
        sock.setblocking(False)
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            ready, _, _ = select.select([sock], [], [], 0.1)
            if ready:
                return sock.recv(10)
        return b"timed out"
"""


@pytest.mark.slow  # 10 s: each schedule waits for the upstream's real answer
@pytest.mark.parametrize("ask", [ASKS_WITH_A_TIMEOUT, ASKS_BY_A_DEADLINE])
def test_time_passing_while_threads_are_held_never_times_out_another_process(
    tmp_path: Any, ask: str
) -> None:
    # A job's naps let virtual time pass while the reactor was held, in no real
    # time: the other job's wait on a process that always answers in 0.3 s timed
    # out at 0.6 s, a failure no machine can have; and once its wait's deadline
    # moved on with the time that passed, a deadline of the job's own (Z48).
    with peer_process(SLOW_PEER) as port:
        program = tmp_path / "service.py"
        program.write_text(ASKS_WHILE_A_JOB_NAPS.format(ask=ask))
        command = [sys.executable, "-m", "threadcheck", "explore", "--budget", "10"]
        result = subprocess.run(
            [*command, str(program), str(port)], capture_output=True, text=True, timeout=300
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("threadcheck: 10 schedules ("), result.stderr


QUICK_PEER = SLOW_PEER.replace(
    "time.sleep(0.3)  # a slow upstream: it always", "time.sleep(0.02)  # it"
)

TWO_JOBS_COUNT_THEIR_ANSWERS = """
import os, socket, threading
from twisted.internet import reactor, threads
from twisted.internet.defer import gatherResults

class Stats:
    answered = 0

stats = Stats()
counting = threading.Lock()

def ask():
    with socket.create_connection(("127.0.0.1", int(os.environ["PEER_PORT"])), timeout=5) as s:
        s.sendall(b"status?")
        answer = s.recv(10)
    with {guard}:
        seen = stats.answered
        stats.answered = seen + 1
    return answer

jobs = [threads.deferToThread(ask), threads.deferToThread(ask)]
gatherResults(jobs).addBoth(lambda _: reactor.stop())
reactor.run()
if stats.answered != 2:
    raise SystemExit(f"lost update: answered {{stats.answered}}")
"""


@pytest.mark.slow  # 5 s: each schedule waits for the peer's two real answers
@pytest.mark.quality
@pytest.mark.parametrize("guard", ["contextlib.nullcontext()", "counting"])
def test_a_second_answer_from_another_process_lands_inside_the_first_jobs_update(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, guard: str
) -> None:
    # Both jobs wait on another process's answers: the first answer woke its
    # job alone, and the second could land only once no thread could run, never
    # between the first job's read and its write (Z48): 200 schedules, "no
    # failure seen", where `run --races` reported the race at once.
    with peer_process(QUICK_PEER) as port:
        monkeypatch.setenv("PEER_PORT", str(port))
        source = TWO_JOBS_COUNT_THEIR_ANSWERS.format(guard=guard)
        program = write_program(tmp_path, "import contextlib\n" + source)
        result = explore_program(program, "--budget", "60")
        if guard == "counting":
            assert result.returncode == 0, result.stderr
            assert result.stderr.startswith("threadcheck: 60 schedules ("), result.stderr
        else:
            assert_found_and_replayed(
                result, "threadcheck: exit: the program exited with status 1: lost update"
            )
