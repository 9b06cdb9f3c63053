"""Quality: time passes while a thread is held. On a real machine a preempted
thread loses tens of milliseconds, and meanwhile a sleep ends, a timeout fires
or a timer comes due; the explorer lets time pass as one of its choices, for at
most ``max_delay`` (1 s). Each planted bug below needs such a hold: found
within 2,000 schedules by the default strategy and replayed in a fresh
process; each fixed twin is clean over 2,000 schedules."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import assert_clean, assert_found_and_replayed, explore_program, write_program

pytestmark = [pytest.mark.quality, pytest.mark.slow]

# Two pool jobs; the CPU-only one was submitted first, the other does a quick
# blocking call. The code assumes the first submitted finishes first.
ORDER = """
import time
from twisted.internet import defer, reactor, threads

order = []

def index_cache():  # CPU only
    order.append("index")

def fetch_remote():
    time.sleep(0.01)  # a quick network call
    order.append("fetch")

def main():
    indexed = threads.deferToThread(index_cache)
    {fetched}
    defer.gatherResults([indexed, fetched]).addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(main)
reactor.run()
assert order == ["index", "fetch"], f"order {{order}}"
"""
ORDER_BUG = "fetched = threads.deferToThread(fetch_remote)  # BUG: races the index"
ORDER_FIX = "fetched = indexed.addCallback(lambda _: threads.deferToThread(fetch_remote))"

# A query with a timeout: the timer errbacks the result, then the late answer
# from the pool callbacks it again.
TIMEOUT = """
import time
from twisted.internet import defer, reactor, threads

def query():
    time.sleep(0.2)  # the database client blocks
    return ["row"]

def query_with_timeout(timeout):
    result = defer.Deferred()
    timer = reactor.callLater(timeout, result.errback, defer.TimeoutError("query"))

    def answered(rows):
        if timer.active():
            timer.cancel()
        {deliver}

    threads.deferToThread(query).addCallback(answered)
    return result

outcomes = []

def main():
    answer = query_with_timeout({timeout})
    answer.addCallbacks(outcomes.append, lambda failure: outcomes.append("timed out"))
    answer.addBoth(lambda _: reactor.callLater(1.0, reactor.stop))  # a late answer comes

reactor.callWhenRunning(main)
reactor.run()
assert len(outcomes) == 1, outcomes
"""
TIMEOUT_BUG = "result.callback(rows)  # BUG: the timer may have fired"
TIMEOUT_FIX = "if not result.called:\n            result.callback(rows)"

# Images resized in the pool; the reactor is stopped after a grace period
# instead of after the results.
GRACE = """
import time
from twisted.internet import defer, reactor, threads

processed = []

def resize(name):
    time.sleep(0.01)  # reads the file
    return name.upper()

def submit_all():
    jobs = [threads.deferToThread(resize, name) for name in ("a.png", "b.png", "c.png")]
    for job in jobs:
        job.addCallback(processed.append)
    {stop}

reactor.callWhenRunning(submit_all)
reactor.run()
assert len(processed) == 3, f"processed {{processed}}"
"""
GRACE_BUG = "reactor.callLater(0.1, reactor.stop)  # BUG: a grace period, not the results"
GRACE_FIX = "defer.gatherResults(jobs).addBoth(lambda _: reactor.stop())"

# A shipper thread polls the reactor's log buffer: it reads the length, ships
# that many lines, then empties the buffer.
POLLER = """
import threading
import time
from twisted.internet import reactor, task

buffer = []  # the reactor appends
produced = []
shipped = []

def produce():
    line = f"line {{len(produced)}}"
    produced.append(line)
    buffer.append(line)

def ship():
    deadline = time.monotonic() + 0.3
    while time.monotonic() < deadline:
        time.sleep(0.05)
        count = len(buffer)
        shipped.extend(buffer[:count])
        {drop}

shipper = threading.Thread(target=ship, name="shipper")
task.LoopingCall(produce).start(0.03)
reactor.callWhenRunning(shipper.start)
reactor.callLater(0.35, reactor.stop)
reactor.run()
shipper.join()
assert shipped + buffer == produced, f"lost {{sorted(set(produced) - set(shipped + buffer))}}"
"""
POLLER_BUG = "del buffer[:]  # BUG: lines appended since len() are dropped"
POLLER_FIX = "del buffer[:count]"

# A worker warms a routing cache; the first request is served from a timer,
# assuming the worker has long finished.
LATE = """
from twisted.internet import reactor, threads

routes = {{}}

def warm_routes():  # CPU only: parse the configuration
    routes["/"] = "index"

def serve_first_request():
    assert routes.get("/") == "index", f"routes {{routes}}"

def main():
    {start}
    reactor.callLater(0.3, reactor.stop)

reactor.callWhenRunning(main)
reactor.run()
"""
LATE_BUG = (
    "reactor.callInThread(warm_routes)\n"
    "    reactor.callLater(0.05, serve_first_request)  # BUG: the worker may start late"
)
LATE_FIX = (
    "warmed = threads.deferToThread(warm_routes)\n"
    "    warmed.addCallback(lambda _: reactor.callLater(0.05, serve_first_request))"
)

# A request tracker's reaper drops requests older than half a second, by
# datetime.now(), as services time out clients; the render in the pool is held.
REAPER = """
import time
from datetime import datetime, timedelta
from twisted.internet import reactor, task, threads

STALE = timedelta(seconds=0.5)
inflight = {{}}  # request id -> when it started

def reap_stale():
    now = datetime.now()
    for rid, started in list(inflight.items()):
        if now - started > STALE:
            del inflight[rid]  # its client gave up long ago

def render(rid):
    time.sleep(0.2)  # the template engine reads from disk
    return f"page {{rid}}"

def finished(page, rid):
    {finish}
    return page

def main():
    reaper = task.LoopingCall(reap_stale)
    reaper.start(0.25, now=False)
    inflight[1] = datetime.now()
    rendered = threads.deferToThread(render, 1).addCallback(finished, 1)

    def stop(result):
        reaper.stop()
        reactor.stop()
        return result

    rendered.addBoth(stop)

reactor.callWhenRunning(main)
reactor.run()
"""
REAPER_BUG = "del inflight[rid]  # BUG: the reaper may have dropped it"
REAPER_FIX = "inflight.pop(rid, None)  # the reaper may have dropped it"

SHAPES = {
    "order": (ORDER, ORDER_BUG, ORDER_FIX, "exception: AssertionError: order ['fetch', 'index']"),
    "timeout": (
        TIMEOUT.replace("{timeout}", "0.5"),
        TIMEOUT_BUG,
        TIMEOUT_FIX,
        "unhandled-error: Unhandled error in Deferred: AlreadyCalledError\n",
    ),
    "grace": (GRACE, GRACE_BUG, GRACE_FIX, "exception: AssertionError: processed ["),
    "poller": (POLLER, POLLER_BUG, POLLER_FIX, "exception: AssertionError: lost ['line "),
    "reaper": (
        REAPER,
        REAPER_BUG,
        REAPER_FIX,
        "unhandled-error: Unhandled error in Deferred: KeyError: 1\n",
    ),
    "late": (
        LATE,
        LATE_BUG,
        LATE_FIX,
        "unhandled-error: while handling timed call: AssertionError: routes {}\n",
    ),
}
"""Shape -> (program, planted bug, fix, the failure's headline after ``threadcheck: ``).
Also read by tests/benchmarks/find_rate.py."""

_PLACEHOLDER = {
    "order": "fetched",
    "timeout": "deliver",
    "grace": "stop",
    "poller": "drop",
    "late": "start",
    "reaper": "finish",
}


def program(shape: str, fixed: bool) -> str:
    """The shape's program with its bug planted, or fixed."""
    text, bug, fix, _ = SHAPES[shape]
    return text.format(**{_PLACEHOLDER[shape]: fix if fixed else bug})


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_a_bug_that_needs_a_held_thread_is_found_and_replayed(tmp_path: Path, shape: str) -> None:
    result = explore_program(write_program(tmp_path, program(shape, fixed=False)))
    assert_found_and_replayed(result, "threadcheck: " + SHAPES[shape][3])
    assert "time passed while threads could run: T" in result.stderr
    assert any("<- time +" in line and " held" in line for line in result.stderr.splitlines())


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_its_fixed_twin_is_clean(tmp_path: Path, shape: str) -> None:
    assert_clean(explore_program(write_program(tmp_path, program(shape, fixed=True))))


def test_a_safety_timeout_beyond_max_delay_never_fires(tmp_path: Path) -> None:
    # The same unguarded callback behind a 5 s timeout: a thread held that
    # long is stuck, not preempted; no schedule holds one beyond 1 s.
    text = TIMEOUT.replace("{timeout}", "5.0").format(deliver=TIMEOUT_BUG)
    assert_clean(explore_program(write_program(tmp_path, text)))


def test_without_time_passing_the_planted_bugs_hide(tmp_path: Path) -> None:
    # --max-delay 0: time passes only when every thread waits, as before.
    result = explore_program(
        write_program(tmp_path, program("late", fixed=False)), "--max-delay", "0"
    )
    assert_clean(result)


# A web service fetching its own page from three pool jobs (urllib, 3 s
# timeout) while a daemon heartbeat hands counts to the reactor every 250 ms.
SELF_FETCH = """
import sys, threading, time, urllib.request
from twisted.internet import defer, reactor, threads
from twisted.web import resource, server

class Hello(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"hello"

beats = []

def heartbeat():
    while True:
        reactor.callFromThread(beats.append, len(beats))
        time.sleep(0.25)

def fetch(url):
    with urllib.request.urlopen(url, timeout=3) as response:
        return response.read()

threading.Thread(target=heartbeat, daemon=True).start()
port = reactor.listenTCP(0, server.Site(Hello()), interface="127.0.0.1")
url = f"http://127.0.0.1:{port.getHost().port}/"
{serve}
fetched = defer.gatherResults([threads.deferToThread(fetch, url) for _ in range(3)])
results = []
fetched.addBoth(lambda result: (results.append(result), reactor.stop()))
reactor.run()
if results != [[b"hello"] * 3]:
    sys.exit(f"fetch failed: {results[0]!r}")
"""


def test_a_reactor_held_before_each_of_its_iterations_is_held_a_second_in_all(
    tmp_path: Path,
) -> None:
    # Held a second before each of the iterations that served the request
    # (each a wait for I/O), the reactor let the clients' 3 s timeout expire.
    program = write_program(tmp_path, SELF_FETCH.replace("{serve}", "pass"))
    assert_clean(explore_program(program, "--budget", "400"), budget=400)


def test_a_reactor_blocked_past_the_clients_timeout_is_found(tmp_path: Path) -> None:
    serve = "reactor.callLater(0, time.sleep, 3.5)  # BUG: a blocking load in the reactor"
    result = explore_program(write_program(tmp_path, SELF_FETCH.replace("{serve}", serve)))
    assert_found_and_replayed(
        result, "threadcheck: exit: the program exited with status 1: fetch failed: "
    )


def test_a_reactor_waiting_on_real_sockets_is_not_held(tmp_path: Path) -> None:
    # Its own wait on a real socket (virtual time moving with it) was counted as
    # a hold: "held 20 ms" named in a failure shown without any time passing.
    text = SELF_FETCH.replace("{serve}", "pass").replace('b"hello"\n', 'b"maintenance"\n', 1)
    result = explore_program(write_program(tmp_path, text), "--budget", "5")
    assert result.returncode == 1, result.stderr
    assert "shown without preemptions" in result.stderr.splitlines()[1], result.stderr
    assert "time passed while threads could run" not in result.stderr


# One pool job of small steps, a heartbeat every 100 ms, and a 1.5 s watchdog
# timer that reports the job stuck: held a second in all, the job is never late.
WATCHDOG = """
import sys, threading
from twisted.internet import reactor, threads

done, stuck = [], []
stop = threading.Event()

def heartbeat():
    while not stop.wait(0.1):
        pass

def work():
    total = 0
    for step in range(30):
        total += step
    done.append(total)

def watchdog():
    if not done:
        stuck.append("stuck")

threading.Thread(target=heartbeat, name="heartbeat", daemon=True).start()
timer = threading.Timer(1.5, watchdog)
timer.start()

def finish(_):
    stop.set()
    timer.cancel()
    reactor.stop()

reactor.callWhenRunning(lambda: threads.deferToThread(work).addBoth(finish))
reactor.run()
timer.join()
if stuck:
    sys.exit("watchdog: job stuck")
"""


def test_holds_of_several_threads_add_up_to_max_delay_in_all(tmp_path: Path) -> None:
    # Each thread was held at most a second, but one after another: the main
    # thread 900 ms at start-up, then the job 600 ms, tripped the 1.5 s watchdog.
    result = explore_program(write_program(tmp_path, WATCHDOG), "--budget", "600")
    assert_clean(result, budget=600)
