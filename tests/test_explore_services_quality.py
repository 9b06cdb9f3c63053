"""Quality: services written as real ones are, with their bugs and fixed twins.

A hang whose cause is an error. A connection pool lends connections to
blocking queries run in the reactor's thread pool, each with a timeout
(``Deferred.addTimeout``). The planted bug:
the timeout's errback gives the connection back while the query, still
running, gives it back too when it ends. Only when the query is held past the
timeout does it show: ``give`` raises, ``gatherResults`` fails, and the
service never reaches ``reactor.stop()``: the program hangs with the reactor
idle. The report must lead with the error that caused the hang, not the hang.
The fixed twin gives the connection back in one place only, and is clean.

A lazily loaded configuration, read by a ``concurrent.futures`` pool's jobs
while a daemon heartbeat thread ticks every second; the reactor waits for the
jobs with a 5 s safety timeout. The planted bug: the load is not locked, and
two jobs may both load it. The fixed twin locks it, and must stay clean: the
heartbeat's ticks let time pass while a job is held, but never more than
``max_delay`` in all before the job waits again, or a job held a second at a
time between steps would trip the safety timeout.

A ``Service`` whose poller thread appends to a list the reactor reads
(``len()`` in a ``LoopingCall``): a data race for ``--races``; handed to the
reactor with ``callFromThread``, none.

An upper-casing TCP server on real sockets whose worker writes to the
transport (a violation), and its ``callFromThread`` twin, which must end.

A pool job that fetches a page with ``urllib`` from the program's own
twisted.web server: its ``recv`` waits for the reactor, which must run
meanwhile (it held the turn instead, until its timeout failed the program on
every schedule). Its planted bug: the job then schedules a retry with
``reactor.callLater``.

A child process (``spawnProcess``) fed from a worker thread: written to from
the worker (a violation), and its ``callFromThread`` twin, which must end. A
schedule runs without signal handlers, and the child may close its pipes
before it exits: the reactor waits on it for real and reaps it as SIGCHLD
would (it once reported a deadlock, then blocked for ever).

A TTL cache whose entries expire on a ``callLater`` while a pool job refreshes
them: its failure is shrunk to the two preemptions it needs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support import (
    assert_clean,
    assert_found_and_replayed,
    explore_program,
    explore_with_library,
    with_library,
    write_program,
)

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
    assert_found_and_replayed(result, "threadcheck: unhandled-error: Unhandled error in Deferred")
    headline = result.stderr.splitlines(keepends=True)[0]
    # Either query's timeout may be the one that fires first: both are the bug.
    assert re.search(
        r"\(error [01] of a gatherResults or DeferredList\): RuntimeError: conn", headline
    )
    assert "returned twice\n" in headline
    assert "\n  then deadlock: every live thread is blocked: T0(MainThread) on reactor idle" in (
        result.stderr
    )


def test_its_fixed_twin_is_clean(tmp_path: Path) -> None:
    assert_clean(explore_program(write_program(tmp_path, SERVICE.format(on_timeout=FIX))))


CONFIG = """
import concurrent.futures
import os
import sys
import threading
import time

from twisted.internet import defer, reactor, threads

_config = None
_config_lock = threading.Lock()


def _load():
    return {{"token": object(), "retries": int("3")}}  # parses a file read at start


def get_config():
    global _config
    {get}
    return _config


def heartbeat():
    while True:
        time.sleep(1.0)
        sys.stdout.write("alive\\n")


executor = concurrent.futures.ThreadPoolExecutor(max_workers=2)


def handle(request):
    return id(get_config()["token"])


@defer.inlineCallbacks
def main():
    threading.Thread(target=heartbeat, daemon=True, name="heartbeat").start()
    futures = [executor.submit(handle, n) for n in range(2)]
    tokens = yield threads.deferToThread(lambda: [f.result(timeout=5) for f in futures])
    executor.shutdown()
    if len(set(tokens)) != 1:
        sys.stdout.write("configuration loaded twice\\n")
        os._exit(3)
    reactor.stop()


reactor.callWhenRunning(main)
reactor.run()
"""
UNLOCKED = """if _config is None:  # BUG: two jobs may both load it
        _config = _load()"""
LOCKED = """with _config_lock:
        if _config is None:
            _config = _load()"""


def test_an_unlocked_lazy_load_is_found(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, CONFIG.format(get=UNLOCKED)))
    assert_found_and_replayed(result, "threadcheck: exit: the program exited with status 3")
    assert "not an interleaving bug" not in result.stderr.splitlines()[0]


def test_its_locked_twin_trips_no_safety_timeout(tmp_path: Path) -> None:
    assert_clean(explore_program(write_program(tmp_path, CONFIG.format(get=LOCKED))))


POLLER = """
import threading
import time

from twisted.application import service
from twisted.internet import reactor, task, threads


class PollerService(service.Service):
    def __init__(self):
        self.stopping = threading.Event()
        self.seen = []
        self.thread = None

    def startService(self):
        super().startService()
        self.thread = threading.Thread(target=self.poll, name="poller")
        self.thread.start()

    def poll(self):
        polls = 0
        while not self.stopping.is_set():
            polls += 1  # its own count (its len(self.seen) would read the reactor's list)
            value = polls
            time.sleep(0.02)  # an HTTP poll
            {record}

    def stopService(self):
        self.stopping.set()
        return threads.deferToThread(self.thread.join)


root = service.MultiService()
poller = PollerService()
poller.setServiceParent(root)
reactor.callWhenRunning(root.startService)
reactor.addSystemEventTrigger("before", "shutdown", root.stopService)
sizes = []
task.LoopingCall(lambda: sizes.append(len(poller.seen))).start(0.01)
reactor.callLater(0.1, reactor.stop)
reactor.run()
"""
APPENDED = "self.seen.append(value)  # BUG: the reactor's list, from the poller thread"
HANDED = "reactor.callFromThread(self.seen.append, value)"


def test_a_list_the_reactor_reads_appended_from_a_thread_is_a_race(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, POLLER.format(record=APPENDED)), "--races")
    assert_found_and_replayed(result, "threadcheck: violation: data race on poller.seen: write")
    assert "self.seen.append(value)" in result.stderr
    # Found on the first schedule, as happens-before finds a race: never called
    # "not an interleaving bug" (a schedule where the reactor stops before the
    # poller's first append has none).
    assert "not an interleaving bug" not in result.stderr.splitlines()[0]


def test_handed_to_the_reactor_it_is_none(tmp_path: Path) -> None:
    program = write_program(tmp_path, POLLER.format(record=HANDED))
    assert_clean(explore_program(program, "--races", "--budget", "500"), budget=500)


ECHO = """
from twisted.internet import protocol, reactor, threads
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol


class Upper(protocol.Protocol):
    def dataReceived(self, data):
        def work():
            reply = data.upper()  # the slow part, in a worker
            {reply}
        threads.deferToThread(work)


class Client(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"hello")

    def dataReceived(self, data):
        assert data == b"HELLO", data
        self.transport.loseConnection()
        reactor.callLater(0, reactor.stop)


def main():
    server = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    listening = server.listen(protocol.Factory.forProtocol(Upper))

    def connect(port):
        client = TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        return connectProtocol(client, Client())

    listening.addCallback(connect)


reactor.callWhenRunning(main)
reactor.callLater(5, reactor.stop)
reactor.run()
"""
WRITTEN = "self.transport.write(reply)  # BUG: from a worker thread"
CALLED_FROM_THREAD = "reactor.callFromThread(self.transport.write, reply)"


def test_a_transport_written_from_a_worker_over_real_sockets(tmp_path: Path) -> None:
    result = explore_program(
        write_program(tmp_path, ECHO.format(reply=WRITTEN)), "--budget", "100"
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: violation: transport.write called from thread")


def test_its_twin_over_real_sockets_ends_and_claims_no_proof(tmp_path: Path) -> None:
    # The reactor polls the sockets for real when no other thread can run: it
    # once let time pass "until now" for ever instead (24 GB, killed).
    program = write_program(tmp_path, ECHO.format(reply=CALLED_FROM_THREAD))
    result = explore_program(program, "--budget", "100")
    assert result.returncode == 0, result.stderr
    assert "no failure" in result.stderr
    assert "not a proof" in result.stderr and "real I/O" in result.stderr


# A listening socket open while a worker does blocking I/O (a sleep stands in)
# before it hands its result over; a safety timer far away.
LISTENING = """
import threading
import time

from twisted.internet import protocol, reactor

port = reactor.listenTCP(0, protocol.ServerFactory(), interface="127.0.0.1")


def fetch():
    time.sleep(0.05)
    {done}


reactor.callWhenRunning(lambda: threading.Thread(target=fetch).start())
reactor.callLater(10, reactor.stop)  # safety net
reactor.run()
"""


ROSTER = """
import os
import sys
import tempfile

from twisted.internet import protocol, reactor, task, threads

GUESTS = 3
ROSTER = os.path.join(tempfile.mkdtemp(prefix="roster-"), "online.txt")
errors = []
left = []


def write_roster(peers):
    with open(ROSTER + ".tmp", "w") as out:  # the disk: never in the reactor thread
        for peer in peers:
            out.write(peer + "\\n")
    os.replace(ROSTER + ".tmp", ROSTER)


class Member(protocol.Protocol):
    def connectionMade(self):
        self.peer = str(self.transport.getPeer().port)
        self.factory.members.add(self)

    def connectionLost(self, reason):
        self.factory.members.discard(self)


class Chat(protocol.ServerFactory):
    protocol = Member

    def __init__(self):
        self.members = set()


def snapshot(chat):
    peers = {peers}
    return threads.deferToThread(write_roster, peers).addErrback(errors.append)


class Guest(protocol.Protocol):
    def connectionMade(self):
        reactor.callLater(0.05 * (self.factory.n + 1), self.transport.loseConnection)

    def connectionLost(self, reason):
        left.append(self.factory.n)
        if len(left) == GUESTS:
            reactor.callLater(0.05, reactor.stop)


def main():
    chat = Chat()
    port = reactor.listenTCP(0, chat, interface="127.0.0.1")
    task.LoopingCall(snapshot, chat).start(0.01)
    for n in range(GUESTS):
        guests = protocol.ClientFactory.forProtocol(Guest)
        guests.n = n
        reactor.callLater(0.02 * n, reactor.connectTCP, "127.0.0.1", port.getHost().port, guests)
    reactor.callLater(20, reactor.stop)  # a safety net
    reactor.run()
    if errors:
        sys.exit(f"roster snapshot failed: {{errors[0].getErrorMessage()}}")
    if len(left) != GUESTS:
        sys.exit(f"only {{len(left)}} guests left")


main()
"""
WALKED_IN_THE_POOL = "(m.peer for m in chat.members)  # BUG: the pool thread walks the set"
WALKED_HERE = "[m.peer for m in chat.members]  # walked in the reactor thread"


def test_a_set_walked_by_a_pool_job_while_connections_come_is_found(tmp_path: Path) -> None:
    # Z50: the reactor handled what landed on its sockets only once no other
    # thread could run, so never while a pool job walked its members (2,000
    # schedules, "no failure seen": plain runs of this program fail).
    program = write_program(tmp_path, ROSTER.format(peers=WALKED_IN_THE_POOL))
    result = explore_program(program, "--budget", "200")
    assert_found_and_replayed(
        result,
        "threadcheck: exit: the program exited with status 1: roster snapshot failed: "
        "Set changed size during iteration",
    )


def test_its_twin_walking_the_set_in_the_reactor_thread_is_clean(tmp_path: Path) -> None:
    program = write_program(tmp_path, ROSTER.format(peers=WALKED_HERE))
    result = explore_program(program, "--budget", "200")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("threadcheck: 200 schedules ("), result.stderr
    assert "no failure seen, which is not a proof" in result.stderr


def test_a_worker_stopping_the_reactor_itself_beside_a_socket(tmp_path: Path) -> None:
    done = "reactor.stop()  # BUG: from the worker"
    result = explore_program(
        write_program(tmp_path, LISTENING.format(done=done)), "--budget", "20"
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: violation: reactor.stop called from thread")


def test_its_twin_s_sleep_ends_while_the_reactor_polls_its_socket(tmp_path: Path) -> None:
    # The reactor polled the socket until its safety timer, the worker's sleep
    # never ended: "uncontrolled-blocking" after 10 s, on a correct program.
    done = "reactor.callFromThread(reactor.stop)"
    result = explore_program(
        write_program(tmp_path, LISTENING.format(done=done)), "--budget", "20"
    )
    assert result.returncode == 0, result.stderr
    assert "no failure" in result.stderr and "real I/O" in result.stderr


CHILD = """
import sys

from twisted.internet import protocol, reactor, threads

ECHO_STDIN = "import sys; sys.stdout.write(sys.stdin.read())"


class Cat(protocol.ProcessProtocol):
    def __init__(self):
        self.out = b""

    def connectionMade(self):
        threads.deferToThread(self.feed)

    def feed(self):
        line = b"ping\\n"  # read from a file, in the real service
        {feed}
        reactor.callFromThread(self.transport.closeStdin)

    def outReceived(self, data):
        self.out += data

    def processEnded(self, reason):
        assert self.out == b"ping\\n", self.out
        reactor.stop()


reactor.spawnProcess(Cat(), sys.executable, [sys.executable, "-c", ECHO_STDIN], env=None)
reactor.run()
"""


def test_a_child_process_written_from_a_worker(tmp_path: Path) -> None:
    feed = "self.transport.write(line)  # BUG: from a worker thread"
    result = explore_program(write_program(tmp_path, CHILD.format(feed=feed)), "--budget", "50")
    assert_found_and_replayed(
        result, "threadcheck: violation: process.write called from thread 'PoolThread-"
    )
    assert "at service.py:18 in feed in thread 'PoolThread-" in result.stderr


def test_its_twin_waits_for_the_child_and_ends(tmp_path: Path) -> None:
    feed = "reactor.callFromThread(self.transport.write, line)"
    result = explore_program(write_program(tmp_path, CHILD.format(feed=feed)), "--budget", "50")
    assert result.returncode == 0, result.stderr
    assert "no failure" in result.stderr and "not a proof" in result.stderr


SELF_FETCH = """
import urllib.request

from twisted.internet import defer, endpoints, reactor, threads
from twisted.web import resource, server


class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello"


def fetch(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{{port}}/", timeout=5) as response:
        body = response.read()
    {after}
    return body


async def main():
    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = await endpoint.listen(server.Site(Hello()))
    body = await threads.deferToThread(fetch, port.getHost().port)
    assert body == b"hello", body
    await port.stopListening()


def run():
    done = defer.ensureDeferred(main()).addErrback(failed.append)
    done.addBoth(lambda _: reactor.stop())


failed = []
reactor.callWhenRunning(run)
reactor.run()
if failed:
    failed[0].raiseException()
"""


def test_a_job_fetching_from_its_own_server_calling_the_reactor_is_found(tmp_path: Path) -> None:
    after = "reactor.callLater(60, print, 'refresh')  # BUG: from a worker thread"
    result = explore_program(write_program(tmp_path, SELF_FETCH.format(after=after)))
    assert_found_and_replayed(
        result, "threadcheck: violation: reactor.callLater called from thread 'PoolThread-"
    )


def test_its_twin_lets_the_reactor_answer_while_the_job_waits(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, SELF_FETCH.format(after="pass")))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "no failure" in result.stderr and "real I/O" in result.stderr


RUN_THEN_RAISE = """

failed = []
reactor.callWhenRunning(main)
reactor.run()
if failed:
    failed[0].raiseException()
"""
"""A program's end: run its main, then raise what failed in it."""

THUMBNAILER = (
    """
import subprocess
import threading

from twisted.internet import defer, reactor, threads

lock = threading.Lock()
converting = set()
made = []


def thumbnail(image):
    {claim}
    result = subprocess.run(["echo", image], capture_output=True, timeout=30, check=True)
    made.append(image)
    return result.stdout.decode().strip()


def main():
    # The same image asked for twice at once: it must be converted once.
    jobs = [threads.deferToThread(thumbnail, "cat.png") for _ in range(2)]
    done = defer.gatherResults(jobs).addErrback(failed.append)
    done.addBoth(lambda _: reactor.stop())

"""
    + RUN_THEN_RAISE
    + """assert made == ["cat.png"], f"converted {{len(made)}} times"
"""
)
UNCLAIMED = """if image in converting:  # BUG: looked at, then claimed, without the lock
        return "already converting"
    converting.add(image)"""
CLAIMED = """with lock:
        if image in converting:
            return "already converting"
        converting.add(image)"""


def test_a_conversion_claimed_without_a_lock_runs_twice(tmp_path: Path) -> None:
    # Pool jobs that shell out (subprocess.run) once failed the first schedule:
    # "waits on a child process: not controlled". The child is waited for off
    # the turn now, and the threads wake in the order they began to wait.
    result = explore_program(write_program(tmp_path, THUMBNAILER.format(claim=UNCLAIMED)))
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: converted 2 times")
    assert "shrunk to 1" in result.stderr


def test_its_locked_twin_shells_out_on_every_schedule(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, THUMBNAILER.format(claim=CLAIMED)))
    assert_clean(result)


CONVERSIONS = (
    """
import subprocess
import threading

from twisted.internet import defer, reactor, threads


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.converted = 0


stats = Stats()


def convert(name):
    out = subprocess.run(["echo", name], capture_output=True, timeout=30, check=True).stdout
    {count}
    return out.strip()


def main():
    jobs = [threads.deferToThread(convert, name) for name in ("a.png", "b.png")]
    done = defer.gatherResults(jobs).addErrback(failed.append)
    done.addBoth(lambda _: reactor.stop())

"""
    + RUN_THEN_RAISE
    + """assert stats.converted == 2, f"counted {{stats.converted}} conversions"
"""
)


def test_a_count_lost_while_the_other_child_ends_is_found(tmp_path: Path) -> None:
    # Only a worker held between its load and its store while the other's child
    # ends loses the count: the end of a child process is a choice of time
    # passing, as a sleep's end is.
    count = "stats.converted += 1  # BUG: two workers, no lock"
    result = explore_program(write_program(tmp_path, CONVERSIONS.format(count=count)))
    assert_found_and_replayed(
        result, "threadcheck: exception: AssertionError: counted 1 conversions"
    )
    assert "(a real child process) ends; T" in result.stderr


def test_its_locked_twin_counts_every_conversion(tmp_path: Path) -> None:
    count = "with stats.lock:\n        stats.converted += 1"
    result = explore_program(write_program(tmp_path, CONVERSIONS.format(count=count)))
    assert_clean(result)


SHIPPER = (
    """
import os
import select

from twisted.internet import defer, reactor, threads


class Stats:
    shipped = 0


stats = Stats()
read_end, write_end = os.pipe()


def produce():
    for n in range(3):
        os.write(write_end, b"record %d\\n" % n)
    os.close(write_end)


def ship():
    records = 0
    while True:
        ready, _, _ = select.select([read_end], [], [], 3.0)  # a generous safety timeout
        if not ready:
            raise TimeoutError("no record for 3 s")
        chunk = os.read(read_end, 4096)
        if not chunk:
            break
        records += chunk.count(b"\\n")
    os.close(read_end)
    {count}
    return records


def replayed_backlog():
    stats.shipped += 100


def main():
    shipped = threads.deferToThread(ship)
    {counted}
    jobs = [shipped, threads.deferToThread(produce)]
    reactor.callLater(0, replayed_backlog)
    defer.gatherResults(jobs).addErrback(failed.append).addBoth(lambda _: reactor.stop())

"""
    + RUN_THEN_RAISE
    + """assert stats.shipped == 103, f"shipped {{stats.shipped}}"
"""
)


def test_a_count_kept_by_a_job_waiting_in_select_races_the_reactor(tmp_path: Path) -> None:
    # select() held the turn: the job writing the pipe never ran, and the
    # reader timed out on every schedule of the correct twin too.
    program = SHIPPER.format(count="stats.shipped += records  # BUG: in a pool thread", counted="")
    result = explore_program(write_program(tmp_path, program))
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: shipped ")


def test_its_twin_counting_in_the_reactor_waits_for_the_writer(tmp_path: Path) -> None:
    counted = "shipped.addCallback(lambda n: setattr(stats, 'shipped', stats.shipped + n))"
    program = SHIPPER.format(count="", counted=counted)
    result = explore_program(write_program(tmp_path, program))
    assert result.returncode == 0, result.stderr
    assert "no failure" in result.stderr


# A TTL cache: entries expire on a callLater, a pool job refreshes them. The
# failure needs two preemptions (the refresher's look, then the expiry between
# its read and its write); the first failing schedule has five, and dropping
# them one at a time got stuck at four, with two inside Twisted's internals.
TTL_CACHE = """
import sys
import threading

from twisted.internet import defer, reactor, task, threads


class TTLCache:
    def __init__(self, ttl):
        self.ttl = ttl
        self.data = {{}}
        self.lock = threading.Lock()

    def put(self, key, value):
        with self.lock:
            self.data[key] = value
        reactor.callFromThread(reactor.callLater, self.ttl, self.expire, key)

    def expire(self, key):
        {expire}

    def refresh(self, key):
        {refresh}


cache = TTLCache(0.5)


def refresher(key):
    import time
    time.sleep(0.5)
    return cache.refresh(key)


@defer.inlineCallbacks
def main():
    yield threads.deferToThread(cache.put, "a", 1)
    yield threads.deferToThread(refresher, "a")
    yield task.deferLater(reactor, 1, lambda: None)


main().addBoth(lambda _: reactor.stop())
reactor.run()
if cache.data:
    sys.exit(f"entry survived TTL: {{cache.data}}")
"""
EXPIRE_RACY = "if key in self.data:\n            del self.data[key]  # BUG: no lock"
REFRESH_RACY = (
    "if key in self.data:\n            value = self.data[key]\n"
    "            self.data[key] = value + 1  # BUG: no lock"
)
EXPIRE_LOCKED = "with self.lock:\n            self.data.pop(key, None)"
REFRESH_LOCKED = (
    "with self.lock:\n            if key in self.data:\n                self.data[key] += 1"
)


def test_a_failure_is_shrunk_to_its_fewest_preemptions(tmp_path: Path) -> None:
    program = TTL_CACHE.format(expire=EXPIRE_RACY, refresh=REFRESH_RACY)
    result = explore_program(write_program(tmp_path, program))
    assert_found_and_replayed(
        result, "threadcheck: exit: the program exited with status 1: entry survived TTL"
    )
    assert "; shrunk to 2\n" in result.stderr, result.stderr.splitlines()[1]


def test_its_locked_twin_is_clean(tmp_path: Path) -> None:
    program = TTL_CACHE.format(expire=EXPIRE_LOCKED, refresh=REFRESH_LOCKED)
    result = explore_program(write_program(tmp_path, program))
    assert result.returncode == 0, result.stderr
    assert "no failure" in result.stderr


# Six pool jobs that poll a backend with jittered sleeps, a daemon heartbeat
# reading the stats under their lock, and one job (the planted bug) counting
# its success without the lock. The random walk finds it after some 200
# preemptions, of which one or two matter.
JITTERED_JOBS = """
import random, sys, threading, time, uuid
from twisted.internet import defer, reactor, threads

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.ids = {{}}

stats = Stats()

def job(n):
    rng = random.Random()
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:  # poll the backend, with jitter
        time.sleep(rng.random() * 0.01)
        if rng.random() < 0.5:
            break
    rid = uuid.uuid4().hex
    with stats.lock:
        stats.ids[rid] = n
    {count}

def beat(stop):
    while not stop.wait(0.003):
        with stats.lock:
            len(stats.ids)

def main():
    stop = threading.Event()
    threading.Thread(target=beat, args=(stop,), daemon=True).start()
    reactor.getThreadPool().adjustPoolsize(6, 6)
    jobs = [threads.deferToThread(job, i) for i in range(6)]

    def done(_):
        stop.set()
        reactor.stop()

    defer.gatherResults(jobs).addCallback(done)

reactor.callWhenRunning(main)
reactor.run()
if stats.ok != 6:
    sys.exit(f"lost update: {{stats.ok}} of 6 counted")
"""
COUNT_RACY = "if n == 3:\n        stats.ok += 1  # BUG: without the lock\n    else:\n" + (
    "        with stats.lock:\n            stats.ok += 1"
)
COUNT_LOCKED = "with stats.lock:\n        stats.ok += 1"


def test_a_long_random_walks_failure_is_shrunk_to_a_few_preemptions(tmp_path: Path) -> None:
    # Shrinking dropped preemptions by their decision's index: dropping one
    # moved what every later index meant, and this kept 67 of 275 (now 10: a
    # few early ones decide which job draws which jitter).
    result = explore_program(write_program(tmp_path, JITTERED_JOBS.format(count=COUNT_RACY)))
    assert_found_and_replayed(
        result, "threadcheck: exit: the program exited with status 1: lost update: 5 of 6 counted"
    )
    found = result.stderr.splitlines()[1]
    preemptions = [int(word) for word in found.replace(";", " ").split() if word.isdigit()]
    assert preemptions[-2] > 50 and preemptions[-1] <= 12, found


def test_the_jittered_jobs_locked_twin_is_clean(tmp_path: Path) -> None:
    # Eight threads: 300 schedules (the racy one fails by schedule 60) keep it a minute shorter.
    program = write_program(tmp_path, JITTERED_JOBS.format(count=COUNT_LOCKED))
    assert_clean(explore_program(program, "--budget", "300"), budget=300)


# An adbapi pool of two SQLite connections; each interaction reads a counter,
# then writes it back plus one (the planted bug), or adds one in SQL (its twin).
ADBAPI_COUNTER = """
import os, sys, tempfile
from twisted.enterprise import adbapi
from twisted.internet import defer, reactor

pool = adbapi.ConnectionPool(
    "sqlite3", os.path.join(tempfile.mkdtemp(), "views.db"),
    check_same_thread=False, cp_min=2, cp_max=2,
)

def setup(txn):
    txn.execute("CREATE TABLE views (n INTEGER)")
    txn.execute("INSERT INTO views VALUES (0)")

def count_view(txn):
    {count}

@defer.inlineCallbacks
def main():
    yield pool.runInteraction(setup)
    yield defer.gatherResults([pool.runInteraction(count_view) for _ in range(2)])
    rows = yield pool.runQuery("SELECT n FROM views")
    pool.close()
    return rows[0][0]

seen = []
main().addBoth(lambda n: (seen.append(n), reactor.stop()))
reactor.run()
if seen != [2]:
    sys.exit(f"lost update: {{seen}}")
"""
COUNT_READ_THEN_WRITE = (
    'txn.execute("SELECT n FROM views")\n    (n,) = txn.fetchone()\n'
    '    txn.execute("UPDATE views SET n = ?", (n + 1,))  # BUG: two connections'
)
COUNT_IN_SQL = 'txn.execute("UPDATE views SET n = n + 1")'


@pytest.mark.parametrize("strategy", ["portfolio", "dpor"])
def test_a_lost_update_through_adbapi_interactions_is_found(tmp_path: Path, strategy: str) -> None:
    # adbapi's Transaction was taken for one of Twisted's reactor-side objects:
    # its execute() was no point, and dpor "proved" the program correct.
    program = write_program(tmp_path, ADBAPI_COUNTER.format(count=COUNT_READ_THEN_WRITE))
    result = explore_program(program, "--strategy", strategy, "--budget", "1000")
    assert_found_and_replayed(
        result, "threadcheck: exit: the program exited with status 1: lost update: [1]"
    )


def test_the_adbapi_counter_counted_in_sql_is_clean(tmp_path: Path) -> None:
    program = write_program(tmp_path, ADBAPI_COUNTER.format(count=COUNT_IN_SQL))
    assert_clean(explore_program(program, "--budget", "300"), budget=300)


# An installed scheduling library that keeps the reactor it first saw, as
# APScheduler's TwistedScheduler() and txaio do.
KEEPS_ITS_REACTOR = """
_reactor = None

def call_later(delay, f, *args):
    global _reactor
    if _reactor is None:
        from twisted.internet import reactor as _reactor
    return _reactor.callLater(delay, f, *args)
"""
SCHEDULED_JOB = """
import sys
from twisted.internet import reactor, threads
import tickets

ran = []

def job():
    tickets.call_later(0, ran.append, 1)  # BUG: callLater from a pool thread

threads.deferToThread(job)
reactor.callLater(0.5, reactor.stop)
reactor.run()
"""


# buildbot.util.twisted.ThreadPool's shape: a pool that stops itself at the
# shutdown of the reactor its module bound when imported. In later schedules the
# trigger went to a reactor no schedule runs, the pool's thread was never
# stopped: "deadlock ... on join of T1 at exit, not an interleaving bug".
STOPS_AT_SHUTDOWN = """
from twisted.internet import reactor
from twisted.python import threadpool

class ThreadPool(threadpool.ThreadPool):
    def start(self):
        super().start()
        reactor.addSystemEventTrigger("during", "shutdown", self.stop)
"""
DB_JOBS = """
from twisted.internet import reactor, threads
import dbpool

pool = dbpool.ThreadPool(1, 1, name="DBThreadPool")
pool.start()
threads.deferToThreadPool(reactor, pool, sum, [1, 2]).addBoth(lambda _: reactor.stop())
reactor.run()
"""


# Its calls went to the warm-up run's reactor, which no schedule ran: the job
# never ran, and explore said "every interleaving explored"; the pool's stop,
# a false deadlock at exit.
EARLIER_RUNS_REACTOR = {
    "callLater": (
        "tickets",
        KEEPS_ITS_REACTOR,
        SCHEDULED_JOB,
        "tickets.py:8 in call_later",
        "_reactor",
    ),
    "addSystemEventTrigger": (
        "dbpool",
        STOPS_AT_SHUTDOWN,
        DB_JOBS,
        "dbpool.py:8 in start",
        "reactor",
    ),
}


@pytest.mark.parametrize("api", sorted(EARLIER_RUNS_REACTOR))
def test_a_library_keeping_an_earlier_runs_reactor_is_a_usage_error(
    tmp_path: Path, api: str
) -> None:
    name, library, program, where, kept_in = EARLIER_RUNS_REACTOR[api]
    result = explore_with_library(tmp_path, name, library, program)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(
        f"threadcheck: reactor.{api} was given work on the reactor of an earlier schedule"
    ), result.stderr
    # Where, as paths are shown (relative to the working directory when under it).
    assert f"{where} ({name}), which no schedule runs again" in result.stderr
    assert f"the global {name}.{kept_in} keeps it, set in an earlier schedule" in result.stderr


# APScheduler's TwistedScheduler() without reactor=: the scheduler is made
# anew in every run, from the reactor its module bound when first imported.
# The report blamed the scheduler, "made in an earlier schedule" (it is not),
# and told to make one per run (the program does).
KEEPS_A_DEFAULT = """
from twisted.internet import reactor as default_reactor

class Scheduler:
    def __init__(self, reactor=None):
        self._reactor = reactor or default_reactor

    def add_job(self, f):
        self._reactor.callFromThread(f)
"""
MAKES_ONE_PER_RUN = """
from twisted.internet import reactor
import jobs

sched = jobs.Scheduler()
reactor.callWhenRunning(sched.add_job, print)
reactor.callLater(0.1, reactor.stop)
reactor.run()
"""


def test_a_global_default_reactor_is_named_not_the_object_given_it(tmp_path: Path) -> None:
    result = explore_with_library(tmp_path, "jobs", KEEPS_A_DEFAULT, MAKES_ONE_PER_RUN)
    assert result.returncode == 2, result.stderr
    assert (
        "which no schedule runs again: the global jobs.default_reactor keeps it, set in an "
        "earlier schedule; give it the reactor of each run"
    ) in result.stderr, result.stderr


# treq's shape: a process-wide connection pool, made with the first reactor it
# was given and kept in a module's list. The message named no culprit and
# told to pass reactor=reactor, which the program did.
KEEPS_A_POOL = """
class Pool:
    def __init__(self, reactor):
        self._reactor = reactor

    def release_later(self):
        self._reactor.callLater(60, print, "idle connection closed")

_global_pool = [None]

def get(reactor):
    if _global_pool[0] is None:
        _global_pool[0] = Pool(reactor)
    _global_pool[0].release_later()
"""
USES_THE_POOL = """
from twisted.internet import reactor
import fetcher

reactor.callWhenRunning(fetcher.get, reactor)
reactor.callLater(0.1, reactor.stop)
reactor.run()
"""


def test_an_object_keeping_an_earlier_runs_reactor_is_named(tmp_path: Path) -> None:
    result = explore_with_library(tmp_path, "fetcher", KEEPS_A_POOL, USES_THE_POOL)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        "which no schedule runs again: a fetcher.Pool keeps it (its _reactor), held by "
        "fetcher._global_pool[0], made in an earlier schedule; make one per run, with the "
        "reactor of that run, or check this with `threadcheck run`"
    ), result.stderr


# klein's shape beside treq's: a web framework's module binds the reactor at
# import (`from twisted.internet import reactor`, used only by its run()). Its
# global, of an earlier schedule too, was named for the pool's call, and the
# pool was never mentioned (every klein and treq service).
BINDS_AT_IMPORT = """
from twisted.internet import reactor  # only its run() uses it
"""
USES_BOTH = """
from twisted.internet import reactor
import webapp, fetcher

reactor.callWhenRunning(fetcher.get, reactor)
reactor.callLater(0.1, reactor.stop)
reactor.run()
"""


def test_the_object_whose_call_it_is_is_named_before_another_modules_global(
    tmp_path: Path,
) -> None:
    with_library(tmp_path, "webapp", BINDS_AT_IMPORT)
    result = explore_with_library(tmp_path, "fetcher", KEEPS_A_POOL, USES_BOTH)
    assert result.returncode == 2, result.stderr
    assert "keeps it (its _reactor), held by fetcher._global_pool[0]" in result.stderr
    assert "webapp" not in result.stderr, result.stderr


# txaio's shape (Z48): an API object whose config, a module's global, keeps
# the loop it first found; a server module beside it binds the reactor at
# import. The server module was named, then, once fixed, the config was, told
# to "make one per run" (a library's config object: its loop is set instead).
KEEPS_A_LOOP = """
class _Config:
    loop = None

config = _Config()

class _Api:
    def __init__(self, config):
        self._config = config

    def _get_loop(self):
        if self._config.loop is None:
            from twisted.internet import reactor
            self._config.loop = reactor
        return self._config.loop

    def call_later(self, delay, f):
        return self._get_loop().callLater(delay, f)

call_later = _Api(config).call_later
"""
USES_THE_LOOP = """
from twisted.internet import reactor
import webapp, asyncapi

reactor.callWhenRunning(asyncapi.call_later, 0, print)
reactor.callLater(0.1, reactor.stop)
reactor.run()
"""


def test_an_object_held_by_the_callers_attribute_is_named_with_its_fix(tmp_path: Path) -> None:
    with_library(tmp_path, "webapp", BINDS_AT_IMPORT)
    result = explore_with_library(tmp_path, "asyncapi", KEEPS_A_LOOP, USES_THE_LOOP)
    assert result.returncode == 2, result.stderr
    assert (
        "an asyncapi._Config keeps it (its loop), held by asyncapi.config, made in an earlier"
        " schedule; make one per run, with the reactor of that run, or set"
        " asyncapi.config.loop = reactor in each run"
    ) in result.stderr, result.stderr
    assert "webapp" not in result.stderr, result.stderr


CROCHET_PROGRAM = """
import crochet
crochet.setup()
from twisted.internet import reactor

@crochet.wait_for(timeout=5)
def schedule_ping():
    return reactor.callLater(0, print, "ping") and None

schedule_ping()
"""


@pytest.mark.parametrize(
    ("called", "said"),
    [
        ("setup", "runs Twisted through crochet (crochet.setup()): its reactor runs in"),
        # It was said to run its reactor in crochet's thread: it runs its own.
        ("no_setup", "uses crochet (crochet.no_setup()): its wait_for and run_in_reactor"),
    ],
)
def test_a_crochet_program_is_refused_in_one_line(tmp_path: Path, called: str, said: str) -> None:
    # It waited 10 s, then reported crochet's log writer thread "blocked
    # outside the scheduler's control", a failure, on correct programs too.
    program = CROCHET_PROGRAM.replace("crochet.setup()", f"crochet.{called}()")
    result = explore_program(write_program(tmp_path, program), "--budget", "5")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"threadcheck: the program {said}"), result.stderr
    assert result.stderr.count("\n") == 1


# Two pool jobs read a quota, ask a remote service (200 ms) through the reactor,
# and write it back: on the no-preemption schedule both read before either
# writes. A schedule where the second job starts late (time passes while it is
# held) keeps the update, so the failure is an interleaving bug: it was called
# "not an interleaving bug" since the few random schedules tried never held a
# thread while time passed.
QUOTA = """\
from twisted.internet import defer, reactor, task, threads
from twisted.internet.threads import blockingCallFromThread

class Quota:
    def __init__(self):
        self.used = 0

quota = Quota()
lost = []

def check_remote(user):
    return task.deferLater(reactor, 0.2, lambda: 1).addTimeout(3, reactor)

def job(user):
    used = quota.used
    cost = blockingCallFromThread(reactor, check_remote, user)
    quota.used = used + cost  # BUG: both jobs may read the same 'used'

def check(_):
    if quota.used != 2:
        lost.append(quota.used)

def main():
    jobs = [threads.deferToThread(job, user) for user in ("alice", "bob")]
    defer.gatherResults(jobs).addCallback(check).addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(main)
reactor.run()
if lost:
    raise SystemExit(f"lost update: {lost}")
"""


def test_a_lost_update_a_late_start_avoids_is_an_interleaving_bug(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, QUOTA))
    assert_found_and_replayed(result, "threadcheck: exit: the program exited with status 1")
    assert "not an interleaving bug" not in result.stderr


# A pool job's error kept as a Failure and raised again by the main thread once
# the reactor stopped: the headline put the job's line "in MainThread".
REPLY_PARSER = """\
from twisted.internet import reactor, threads

def parse_reply(reply):
    return reply["token"]

out = []
threads.deferToThread(parse_reply, {"error": "denied"}).addBoth(
    lambda result: (out.append(result), reactor.stop())
)
reactor.run()
if not isinstance(out[0], str):
    out[0].raiseException()
"""


def test_a_failure_raised_again_says_where(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, REPLY_PARSER), "--budget", "2")
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines()[2] == (
        "  at service.py:4 in parse_reply (raised again at service.py:12 in <module>) "
        "in thread 'MainThread'"
    )


# The program's own module registers an adapter as it is imported, a common
# Twisted idiom; each schedule imports it afresh, and the registration of the
# schedule before made it fail: "an adapter ... was already registered", on
# every schedule ("not an interleaving bug") of a correct program.
JOB_CONFIG = """\
from twisted.python.components import registerAdapter
from zope.interface import Interface, implementer

class IConfigured(Interface):
    def as_dict():
        "the configuration"

@implementer(IConfigured)
class Configured:
    def __init__(self, value):
        self.value = value

    def as_dict(self):
        return {"jobs": self.value}

registerAdapter(Configured, int, IConfigured)
"""
CONFIGURED_JOBS = """\
import threading
from twisted.internet import reactor, threads
from twisted.internet.defer import gatherResults
import jobconfig

counter = {"n": 0}
lock = threading.Lock()

def work():
    LOCKED
    return jobconfig.IConfigured(counter["n"]).as_dict()

gatherResults([threads.deferToThread(work), threads.deferToThread(work)]).addBoth(
    lambda _: reactor.stop()
)
reactor.run()
assert counter["n"] == 2, counter
"""


@pytest.mark.parametrize("locked", [True, False], ids=["locked", "lost-update"])
def test_an_adapter_the_program_registers_at_import_is_its_own_each_schedule(
    tmp_path: Path, locked: bool
) -> None:
    (tmp_path / "jobconfig.py").write_text(JOB_CONFIG)
    count = 'with lock:\n        counter["n"] += 1' if locked else 'counter["n"] += 1'
    program = write_program(tmp_path, CONFIGURED_JOBS.replace("LOCKED", count))
    result = explore_program(program, "--budget", "300")
    if locked:
        assert_clean(result, 300)
    else:
        assert_found_and_replayed(result, "threadcheck: exception: AssertionError: {'n': 1}")
