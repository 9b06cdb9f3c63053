"""Quality: shapes that programs nobody here wrote took, and the explorer got
wrong until they were tried (each planted bug found within 2,000 schedules and
replayed in a fresh process, each fixed twin clean or proved):

* a check, then a builtin container's method on a plain name (``if items:
  items.pop()``, ``if key in pending: pending.pop(key)``): the call had no
  point before it, so no strategy could come between the look and the act, and
  ``dpor`` called the buggy program proved;
* ``concurrent.futures.as_completed(timeout=)``, whose deadline loop waits
  until exactly its end and only then gives up on a remaining time below 0;
* a program that begins Twisted logging (``beginLoggingTo``,
  ``log.startLogging``): each schedule's observers piled up (replays diverged),
  the second schedule logged the first one's redirected stdout into itself
  for ever, and the report went into the program's log;
* ``blockingCallFromThread`` in the reactor thread, whose refusal the program
  turned into an exit status: the violation leads;
* a program that keeps state between runs (a file counting them): ``dpor``
  went on without claiming a proof, where it stopped with an internal error.
"""

from __future__ import annotations

import gc
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

import threadcheck
from threadcheck._sched._explore import Budget, explore
from threadcheck._sched._targets import ProgramTarget

from support import (
    assert_clean,
    assert_found_and_replayed,
    explore_program,
    run_program,
    write_program,
)

pytestmark = [pytest.mark.quality, pytest.mark.slow]

# A backlog the reactor and a pool job both take from: the look and the pop
# are two steps, and another taker can come between them.
BACKLOG = """
from twisted.internet import reactor, task, threads
from twisted.internet.defer import gatherResults

backlog = ["job-1"]
taken = []
{lock_setup}

def take():
    {take}

work = [threads.deferToThread(take), task.deferLater(reactor, 0, take)]
failed = []
gatherResults(work).addErrback(failed.append).addBoth(lambda _: reactor.stop())
reactor.run()
if failed:
    raise SystemExit(f"take failed: {{failed[0].value.subFailure.getErrorMessage()}}")
assert taken == ["job-1"], taken
"""
BACKLOG_BUG = {"lock_setup": "", "take": "if backlog:\n        taken.append(backlog.pop())"}
BACKLOG_FIX = {
    "lock_setup": "import threading\nlock = threading.Lock()",
    "take": "with lock:\n        if backlog:\n            taken.append(backlog.pop())",
}

# Claims on pending requests by two workers: the membership test and the pop.
CLAIMS = """
import threading

pending = {{"request-7": "payload"}}
handled = []
lock = threading.Lock()

def claim():
    {claim}

workers = [threading.Thread(target=claim) for _ in range(2)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
assert handled == ["payload"], handled
"""
CLAIM_BUG = 'if "request-7" in pending:\n        handled.append(pending.pop("request-7"))'
CLAIM_FIX = (
    "with lock:\n"
    '        if "request-7" in pending:\n'
    '            handled.append(pending.pop("request-7"))'
)


@pytest.mark.parametrize("strategy", ["portfolio", "dpor"])
def test_a_look_then_a_pop_from_a_shared_list_is_found(tmp_path: Path, strategy: str) -> None:
    program = write_program(tmp_path, BACKLOG.format(**BACKLOG_BUG))
    result = explore_program(program, "--strategy", strategy)
    assert_found_and_replayed(
        result, "threadcheck: exit: the program exited with status 1: take failed: pop from"
    )


def test_the_locked_backlog_is_proved(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, BACKLOG.format(**BACKLOG_FIX)))
    assert_clean(result)
    assert result.stderr.startswith("threadcheck: every interleaving explored ("), result.stderr


@pytest.mark.parametrize("strategy", ["portfolio", "dpor"])
def test_a_membership_test_then_a_dict_pop_is_found(tmp_path: Path, strategy: str) -> None:
    program = write_program(tmp_path, CLAIMS.format(claim=CLAIM_BUG))
    result = explore_program(program, "--strategy", strategy)
    assert_found_and_replayed(result, "threadcheck: exception: KeyError: 'request-7'")


def test_the_locked_claims_are_proved(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, CLAIMS.format(claim=CLAIM_FIX)))
    assert_clean(result)
    assert result.stderr.startswith("threadcheck: every interleaving explored ("), result.stderr


def test_the_race_detector_reports_a_membership_test_against_a_pop(tmp_path: Path) -> None:
    program = write_program(tmp_path, CLAIMS.format(claim=CLAIM_BUG))
    result = subprocess.run(
        [sys.executable, "-m", "threadcheck", "run", "--races", str(program)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 3, result.stderr
    assert "data race on pending[...]: read in thread" in result.stderr
    assert "and delete in thread" in result.stderr


# A collector that gives up on slow results: as_completed with a timeout.
COLLECTOR = """
from concurrent.futures import ThreadPoolExecutor, TimeoutError, as_completed
import threading
import time

release = threading.Event()

def fetch(name):
    if name == "slow":
        release.wait(5)  # {slow}
    return name

pool = ThreadPoolExecutor(max_workers=2)
futures = [pool.submit(fetch, name) for name in ("fast", "slow")]
got = []
try:
    for future in as_completed(futures, timeout=1):
        got.append(future.result())
except TimeoutError:
    got.append("timed out")
release.set()
pool.shutdown()
assert got == {expected}, got
"""


def test_as_completed_gives_up_in_virtual_time(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        COLLECTOR.format(
            slow="held past the collector's timeout", expected='["fast", "timed out"]'
        ),
    )
    assert_clean(explore_program(program, "--budget", "2000"))


def test_an_expectation_that_ignores_the_timeout_is_found(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        COLLECTOR.format(slow="BUG: the collector expects both", expected='["fast", "slow"]'),
    )
    assert_found_and_replayed(
        explore_program(program), "threadcheck: exception: AssertionError: ['fast', 'timed out']"
    )


# A service that logs the Twisted way, from its first line.
LOGGING = """
import sys
from types import SimpleNamespace
from twisted.internet import reactor, task, threads
from twisted.internet.defer import gatherResults
from twisted.logger import Logger, globalLogBeginner, globalLogPublisher, textFileLogObserver

globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
seen = []
globalLogPublisher.addObserver(seen.append)
log = Logger()
stats = SimpleNamespace(handled=0)

def handle():
    {handle}
    log.info("handled one")

work = [threads.deferToThread(handle), task.deferLater(reactor, 0, handle)]
gatherResults(work).addBoth(lambda _: reactor.stop())
reactor.run()
if stats.handled != 2:
    observers = len(globalLogPublisher._observers)
    raise SystemExit(f"lost update: handled is {{stats.handled}} ({{observers}} observers)")
"""
HANDLE_BUG = "stats.handled += 1  # BUG: in a worker and in the reactor thread"
HANDLE_FIX = "with lock:\n        stats.handled += 1"


def _logging_program(tmp_path: Path, bug: bool) -> Path:
    body = LOGGING.format(handle=HANDLE_BUG if bug else HANDLE_FIX)
    return write_program(
        tmp_path, body.replace("seen = []", "import threading\nlock = threading.Lock()\nseen = []")
    )


def test_a_program_that_begins_twisted_logging_is_found_and_replays(tmp_path: Path) -> None:
    result = explore_program(_logging_program(tmp_path, bug=True))
    # Its observers and the log beginner's are put back after each schedule:
    # a schedule sees only its own (the publisher's, the beginner's, its two).
    assert_found_and_replayed(
        result, "threadcheck: exit: the program exited with status 1: lost update: handled is 1 ("
    )
    assert "[-]" not in result.stderr  # the report is threadcheck's, not a log line
    assert "Traceback" not in result.stdout


def test_its_fixed_twin_is_clean_with_its_log_on_stdout(tmp_path: Path) -> None:
    result = explore_program(_logging_program(tmp_path, bug=False), "--budget", "300")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(("threadcheck: 300 schedules (", "threadcheck: every ")), (
        result.stderr
    )
    assert result.stdout.count("handled one") >= 2
    assert "primary log target selected twice" not in result.stdout


def test_a_refused_blocking_call_leads_over_the_exit_it_caused(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        """
        import sys
        from twisted.internet import defer, reactor, task, threads

        def lookup(key):
            return task.deferLater(reactor, 0.01, len, key)

        def scaled(key):
            return threads.blockingCallFromThread(reactor, lookup, key) * 10

        results = []
        def main():
            d = defer.succeed("abc").addCallback(scaled)  # BUG: in the reactor thread
            d.addBoth(results.append).addBoth(lambda _: reactor.stop())

        reactor.callWhenRunning(main)
        reactor.run()
        if results != [30]:
            sys.exit(f"bad {results!r}")
        """,
    )
    result = explore_program(program)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        "threadcheck: violation: blockingCallFromThread called in the reactor thread"
    ), result.stderr
    assert "then exit: the program exited with status 1: bad" in result.stderr


LEDGER_PROGRAM = """
import threading

class Ledger:
    def __init__(self):
        self.balance = 0
        self.lock = threading.Lock()

    def credit(self, amount):
        with self.lock:
            self.balance += amount

def deposit(amount):
    ledger.credit(amount)

ledger = Ledger()
workers = [threading.Thread(target=deposit, args=(n,)) for n in (10, 20)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
assert ledger.balance == 30
"""


def test_a_violation_leads_over_the_error_it_caused(tmp_path: Path) -> None:
    # The worker's put never woke the reactor, so its get's reactor.stop() ran
    # from the worker and the watchdog's stop then raised ReactorNotRunning:
    # that error was reported, and the violation nowhere.
    program = write_program(
        tmp_path,
        """
        import threading
        from twisted.internet import defer, reactor

        jobs = defer.DeferredQueue()

        def worker():
            jobs.put("item")  # BUG: from a worker thread

        def start():
            jobs.get().addCallback(lambda item: reactor.stop())
            threading.Thread(target=worker, daemon=True).start()

        reactor.callWhenRunning(start)
        reactor.callLater(10, reactor.stop)  # a watchdog
        reactor.run()
        """,
    )
    result = explore_program(program, "--budget", "20")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: violation: DeferredQueue.put called"), (
        result.stderr
    )
    assert "then unhandled-error: while handling timed call: ReactorNotRunning" in result.stderr


def test_an_error_logged_before_the_exit_it_caused_is_reported(tmp_path: Path) -> None:
    # An errback logged with log.err, then sys.exit(1): the report said only
    # "the program exited with status 1", the logged error nowhere.
    program = write_program(
        tmp_path,
        """
        import sys
        from twisted.internet import defer, reactor
        from twisted.python import log

        def main():
            failed = defer.fail(RuntimeError("lost update: boom"))
            failed.addErrback(log.err, "main failed")
            reactor.stop()

        reactor.callWhenRunning(main)
        reactor.run()
        sys.exit(1)
        """,
    )
    result = explore_program(program, "--budget", "5")
    assert result.returncode == 1, result.stderr
    headline = "threadcheck: unhandled-error: main failed: RuntimeError: lost update: boom"
    assert result.stderr.startswith(headline), result.stderr
    assert "then exit: the program exited with status 1" in result.stderr


def test_a_long_search_keeps_no_schedules_classes(tmp_path: Path) -> None:
    # dpor's calls on a program's objects cached each schedule's class by type:
    # with it, the class's globals, the whole schedule (50 KB a schedule, 500 MB
    # in 90 s of a CI job).
    program = write_program(tmp_path, LEDGER_PROGRAM)
    target = ProgramTarget(None, [str(program)])
    result = explore(target, budget=Budget(60), strategy="dpor")
    assert not result.found
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, type) and o.__name__ == "Ledger"]
    assert len(alive) <= 1


def test_a_path_chosen_by_uuid4_is_searched_without_an_internal_error() -> None:
    # os.urandom draws anew in each schedule: bounded's replayed prefix found
    # another thread runnable, and raised "the program is not deterministic here".
    result = threadcheck.explore(uuid_picks_a_path, strategy="bounded:2", budget=300)
    assert not result.found and result.schedules == 300 and not result.proof, result.report()


def uuid_picks_a_path() -> None:
    lock = threading.Lock()
    total = [0]

    def work() -> None:
        if uuid.uuid4().int % 2:
            lock.acquire()  # a point the other path does not take
            lock.release()
        with lock:
            total[0] += 1

    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert total == [2]


def test_a_program_that_counts_its_runs_is_searched_without_a_proof(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        """
        import os, queue, threading
        from pathlib import Path

        runs = Path("runs.txt")
        count = int(runs.read_text()) + 1 if runs.exists() else 1
        runs.write_text(str(count))
        extra = []
        if count % 3 == 0:
            extra.append(os.getpid())  # a step the other runs do not take
        jobs = queue.Queue()
        done = []

        def consume():
            while (job := jobs.get()) is not None:
                done.append(job)

        consumers = [threading.Thread(target=consume) for _ in range(2)]
        for consumer in consumers:
            consumer.start()
        for job in ("a", "b", None, None):
            jobs.put(job)
        for consumer in consumers:
            consumer.join()
        assert sorted(done) == ["a", "b"]
        """,
    )
    result = explore_program(program, "--strategy", "dpor")
    assert result.returncode == 0, result.stderr
    assert "it is not a proof: some interleavings were left out, by runs that did not repeat" in (
        result.stderr
    )


# A fetch that falls back to a cached copy when the backend fails: its errback
# logs the failure, with a message, and recovers (the program handled it).
FALLBACK = """
from twisted.internet import reactor, threads
from twisted.internet.defer import DeferredList
from twisted.logger import Logger
from twisted.python import log as legacy

log = Logger()
out = []

def fetch():
    raise ConnectionError("transient")

def handled(failure):
    {log}
    return b"cached"

first = threads.deferToThread(fetch).addErrback(handled).addCallback(out.append)
second = threads.deferToThread(fetch).addErrback({terminal})
DeferredList([first, second]).addBoth(lambda _: reactor.stop())
reactor.run()
assert out == [b"cached"], out
"""


@pytest.mark.parametrize(
    "logged",
    [
        'log.failure("fetch failed, using the cached copy", failure)',
        'legacy.err(failure, "cached")',
    ],
    ids=["logger", "legacy"],
)
def test_a_failure_the_program_logs_with_its_message_and_recovers_from_is_handled(
    tmp_path: Path, logged: str
) -> None:
    # It was "unhandled-error: fetch failed, using the cached copy" on every schedule.
    program = FALLBACK.format(log=logged, terminal="lambda f: None")
    result = explore_program(write_program(tmp_path, program), "--budget", "20")
    assert result.returncode == 0, result.stderr
    assert "no failure" in result.stderr


def test_an_errback_that_only_logs_the_error_leaves_it_unhandled(tmp_path: Path) -> None:
    program = FALLBACK.format(log="log.failure('cached', failure)", terminal="legacy.err")
    result = explore_program(write_program(tmp_path, program), "--budget", "20")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        "threadcheck: unhandled-error: Unhandled Error: ConnectionError: transient"
    ), result.stderr


def test_a_test_runner_catching_the_teardown_prints_none_of_ours(tmp_path: Path) -> None:
    # unittest (as trial) catches what unwinds each test and prints it, at
    # the end, through the stream it kept: the teardown's Abort, ours, showed.
    program = write_program(
        tmp_path,
        """
        import threading
        import unittest

        class WorkerTests(unittest.TestCase):
            def test_a_worker_fails(self):
                worker = threading.Thread(target=lambda: 1 / 0)
                worker.start()
                worker.join()

            def test_b_sums(self):
                self.assertEqual(sum(range(3)), 3)

        unittest.main()
        """,
    )
    result = explore_program(program, "--budget", "5")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: exception: ZeroDivisionError"), result.stderr
    assert "Abort" not in result.stdout + result.stderr


# A rare fast path chosen by the OS's random bytes (secrets): it skips the lock.
# Shrinking reran candidates with other bytes, so the path was not taken again:
# a one-preemption lost update was "shrunk to 22". dpor's no-proof said the
# program "keeps state between runs", which it does not.
RANDOM_FAST_PATH = """\
import secrets, threading
from twisted.internet import reactor, threads
from twisted.internet.defer import gatherResults

class Counter:
    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

counter = Counter()

def job():
    if secrets.randbelow(4) == 0:
        counter.n += 1  # BUG: the sampled fast path skips the lock
    else:
        with counter.lock:
            counter.n += 1

gatherResults([threads.deferToThread(job) for _ in range(2)]).addBoth(lambda _: reactor.stop())
reactor.run()
if counter.n != 2:
    raise SystemExit(f"lost update: {counter.n}")
"""


def test_a_failure_on_a_path_the_os_random_bytes_chose_shrinks_with_them(tmp_path: Path) -> None:
    program = write_program(tmp_path, RANDOM_FAST_PATH)
    result = explore_program(program)
    assert_found_and_replayed(result, "threadcheck: exit: the program exited with status 1")
    assert re.search(r"shrunk to 1\b", result.stderr), result.stderr


def test_a_search_whose_runs_draw_os_random_bytes_says_so(tmp_path: Path) -> None:
    # Fixed: the fast path takes the lock too, and counts itself (its own points).
    fast = "with counter.lock:\n            counter.n += 1\n        with counter.lock:\n"
    fixed = RANDOM_FAST_PATH.replace(
        "counter.n += 1  # BUG: the sampled fast path skips the lock",
        fast + "            counter.fast = getattr(counter, 'fast', 0) + 1",
    )
    result = explore_program(write_program(tmp_path, fixed), "--strategy", "dpor")
    assert result.returncode == 0, result.stderr
    assert "not a proof" in result.stderr
    assert "(each run draws other OS random bytes: secrets, uuid4)" in result.stderr


# A program that runs its reactor in a thread of its own and hands it work from
# the main thread. The explorer disposed of the reactor from the main thread as
# each schedule ended: two violations of ours, in every schedule, the fixed
# twin included.
REACTOR_IN_A_THREAD = """
import threading, time
from twisted.internet import reactor

results = []
loop = threading.Thread(
    target=reactor.run, kwargs={{"installSignalHandlers": False}}, name="reactor-thread"
)
loop.start()
time.sleep(0.01)
{hand_over}
reactor.callFromThread(reactor.callLater, 0.05, reactor.stop)
loop.join(5)
"""
HAND_OVER_BUG = 'reactor.callLater(0, results.append, "late")  # from the main thread'
HAND_OVER_FIX = 'reactor.callFromThread(reactor.callLater, 0, results.append, "late")'


def test_a_reactor_run_in_a_thread_of_its_own_is_proved(tmp_path: Path) -> None:
    program = write_program(tmp_path, REACTOR_IN_A_THREAD.format(hand_over=HAND_OVER_FIX))
    result = explore_program(program)
    assert_clean(result)


def test_work_handed_wrongly_to_a_reactor_in_a_thread_is_the_one_violation(
    tmp_path: Path,
) -> None:
    program = write_program(tmp_path, REACTOR_IN_A_THREAD.format(hand_over=HAND_OVER_BUG))
    result = explore_program(program)
    assert_found_and_replayed(
        result, "threadcheck: violation: reactor.callLater called from thread 'MainThread'"
    )
    assert "threadcheck: 1 thread-affinity violation (1 distinct)" in result.stderr
    assert "offending call: service.py:11 in <module>" in result.stderr, result.stderr


# A lost update checked by an assert, explored under python -O: the assert is
# stripped, and the proof said "no failure possible" with nothing to say why.
COUNTED = """
from twisted.internet import reactor, threads
from twisted.internet.defer import gatherResults

class Counter:
    hits = 0

counter = Counter()

def hit():
    counter.hits += 1

gatherResults([threads.deferToThread(hit) for _ in range(2)]).addBoth(lambda _: reactor.stop())
reactor.run()
assert counter.hits == 2, counter.hits
"""


def test_an_exploration_under_python_o_says_its_asserts_are_stripped(tmp_path: Path) -> None:
    program = write_program(tmp_path, COUNTED)
    command = [sys.executable, "-O", "-m", "threadcheck", "explore", str(program)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    warning, summary = result.stderr.splitlines()
    assert warning == (
        "threadcheck: warning: python runs with -O (or PYTHONOPTIMIZE): the program's assert "
        "statements are stripped, and what only they check is not seen"
    )
    assert summary.startswith("threadcheck: every interleaving explored ("), summary
    assert summary.endswith(", assert statements stripped (python -O))"), summary


def test_a_token_replayed_under_python_o_says_how_it_was_recorded(tmp_path: Path) -> None:
    program = write_program(tmp_path, COUNTED)
    found = explore_program(program)
    assert_found_and_replayed(found, "threadcheck: exception: AssertionError: 1")
    [replay] = [line for line in found.stderr.splitlines() if line.startswith("replay: ")]
    command = [sys.executable, "-O", "-m", *replay.removeprefix("replay: ").split()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.stderr.splitlines()[0] == (
        "threadcheck: warning: the token was recorded with assert statements kept, this run "
        "has assert statements stripped (python -O): replay it without -O (PYTHONOPTIMIZE unset)"
    )


# Two workers fill a cache file once: a look at the file system, then a create.
# Neither call touched any object of the program, so dpor (and the default's
# search) proved every interleaving clean, with no point between them either.
CACHE_FILE = """
import os, sys, tempfile, threading

folder = tempfile.mkdtemp()
path = os.path.join(folder, "cache.json")
lock = threading.Lock()
twice = []

def write_cache():
    {fill}

workers = [threading.Thread(target=write_cache) for _ in range(2)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
if twice:
    sys.exit("cache file created twice")
"""
FILL_BUG = """if not os.path.exists(path):  # BUG: a check, then an act, unlocked
        try:
            with open(path, "x") as cache:
                cache.write("{{}}")
        except FileExistsError:
            twice.append(1)"""
FILL_FIX = """with lock:
        if not os.path.exists(path):
            with open(path, "x") as cache:
                cache.write("{{}}")"""


# scrapy's FSFilesStore: two downloads store their files under one folder,
# made on first use with pathlib. Its calls had no point (pathlib's objects
# were taken for values), and the default strategy called the race proved.
FILES_STORE = """
import sys
import tempfile
import threading
from pathlib import Path
from twisted.internet import defer, reactor, threads

base = Path(tempfile.mkdtemp()) / "full"
lock = threading.Lock()
failed = []

def persist(name, data):
    try:
        {make}
        (base / name).write_bytes(data)
    except OSError as error:
        failed.append(repr(error))

jobs = [threads.deferToThread(persist, n, b"x") for n in ("a.jpg", "b.jpg")]
defer.gatherResults(jobs).addBoth(lambda _: reactor.stop())
reactor.run()
if failed:
    sys.exit(f"store failed: {{failed}}")
"""
MAKE_BUG = """if not base.exists():  # BUG: a check, then an act, unlocked
            base.mkdir(parents=True)"""
MAKE_FIX = """with lock:
            if not base.exists():
                base.mkdir(parents=True)"""


FILE_RACES = {
    "os.path": (CACHE_FILE.format(fill=FILL_BUG), CACHE_FILE.format(fill=FILL_FIX), "cache file"),
    "pathlib": (FILES_STORE.format(make=MAKE_BUG), FILES_STORE.format(make=MAKE_FIX), "store"),
}


@pytest.mark.parametrize("strategy", ["portfolio", "dpor"])
@pytest.mark.parametrize("way", sorted(FILE_RACES))
def test_a_check_then_create_on_the_file_system_is_found(
    tmp_path: Path, strategy: str, way: str
) -> None:
    buggy, _, said = FILE_RACES[way]
    result = explore_program(write_program(tmp_path, buggy), "--strategy", strategy)
    assert_found_and_replayed(
        result, f"threadcheck: exit: the program exited with status 1: {said}"
    )


@pytest.mark.parametrize("way", sorted(FILE_RACES))
def test_its_locked_twin_on_the_file_system_is_proved(tmp_path: Path, way: str) -> None:
    _, fixed, _ = FILE_RACES[way]
    assert_proved(explore_program(write_program(tmp_path, fixed)))


def assert_proved(result: subprocess.CompletedProcess[str]) -> None:
    assert_clean(result)
    assert result.stderr.startswith("threadcheck: every interleaving explored ("), result.stderr


# A dict iterated by C code, through a view or a lazy iterator, that calls the
# program back while another thread adds a key: dpor saw only the view's
# making, not the iteration inside the call, and called each of these proved.
RENDERED = """
import sys, threading

cache = {{"a": 1, "b": 2, "c": 3}}
seen = []
lock = threading.Lock()
errors = []

def show(item):
    seen.append(item)
    return str(item)

def render():
    try:
        {render}
    except RuntimeError as error:
        errors.append(error)

def fill():
    {fill}

workers = [threading.Thread(target=render), threading.Thread(target=fill)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
if errors:
    sys.exit(f"render failed: {{errors[0]}}")
"""
RENDERINGS = [
    '",".join(map(show, cache.items()))',
    "min(cache.items(), key=show)",
    "max(cache.values(), key=show)",
    "list(filter(show, cache.values()))",
    "[item for item in map(show, cache.values())]",
]


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_a_dict_iterated_by_c_code_calling_back_is_found_by_dpor(
    tmp_path: Path, rendering: str
) -> None:
    body = RENDERED.format(render=rendering, fill='cache["d"] = 4')
    result = explore_program(write_program(tmp_path, body), "--strategy", "dpor")
    assert_found_and_replayed(
        result,
        "threadcheck: exit: the program exited with status 1: render failed: "
        "dictionary changed size during iteration",
    )


@pytest.mark.parametrize("rendering", RENDERINGS)
def test_its_locked_twin_is_proved(tmp_path: Path, rendering: str) -> None:
    body = RENDERED.format(
        render=f"with lock:\n            {rendering}",
        fill='with lock:\n        cache["d"] = 4',
    )
    result = explore_program(write_program(tmp_path, body), "--strategy", "dpor")
    assert_clean(result)
    assert result.stderr.startswith("threadcheck: every interleaving explored ("), result.stderr


# A save job fails in the pool; its Deferred's error is passed on to nobody
# (an addBoth that stops the reactor and returns it), and the program then
# checks what the job was to do. The unhandled error, logged only as the
# Deferred is collected, was dropped: the report named the assert alone.
UNHANDLED_THEN_ASSERT = """
from twisted.internet import reactor, threads

saved = []

def save(order):
    raise ConnectionError("backend down")
    saved.append(order)

def main():
    d = threads.deferToThread(save, "order-1")
    d.addBoth(lambda result: (reactor.stop(), result)[1])

reactor.callWhenRunning(main)
reactor.run()
assert saved == ["order-1"], f"not saved: {saved}"
"""


def test_an_unhandled_error_before_the_failure_it_caused_is_named(tmp_path: Path) -> None:
    program = write_program(tmp_path, UNHANDLED_THEN_ASSERT)
    result = explore_program(program, "--budget", "50")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: exception: AssertionError: not saved: []")
    assert (
        "also in this schedule, unhandled-error: Unhandled error in Deferred: "
        "ConnectionError: backend down at service.py:7 in save\n"
    ) in result.stderr
    assert "_threads.py" not in result.stderr  # the job's wrapper is ours, not shown


# scrapy (2.13 and later) asks for the asyncio reactor and raises when another
# is installed: explore reported that as a failure found on every schedule,
# with a token, exit 1, where the program's own asyncioreactor.install() is
# refused in one line, exit 2.
ASKS_FOR_ASYNCIO = """
from twisted.internet import reactor

wanted = "twisted.internet.asyncioreactor.AsyncioSelectorReactor"
installed = f"{type(reactor).__module__}.{type(reactor).__qualname__}"
if installed != wanted:
    raise RuntimeError(
        f"The installed reactor ({installed}) does not match the requested one ({wanted})"
    )
reactor.callLater(0, reactor.stop)
reactor.run()
"""


def test_a_program_that_refuses_any_reactor_but_asyncio_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    result = explore_program(write_program(tmp_path, ASKS_FOR_ASYNCIO))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "threadcheck: the program asks for Twisted's asyncio reactor, and refuses another: "
        "explore runs programs on its own scheduled reactor, which cannot drive asyncio's "
        "event loop; check this program with `threadcheck run`, or have it use the default "
        "reactor (scrapy: -s TWISTED_REACTOR=twisted.internet.epollreactor.EPollReactor)"
    ]


# A module's flag whose first value is a number: taken for a constant (its
# reads unseen), though the main module sets it (`flags.MODE = 1`): explore
# called the failing order proved, and --races saw no race.
FLAGS = """
MODE = 0

def current_mode():
    return MODE
"""
MODE_SERVICE = """
import sys
import threading
import flags

seen = []

def admin():
    flags.MODE = 1

def request():
    seen.append(flags.current_mode())

maintenance = threading.Thread(target=admin)
serving = threading.Thread(target=request)
{start}
maintenance.join()
serving.join()
if seen != [{expected}]:
    sys.exit(f"request saw mode {{seen}}")
"""
STARTED_TOGETHER = "serving.start()\nmaintenance.start()"
SERVED_AFTER = "maintenance.start()\nmaintenance.join()\nserving.start()"


def _mode_service(tmp_path: Path, start: str, expected: int) -> Path:
    (tmp_path / "flags.py").write_text(FLAGS)
    return write_program(tmp_path, MODE_SERVICE.format(start=start, expected=expected))


def test_a_module_flag_set_from_the_main_module_is_no_constant(tmp_path: Path) -> None:
    program = _mode_service(tmp_path, STARTED_TOGETHER, 0)
    result = explore_program(program)
    assert_found_and_replayed(result, "threadcheck: exit: the program exited with status 1")
    raced = run_program(program, "--races")
    assert re.search(r"data race on (global MODE|flags\.MODE):", raced.stderr), raced.stderr


# Other ways a program sets such a flag, each taken for a constant: the two
# flags of a tuple assignment (only the last was seen), a setter through
# globals() or exec in the flag's own module.
SETTERS = {
    "tuple": ("flags.MODE, flags.LEVEL = 1, 5", ""),
    # In brackets, the last target was missed (no `=` right after it).
    "tuple in brackets": ("(flags.LEVEL, flags.MODE) = (5, 1)", ""),
    "list in brackets": ("[flags.LEVEL, flags.MODE] = 5, 1", ""),
    "annotated": ("flags.MODE: int = 1", ""),
    # A reloader's: the name comes from a file, computed at run time.
    "computed setattr": (
        'for key, value in {"mode": 1}.items():\n        setattr(flags, key.upper(), value)',
        "",
    ),
    "globals": ("flags.set_mode()", 'def set_mode():\n    globals()["MODE"] = 1\n'),
    # Computed, on the module known by another name, or on itself.
    "computed setattr through an alias": (
        "import flags as settings\n"
        '    for key, value in {"mode": 1}.items():\n'
        "        setattr(settings, key.upper(), value)",
        "",
    ),
    "computed setattr on an imported module": (
        'import importlib\n    mod = importlib.import_module("flags")\n'
        '    for key, value in {"mode": 1}.items():\n        setattr(mod, key.upper(), value)',
        "",
    ),
    "computed setattr on its sys.modules entry": (
        'for key, value in {"mode": 1}.items():\n'
        '        setattr(sys.modules["flags"], key.upper(), value)',
        "",
    ),
    "computed __dict__ item through an alias": (
        "import flags as cfg\n"
        '    for key, value in {"mode": 1}.items():\n        cfg.__dict__[key.upper()] = value',
        "",
    ),
    "computed setattr on its own module": (
        "flags.set_mode()",
        "import sys\ndef set_mode():\n"
        '    for key, value in {"mode": 1}.items():\n'
        "        setattr(sys.modules[__name__], key.upper(), value)\n",
    ),
    "computed globals item": (
        "flags.set_mode()",
        'def set_mode():\n    for key, value in {"mode": 1}.items():\n'
        "        globals()[key.upper()] = value\n",
    ),
    "globals().update": (
        "flags.set_mode()",
        'def set_mode():\n    globals().update({"MODE": 1})\n',
    ),
    # Its argument has points of its own: the change comes after them.
    "globals().update of a comprehension": (
        "flags.set_mode()",
        "def set_mode():\n"
        '    globals().update({key.upper(): value for key, value in {"mode": 1}.items()})\n',
    ),
    "exec": ("flags.set_mode()", 'def set_mode():\n    exec("MODE = 1", globals())\n'),
}


@pytest.mark.parametrize("how", sorted(SETTERS))
def test_a_module_flag_set_other_ways_is_no_constant(tmp_path: Path, how: str) -> None:
    setter, defined = SETTERS[how]
    program = _mode_service(tmp_path, STARTED_TOGETHER, 0)
    program.write_text(program.read_text().replace("    flags.MODE = 1", f"    {setter}"))
    (tmp_path / "flags.py").write_text(FLAGS + defined)
    result = explore_program(program, "--strategy", "dpor")
    assert_found_and_replayed(result, "threadcheck: exit: the program exited with status 1")


def test_a_flag_set_by_the_program_started_from_another_folder_is_no_constant(
    tmp_path: Path,
) -> None:
    # `threadcheck explore app/service.py` from the project's root, the flag in
    # a package beside the program: only the root and the flag's own folder
    # were read for setters, and the failing order was proved.
    app = tmp_path / "app"
    (app / "cfg").mkdir(parents=True)
    (app / "cfg" / "__init__.py").write_text("")
    (app / "cfg" / "flags.py").write_text(FLAGS)
    program = app / "service.py"
    program.write_text(MODE_SERVICE.format(start=STARTED_TOGETHER, expected=0))
    program.write_text(program.read_text().replace("import flags", "from cfg import flags"))
    command = [sys.executable, "-m", "threadcheck", "explore", "--strategy", "dpor"]
    result = subprocess.run(
        [*command, "app/service.py"], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: exit: the program exited with status 1")


def test_the_flag_set_before_serving_is_proved(tmp_path: Path) -> None:
    program = _mode_service(tmp_path, SERVED_AFTER, 1)
    assert_proved(explore_program(program))
    assert run_program(program, "--races").returncode == 0


# A check, then a change, on a C or library container the program shares: an
# array.array of samples, a WeakValueDictionary of sessions. The look recorded
# nothing for dpor, nor did the array's pop(): the default strategy proved both.
DRAINED = """
import array
import sys
import threading
import weakref

class Session:
    pass

kept = [Session()]
samples = array.array("d", [0.5])
sessions = weakref.WeakValueDictionary({{"s1": kept[0]}})
lock = threading.Lock()
errors = []

def reap():
    try:
        {take}
    except (IndexError, KeyError) as error:
        errors.append(repr(error))

reapers = [threading.Thread(target=reap) for _ in range(2)]
for reaper in reapers:
    reaper.start()
for reaper in reapers:
    reaper.join()
if errors:
    sys.exit(f"reaped twice: {{errors}}")
"""
TAKES = {
    "array": "if len(samples):  # BUG: a look, then a pop, unlocked\n            samples.pop()",
    "weakdict": "if sessions:  # BUG\n            sessions.popitem()",
}


@pytest.mark.parametrize("kind", sorted(TAKES))
def test_a_check_then_pop_on_a_c_or_library_container_is_found(tmp_path: Path, kind: str) -> None:
    program = write_program(tmp_path, DRAINED.format(take=TAKES[kind]))
    result = explore_program(program)
    assert_found_and_replayed(result, "threadcheck: exit: the program exited with status 1")


@pytest.mark.parametrize("kind", sorted(TAKES))
def test_the_locked_drain_is_proved(tmp_path: Path, kind: str) -> None:
    locked = "with lock:\n            " + TAKES[kind].replace("\n    ", "\n        ")
    assert_proved(explore_program(write_program(tmp_path, DRAINED.format(take=locked))))


# A cache filled by long computations (200 points each) in two pool jobs: its
# first schedule's threads took fair turns at 256 points, and so the race
# showed without one preemption of the strategy's. Every schedule tried failed,
# and the report said "not an interleaving bug".
LONG_FILLS = """
import sys
from twisted.internet import defer, reactor, threads

TABLE = {i: i * i for i in range(5000)}
cache = {}
stats = {"misses": 0}

def compute(key):
    total = 0
    for k in range(200):
        total += TABLE[(key * 7 + k) % 5000]
    return total

def lookup(key):
    if key in cache:  # BUG: a check, then a fill, unlocked
        return cache[key]
    cache[key] = compute(key)
    stats["misses"] += 1
    return cache[key]

reactor.suggestThreadPoolSize(16)
lookups = [threads.deferToThread(lookup, n % 20) for n in range(200)]
defer.gatherResults(lookups).addBoth(lambda _: reactor.stop())
reactor.run()
if stats["misses"] != 20:
    sys.exit(f"computed {stats['misses']} times for 20 keys")
"""


def test_a_race_shown_by_fair_turns_is_no_deterministic_bug(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, LONG_FILLS))
    assert_found_and_replayed(result, "threadcheck: exit: the program exited with status 1")
    assert "not an interleaving bug" not in result.stderr, result.stderr
