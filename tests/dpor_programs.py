"""Plain-thread programs with planted races, and their fixed twins, for the dpor
strategy's quality tests: what another DPOR tool proves in a few executions,
what it certified safe wrongly (a race behind an actor's queue), and a
Condition-based bounded buffer it timed out on.

Also state that C code changes, unseen by the rewritten program: a job heap
taken with ``heapq.heappop`` after a look, and a hit counter kept in SQLite
and read, then written back (both were once "proved": no point and no
dependence at a C call that changes what it is given). And a generator of
pages drained by two threads, ``generator already executing`` when one
advances it while it runs in the other (once "proved": a loop over it read
it, and reads commute). And counters bumped by name with ``getattr`` and
``setattr`` (once "proved": neither was an access, and no point came between),
or as ``vars(obj)["n"]`` in one thread and ``obj.n`` in the other (two locations).

And, once "proved" too: a start-up wait with a timeout that time passing ends
(it never ran in the first schedule, so no race with it showed); a config
reloaded with ``dict.update`` while a handler reads a key, an LRU cache
reordered with ``move_to_end`` while an evictor pops its oldest entry (a whole
container's change did not conflict with a key's read), a maintenance switch
that is a class attribute written through the class and read through an
instance (two locations), a ``defaultdict`` whose look-up of a new key
inserts it while a reporter walks it (counted as a read), and a state a
server publishes to its handler through a closure, then rebinds (a variable
read by an inner function, not declared ``nonlocal``, was not recorded).

And, "proved" on Python 3.12+ only (its instruction tables had no point there):
a batch drained with a slice store (``pending[:] = []``), and a countdown loop
over ``reversed(range(2))`` re-reading a mode; on every Python (a variable's
read was no point): a connection checked, then used, while another thread
closes it, and a consumer spinning on a flag (reported stuck, or the flag set
before the data not found); a pair unpacked (``low, high = bounds``) while
another thread replaces it item by item (unpacking read nothing), and a
buffer read in two slices while another thread replaces its contents at once
(a slice's load read nothing, and was no point); an event appended to a
batch found in a dict while a flusher swaps the batch out (no point came
between the look-up and the append); a job popped from a heap and pushed back
in one line (``heappush(jobs, retried(heappop(jobs)))``), a round robin's
``self.backends.append(self.backends.pop(0))`` (no point came between the
arguments' call and the call they are handed to); a client made once through
``functools.lru_cache`` by two threads that both miss (the cache is C's, and
took no part in the search).

And, "proved" until a generator's stopping (a yield, a return) wrote it, as
its start in ``next(gen)`` does: two handlers drawing request ids from one
generator with ``next()`` (``generator already executing``).

And, "proved" until a write through a setter was one: a frozen dataclass's
stats bumped with ``object.__setattr__``, and setters taken as values
(``functools.partial(setattr, ...)``, a bound ``__setattr__``).

And, "proved" until a call into C that compares with the program's own
``__lt__`` watched its heap while it ran: a retry pushed onto a heap while
shutdown clears it (``list changed size during iteration``).

And, "proved" while a builtin container's method taken as a value was no
point and touched nothing when called: a registry whose hot path keeps
``self.ids.get`` and ``self.ids.__setitem__`` as attributes (registered
twice), and messages de-duplicated with ``functools.partial(set.add, seen)``
(handled twice). And a report two jobs print to, each line in two halves,
into one ``io.StringIO`` (``print(..., file=out)`` wrote nothing it was given).
And ids drawn in pairs with ``next()`` from one ``itertools.count`` (the call
advanced it unseen), checked by a comprehension (a comprehension's code
touched everything to the search, as code not rewritten: 4,725 schedules to
prove a twin of a whole program). A job claimed through a method fetched by
name, ``getattr(claimed, op)(job)`` (no point, no change); and a request
counter defined by rules the service compiles from text
(``compile(text, "<rules>", "exec")``: code of no file, never rewritten).
A sweep whose ``for`` loop assigns the global a status probe reads (a name
bound otherwise than by ``=`` was no write).

And, "proved" until each step of a loop over a container read it (only the
loop's start did): a publisher walking its subscribers while one is removed
(the next is skipped). A stats report walking a dict's values while another
thread registers a session (``dictionary changed size during iteration``) is
the same shape, found then only by the order the search tried first.

Each is a scenario: it takes the reactor (unused: these are threads alone)
and checks what it promises before it returns.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import io
import itertools
import queue
import sqlite3
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


class Counter:
    def __init__(self) -> None:
        self.value = 0
        self.lock = threading.Lock()


def _run(*targets: Any) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def counter_racy(reactor: Any) -> None:
    counter = Counter()

    def work() -> None:
        value = counter.value
        counter.value = value + 1  # BUG: not under the lock

    _run(work, work)
    assert counter.value == 2, f"value is {counter.value}"


def counter_locked(reactor: Any) -> None:
    counter = Counter()

    def work() -> None:
        with counter.lock:
            counter.value += 1

    _run(work, work)
    assert counter.value == 2, f"value is {counter.value}"


class Account:
    def __init__(self, name: str, balance: int) -> None:
        self.name = name
        self.balance = balance
        self.lock = threading.Lock()


def _transfer(source: Account, target: Account, amount: int, ordered: bool) -> None:
    first, second = (source, target)
    if ordered and first.name > second.name:  # every thread locks in the same order
        first, second = second, first
    with first.lock, second.lock:
        source.balance -= amount
        target.balance += amount


def bank_inverted(reactor: Any) -> None:
    a, b = Account("a", 100), Account("b", 100)
    _run(
        lambda: _transfer(a, b, 10, ordered=False),
        lambda: _transfer(b, a, 20, ordered=False),  # BUG: locks b then a: deadlock
    )
    assert a.balance + b.balance == 200


def bank_ordered(reactor: Any) -> None:
    a, b = Account("a", 100), Account("b", 100)
    _run(lambda: _transfer(a, b, 10, ordered=True), lambda: _transfer(b, a, 20, ordered=True))
    assert (a.balance, b.balance) == (110, 90), (a.balance, b.balance)


# An actor: one thread owns its state and takes messages from a queue.


class Actor:
    STOP = object()

    def __init__(self, guarded: bool) -> None:
        self.total = 0
        self.stopped = False
        self.closing = False
        self.guarded = guarded
        self.lock = threading.Lock()
        self.mailbox: queue.Queue[Any] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name="actor")
        self.thread.start()

    def _loop(self) -> None:
        while True:
            message = self.mailbox.get()
            if message is Actor.STOP:
                self.stopped = True
                return
            self.total += message

    def tell(self, amount: int) -> bool:
        """Hand ``amount`` over; False when the actor no longer takes messages."""
        if not self.guarded:
            if self.stopped:  # BUG: stop() may be queued already, not yet seen
                return False
            self.mailbox.put(amount)
            return True
        with self.lock:
            if self.closing:
                return False
            self.mailbox.put(amount)
            return True

    def stop(self) -> None:
        with self.lock:
            self.closing = True
            self.mailbox.put(Actor.STOP)
        self.thread.join()


def _actor_scenario(guarded: bool) -> None:
    actor = Actor(guarded)
    accepted: list[int] = []

    def caller() -> None:
        for amount in (1, 2):
            if actor.tell(amount):
                accepted.append(amount)

    worker = threading.Thread(target=caller, name="caller")
    worker.start()
    actor.stop()
    worker.join()
    assert actor.total == sum(accepted), f"accepted {accepted}, the actor added {actor.total}"


def actor_racy(reactor: Any) -> None:
    _actor_scenario(guarded=False)


def actor_guarded(reactor: Any) -> None:
    _actor_scenario(guarded=True)


# A bounded buffer on a Condition: the producer waits while it is full, the
# consumer while it is empty.


class Buffer:
    def __init__(self, capacity: int, check_with_while: bool) -> None:
        self.items: list[int] = []
        self.capacity = capacity
        self.check_with_while = check_with_while
        self.changed = threading.Condition()

    def put(self, item: int) -> None:
        with self.changed:
            while len(self.items) >= self.capacity:
                self.changed.wait()
            self.items.append(item)
            self.changed.notify_all()

    def get(self) -> int:
        with self.changed:
            if self.check_with_while:
                while not self.items:
                    self.changed.wait()
            elif not self.items:  # BUG: woken by another consumer's notify, still empty
                self.changed.wait()
            item = self.items.pop(0)
            self.changed.notify_all()
            return item


def _buffer_scenario(check_with_while: bool, consumers: int = 2) -> None:
    buffer = Buffer(1, check_with_while)
    taken: list[int] = []

    def produce() -> None:
        for item in (1, 2):
            buffer.put(item)

    def consume() -> None:
        for _ in range(2 // consumers):
            taken.append(buffer.get())

    _run(produce, *[consume] * consumers)
    assert sorted(taken) == [1, 2], taken


def buffer_if(reactor: Any) -> None:
    _buffer_scenario(check_with_while=False)


def buffer_while(reactor: Any) -> None:
    _buffer_scenario(check_with_while=True)


def buffer_one_consumer(reactor: Any) -> None:
    _buffer_scenario(check_with_while=True, consumers=1)


def _take_jobs(locked: bool) -> None:
    jobs = [(1, "reindex")]
    taken: list[tuple[int, str]] = []
    lock = threading.Lock()

    def worker() -> None:
        if locked:
            with lock:
                if jobs:
                    taken.append(heapq.heappop(jobs))
        elif jobs:  # BUG: looked at, then popped, with no lock
            taken.append(heapq.heappop(jobs))

    _run(worker, worker)
    assert taken == [(1, "reindex")], taken


def heap_racy(reactor: Any) -> None:
    _take_jobs(locked=False)


def heap_locked(reactor: Any) -> None:
    _take_jobs(locked=True)


def _count_hits(in_the_database: bool) -> None:
    db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
    db.execute("create table hits (n integer)")
    db.execute("insert into hits values (0)")

    def hit() -> None:
        if in_the_database:
            db.execute("update hits set n = n + 1")
        else:
            (n,) = db.execute("select n from hits").fetchone()
            db.execute("update hits set n = ?", (n + 1,))  # BUG: read, then written back

    _run(hit, hit)
    (n,) = db.execute("select n from hits").fetchone()
    db.close()
    assert n == 2, f"{n} hits counted"


def sqlite_racy(reactor: Any) -> None:
    _count_hits(in_the_database=False)


def sqlite_atomic(reactor: Any) -> None:
    _count_hits(in_the_database=True)


def _drain_pages(locked: bool) -> None:
    cursor = Counter()
    seen: list[int] = []

    def pages() -> Any:
        while cursor.value < 4:
            cursor.value += 1
            yield cursor.value

    shared = pages()

    def drain() -> None:
        if not locked:
            for page in shared:  # BUG: a generator advanced from two threads
                seen.append(page)
            return
        while True:
            with cursor.lock:
                page = next(shared, None)
            if page is None:
                return
            seen.append(page)

    _run(drain, drain)
    assert sorted(seen) == [1, 2, 3, 4], seen


def pages_racy(reactor: Any) -> None:
    _drain_pages(locked=False)


def pages_locked(reactor: Any) -> None:
    _drain_pages(locked=True)


class Metrics:
    """A registry of named counters, bumped by name (a generic metrics object)."""

    def __init__(self, locked: bool) -> None:
        self.requests = 0
        self.lock = threading.Lock() if locked else None

    def incr(self, name: str) -> None:
        if self.lock is None:
            setattr(self, name, getattr(self, name) + 1)  # BUG: read, then written back
            return
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)


def _count_requests(locked: bool) -> None:
    metrics = Metrics(locked)
    _run(lambda: metrics.incr("requests"), lambda: metrics.incr("requests"))
    assert metrics.requests == 2, f"{metrics.requests} requests counted"


def _count_by_dict(locked: bool) -> None:
    metrics = Metrics(locked)

    def by_attribute() -> None:
        if metrics.lock is None:
            metrics.requests += 1
            return
        with metrics.lock:
            metrics.requests += 1

    def by_dict() -> None:
        if metrics.lock is None:
            vars(metrics)["requests"] += 1  # BUG: the same counter, another spelling
            return
        with metrics.lock:
            vars(metrics)["requests"] += 1

    _run(by_attribute, by_dict)
    assert metrics.requests == 2, f"{metrics.requests} requests counted"


def spellings_racy(reactor: Any) -> None:
    _count_by_dict(locked=False)


def spellings_locked(reactor: Any) -> None:
    _count_by_dict(locked=True)


def metrics_racy(reactor: Any) -> None:
    _count_requests(locked=False)


def metrics_locked(reactor: Any) -> None:
    _count_requests(locked=True)


def _start_service(patience: float) -> None:
    ready = threading.Event()
    worker = threading.Thread(target=ready.set, name="service")
    worker.start()
    try:
        # BUG (patience 0.5): a start-up held half a second reads as failed.
        # Fixed: longer than any hold (max_delay, 1 s) of a live service.
        assert ready.wait(timeout=patience), "the service did not start in time"
    finally:
        worker.join()


def startup_impatient(reactor: Any) -> None:
    _start_service(patience=0.5)


def startup_patient(reactor: Any) -> None:
    _start_service(patience=5.0)


def _reload_config(locked: bool) -> None:
    settings = {"timeout": 30, "retries": 3}
    lock = threading.Lock()
    seen: list[tuple[int, int]] = []

    def handle() -> None:
        with lock if locked else _UNLOCKED:
            seen.append((settings["timeout"], settings["retries"]))

    handler = threading.Thread(target=handle)
    handler.start()
    with lock if locked else _UNLOCKED:
        settings.update({"timeout": 5, "retries": 1})  # BUG unlocked: mid-read
    handler.join()
    assert seen[0] in ((30, 3), (5, 1)), f"a request mixed two configs: {seen[0]}"


class _Unlocked:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_UNLOCKED = _Unlocked()


def config_racy(reactor: Any) -> None:
    _reload_config(locked=False)


def config_locked(reactor: Any) -> None:
    _reload_config(locked=True)


def _lru_cache(locked: bool) -> None:
    cache: OrderedDict[str, int] = OrderedDict(a=1, b=2, c=3)
    lock = threading.Lock()
    evicted: list[str] = []

    def evict_oldest() -> None:
        with lock if locked else _UNLOCKED:
            oldest = next(iter(cache))
            evicted.append(oldest)
            del cache[oldest]

    evictor = threading.Thread(target=evict_oldest)
    evictor.start()
    with lock if locked else _UNLOCKED:
        if "a" in cache:
            cache.move_to_end("a")  # BUG unlocked: the evictor read the old order
            assert "a" in cache, "the entry just used was evicted"
    evictor.join()


def lru_racy(reactor: Any) -> None:
    _lru_cache(locked=False)


def lru_locked(reactor: Any) -> None:
    _lru_cache(locked=True)


class Frontend:
    accepting = True
    """A switch for every instance, flipped through the class for maintenance."""

    def handle(self, log: list[str]) -> None:
        log.append("served" if self.accepting else "refused")


def _maintenance(first: bool) -> None:
    frontend, log = Frontend(), []
    Frontend.accepting = True
    if first:
        Frontend.accepting = False
    request = threading.Thread(target=frontend.handle, args=(log,))
    request.start()
    if not first:
        Frontend.accepting = False  # BUG: the request may already be in
    request.join()
    assert log == ["refused"], f"a request was {log[0]} during maintenance"


def maintenance_late(reactor: Any) -> None:
    _maintenance(first=False)


def maintenance_first(reactor: Any) -> None:
    _maintenance(first=True)


def _route_hits(locked: bool) -> None:
    hits: defaultdict[str, int] = defaultdict(int, {"GET /": 3, "POST /": 1})
    lock = threading.Lock()
    walked: list[str] = []

    def report() -> None:
        with lock if locked else _UNLOCKED:
            for route in hits:
                walked.append(route)

    reporter = threading.Thread(target=report)
    reporter.start()
    with lock if locked else _UNLOCKED:
        hot = hits["PUT /"] > 10  # BUG unlocked: the look-up inserts the key
    reporter.join()
    assert not hot and walked


def hits_racy(reactor: Any) -> None:
    _route_hits(locked=False)


def hits_locked(reactor: Any) -> None:
    _route_hits(locked=True)


def _serve(publish_first: bool) -> None:
    seen: list[str] = []
    state = "starting"
    if publish_first:
        state = "ready"

    def handle() -> None:
        seen.append(state)

    handler = threading.Thread(target=handle)
    handler.start()
    state = "ready"  # BUG (published late): the handler may have read "starting"
    handler.join()
    assert seen == ["ready"], f"the handler saw the server {seen[0]}"


def serve_late(reactor: Any) -> None:
    _serve(publish_first=False)


def serve_published(reactor: Any) -> None:
    _serve(publish_first=True)


def _drain(locked: bool) -> None:
    pending, shipped = ["e1"], []
    lock = threading.Lock()

    def drain() -> None:
        with lock if locked else _UNLOCKED:
            batch = list(pending)
            pending[:] = []  # BUG unlocked: an append between the copy and this is lost
        shipped.extend(batch)

    def produce() -> None:
        with lock if locked else _UNLOCKED:
            pending.append("e2")

    _run(drain, produce)
    assert sorted(shipped + pending) == ["e1", "e2"], f"event lost: {shipped} {pending}"


def drain_racy(reactor: Any) -> None:
    _drain(locked=False)


def drain_locked(reactor: Any) -> None:
    _drain(locked=True)


def _countdown(locked: bool) -> None:
    mode, seen = "a", []
    lock = threading.Lock()

    def read() -> None:
        with lock if locked else _UNLOCKED:
            word = ""
            for _ in reversed(range(2)):
                word += mode  # BUG unlocked: re-read each round
        seen.append(word)

    def flip() -> None:
        nonlocal mode
        with lock if locked else _UNLOCKED:
            mode = "b"

    _run(read, flip)
    assert seen[0] in ("aa", "bb"), f"a reader mixed modes: {seen[0]}"


def countdown_racy(reactor: Any) -> None:
    _countdown(locked=False)


def countdown_locked(reactor: Any) -> None:
    _countdown(locked=True)


def _use_connection(locked: bool) -> None:
    connection: list[str] | None = ["db"]
    lock = threading.Lock()
    errors: list[Exception] = []

    def query() -> None:
        try:
            with lock if locked else _UNLOCKED:
                if connection is not None:
                    len(connection)  # BUG unlocked: read again after the check
        except TypeError as error:
            errors.append(error)

    def close() -> None:
        nonlocal connection
        with lock if locked else _UNLOCKED:
            connection = None

    _run(query, close)
    assert not errors, f"a query used a closed connection: {errors[0]}"


def connection_racy(reactor: Any) -> None:
    _use_connection(locked=False)


def connection_locked(reactor: Any) -> None:
    _use_connection(locked=True)


def _spin(data_first: bool) -> None:
    ready, data, seen = False, None, []

    def produce() -> None:
        nonlocal ready, data
        if data_first:
            data = 42
            ready = True
        else:
            ready = True  # BUG: the flag before the data
            data = 42

    def consume() -> None:
        while not ready:
            pass
        seen.append(data)

    _run(consume, produce)
    assert seen == [42], f"the consumer saw {seen[0]}"


def spin_flag_first(reactor: Any) -> None:
    _spin(data_first=False)


def spin_data_first(reactor: Any) -> None:
    _spin(data_first=True)


def _bounds(locked: bool) -> None:
    bounds, seen = [0, 0], []
    lock = threading.Lock()

    def read() -> None:
        with lock if locked else _UNLOCKED:
            low, high = bounds  # BUG unlocked: between the two stores below
        seen.append((low, high))

    def widen() -> None:
        with lock if locked else _UNLOCKED:
            bounds[0] = 1
            bounds[1] = 1

    _run(read, widen)
    assert seen[0] in ((0, 0), (1, 1)), f"torn bounds: {seen[0]}"


def bounds_racy(reactor: Any) -> None:
    _bounds(locked=False)


def bounds_locked(reactor: Any) -> None:
    _bounds(locked=True)


def _halves(locked: bool) -> None:
    data, seen = [0, 0], []
    lock = threading.Lock()

    def read() -> None:
        with lock if locked else _UNLOCKED:
            head = data[:1]
            tail = data[1:]  # BUG unlocked: the writer may run between the slices
        seen.append(head + tail)

    def replace() -> None:
        with lock if locked else _UNLOCKED:
            data[:] = [1, 1]

    _run(read, replace)
    assert seen[0] in ([0, 0], [1, 1]), f"torn read: {seen[0]}"


def halves_racy(reactor: Any) -> None:
    _halves(locked=False)


def halves_locked(reactor: Any) -> None:
    _halves(locked=True)


def _batches(locked: bool) -> None:
    pending: dict[str, list[str]] = {"k": []}
    shipped: list[str] = []
    lock = threading.Lock()

    def produce() -> None:
        with lock if locked else _UNLOCKED:
            pending["k"].append("event")  # BUG unlocked: to a batch already shipped

    def flush() -> None:
        with lock if locked else _UNLOCKED:
            batch = pending["k"]
            pending["k"] = []
            shipped.extend(list(batch))

    _run(produce, flush)
    assert shipped + pending["k"] == ["event"], f"event lost: {shipped} {pending}"


def batches_racy(reactor: Any) -> None:
    _batches(locked=False)


def batches_locked(reactor: Any) -> None:
    _batches(locked=True)


def _retries(locked: bool) -> None:
    jobs = [(0, "sync-mailbox")]  # (attempts, name): the heap of jobs to retry
    lock = threading.Lock()

    def retry() -> None:
        with lock if locked else _UNLOCKED:
            # BUG unlocked: popped, then pushed back in one line, yet not at once
            heapq.heappush(jobs, _attempted(heapq.heappop(jobs)))

    _run(retry, retry)
    assert jobs == [(2, "sync-mailbox")], f"a retry lost: {jobs}"


def _attempted(job: tuple[int, str]) -> tuple[int, str]:
    attempts, name = job
    return attempts + 1, name


def retries_racy(reactor: Any) -> None:
    _retries(locked=False)


def retries_locked(reactor: Any) -> None:
    _retries(locked=True)


class Balancer:
    """Round robin over backends: the first is used, then moved to the end."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.lock = threading.Lock()

    def rotate(self, locked: bool) -> None:
        with self.lock if locked else _UNLOCKED:
            self.backends.append(self.backends.pop(0))  # BUG unlocked: two steps


def _rotations(locked: bool) -> None:
    balancer = Balancer(["db-1"])
    _run(lambda: balancer.rotate(locked), lambda: balancer.rotate(locked))
    assert balancer.backends == ["db-1"], balancer.backends


def rotations_racy(reactor: Any) -> None:
    _rotations(locked=False)


def rotations_locked(reactor: Any) -> None:
    _rotations(locked=True)


made_clients: list[object] = []


@functools.cache
def shared_client() -> object:
    """An expensive connection, meant to be made once: the cache takes no lock
    while it calls this (two threads that both miss make two)."""
    made_clients.append(object())
    return made_clients[-1]


def _clients(warm: bool) -> None:
    made_clients.clear()
    shared_client.cache_clear()
    if warm:
        shared_client()  # made before the workers start
    _run(shared_client, shared_client)  # BUG unwarmed: both may miss
    assert len(made_clients) == 1, f"{len(made_clients)} clients made"


def clients_racy(reactor: Any) -> None:
    _clients(warm=False)


def clients_warmed(reactor: Any) -> None:
    _clients(warm=True)


def _report_sessions(locked: bool) -> None:
    """A stats report sums each session's bytes while a new session registers."""
    sessions = {"s1": 120, "s2": 80}
    lock = threading.Lock()

    def register() -> None:
        with lock:
            sessions["s3"] = 0

    def report() -> None:
        total = 0
        with lock if locked else contextlib.nullcontext():
            for sent in sessions.values():  # BUG unlocked: a registration changes its size
                total += sent

    _run(register, report)


def sessions_racy(reactor: Any) -> None:
    _report_sessions(locked=False)


def sessions_locked(reactor: Any) -> None:
    _report_sessions(locked=True)


class Subscriber:
    def __init__(self, name: str) -> None:
        self.name = name
        self.delivered = 0


def _publish(snapshot: bool) -> None:
    """A publisher delivers to every subscriber while the first unsubscribes."""
    subscribers = [Subscriber(name) for name in "abcd"]
    lock = threading.Lock()

    def unsubscribe() -> None:
        with lock:
            subscribers.remove(subscribers[0])

    def publish() -> None:
        with lock:
            current = list(subscribers)
        for subscriber in current if snapshot else subscribers:  # BUG: the live list
            subscriber.delivered += 1

    _run(unsubscribe, publish)
    skipped = [subscriber.name for subscriber in subscribers if not subscriber.delivered]
    assert not skipped, f"skipped {skipped}"


def subscribers_live(reactor: Any) -> None:
    _publish(snapshot=False)


def subscribers_snapshot(reactor: Any) -> None:
    _publish(snapshot=True)


class RequestIds:
    """Request ids of one node, as a service numbers its requests."""

    def __init__(self, node: str) -> None:
        self.node = node

    def __iter__(self) -> Iterator[str]:
        issued = 0
        while True:
            issued += 1
            yield f"{self.node}-{issued}"


def _number_requests(locked: bool) -> None:
    """Two handlers draw ids from one generator, ``next()`` called directly."""
    ids = iter(RequestIds("web1"))
    lock = threading.Lock()
    drawn: list[str] = []

    def handle() -> None:
        with lock if locked else contextlib.nullcontext():
            request_id = next(ids)  # BUG unlocked: "generator already executing"
        drawn.append(request_id)

    _run(handle, handle)
    assert sorted(drawn) == ["web1-1", "web1-2"], drawn


def ids_racy(reactor: Any) -> None:
    _number_requests(locked=False)


def ids_locked(reactor: Any) -> None:
    _number_requests(locked=True)


@functools.total_ordering
class Retry:
    """A request to retry, ordered by when it is due, then by how often it failed."""

    def __init__(self, due: float, failures: int) -> None:
        self.due = due
        self.failures = failures

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Retry) and (self.due, self.failures) == (
            other.due,
            other.failures,
        )

    def __lt__(self, other: Retry) -> bool:
        return (self.due, self.failures) < (other.due, other.failures)


class RetryQueue:
    """Requests to retry, soonest first."""

    def __init__(self) -> None:
        self.due = [Retry(3.0, 1), Retry(5.0, 2)]
        self.lock = threading.Lock()

    def retry_later(self, locked: bool) -> None:
        with self.lock if locked else contextlib.nullcontext():
            heapq.heappush(self.due, Retry(1.0, 0))  # BUG unlocked: cleared while it compares

    def drop_all(self) -> None:
        with self.lock:
            self.due.clear()


def _schedule_retries(locked: bool) -> None:
    """A handler schedules a retry while shutdown drops the pending ones."""
    retries = RetryQueue()
    _run(functools.partial(retries.retry_later, locked), retries.drop_all)
    assert [retry.due for retry in retries.due] in ([], [1.0]), retries.due


def due_racy(reactor: Any) -> None:
    _schedule_retries(locked=False)


def due_locked(reactor: Any) -> None:
    _schedule_retries(locked=True)


class Registry:
    """Service ids by name, its hot path's look-up and store kept as bound methods."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self._get = self.ids.get
        self._put = self.ids.__setitem__
        self.lock = threading.Lock()

    def register(self, name: str, locked: bool) -> bool:
        with self.lock if locked else contextlib.nullcontext():
            if self._get(name) is None:  # BUG unlocked: looked up, then stored
                self._put(name, len(self.ids))
                return True
        return False


def _register_twice(locked: bool) -> None:
    registry = Registry()
    created: list[bool] = []
    register = functools.partial(registry.register, "billing", locked)
    _run(lambda: created.append(register()), lambda: created.append(register()))
    assert created.count(True) == 1, f"registered twice: {created}"


def registry_racy(reactor: Any) -> None:
    _register_twice(locked=False)


def registry_locked(reactor: Any) -> None:
    _register_twice(locked=True)


def _deliver_twice(locked: bool) -> None:
    """An at-least-once queue delivers message 7 twice, to two handlers."""
    seen: set[int] = set()
    mark = functools.partial(set.add, seen)
    lock = threading.Lock()
    handled: list[int] = []

    def on_message() -> None:
        with lock if locked else contextlib.nullcontext():
            fresh = 7 not in seen
            if fresh:
                mark(7)  # BUG unlocked: checked, then marked
        if fresh:
            handled.append(7)

    _run(on_message, on_message)
    assert handled == [7], f"handled twice: {handled}"


def dedup_racy(reactor: Any) -> None:
    _deliver_twice(locked=False)


def dedup_locked(reactor: Any) -> None:
    _deliver_twice(locked=True)


def _print_report(locked: bool) -> None:
    out = io.StringIO()  # the shared report
    lock = threading.Lock()

    def record(job: int) -> None:
        with lock if locked else contextlib.nullcontext():
            print(f"<{job}", file=out, end="")
            print(f"{job}>", file=out, end="")  # BUG unlocked: another job's half between

    _run(functools.partial(record, 0), functools.partial(record, 1))
    assert out.getvalue() in ("<00><11>", "<11><00>"), f"interleaved: {out.getvalue()}"


def report_racy(reactor: Any) -> None:
    _print_report(locked=False)


def report_locked(reactor: Any) -> None:
    _print_report(locked=True)


def _allocate_pairs(locked: bool) -> None:
    ids = itertools.count(1)  # the service's id allocator
    lock = threading.Lock()
    pairs: list[tuple[int, int]] = []

    def allocate() -> None:
        with lock if locked else contextlib.nullcontext():
            first = next(ids)
            second = next(ids)  # BUG unlocked: another thread draws between
        pairs.append((first, second))

    _run(allocate, allocate)
    assert all(second == first + 1 for first, second in pairs), f"not in pairs: {pairs}"


def pairs_racy(reactor: Any) -> None:
    _allocate_pairs(locked=False)


def pairs_locked(reactor: Any) -> None:
    _allocate_pairs(locked=True)


def _claim_twice(locked: bool) -> None:
    claimed: set[str] = set()
    lock = threading.Lock()
    done: list[str] = []

    def claim(job: str, op: str = "add") -> None:
        with lock if locked else contextlib.nullcontext():
            if job in claimed:
                return
            getattr(claimed, op)(job)  # BUG unlocked: checked, then claimed by name
        done.append(job)

    _run(functools.partial(claim, "rebuild"), functools.partial(claim, "rebuild"))
    assert done == ["rebuild"], f"claimed {len(done)} times"


def claims_racy(reactor: Any) -> None:
    _claim_twice(locked=False)


def claims_locked(reactor: Any) -> None:
    _claim_twice(locked=True)


RULES = """
class Stats:
    handled = 0

stats = Stats()

def on_request(lock):
{count}
"""
COUNT_RACY = """    handled = stats.handled
    stats.handled = handled + 1  # BUG: not under the lock"""
COUNT_LOCKED = """    with lock:
        stats.handled += 1"""


def _apply_rules(locked: bool) -> None:
    """Request handling defined by rules the service loads as text."""
    text = RULES.format(count=COUNT_LOCKED if locked else COUNT_RACY)
    rules: dict[str, Any] = {}
    exec(compile(text, "<rules>", "exec"), rules)
    lock = threading.Lock()
    handle = functools.partial(rules["on_request"], lock)
    _run(handle, handle)
    assert rules["stats"].handled == 2, f"handled {rules['stats'].handled}"


def rules_racy(reactor: Any) -> None:
    _apply_rules(locked=False)


def rules_locked(reactor: Any) -> None:
    _apply_rules(locked=True)


sweeping: str | None = None
"""The file a sweep is at: a global the loop itself assigns."""


def _sweep(locked: bool) -> None:
    """A status probe while a sweep walks its files, its loop assigning the
    global it reports (``for sweeping in ...``: no write, no point once)."""
    lock = threading.Lock() if locked else contextlib.nullcontext()
    seen: list[str | None] = []

    def sweep() -> None:
        global sweeping
        with lock:  # BUG when unlocked: the probe sees it mid-sweep
            for sweeping in ("a.db", "b.db", None):  # noqa: B007 (None: done)
                pass

    def probe() -> None:
        with lock:
            seen.append(sweeping)

    _run(sweep, probe)
    assert seen == [None], f"the probe saw {seen}"


def sweep_racy(reactor: Any) -> None:
    _sweep(locked=False)


def sweep_locked(reactor: Any) -> None:
    _sweep(locked=True)


@dataclass(frozen=True)
class FrozenStats:
    """Request stats, frozen as a value object, bumped in place the way frozen
    dataclasses allow it: ``object.__setattr__``."""

    handled: int = 0


def _bump_frozen(locked: bool) -> None:
    """Once "proved": a write through ``object.__setattr__`` was no access."""
    stats = FrozenStats()
    lock = threading.Lock() if locked else contextlib.nullcontext()

    def handle() -> None:
        with lock:  # BUG when unlocked: read, then written back
            object.__setattr__(stats, "handled", stats.handled + 1)

    _run(handle, handle)
    assert stats.handled == 2, f"handled {stats.handled}"


def frozen_racy(reactor: Any) -> None:
    _bump_frozen(locked=False)


def frozen_locked(reactor: Any) -> None:
    _bump_frozen(locked=True)


def _bump_through_setters(locked: bool) -> None:
    """Once "proved": setters taken as values (``functools.partial(setattr, ...)``,
    a bound ``__setattr__``) wrote, unseen, in the C code they were handed to."""
    metrics = Metrics(locked=False)
    lock = threading.Lock() if locked else contextlib.nullcontext()
    set_requests = functools.partial(setattr, metrics, "requests")
    set_attribute = metrics.__setattr__

    def by_partial() -> None:
        with lock:  # BUG when unlocked: read, then written back
            set_requests(metrics.requests + 1)

    def by_method() -> None:
        with lock:
            set_attribute("requests", metrics.requests + 1)

    _run(by_partial, by_method)
    assert metrics.requests == 2, f"{metrics.requests} requests counted"


def setters_racy(reactor: Any) -> None:
    _bump_through_setters(locked=False)


def setters_locked(reactor: Any) -> None:
    _bump_through_setters(locked=True)


BUGGY = {
    "counter": counter_racy,
    "bank": bank_inverted,
    "actor": actor_racy,
    "buffer": buffer_if,
    "heap": heap_racy,
    "sqlite": sqlite_racy,
    "pages": pages_racy,
    "metrics": metrics_racy,
    "spellings": spellings_racy,
    "startup": startup_impatient,
    "config": config_racy,
    "lru": lru_racy,
    "maintenance": maintenance_late,
    "hits": hits_racy,
    "serve": serve_late,
    "drain": drain_racy,
    "countdown": countdown_racy,
    "connection": connection_racy,
    "spin": spin_flag_first,
    "bounds": bounds_racy,
    "halves": halves_racy,
    "batches": batches_racy,
    "retries": retries_racy,
    "rotations": rotations_racy,
    "clients": clients_racy,
    "sessions": sessions_racy,
    "subscribers": subscribers_live,
    "ids": ids_racy,
    "due": due_racy,
    "registry": registry_racy,
    "dedup": dedup_racy,
    "report": report_racy,
    "pairs": pairs_racy,
    "claims": claims_racy,
    "rules": rules_racy,
    "sweep": sweep_racy,
    "frozen": frozen_racy,
    "setters": setters_racy,
}
FIXED = {
    "counter": counter_locked,
    "bank": bank_ordered,
    "actor": actor_guarded,
    "buffer": buffer_while,
    "heap": heap_locked,
    "sqlite": sqlite_atomic,
    "pages": pages_locked,
    "metrics": metrics_locked,
    "spellings": spellings_locked,
    "startup": startup_patient,
    "config": config_locked,
    "lru": lru_locked,
    "maintenance": maintenance_first,
    "hits": hits_locked,
    "serve": serve_published,
    "drain": drain_locked,
    "countdown": countdown_locked,
    "connection": connection_locked,
    "spin": spin_data_first,
    "bounds": bounds_locked,
    "halves": halves_locked,
    "batches": batches_locked,
    "retries": retries_locked,
    "rotations": rotations_locked,
    "clients": clients_warmed,
    "sessions": sessions_locked,
    "subscribers": subscribers_snapshot,
    "ids": ids_locked,
    "due": due_locked,
    "registry": registry_locked,
    "dedup": dedup_locked,
    "report": report_locked,
    "pairs": pairs_locked,
    "claims": claims_locked,
    "rules": rules_locked,
    "sweep": sweep_locked,
    "frozen": frozen_locked,
    "setters": setters_locked,
}
