"""Quality: whole programs that end the way services do (``os._exit`` from a
health-check thread, ``sys.exit`` in a worker) under ``threadcheck explore``:
the planted bug is found and replays in a fresh process; the fixed twin runs
every schedule clean; no exit ends the explorer itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support import (
    CLEAN,
    assert_found_and_replayed,
    explore_program,
    run_program,
    write_program,
)

pytestmark = [pytest.mark.quality, pytest.mark.slow]

# A job counter shared by the reactor thread and pool jobs; a health-check
# thread verifies it once the work is done and, like many supervisors expect,
# kills the process with a distinctive status when it finds it corrupt.
HEALTH_CHECK = """
import os
import threading
from twisted.internet import reactor, task, threads
from twisted.internet.defer import gatherResults

class Stats:
    handled = 0

stats = Stats()
LOCK = threading.Lock()

def handle():
    {update}

def health_check(done):
    done.wait()
    if stats.handled != 3:
        os._exit(3)  # the supervisor restarts us; the status says why

done = threading.Event()
checker = threading.Thread(target=health_check, args=(done,), daemon=True)
checker.start()
work = [threads.deferToThread(handle) for _ in range(2)]
work.append(task.deferLater(reactor, 0, handle))
gatherResults(work).addBoth(lambda _: reactor.stop())
reactor.run()
done.set()
checker.join()
os._exit(0)  # a fast exit, skipping interpreter teardown
"""

BUGGY = "stats.handled += 1  # BUG: pool jobs and the reactor thread race"
FIXED = "with LOCK:\n        stats.handled += 1"

# A worker that ends itself with sys.exit(0), as some job loops do: python ends
# only that thread. Not a failure, on any schedule.
WORKER_SYS_EXIT = """
import sys
import threading

results = []

def job():
    results.append("done")
    sys.exit(0)  # ends this thread only

workers = [threading.Thread(target=job) for _ in range(2)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
assert results == ["done", "done"]
"""


def test_os_exit_from_a_health_check_thread_is_found_and_replayed(tmp_path: Path) -> None:
    program = write_program(tmp_path, HEALTH_CHECK.format(update=BUGGY))
    result = explore_program(program)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "threadcheck: exit: the program exited with status 3 (os._exit)"
    assert re.search(
        r"at \S*service\.py:\d+ in health_check in thread 'Thread-1 \(health_check\)'", lines[2]
    )
    assert_found_and_replayed(result, lines[0])


def test_the_locked_twin_exits_zero_on_every_schedule(tmp_path: Path) -> None:
    program = write_program(tmp_path, HEALTH_CHECK.format(update=FIXED))
    result = explore_program(program, "--budget", "2000")
    assert result.returncode == 0, result.stderr
    assert CLEAN.match(result.stderr), result.stderr
    assert "no failure" in result.stderr


def test_sys_exit_zero_in_a_worker_thread_is_no_failure(tmp_path: Path) -> None:
    program = write_program(tmp_path, WORKER_SYS_EXIT)
    result = explore_program(program, "--budget", "300")
    assert result.returncode == 0, result.stderr
    assert "no failure" in result.stderr


def test_a_test_runners_sys_exit_not_ok_is_status_one(tmp_path: Path) -> None:
    # trial and unittest end with sys.exit(not result.wasSuccessful()): the
    # report said "the program exited with status True".
    program = write_program(
        tmp_path,
        """
        import sys, threading
        results = []
        workers = [threading.Thread(target=results.append, args=(n,)) for n in (1, 2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        sys.exit(not results == [1, 2])
        """,
    )
    result = explore_program(program, "--budget", "50")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: exit: the program exited with status 1\n")


# Events handed from a producer to a consumer thread; an atexit hook, as
# services register to flush or to check, fails on anything left behind.
ATEXIT_FLUSH = """
import atexit
import threading

pending = []

def check_flushed():
    assert not pending, f"{{len(pending)}} event(s) lost at exit"

atexit.register(check_flushed)

def produce():
    pending.append("event")

def consume():
    {wait}
    if pending:
        pending.pop()

producer = threading.Thread(target=produce)
consumer = threading.Thread(target=consume)
producer.start()
consumer.start()
producer.join()
consumer.join()
"""


def test_an_atexit_check_runs_at_the_end_of_each_schedule(tmp_path: Path) -> None:
    program = write_program(tmp_path, ATEXIT_FLUSH.format(wait="pass  # BUG: may look too early"))
    result = explore_program(program)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        "threadcheck: exception: AssertionError: 1 event(s) lost at exit\n"
    )
    fixed = write_program(tmp_path, ATEXIT_FLUSH.format(wait="producer.join()"))
    clean = explore_program(fixed, "--budget", "2000", "--strategy", "random")
    assert clean.returncode == 0, clean.stderr
    assert clean.stderr.startswith("threadcheck: 2000 schedules (")
    assert "AssertionError" not in clean.stderr  # no handler left for the explorer's own exit


def test_an_atexit_handlers_sys_exit_is_not_called_the_exit_status(tmp_path: Path) -> None:
    # Python ignores a SystemExit raised in an atexit handler (the process exits
    # 0 here): "the program exited with status 5" was not what happened.
    program = write_program(
        tmp_path, "import atexit, sys\natexit.register(sys.exit, 5)\nprint('done')\n"
    )
    result = explore_program(program, "--budget", "3")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        "threadcheck: exception: an atexit handler raised SystemExit(5), which Python ignores:"
        " the exit status stays the program's; fails on every schedule tried"
    ), result.stderr


# A watchdog as daemons install it: SIGALRM kills the process if the work
# hangs. In a schedule it is inert; in real time it would kill the explorer.
ALARM_WATCHDOG = """
import os
import signal
from twisted.internet import reactor

signal.signal(signal.SIGALRM, lambda signum, frame: os._exit(7))
signal.alarm(1)  # the whole job must take under a second
reactor.callLater(0.01, reactor.stop)
reactor.run()
signal.alarm(0)
"""


def test_an_alarm_watchdog_is_inert_in_schedules(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, ALARM_WATCHDOG), "--time", "2.5")
    assert result.returncode == 0, result.stderr
    assert CLEAN.match(result.stderr), result.stderr


# A service that stops itself as a supervisor would: SIGTERM to its own
# process. With the reactor running, Twisted's handler stops it gracefully
# (its 'before shutdown' trigger saves state); from a worker once the reactor
# is gone, the default action kills it. The explorer once took either for
# Ctrl-C ("interrupted", exit 1 on the correct one).
SELF_SIGNAL = """
import os
import signal
import threading
from twisted.internet import reactor

saved = []
usr1 = []
signal.signal(signal.SIGUSR1, lambda number, frame: usr1.append(number))
reactor.addSystemEventTrigger("before", "shutdown", saved.append, "state")
reactor.callLater(0, os.kill, os.getpid(), signal.SIGUSR1)  # rotate the logs
reactor.callLater(0.01, os.kill, os.getpid(), signal.SIGTERM)
reactor.run()
assert saved == ["state"] and usr1 == [signal.SIGUSR1], (saved, usr1)
{after}
"""


def test_a_service_that_signals_itself_stops_gracefully(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, SELF_SIGNAL.format(after="")))
    assert result.returncode == 0, result.stderr
    assert CLEAN.match(result.stderr), result.stderr
    assert "interrupted" not in result.stderr


def test_a_sigterm_with_no_reactor_to_catch_it_kills_the_program(tmp_path: Path) -> None:
    after = (
        "worker = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM))\n"
        "worker.start()  # BUG: nothing handles it any more\n"
        "worker.join()"
    )
    program = write_program(tmp_path, SELF_SIGNAL.format(after=after))
    assert_found_and_replayed(
        explore_program(program),
        "threadcheck: exit: the program was killed by SIGTERM (os.kill of itself)",
    )


# Two parts of a service handle SIGUSR1, the second chaining to the first as
# log-rotation libraries do: signal.getsignal gave the real handler (SIG_DFL),
# not the one the program set in its schedule, and the chain broke.
CHAINED_HANDLERS = """
import os, signal, sys
from twisted.internet import reactor, threads

calls = []
signal.signal(signal.SIGUSR1, lambda number, frame: calls.append("metrics"))
previous = signal.getsignal(signal.SIGUSR1)

def rotate_logs(number, frame):
    calls.append("rotate-logs")
    previous(number, frame)

assert signal.signal(signal.SIGUSR1, rotate_logs) is previous
assert signal.getsignal(signal.SIGUSR1) is rotate_logs
threads.deferToThread(os.kill, os.getpid(), signal.SIGUSR1).addBoth(
    lambda _: reactor.callLater(0.05, reactor.stop)
)
reactor.run()
assert calls == ["rotate-logs", "metrics"], calls
"""


def test_a_handler_chained_to_the_one_before_it_runs_both(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, CHAINED_HANDLERS))
    assert result.returncode == 0, result.stderr
    assert CLEAN.match(result.stderr), result.stderr


# A drain handler installed once the reactor runs chains to the one before it,
# as a supervisor's SIGTERM asks: getsignal gave the explorer's own handler
# (calling it ended the exploration, "interrupted"), and signal.signal before
# the reactor ran returned it too.
DRAIN_ON_SIGTERM = """
import os, signal, threading
from twisted.internet import reactor

before_run = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
assert before_run is signal.SIG_DFL, before_run
assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
log = []

def install_drain_handler():
    previous = signal.getsignal(signal.SIGTERM)
    assert previous == reactor.sigTerm, previous  # what reactor.run() installs

    def drain(number, frame):
        log.append("drain")
        previous(number, frame)  # Twisted's: stops the reactor

    signal.signal(signal.SIGTERM, drain)
    threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGTERM)).start()

reactor.callWhenRunning(install_drain_handler)
reactor.addSystemEventTrigger("before", "shutdown", lambda: log.append("shutdown"))
reactor.run()
assert log == ["drain", "shutdown"], log
"""


def test_a_drain_handler_chained_to_twisteds_stops_the_reactor(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, DRAIN_ON_SIGTERM))
    assert result.returncode == 0, result.stderr
    assert CLEAN.match(result.stderr), result.stderr


# A pool job saves its result through the reactor while a shutdown timer may
# fire first: its blockingCallFromThread after reactor.stop() (a wait for ever,
# in production) was refused, and the program's own check then exited 1. The
# report led with the exit status and never named the blocking call.
SAVED_AFTER_STOP = """
import time
from twisted.internet import reactor, task, threads
from twisted.internet.threads import blockingCallFromThread

saved = []

def save(value):
    return task.deferLater(reactor, 0.05, saved.append, value)

def job():
    time.sleep(0.5)  # a blocking fetch
    blockingCallFromThread(reactor, save, "result")  # BUG: the reactor may be stopping
    return "done"

threads.deferToThread(job)
reactor.callLater(0.7, reactor.stop)  # BUG: stops on a timer, not when the job is done
reactor.run()
if saved != ["result"]:
    raise SystemExit(f"result not saved: {saved}")
"""


def test_a_blocking_call_after_stop_leads_the_exit_it_caused(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, SAVED_AFTER_STOP))
    headline = "threadcheck: violation: blockingCallFromThread called from thread 'PoolThread-"
    assert_found_and_replayed(result, headline)
    assert "after reactor.stop()" in result.stderr.splitlines()[0]
    assert "then exit: the program exited with status 1: result not saved: []" in result.stderr


# Its fixed twin in shape: a daemon heartbeat asks the reactor to count a beat
# (blockingCallFromThread) until the program ends, so a beat may come after
# reactor.stop(). Python exits without the daemon thread: nothing waits on it.
HEARTBEAT_AFTER_STOP = """\
import threading, time
from twisted.internet import defer, task, threads

beats = []


def heartbeat(reactor):
    while True:
        threads.blockingCallFromThread(reactor, beats.append, time.monotonic())
        time.sleep(0.01)


@defer.inlineCallbacks
def main(reactor):
    threading.Thread(target=heartbeat, args=(reactor,), daemon=True, name="heartbeat").start()
    yield task.deferLater(reactor, 0.05, lambda: None)


try:
    task.react(main)
finally:
    time.sleep(0.05)  # flush the metrics: the heartbeat beats on
"""


def test_a_daemon_heartbeat_beating_after_stop_is_no_violation(tmp_path: Path) -> None:
    program = write_program(tmp_path, HEARTBEAT_AFTER_STOP)
    ran = run_program(program)
    assert ran.returncode == 0, ran.stderr
    assert ran.stderr == "threadcheck: no thread-affinity violations found\n"
    explored = explore_program(program, "--budget", "300")
    assert explored.returncode == 0, explored.stderr
    assert CLEAN.match(explored.stderr), explored.stderr


# A service that keeps its crashed workers' count in its own
# threading.excepthook, which Python calls in each crashing thread. Explore
# treated every such crash as the program's failure and never ran the hook: the
# correct twin failed on every schedule.
CRASH_HOOK = """
import sys
import threading
from twisted.internet import reactor, threads

crashed = {{"count": 0}}
lock = threading.Lock()

def on_crash(args):
    {count}

threading.excepthook = on_crash

def fetch(name):
    raise ConnectionError(f"{{name}}: upstream reset")

def supervise():
    workers = [threading.Thread(target=fetch, args=(n,), name=n) for n in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return crashed["count"]

counted = []
threads.deferToThread(supervise).addCallback(counted.append).addBoth(lambda _: reactor.stop())
reactor.run()
if counted != [2]:
    print(f"crashes counted: {{counted}}")
    sys.exit(3)
"""


def test_a_crash_the_programs_excepthook_counts_is_its_own_and_the_twin_is_clean(
    tmp_path: Path,
) -> None:
    locked = "with lock:\n        crashed['count'] += 1"
    program = write_program(tmp_path, CRASH_HOOK.format(count=locked))
    result = explore_program(program, "--budget", "300")
    assert result.returncode == 0, result.stderr
    assert CLEAN.match(result.stderr), result.stderr


def test_a_lost_count_in_the_programs_excepthook_is_found_and_replayed(tmp_path: Path) -> None:
    program = write_program(tmp_path, CRASH_HOOK.format(count="crashed['count'] += 1"))
    result = explore_program(program, "--budget", "300")
    assert_found_and_replayed(result, "threadcheck: exit: the program exited with status 3")
