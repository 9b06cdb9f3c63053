"""Quality: the standard library's thread machinery under the scheduler, whoever
creates it: ``concurrent.futures`` executors (submit, result, as_completed,
wait, map, shutdown), ``multiprocessing``'s ``ThreadPool``, ``threading.Timer``
watchdogs and heartbeats, and ``threading.Barrier``. Each planted bug is found
within 2,000 schedules and replays in a fresh process; each fixed twin is clean
over 2,000; nothing waits in real time or ends the explorer."""

from __future__ import annotations

import functools
import queue
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import pytest

import threadcheck

from support import assert_clean, assert_found_and_replayed, explore_program, write_program

pytestmark = [pytest.mark.quality, pytest.mark.slow]

EXECUTOR = """
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed, wait

class Account:
    balance = 0

account = Account()
lock = threading.Lock()

def deposit(amount):
    {update}
    return amount

pool = ThreadPoolExecutor(max_workers=2)  # never shut down: exit stops its workers
futures = [pool.submit(deposit, amount) for amount in (10, 20)]
wait(futures)
receipts = sorted(future.result() for future in as_completed(futures))
assert list(pool.map(abs, receipts)) == [10, 20]
assert account.balance == 30, f"balance is {{account.balance}}"
"""
EXECUTOR_BUG = "current = account.balance\n    account.balance = current + amount  # BUG"
EXECUTOR_FIX = "with lock:\n        account.balance += amount"

# Two workers compute a partial result each; the report must wait for both.
BARRIER = """
import threading

partials = {{}}
reports = []
barrier = threading.Barrier(2)

def worker(index):
    partials[index] = (index + 1) * 10
    {before}
    barrier.wait()
    {after}

workers = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
for thread in workers:
    thread.start()
for thread in workers:
    thread.join()
assert reports == [30], f"reported {{reports}}"
"""
REPORT = "if index == 0:\n        reports.append(sum(partials.values()))"
BARRIER_BUG = (REPORT + "  # BUG: before the barrier", "pass")
BARRIER_FIX = ("pass", REPORT)

# A daemon heartbeat that would kill the process after 30 s, and a watchdog
# cancelled once the work is done: a real program's timers. The run itself
# takes 0.1 s of reactor time.
TIMERS = """
import os
import threading
from twisted.internet import reactor

heartbeat = threading.Timer(30, lambda: os._exit(4))
heartbeat.daemon = True
heartbeat.start()
watchdog = threading.Timer(5, os._exit, (9,))  # not a daemon: cancelled below
watchdog.start()
reactor.callLater(0.1, reactor.stop)
reactor.run()
watchdog.cancel()
"""


# A program's own subclasses of the stdlib's primitives, made as the program
# starts (each schedule): a work queue that counts what goes through it, an
# event it waits on, isinstance checks, and a drain loop that stops when get's
# timeout says the queue is idle. Counting in put is unlocked; in _put the
# queue's own lock holds it, so the twin needs that lock scheduled.
COUNTING_QUEUE = """
import queue
import threading

class CountingQueue(queue.Queue):
    def __init__(self):
        super().__init__()
        self.puts = 0

    {count}

class Finished(threading.Event):
    pass

jobs = CountingQueue()
finished = Finished()
handled = []

def drain():
    while True:
        try:
            job = jobs.get(timeout=0.5)
        except queue.Empty:  # idle: the producers are done
            break
        handled.append(job)
    finished.set()

producers = [threading.Thread(target=jobs.put, args=(n,)) for n in (1, 2)]
for producer in producers:
    producer.start()
for producer in producers:
    producer.join()
threading.Thread(target=drain, daemon=True).start()
assert finished.wait(timeout=5), "never idle"
assert isinstance(jobs, queue.Queue) and isinstance(finished, threading.Event)
assert isinstance(queue.Queue(), queue.Queue) and issubclass(CountingQueue, queue.Queue)
assert sorted(handled) == [1, 2] and jobs.puts == 2, f"counted {{jobs.puts}} puts"
"""
COUNT_BUG = """def put(self, item, block=True, timeout=None):
        self.puts += 1  # BUG: counted outside the queue's lock
        super().put(item, block, timeout)"""
COUNT_FIX = """def _put(self, item):
        self.puts += 1  # under the queue's own lock
        super()._put(item)"""


# A client that opens its connection pool lazily, on first use, from request
# threads: with functools.cached_property, two threads that both miss open two
# pools (3.12 and newer: the descriptor has no lock; before, it holds one, and
# the program is right). The twin opens it under its own lock.
LAZY_POOL = """
import threading
from functools import cached_property

opened = []

class Client:
    def __init__(self):
        self._lock = threading.Lock()
        self._pool = None

    {pool}

    def fetch(self, path):
        return self.pool["host"] + path

client = Client()
workers = [threading.Thread(target=client.fetch, args=(p,)) for p in ("/a", "/b")]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
assert len(opened) == 1, f"{{len(opened)}} pools opened"
"""
POOL_BUG = """@cached_property
    def pool(self):
        opened.append("pool")  # BUG: two first requests open two pools
        return {"host": "db"}"""
POOL_FIX = """@property
    def pool(self):
        with self._lock:
            if self._pool is None:
                opened.append("pool")
                self._pool = {"host": "db"}
            return self._pool"""
CACHED_PROPERTY_LOCKED = sys.version_info < (3, 12)


# Deposits recorded in SQLite by worker threads, each on its own connection,
# in a transaction that updates the balance and writes the ledger: a writer
# held inside its transaction makes the other wait on SQLite's lock (5 s of
# real time, then "database is locked", before SQLite's waits were the
# scheduler's). The bug reads the balance before its transaction.
LEDGER_DB = """
import os
import sqlite3
import tempfile
import threading

path = os.path.join(tempfile.mkdtemp(), "bank.db")
with sqlite3.connect(path) as setup:
    setup.execute("create table accounts (id integer primary key, balance integer)")
    setup.execute("create table ledger (amount integer)")
    setup.execute("insert into accounts values (1, 0)")

def deposit(amount):
    db = sqlite3.connect(path, timeout=5)
    {deposit}
    db.close()

workers = [threading.Thread(target=deposit, args=(n,)) for n in (10, 20)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
db = sqlite3.connect(path)
(balance,) = db.execute("select balance from accounts").fetchone()
(entries,) = db.execute("select count(*) from ledger").fetchone()
assert (balance, entries) == (30, 2), f"balance {{balance}} after {{entries}} deposits"
"""
DEPOSIT_BUG = """[(balance,)] = db.execute("select balance from accounts").fetchall()
    with db:  # BUG: the balance was read before the transaction
        db.execute("update accounts set balance = ?", (balance + amount,))
        db.execute("insert into ledger values (?)", (amount,))"""
DEPOSIT_FIX = """with db:
        db.execute("update accounts set balance = balance + ?", (amount,))
        db.execute("insert into ledger values (?)", (amount,))"""


# Locks made by the library on the program's behalf: a dataclass field's
# default_factory (called by the generated __init__), a defaultdict of locks,
# and a lock class kept as a class attribute (as werkzeug's routing Map does):
# each is controlled (once uncontrolled, or called as a method with self).
LEDGER = """
import copy
import threading
from collections import defaultdict
from dataclasses import dataclass, field

@dataclass
class Account:
    balance: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)

class Ledger:
    lock_class = threading.RLock
    def __init__(self):
        self.lock = self.lock_class()
        self.entries = []

per_customer = defaultdict(threading.Lock)
ledger = Ledger()
joint = Account()

def withdraw(customer, amount):
    with per_customer[customer]:
        {withdraw}
    with ledger.lock:
        ledger.entries.append((customer, amount))

workers = [threading.Thread(target=withdraw, args=(c, 60)) for c in ("ada", "bob")]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
assert joint.balance >= 0, f"overdrawn: {{joint.balance}}"
assert len(ledger.entries) == 2
assert copy.deepcopy(Ledger.lock_class) is Ledger.lock_class  # a factory copies as itself
"""
LEDGER_BUG = """with joint.lock:
            enough = joint.balance >= amount
        if enough:  # BUG: checked, then withdrawn in another hold of the lock
            with joint.lock:
                joint.balance -= amount"""
LEDGER_FIX = """with joint.lock:
            if joint.balance >= amount:
                joint.balance -= amount"""


def test_an_overdraft_past_library_made_locks_is_found_and_replayed(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, LEDGER.format(withdraw=LEDGER_BUG)))
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: overdrawn: -20")


def test_the_twin_with_library_made_locks_is_clean(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, LEDGER.format(withdraw=LEDGER_FIX)))
    assert_clean(result)


def test_a_lost_count_in_a_queue_subclass_is_found_and_replayed(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, COUNTING_QUEUE.format(count=COUNT_BUG)))
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: counted 1 puts")


def test_the_queue_subclass_counting_under_its_lock_is_clean(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, COUNTING_QUEUE.format(count=COUNT_FIX)))
    assert_clean(result)


def test_a_cached_property_opened_twice_is_found_where_python_allows_it(
    tmp_path: Path,
) -> None:
    result = explore_program(write_program(tmp_path, LAZY_POOL.format(pool=POOL_BUG)))
    if CACHED_PROPERTY_LOCKED:  # its real lock was held across a point: blocked
        assert_clean(result)
    else:  # both looks missed, unseen: dpor proved it in 4 schedules
        assert_found_and_replayed(result, "threadcheck: exception: AssertionError: 2 pools opened")


def test_the_pool_opened_under_a_lock_is_clean(tmp_path: Path) -> None:
    assert_clean(explore_program(write_program(tmp_path, LAZY_POOL.format(pool=POOL_FIX))))


def test_a_deposit_lost_in_sqlite_is_found_and_replayed(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, LEDGER_DB.format(deposit=DEPOSIT_BUG)))
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: balance ")
    assert "0 after 2 deposits" in result.stderr  # a lost deposit, not a locked database


def test_deposits_waiting_on_sqlites_lock_are_clean(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, LEDGER_DB.format(deposit=DEPOSIT_FIX)))
    assert_clean(result)


REGISTRY_LOCK = threading.Lock()  # made at import, before any exploration
READY = threading.Event()
READY.set()


class Registry:
    """A service's registry, locked by a lock kept on the class."""

    lock = threading.RLock()
    changed = threading.Condition()
    entries: ClassVar[dict[str, int]] = {}


def register(name: str, locked: bool) -> None:
    assert READY.wait(timeout=1)
    if locked:
        with REGISTRY_LOCK, Registry.lock, Registry.changed:
            Registry.entries[name] = Registry.entries.get(name, 0) + 1
            Registry.changed.notify_all()
    else:
        count = Registry.entries.get(name, 0)  # BUG: read, then written, unlocked
        Registry.entries[name] = count + 1


def two_jobs_register(locked: bool) -> None:
    Registry.entries = {}
    jobs = [threading.Thread(target=register, args=("a", locked)) for _ in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    assert Registry.entries == {"a": 2}, Registry.entries


def test_a_lost_registration_beside_locks_made_at_import_is_found() -> None:
    result = threadcheck.explore(lambda: two_jobs_register(False), budget=2000)
    assert result.report().startswith("threadcheck: exception: AssertionError: {'a': 1}")


def test_registrations_under_locks_made_at_import_are_clean() -> None:
    # The real locks, held across a point, blocked the other job: 10 s, then
    # "uncontrolled-blocking", on correct code.
    result = threadcheck.explore(lambda: two_jobs_register(True), budget=2000)
    assert not result.found and result.schedules > 0, result.report()
    assert type(REGISTRY_LOCK) is type(threading.Lock())  # put back
    assert type(Registry.changed) is type(threading.Condition())


SHARED_LOCK = threading.Lock()  # also bound as a default argument below


class Box:
    n = 0


def add_with(box: Box, lock: Any = SHARED_LOCK) -> None:
    with lock:
        box.n += 1


def add_under_the_global(box: Box) -> None:
    with SHARED_LOCK:
        box.n += 1


def two_paths_to_one_lock() -> None:
    box = Box()
    jobs = [threading.Thread(target=add_with, args=(box,))]
    jobs.append(threading.Thread(target=add_under_the_global, args=(box,)))
    for job in jobs:
        job.start()
    for job in jobs:
        job.join()
    assert box.n == 2, f"{box.n} additions"


def test_a_lock_bound_elsewhere_too_is_never_split_in_two() -> None:
    # Swapped as a global only, the default argument's lock and the global one
    # would be two: a lost addition "found" in correct code. It stays real.
    from threadcheck._sched import _premade

    assert not [n for _, n, _ in _premade.find([sys.modules[__name__]]) if n == "SHARED_LOCK"]
    assert [n for _, n, _ in _premade.find([sys.modules[__name__]]) if n == "REGISTRY_LOCK"]


class Catalog:
    """Made before exploring: its cached_property's lock (before 3.12) is real."""

    loads = 0

    @functools.cached_property
    def prices(self) -> dict[str, int]:
        Catalog.loads += 1
        return {"tea": 3}


def two_readers_price_tea() -> None:
    catalog = Catalog()
    Catalog.loads = 0
    readers = [threading.Thread(target=lambda: catalog.prices["tea"]) for _ in range(2)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert Catalog.loads == 1, f"loaded {Catalog.loads} times"


@pytest.mark.parametrize("strategy", ["random", "dpor"])
def test_a_scenarios_cached_property_is_a_point_never_a_real_wait(strategy: str) -> None:
    result = threadcheck.explore(two_readers_price_tea, budget=500, strategy=strategy)
    if CACHED_PROPERTY_LOCKED:
        assert not result.found and result.schedules > 0, result.report()
    else:
        assert result.report().startswith("threadcheck: exception: AssertionError: loaded 2 times")


class AuditedQueue(queue.Queue[int]):
    """Made before exploring: its base is the real Queue, its locks the scheduler's."""

    def __init__(self) -> None:
        super().__init__()
        self.audited: list[int] = []

    def put(self, item: int, block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self.audited.append(item)  # after the item is visible to get


class AuditedFirstQueue(AuditedQueue):
    def put(self, item: int, block: bool = True, timeout: float | None = None) -> None:
        self.audited.append(item)  # before any get can take it
        queue.Queue.put(self, item, block, timeout)


def audit_trail_matches() -> None:  # plain threads: no reactor parameter
    take_one(AuditedQueue())


def audited_first_trail_matches() -> None:
    take_one(AuditedFirstQueue())


def take_one(jobs: AuditedQueue) -> None:
    taken: list[int] = []

    def take() -> None:
        taken.append(jobs.get(timeout=5))
        assert taken == jobs.audited, f"took {taken} before it was audited"  # BUG

    consumer = threading.Thread(target=take)
    consumer.start()
    jobs.put(7)
    consumer.join()


def test_a_scenarios_queue_subclass_made_before_exploring_is_controlled() -> None:
    result = threadcheck.explore(audit_trail_matches, budget=2000)
    assert result.found, result.report()
    assert result.report().startswith(
        "threadcheck: exception: AssertionError: took [7] before it was audited"
    )
    twin = threadcheck.explore(audited_first_trail_matches, budget=2000)
    assert not twin.found and twin.schedules > 0, twin.report()


def test_an_executor_lost_update_is_found_and_replayed(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, EXECUTOR.format(update=EXECUTOR_BUG)))
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: balance is ")


def test_the_locked_executor_twin_is_clean(tmp_path: Path) -> None:
    assert_clean(
        explore_program(
            write_program(tmp_path, EXECUTOR.format(update=EXECUTOR_FIX)), "--budget", "2000"
        )
    )


# A deferToThread job fans a batch out over multiprocessing's ThreadPool (its
# workers, handler threads, queues and results' Events): it failed every
# schedule at once, as "waits on a child process: not controlled".
THUMBNAILS = """
import threading
from multiprocessing.dummy import Pool
from twisted.internet import reactor, threads

class Progress:
    done = 0

progress = Progress()
lock = threading.Lock()

def thumbnail(name):
    {update}
    return name.replace(".png", "-small.png")

def batch(names):
    with Pool(2) as pool:
        first = pool.apply_async(thumbnail, (names[0],)).get(timeout=5)
        return [first, *sorted(pool.imap_unordered(thumbnail, names[1:]))]

made = []
job = threads.deferToThread(batch, ["a.png", "b.png", "c.png"])
job.addCallback(made.extend).addBoth(lambda _: reactor.stop())
reactor.run()
assert made == ["a-small.png", "b-small.png", "c-small.png"], made
assert progress.done == 3, f"counted {{progress.done}} thumbnails"
"""
THUMBNAILS_BUG = "current = progress.done\n    progress.done = current + 1  # BUG: no lock"
THUMBNAILS_FIX = "with lock:\n        progress.done += 1"


def test_a_count_lost_in_a_multiprocessing_thread_pool_is_found_and_replayed(
    tmp_path: Path,
) -> None:
    program = write_program(tmp_path, THUMBNAILS.format(update=THUMBNAILS_BUG))
    result = explore_program(program)
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: counted 2 ")
    assert "service.py:14 thumbnail " in result.stderr  # the workers' steps in the table


def test_the_multiprocessing_thread_pool_counting_under_a_lock_is_clean(tmp_path: Path) -> None:
    program = write_program(tmp_path, THUMBNAILS.format(update=THUMBNAILS_FIX))
    result = explore_program(program)
    assert_clean(result)
    assert "Traceback" not in result.stderr  # nor its pools' finalizers at exit


# A pool job polls a multiprocessing connection that a thread of the program
# writes: multiprocessing.connection.wait loops until the clock passes its
# deadline, which the virtual clock never did (a poll, or a timeout met
# exactly): the correct program spun until the watchdog called it blocked.
PIPE_POLL = """
import multiprocessing, threading, time
from twisted.internet import reactor, threads

parent, child = multiprocessing.Pipe()

def producer():
    time.sleep(0.05)
    child.send("ready")

def consume():
    threading.Thread(target=producer).start()
    while not parent.poll():
        time.sleep(0.01)
    first = parent.recv()
    late = parent.recv() if parent.poll({timeout}) else "timeout"
    return first, late

answers = []
threads.deferToThread(consume).addBoth(lambda r: (answers.append(r), reactor.stop()))
reactor.run()
assert answers == [("ready", "timeout")], answers
"""


@pytest.mark.parametrize("timeout", ["0", "0.05"])
def test_a_connection_polled_or_timing_out_lets_time_pass(tmp_path: Path, timeout: str) -> None:
    program = write_program(tmp_path, PIPE_POLL.format(timeout=timeout))
    assert_clean(explore_program(program, "--budget", "20"), budget=20)


def test_a_report_made_before_the_barrier_is_found_and_replayed(tmp_path: Path) -> None:
    before, after = BARRIER_BUG
    result = explore_program(write_program(tmp_path, BARRIER.format(before=before, after=after)))
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: reported [")


def test_the_report_after_the_barrier_is_clean(tmp_path: Path) -> None:
    before, after = BARRIER_FIX
    result = explore_program(
        write_program(tmp_path, BARRIER.format(before=before, after=after)), "--budget", "2000"
    )
    assert_clean(result)


def test_timers_end_with_each_schedule_not_in_real_time(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, TIMERS), "--budget", "2000")
    assert_clean(result)


class LazySettings:
    """A lazily loaded configuration, as libraries keep them."""

    def __init__(self) -> None:
        self.values: dict[str, int] | None = None
        self.loads = 0

    def get(self, key: str) -> int:
        if self.values is None:  # BUG: two workers may both load
            self.loads += 1
            self.values = {"port": 8443}
        return self.values[key]


def two_requests_configure() -> None:  # plain threads: no reactor parameter
    from concurrent.futures import ThreadPoolExecutor

    settings = LazySettings()
    with ThreadPoolExecutor(max_workers=2) as pool:
        ports = [pool.submit(settings.get, "port") for _ in range(2)]
        assert [port.result() for port in ports] == [8443, 8443]
    assert settings.loads == 1, f"settings loaded {settings.loads} times"


REPLAY = """
import sys
import threadcheck
from test_explore_stdlib_quality import two_requests_configure

print(threadcheck.replay(two_requests_configure, sys.argv[1]).report())
"""


def test_a_scenario_waiting_on_future_results_is_explored() -> None:
    result = threadcheck.explore(two_requests_configure, budget=2000)
    assert result.found, result.report()
    headline = "threadcheck: exception: AssertionError: settings loaded 2 times\n"
    assert result.report().startswith(headline)
    assert result.run is not None and result.run.preemption_count == 1
    assert result.token is not None
    replayed = subprocess.run(
        [sys.executable, "-c", REPLAY, result.token],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith(headline)


# Jittered retries, as clients add them: the failure names the delays drawn,
# so a replay that drew other numbers would not print the same line.
JITTER = """
import random
import threading
import time

rnd = random.Random()  # no seed: the OS's entropy, outside a schedule

class Stats:
    sent = 0

stats = Stats()
delays = []

def send():
    delay = round(rnd.uniform(0.01, 0.05), 4)
    delays.append(delay)
    sent = stats.sent
    stats.sent = sent + 1  # BUG: lost update
    time.sleep(delay)  # back off before the next batch

workers = [threading.Thread(target=send) for _ in range(2)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
drawn = f"delays {{sorted(delays)}} and {{random.random():.6f}}"
assert stats.sent == 2, f"sent {{stats.sent}} after {{drawn}}"
"""


def test_random_jitter_replays_exactly_in_a_fresh_process(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, JITTER.format()))
    headline = result.stderr.splitlines()[0]
    assert headline.startswith("threadcheck: exception: AssertionError: sent 1 after delays [")
    assert_found_and_replayed(result, headline)  # the same delays, the same random()
    again = explore_program(write_program(tmp_path, JITTER.format()))
    assert again.stderr.splitlines()[0] == headline  # and the same in another exploration


# Request ids from uuid4(), as services make them: the failure names them, so a
# replay whose uuid4() drew other bytes (the OS's) would not print the same line.
REQUEST_IDS = """
import secrets
import threading
import uuid

class Shard:
    handled = 0

shards = [Shard(), Shard()]
seen = []

def handle():
    request = uuid.uuid4()
    seen.append(f"{request.hex[:8]}-{secrets.token_hex(2)}")
    shard = shards[request.int % 2]
    handled = shard.handled
    shard.handled = handled + 1  # BUG: lost update within a shard

workers = [threading.Thread(target=handle) for _ in range(3)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
total = sum(shard.handled for shard in shards)
assert total == 3, f"handled {total} of {sorted(seen)}"
"""


def test_request_ids_from_uuid4_replay_exactly_in_a_fresh_process(tmp_path: Path) -> None:
    result = explore_program(write_program(tmp_path, REQUEST_IDS))
    headline = result.stderr.splitlines()[0]
    assert headline.startswith("threadcheck: exception: AssertionError: handled 2 of ["), headline
    assert_found_and_replayed(result, headline)  # the same ids, the same tokens


# Spool files named by uuid4(), created with O_EXCL and left behind: each
# schedule, and each exploration, must draw other ids (the same bytes every
# schedule made the second one fail with FileExistsError).
SPOOL = """
import os
import threading
import uuid

def spool():
    fd = os.open(os.path.join("spool", uuid.uuid4().hex), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.close(fd)

os.makedirs("spool", exist_ok=True)
workers = [threading.Thread(target=spool) for _ in range(2)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
"""


def test_ids_from_uuid4_differ_between_schedules_and_explorations(tmp_path: Path) -> None:
    program = write_program(tmp_path, SPOOL)
    for _ in range(2):
        result = explore_program(program, "--budget", "50")
        assert result.returncode == 0, result.stderr
        proved = "threadcheck: every interleaving explored ("
        assert result.stderr.startswith(proved), result.stderr
    assert len(list((tmp_path / "spool").iterdir())) >= 8  # 2 ids a schedule, 2 or more each


# An admin HTTP server from the standard library, in a daemon thread beside the
# reactor: its handler threads count requests and hand each path to the
# reactor. Its serve_forever() waited in a selector's poll, holding the turn
# until the watchdog called it blocked (exit 1 on the correct program too),
# and shutdown() waited on an Event the scheduler did not know.
ADMIN_HTTP = """\
import threading, urllib.request
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
from twisted.internet import defer, reactor, threads

events = []

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        {hand_over}
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
port = server.server_address[1]
admin = threading.Thread(target=server.serve_forever, args=(0.05,), name="admin", daemon=True)
admin.start()

def fetch(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{{port}}{{path}}", timeout=5) as reply:
        return reply.read()

def finish(result):
    server.shutdown()
    reactor.stop()
    return result

fetches = [threads.deferToThread(fetch, f"/p{{i}}") for i in range(2)]
defer.gatherResults(fetches).addBoth(finish)
reactor.run()
"""
HAND_OVER_BUG = "reactor.callLater(0, events.append, self.path)  # BUG: from a handler thread"
HAND_OVER_FIX = "reactor.callFromThread(events.append, self.path)"


def test_a_handler_threads_callLater_is_found_and_replayed(tmp_path: Path) -> None:
    program = write_program(tmp_path, ADMIN_HTTP.format(hand_over=HAND_OVER_BUG))
    result = explore_program(program, "--budget", "20")
    headline = "threadcheck: violation: reactor.callLater called from thread 'Thread-"
    assert_found_and_replayed(result, headline)
    assert "at service.py:9 in do_GET" in result.stderr


def test_a_handler_thread_handing_over_is_clean(tmp_path: Path) -> None:
    program = write_program(tmp_path, ADMIN_HTTP.format(hand_over=HAND_OVER_FIX))
    assert_clean(explore_program(program, "--budget", "20"), budget=20)


# Pool jobs fetching from a backend in a thread beside the reactor, with a
# short timeout; one path is slow (a 2 s backend call). While the scheduler
# waited in real time for the first fetch to be answered, virtual time passed
# with it, and the other fetches, whose answers were already there, timed out
# (a false failure even with --max-delay 0).
SLOW_BACKEND = """\
import http.server, socket, socketserver, threading, time, urllib.request
from twisted.internet import reactor, threads
from twisted.internet.defer import gatherResults

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(2)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
threading.Thread(target=server.serve_forever, daemon=True, name="backend").start()
base = "http://127.0.0.1:%d" % server.server_address[1]

def fetch(path):
    try:
        with urllib.request.urlopen(base + path, timeout=0.5) as reply:
            return reply.status
    except (socket.timeout, OSError):
        return "timeout"

results = []
jobs = [threads.deferToThread(fetch, path) for path in ("/a", "/slow", "/b")]
gatherResults(jobs).addBoth(lambda r: (results.append(r), reactor.stop()))
reactor.run()
server.shutdown()
assert results[0] == [200, "timeout", 200], results
"""


def test_answers_already_there_do_not_time_out_while_another_is_awaited(
    tmp_path: Path,
) -> None:
    program = write_program(tmp_path, SLOW_BACKEND)
    assert_clean(explore_program(program, "--budget", "4", "--max-delay", "0"), budget=4)


# A monitor thread reads an agent's heartbeats (every 20 ms) while a pool job
# waits, with a 1 s timeout, on a daemon that never answers. Waiting first for
# the job's socket while the heartbeat's was always ready, virtual time never
# passed: the exploration hung.
HEARTBEAT_AND_SILENT_DAEMON = """\
import socket, subprocess, sys, threading
from twisted.internet import reactor, threads

agent = subprocess.Popen([sys.executable, "-c",
    "import socket, time\\n"
    "def listen():\\n"
    "    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\\n"
    "    print(s.getsockname()[1], flush=True)\\n"
    "    return s\\n"
    "a, b = listen(), listen()\\n"
    "c, _ = a.accept()\\n"
    "d, _ = b.accept()\\n"
    "while True:\\n    d.sendall(b'hb'); time.sleep(0.02)\\n"], stdout=subprocess.PIPE)
silent_port = int(agent.stdout.readline())
heartbeat_port = int(agent.stdout.readline())

def monitor():
    beats = socket.create_connection(("127.0.0.1", heartbeat_port))
    try:
        while beats.recv(100):
            pass
    except OSError:  # the agent killed at the end
        pass

threading.Thread(target=monitor, daemon=True, name="heartbeat-monitor").start()

def legacy_call():
    daemon = socket.create_connection(("127.0.0.1", silent_port), timeout=1.0)
    try:
        daemon.sendall(b"PING")
        return daemon.recv(10)
    except socket.timeout:
        return "timeout"
    finally:
        daemon.close()

results = []
threads.deferToThread(legacy_call).addBoth(lambda r: (results.append(r), reactor.stop()))
reactor.run()
agent.kill()
agent.wait()
assert results == ["timeout"], results
"""


def test_a_timeout_beside_a_chatty_socket_comes(tmp_path: Path) -> None:
    program = write_program(tmp_path, HEARTBEAT_AND_SILENT_DAEMON)
    assert_clean(explore_program(program, "--budget", "2"), budget=2)


# A helper module imported lazily, by a pool job and by a reactor callback: the
# one importing it second waited for the first on the import system's own lock,
# held while a point of the module's code switched threads ("blocked outside
# the scheduler's control" after 10 s, exit 1, on a correct program).
LAZY_CODECS = """\
import json, threading, time

{load}
TABLE = {{}}
for number in range(5):
    TABLE[number] = str(number)
encoded = 0
lock = threading.Lock()

def encode(numbers):
    global encoded
    {count}
    return json.dumps([TABLE[number] for number in numbers])
"""
LAZY_SERVICE = """\
from twisted.internet import reactor, task, threads
from twisted.internet.defer import gatherResults

def job():
    import codecs_helper
    return codecs_helper.encode([1, 2])

def tick():
    import codecs_helper
    return codecs_helper.encode([3])

work = [threads.deferToThread(job), task.deferLater(reactor, 0, tick)]
gatherResults(work).addBoth(lambda _: reactor.stop())
reactor.run()
import codecs_helper
assert codecs_helper.encoded == 2, f"encoded {codecs_helper.encoded} times"
"""
COUNT_RACY = "encoded += 1  # BUG: not under the lock"
COUNT_LOCKED = "with lock:\n        encoded += 1"


def _lazy_service(tmp_path: Path, count: str, load: str = "") -> Path:
    (tmp_path / "codecs_helper.py").write_text(LAZY_CODECS.format(count=count, load=load))
    return write_program(tmp_path, LAZY_SERVICE)


def test_a_module_imported_lazily_by_two_threads_is_clean(tmp_path: Path) -> None:
    assert_clean(explore_program(_lazy_service(tmp_path, COUNT_LOCKED), "--budget", "300"), 300)


# The same module waits as it loads (a back-off, a slow file): its sleep passed
# the turn on, and the second import waited for real on the first's module lock.
def test_a_lazily_imported_module_that_sleeps_as_it_loads_is_clean(tmp_path: Path) -> None:
    program = _lazy_service(tmp_path, COUNT_LOCKED, load="time.sleep(0.01)")
    assert_clean(explore_program(program, "--budget", "300"), 300)


def test_a_lost_count_in_a_lazily_imported_module_that_sleeps_is_found(tmp_path: Path) -> None:
    program = _lazy_service(tmp_path, COUNT_RACY, load="time.sleep(0.01)")
    result = explore_program(program, "--budget", "300")
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: encoded 1 times")


def test_a_lost_count_in_a_lazily_imported_module_is_found_and_replayed(tmp_path: Path) -> None:
    result = explore_program(_lazy_service(tmp_path, COUNT_RACY), "--budget", "300")
    assert_found_and_replayed(result, "threadcheck: exception: AssertionError: encoded 1 times")


# A plugin registers itself under the registry's lock as it is imported, and a
# reload imports it holding that lock: a thread importing it meanwhile holds its
# module lock and waits for the registry's. The report named a frozen importlib
# frame, and the waiter itself as the holder of the import (Python has each
# waiter take the module lock's wake-up lock before it sleeps on it).
PLUGIN = """\
from registry import HANDLERS, LOCK

with LOCK:
    HANDLERS["csv"] = "csv-handler"
"""
RELOADING_SERVICE = """\
import threading
from registry import HANDLERS, LOCK

def reload_handlers():
    with LOCK:
        HANDLERS.clear()
        import plugins_csv

def export():
    import plugins_csv
    return HANDLERS.get("csv")

workers = [threading.Thread(target=reload_handlers), threading.Thread(target=export)]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
"""


def test_a_deadlock_through_a_lazy_import_names_the_import_and_its_importer(
    tmp_path: Path,
) -> None:
    registry = "import threading\nLOCK = threading.RLock()\nHANDLERS = {}\n"
    (tmp_path / "registry.py").write_text(registry)
    (tmp_path / "plugins_csv.py").write_text(PLUGIN)
    program = write_program(tmp_path, RELOADING_SERVICE)
    result = explore_program(program, "--budget", "300")
    assert_found_and_replayed(result, "threadcheck: deadlock: every live thread is blocked")
    waits = [line.strip() for line in result.stderr.splitlines() if " waits for " in line]
    assert waits[1:] == [
        f"T1 (Thread-1 (reload_handlers)) waits for the import of plugins_csv at {program}:7"
        " in reload_handlers, held by T2",
        f"T2 (Thread-2 (export)) waits for lock at {tmp_path / 'plugins_csv.py'}:3 in <module>,"
        " held by T1",
    ]


# A message loop over selectors.DefaultSelector in a thread beside the main one,
# which flushes the same counter. DefaultSelector on Linux is EpollSelector,
# whose select is its own: the loop held the turn in a real poll, the main
# thread never sent, and the exploration ran for minutes and ignored Ctrl-C.
SELECTOR_LOOP = """
import selectors, socket, sys, threading, time

selector = selectors.DefaultSelector()
inbound, outbound = socket.socketpair()
stats = {{"messages": 0}}
lock = threading.Lock()
running = True

def loop():
    selector.register(outbound, selectors.EVENT_READ)
    while running:
        for key, _ in selector.select(timeout=0.5):
            data = key.fileobj.recv(100)
            {count}
    selector.close()

reader = threading.Thread(target=loop, daemon=True)
reader.start()
inbound.sendall(b"x\\n")
{flush}
inbound.sendall(b"y\\n")
deadline = time.monotonic() + 5
while stats["messages"] < 2 and time.monotonic() < deadline:
    time.sleep(0.01)
running = False
reader.join()
if stats["messages"] != 2:
    sys.exit(f"lost a message count: {{stats['messages']}}")
"""
LOOP_COUNT_BUG = 'stats["messages"] += data.count(b"\\n")  # BUG: the flush writes it too'
LOOP_FLUSH_BUG = 'stats["messages"] = stats["messages"] + 0  # a metrics flush'
LOOP_COUNT_FIX = 'with lock:\n                stats["messages"] += data.count(b"\\n")'
LOOP_FLUSH_FIX = 'with lock:\n    stats["messages"] = stats["messages"] + 0'


def test_a_count_lost_by_a_default_selector_loop_is_found_and_replayed(tmp_path: Path) -> None:
    body = SELECTOR_LOOP.format(count=LOOP_COUNT_BUG, flush=LOOP_FLUSH_BUG)
    result = explore_program(write_program(tmp_path, body))
    headline = "threadcheck: exit: the program exited with status 1: lost a message count: 1"
    assert_found_and_replayed(result, headline)


def test_its_locked_twin_is_clean(tmp_path: Path) -> None:
    body = SELECTOR_LOOP.format(count=LOOP_COUNT_FIX, flush=LOOP_FLUSH_FIX)
    assert_clean(explore_program(write_program(tmp_path, body)))


# A resolver that makes its executor on first use and keeps it in a module
# global for the process's life. The end of the first schedule stopped its
# workers and marked it shut down: every later schedule raised "cannot
# schedule new futures after shutdown", a false failure on every schedule.
_lookups: ThreadPoolExecutor | None = None
_making = threading.Lock()


def _lookup_pool() -> ThreadPoolExecutor:
    global _lookups
    with _making:
        if _lookups is None:
            _lookups = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dns")
        return _lookups


# The same resolver with an executor made at import: its queue, lock and idle
# count were real, its workers blocked on them out of the scheduler's sight
# ("blocked outside the scheduler's control", or a TimeoutError once the
# executor had been used before exploring).
_MADE_AT_IMPORT = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dns-at-import")


class Resolver:
    def __init__(self, locked: bool, pool: Callable[[], ThreadPoolExecutor]) -> None:
        self.cache: dict[str, str] = {}
        self.lookups = 0
        self.lock = threading.Lock() if locked else None
        self.pool = pool

    def resolve(self, name: str) -> str:
        address = self.pool().submit(lambda: f"10.0.0.{len(name)}").result(timeout=2)
        if self.lock is None:
            self.lookups += 1  # BUG: unlocked count of lookups
        else:
            with self.lock:
                self.lookups += 1
        return address


def _resolving(locked: bool, pool: Callable[[], ThreadPoolExecutor] = _lookup_pool) -> Any:
    def scenario(reactor: Any) -> Any:
        from twisted.internet import threads
        from twisted.internet.defer import gatherResults

        resolver = Resolver(locked, pool)
        lookups = [threads.deferToThread(resolver.resolve, n) for n in ("a.com", "bb.org")]

        def check(addresses: list[str]) -> None:
            assert addresses == ["10.0.0.5", "10.0.0.6"]
            assert resolver.lookups == 2, f"{resolver.lookups} lookups counted"

        return gatherResults(lookups).addCallback(check)

    return scenario


def test_an_executor_kept_between_schedules_works_in_each() -> None:
    result = threadcheck.explore(_resolving(locked=True), budget=300, strategy="random")
    result.assert_clean()
    assert result.schedules == 300


def test_the_lost_count_beside_a_kept_executor_is_found() -> None:
    result = threadcheck.explore(_resolving(locked=False), budget=2000)
    assert result.found, result.report()
    assert result.report().startswith(
        "threadcheck: exception: AssertionError: 1 lookups counted"
    ), result.report()


@pytest.mark.parametrize("used_before", [False, True], ids=["fresh", "used-before"])
def test_an_executor_made_at_import_works_in_each_schedule_and_after(used_before: bool) -> None:
    if used_before:
        assert _MADE_AT_IMPORT.submit(len, "abc").result(timeout=5) == 3
    scenario = _resolving(locked=True, pool=lambda: _MADE_AT_IMPORT)
    result = threadcheck.explore(scenario, budget=300, strategy="random")
    result.assert_clean()
    assert result.schedules == 300
    assert _MADE_AT_IMPORT.submit(len, "abcd").result(timeout=5) == 4  # its own again


def test_the_lost_count_beside_an_executor_made_at_import_is_found() -> None:
    scenario = _resolving(locked=False, pool=lambda: _MADE_AT_IMPORT)
    result = threadcheck.explore(scenario, budget=2000)
    assert result.report().startswith(
        "threadcheck: exception: AssertionError: 1 lookups counted"
    ), result.report()


# Start-up state a new process has none of, kept on the main thread from one
# schedule to the next: a closed asyncio loop ("Event loop is closed" on every
# schedule but the first), decimal's context, a per-thread session.
FRESH_MAIN = """
import asyncio
import decimal
import sys
import threading
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
session = threading.local()
problems = []
if decimal.getcontext().prec != 28:
    problems.append(f"decimal precision {decimal.getcontext().prec}")
decimal.getcontext().prec = 10
if getattr(session, "user", None) is not None:
    problems.append("a session of an earlier run")
session.user = "admin"

async def read_config():
    return {"workers": 2}

loop = asyncio.get_event_loop()
try:
    config = loop.run_until_complete(read_config())
finally:
    loop.close()

worker = threading.Thread(target=print, args=("configured",))
worker.start()
worker.join()
{end}
"""


def test_each_schedule_starts_the_main_thread_afresh(tmp_path: Path) -> None:
    end = "if problems:\n    sys.exit('; '.join(problems))"
    program = write_program(tmp_path, FRESH_MAIN.replace("{end}", end))
    assert_clean(explore_program(program, "--budget", "50"), budget=50)


def test_a_failure_from_the_start_shows_no_helper_of_ours(tmp_path: Path) -> None:
    # Its step table began with 33 rows of `__tc_ra__ (store)`, `__tc_wa__
    # (store)`...: the rewriter's helpers, stored in the module, as its steps.
    program = write_program(tmp_path, FRESH_MAIN.replace("{end}", "sys.exit('stopped')"))
    result = explore_program(program, "--budget", "50")
    assert result.returncode == 1 and "exited with status 1: stopped" in result.stderr
    assert "__tc_" not in result.stderr, result.stderr


def _refresher_with_an_executor(reactor: Any) -> Any:
    from twisted.internet import task

    stopping = threading.Event()

    def refresher() -> None:  # a daemon thread refreshing through an executor until told
        with ThreadPoolExecutor(max_workers=1) as executor:
            while True:
                executor.submit(int).result()
                if stopping.wait(0.2):
                    return

    threading.Thread(target=refresher, daemon=True).start()
    return task.deferLater(reactor, 0.5, stopping.set)


def test_a_schedule_s_end_raises_nothing_unraisable(monkeypatch: pytest.MonkeyPatch) -> None:
    # Z51: an executor collected as its daemon thread unwound at a schedule's
    # end ran its weakref callback, whose queue.put raised our Abort: pytest
    # warned of each ("Exception ignored in: ... weakref_cb"), 50 in a test,
    # and failed the test under -W error.
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    threadcheck.explore(_refresher_with_an_executor, budget=30).assert_clean()
    assert [u.exc_type for u in unraisable] == []
    assert sys.unraisablehook == unraisable.append  # given back
