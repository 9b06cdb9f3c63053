"""Quality: the dpor strategy finds each planted race and proves each fixed twin.

Proved means the search was exhausted: every schedule of the program's points
that orders some pair of conflicting steps differently was run, and the
result says so (``result.proof``, "every interleaving explored"). The twins'
schedule counts are bounds measured on this code, with some room: a search
that grows past one is a regression to look at (tests/benchmarks/dpor_proofs.py
prints them beside bounded:2's).

The programs: tests/races.py (Twisted: a reactor callback and deferToThread
jobs), tests/dpor_programs.py (plain threads: the counter and bank transfer
another DPOR tool proves in 2-4 executions, an actor's race behind its queue
that tool certified safe, and a Condition-based buffer), and two of the
time shapes of tests/test_explore_time_quality.py as whole programs.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import dpor_programs
import pytest
import races
from test_explore_time_quality import SHAPES, program

import threadcheck
from threadcheck._text import plural

from support import assert_found_and_replayed, explore_program, write_program

pytestmark = pytest.mark.quality  # in-process: every Python; the commands' are slow

BUDGET = 2000

# Twin -> schedules to exhaustion, at most (issue 15: within 50 each). The
# Twisted ones pay for the thread pool's own coordination (which worker takes
# a job, whether one is started), which is real and is explored; not for when
# its workers go idle relative to the harness's stop (``Scheduler.settle``).
# The plain-thread ones over 50 loop over lists in two threads: each step of
# such a loop reads its list, and lists are one location to the search.
PROVED_WITHIN = {
    "races:abba_deadlock": 10,
    "races:ordering": 20,
    "races:early_stop": 20,
    "races:lost_update": 50,
    "races:check_then_act": 50,
    "dpor_programs:counter": 10,
    "dpor_programs:bank": 10,
    "dpor_programs:actor": 30,
    "dpor_programs:heap": 30,
    "dpor_programs:sqlite": 10,
    "dpor_programs:metrics": 10,
    "dpor_programs:spellings": 10,
    "dpor_programs:startup": 10,
    "dpor_programs:config": 10,
    "dpor_programs:lru": 10,
    "dpor_programs:maintenance": 10,
    "dpor_programs:hits": 10,
    "dpor_programs:serve": 10,
    "dpor_programs:drain": 160,
    "dpor_programs:countdown": 10,
    "dpor_programs:connection": 10,
    "dpor_programs:bounds": 100,
    "dpor_programs:halves": 100,
    "dpor_programs:batches": 80,
    "dpor_programs:retries": 320,
    "dpor_programs:rotations": 140,
    "dpor_programs:clients": 60,
    "dpor_programs:sessions": 10,
    "dpor_programs:subscribers": 40,
    "dpor_programs:ids": 50,
    "dpor_programs:due": 40,
    "dpor_programs:registry": 50,
    "dpor_programs:dedup": 20,
    "dpor_programs:report": 20,
    "dpor_programs:pairs": 50,
    "dpor_programs:claims": 30,
    "dpor_programs:rules": 30,
    "dpor_programs:sweep": 20,
    "dpor_programs:frozen": 10,
    "dpor_programs:setters": 10,
}
FOUND_AS = {
    "races:abba_deadlock": "deadlock",
    "races:ordering": "exception",
    "races:early_stop": "incomplete",
    "races:lost_update": "exception",
    "races:check_then_act": "exception",
    "dpor_programs:counter": "exception",
    "dpor_programs:bank": "deadlock",
    "dpor_programs:actor": "exception",
    "dpor_programs:buffer": "exception",
    "dpor_programs:heap": "exception",
    "dpor_programs:sqlite": "exception",
    "dpor_programs:pages": "exception",
    "dpor_programs:metrics": "exception",
    "dpor_programs:spellings": "exception",
    "dpor_programs:startup": "exception",
    "dpor_programs:config": "exception",
    "dpor_programs:lru": "exception",
    "dpor_programs:maintenance": "exception",
    "dpor_programs:hits": "exception",
    "dpor_programs:serve": "exception",
    "dpor_programs:drain": "exception",
    "dpor_programs:countdown": "exception",
    "dpor_programs:connection": "exception",
    "dpor_programs:spin": "exception",
    "dpor_programs:bounds": "exception",
    "dpor_programs:halves": "exception",
    "dpor_programs:batches": "exception",
    "dpor_programs:retries": "exception",
    "dpor_programs:rotations": "exception",
    "dpor_programs:clients": "exception",
    "dpor_programs:sessions": "exception",
    "dpor_programs:subscribers": "exception",
    "dpor_programs:ids": "exception",
    "dpor_programs:due": "exception",
    "dpor_programs:registry": "exception",
    "dpor_programs:dedup": "exception",
    "dpor_programs:report": "exception",
    "dpor_programs:pairs": "exception",
    "dpor_programs:claims": "exception",
    "dpor_programs:rules": "exception",
    "dpor_programs:sweep": "exception",
    "dpor_programs:frozen": "exception",
    "dpor_programs:setters": "exception",
}


def assert_proved_or_found(
    result: subprocess.CompletedProcess[str], fixed: bool, headline: str
) -> None:
    """A fixed program's exploration proved it; a buggy one's found ``headline``."""
    if fixed:
        assert result.returncode == 0, result.stderr
        proved = "threadcheck: every interleaving explored ("
        assert result.stderr.startswith(proved), result.stderr
    else:
        assert_found_and_replayed(result, headline)


def _scenario(name: str, fixed: bool) -> object:
    module, _, short = name.partition(":")
    table = {"races": races, "dpor_programs": dpor_programs}[module]
    return (table.FIXED if fixed else table.BUGGY)[short]


@pytest.mark.parametrize("name", sorted(FOUND_AS))
def test_each_race_is_found_and_replays(name: str) -> None:
    scenario = _scenario(name, fixed=False)
    result = threadcheck.explore(scenario, strategy="dpor", budget=BUDGET)
    assert result.found, f"{name}: not found in {result.schedules} schedules"
    assert result.failure is not None and result.token
    assert result.failure.kind == FOUND_AS[name], result.report()
    replayed = threadcheck.replay(scenario, result.token)
    assert replayed.failure is not None
    assert replayed.failure.signature() == result.failure.signature()


@pytest.mark.parametrize("name", sorted(PROVED_WITHIN))
def test_each_fixed_twin_is_proved(name: str) -> None:
    result = threadcheck.explore(_scenario(name, fixed=True), strategy="dpor", budget=BUDGET)
    assert not result.found, result.report()
    assert result.proof and result.exhausted, result.report()
    assert result.schedules <= PROVED_WITHIN[name], result.schedules
    assert result.report().startswith(
        f"threadcheck: every interleaving explored ({plural(result.schedules, 'schedule')}, "
    )
    assert "no failure possible within these points" in result.report()


def test_the_actor_race_behind_its_queue_is_found_by_every_strategy() -> None:
    # The caller reads `stopped` while stop() is queued and not yet seen.
    for strategy in ("dpor", "portfolio", "random"):
        result = threadcheck.explore(dpor_programs.actor_racy, strategy=strategy, budget=BUDGET)
        assert result.found and result.failure is not None, strategy
        assert "the actor added" in result.failure.message


@pytest.mark.slow  # 20-50 s: once in the slow tier, not in each Python's fast tier
def test_the_condition_buffer_with_one_consumer_is_proved() -> None:
    # 2,882 schedules: each step of a loop over a list reads it, and lists are
    # one location (the harness's loops over its threads, the buffer's items).
    result = threadcheck.explore(dpor_programs.buffer_one_consumer, strategy="dpor", budget=4000)
    assert result.proof, result.report()


def test_the_portfolio_proves_a_small_twin_in_its_dpor_phase() -> None:
    result = threadcheck.explore(races.FIXED["abba_deadlock"], budget=BUDGET)
    assert result.proof and result.schedules <= 10
    assert result.strategy == "portfolio"


def test_a_twin_too_big_to_finish_is_never_called_proved() -> None:
    # The bounded buffer with two consumers: more classes than the budget.
    result = threadcheck.explore(dpor_programs.buffer_while, strategy="dpor", budget=60)
    assert not result.found and not result.exhausted and not result.proof
    assert result.report().endswith("budget spent: no failure seen, which is not a proof\n")


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["order", "timeout"])
def test_a_time_shape_is_found_and_its_twin_proved(tmp_path: Path, shape: str) -> None:
    (tmp_path / "buggy").mkdir()
    (tmp_path / "fixed").mkdir()
    buggy = explore_program(
        write_program(tmp_path / "buggy", program(shape, fixed=False)), "--strategy", "dpor"
    )
    assert buggy.returncode == 1, buggy.stderr
    assert buggy.stderr.startswith("threadcheck: " + SHAPES[shape][3]), buggy.stderr
    fixed = explore_program(
        write_program(tmp_path / "fixed", program(shape, fixed=True)), "--strategy", "dpor"
    )
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stderr.startswith("threadcheck: every interleaving explored ("), fixed.stderr


SETTINGS = """
import threading

counter = 0
lock = threading.Lock()


def bump():
    global counter
    {bump}
"""
BUMPED = """
from twisted.internet import defer, reactor, task, threads

import settings


def job():
    {job}


def main():
    jobs = [threads.deferToThread(job), task.deferLater(reactor, 0, settings.bump)]
    defer.gatherResults(jobs).addBoth(lambda _: reactor.stop())


reactor.callWhenRunning(main)
reactor.run()
assert settings.counter == 2, f"counter is {{settings.counter}}"
"""


@pytest.mark.slow
@pytest.mark.parametrize("locked", [False, True], ids=["racy", "locked"])
def test_a_module_global_bumped_both_ways(tmp_path: Path, locked: bool) -> None:
    # `settings.counter += 1` in one thread, `global counter; counter += 1` in
    # another: one variable, once two locations to DPOR (a module's attribute,
    # its globals' key), so the lost update was "proved" impossible.
    bump = "with lock:\n        counter += 1" if locked else "counter += 1"
    job = "settings.counter += 1"
    if locked:
        job = "with settings.lock:\n        " + job
    (tmp_path / "settings.py").write_text(SETTINGS.format(bump=bump))
    program = write_program(tmp_path, BUMPED.format(job=job))
    result = explore_program(program, "--strategy", "dpor")
    assert_proved_or_found(result, locked, "threadcheck: exception: AssertionError: counter is 1")


SWITCH = """
MAINTENANCE = False

def admit(request, log):
    log.append(("refused" if MAINTENANCE else "served", request))
"""

FRONTEND = """
import threading
import settings

log = []
request = threading.Thread(target=settings.admit, args=("r1", log))
{first}request.start()
{late}request.join()
if log != [("refused", "r1")]:
    raise SystemExit(f"request {{log[0][0]}} during maintenance")
"""


@pytest.mark.slow
@pytest.mark.parametrize("fixed", [False, True], ids=["late", "first"])
def test_a_module_variable_set_from_another_module_is_a_location(
    tmp_path: Path, fixed: bool
) -> None:
    # `admit` reads MAINTENANCE with no `global` (none is needed to read it);
    # the other module sets it as `settings.MAINTENANCE`: once "proved".
    (tmp_path / "settings.py").write_text(SWITCH)
    switch = "settings.MAINTENANCE = True\n"
    frontend = FRONTEND.format(first=switch if fixed else "", late="" if fixed else switch)
    result = explore_program(write_program(tmp_path, frontend), "--strategy", "dpor")
    headline = "threadcheck: exit: the program exited with status 1: request served"
    assert_proved_or_found(result, fixed, headline)


@pytest.mark.slow  # 20-50 s: once in the slow tier, not in each Python's fast tier
def test_a_consumer_spinning_on_a_flag_is_never_stuck() -> None:
    # Its loop re-reads a variable: no point once past its first 64 steps, so the
    # producer never ran, and the schedule was reported blocked after 10 s.
    result = threadcheck.explore(dpor_programs.spin_data_first, strategy="dpor", budget=300)
    assert not result.found, result.report()
    assert result.schedules > 1


CLIENT = """
import functools
import threading
from functools import lru_cache as memo

made = []


{made_by}


def worker():
    get_client()


{warm}
workers = [threading.Thread(target=worker) for _ in range(2)]
for thread in workers:
    thread.start()
for thread in workers:
    thread.join()
assert len(made) == 1, f"{{len(made)}} clients made"
"""


CONNECT = """def {name}():
    made.append(1)  # an expensive connection, meant once
    return object()"""
MADE_BY = {
    "decorator": "@functools.lru_cache(maxsize=None)\n" + CONNECT.format(name="get_client"),
    "alias": "@memo(maxsize=None)\n" + CONNECT.format(name="get_client"),
    "call": CONNECT.format(name="connect") + "\nget_client = memo(maxsize=None)(connect)",
}


@pytest.mark.slow
@pytest.mark.parametrize("made_by", MADE_BY)
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warmed"])
def test_a_client_made_twice_through_lru_cache(tmp_path: Path, warm: bool, made_by: str) -> None:
    # lru_cache looks and fills in C: no point and no dependence, so the cold
    # program was "proved" (every interleaving explored), by dpor and the
    # portfolio; and then still, spelt another way than @lru_cache or @cache.
    warming = "get_client()" if warm else ""
    program = write_program(tmp_path, CLIENT.format(warm=warming, made_by=MADE_BY[made_by]))
    result = explore_program(program, "--strategy", "dpor")
    assert_proved_or_found(result, warm, "threadcheck: exception: AssertionError: 2 clients made")


# An RPC client over a server thread: each call waits 0.5 s for its reply,
# then falls back. The bug: replies carry no request id, so a late reply to
# call 1 is taken for call 2's (the server held half a second shows it).
STALE_REPLY = """
import queue, sys, threading
from twisted.internet import reactor, threads

requests, replies = queue.Queue(), queue.Queue()
wrong = []

def server():
    while True:
        rid, x = requests.get()
        replies.put((rid, x * 10))

def call(rid, x):
    requests.put((rid, x))
    while True:
        try:
            got, value = replies.get(timeout=0.5)
        except queue.Empty:
            return None  # fall back
        {match}

def client():
    call(1, 1)
    value = call(2, 2)
    if value not in (None, 20):
        wrong.append(value)

threading.Thread(target=server, name="server", daemon=True).start()
threads.deferToThread(client).addBoth(lambda _: reactor.stop())
reactor.run()
if wrong:
    sys.exit(f"call 2 got the reply of call 1: {{wrong}}")
"""
ANY_REPLY = "return value  # BUG: whoever's reply it is"
OWN_REPLY = "if got == rid:\n            return value  # a stale one is dropped"


def test_a_reply_taken_after_its_wait_could_have_timed_out_is_found_by_dpor(
    tmp_path: Path,
) -> None:
    # A get that found its item was taken as one that would have waited for it:
    # had it come first it would have timed out instead, which dpor never tried
    # ("every interleaving explored (2 schedules)").
    program = write_program(tmp_path, STALE_REPLY.format(match=ANY_REPLY))
    result = explore_program(program, "--strategy", "dpor")
    assert_found_and_replayed(
        result, "threadcheck: exit: the program exited with status 1: call 2 got the reply"
    )


def test_the_rpc_client_matching_request_ids_is_clean_under_dpor(tmp_path: Path) -> None:
    program = write_program(tmp_path, STALE_REPLY.format(match=OWN_REPLY))
    result = explore_program(program, "--strategy", "dpor")
    assert result.returncode == 0, result.stderr
    assert "no failure" in result.stderr


# A daemon warm-up thread fills the config and sets an Event; the request job
# waits for it 0.5 s, then falls back to defaults.
WARM_UP = """
import sys, threading
from twisted.internet import reactor, threads

ready = threading.Event()
config = {{}}

def warm_up():
    config["db"] = "prod-db"
    config["pool"] = 20
    ready.set()

def handle():
    if not ready.wait(0.5):
        {fallback}

threading.Thread(target=warm_up, name="warmup", daemon=True).start()
threads.deferToThread(handle).addBoth(lambda _: reactor.stop())
reactor.run()
if config not in ({{"db": "prod-db", "pool": 20}}, {{"db": "sqlite", "pool": 1}}, {{}}):
    sys.exit(f"mixed config: {{config}}")
"""
FALLBACK_INTO_SHARED = 'config.setdefault("db", "sqlite")  # BUG: into the shared config\n'
FALLBACK_INTO_SHARED += '        config.setdefault("pool", 1)'


def test_a_daemon_thread_held_while_time_passes_is_never_proved_about(tmp_path: Path) -> None:
    # Held half done until the program ended, the warm-up left a mixed config;
    # dpor said "every interleaving explored (28 schedules)".
    program = write_program(tmp_path, WARM_UP.format(fallback=FALLBACK_INTO_SHARED))
    dpor = explore_program(program, "--strategy", "dpor")
    assert dpor.returncode != 0 or "not a proof" in dpor.stderr, dpor.stderr
    assert "every interleaving explored" not in dpor.stderr
    default = explore_program(program)
    assert_found_and_replayed(
        default, "threadcheck: exit: the program exited with status 1: mixed config: "
    )


# C code that calls the program back while it holds a container: a key
# function inside list.sort, max(key=). A pool job's change meanwhile conflicted
# only with the call's start, so it was never tried between two key calls.
BOTH_AT_ONCE = """
def main():
    jobs = [threads.deferToThread({job}), task.deferLater(reactor, 0, {callback})]
    done = defer.gatherResults(jobs, consumeErrors=True)
    done.addErrback(lambda f: errors.append(f.value.subFailure.getErrorMessage()))
    done.addBoth(lambda _: reactor.stop())

reactor.callWhenRunning(main)
reactor.run()"""
"""A pool job and a reactor callback, each program's, at once: their errors kept."""
RESORTED = (
    """
from twisted.internet import defer, reactor, task, threads

class Job:
    def __init__(self, name, priority):
        self.name = name
        self.priority = priority

pending = [Job("a", 3), Job("b", 1), Job("c", 2)]
errors = []

def enqueue_retry():  # in the pool, when a job failed
    {enqueue}

def reprioritise():
    pending.sort(key=lambda job: job.priority)

"""
    + BOTH_AT_ONCE.format(job="enqueue_retry", callback="reprioritise")
    + """
if errors or len(pending) != 4:
    raise SystemExit(f"queue broken: {{errors}} {{len(pending)}} jobs")
"""
)
RESORTED_BUG = 'pending.append(Job("retry", 0))  # BUG: the reactor may be sorting'
RESORTED_FIX = 'reactor.callFromThread(pending.append, Job("retry", 0))'

IDLEST = (
    """
from twisted.internet import defer, reactor, task, threads

class Session:
    def __init__(self, sid, idle):
        self.sid = sid
        self.idle = idle

sessions = {{Session(1, 5), Session(2, 9), Session(3, 1)}}
errors = []

def register():  # in the pool, after a slow handshake
    {register}

def evict_idlest():
    return max(sessions, key=lambda session: session.idle).sid

"""
    + BOTH_AT_ONCE.format(job="register", callback="evict_idlest")
    + """
if errors:
    raise SystemExit(f"eviction failed: {{errors}}")
"""
)
IDLEST_BUG = "sessions.add(Session(4, 0))  # BUG: the reactor may be picking"
IDLEST_FIX = "reactor.callFromThread(sessions.add, Session(4, 0))"

CALLING_BACK = {
    "resorted": (RESORTED, "enqueue", RESORTED_BUG, RESORTED_FIX, "queue broken: ['list modified"),
    "idlest": (IDLEST, "register", IDLEST_BUG, IDLEST_FIX, "eviction failed: ['Set changed size"),
}
"""Shape -> (program, its placeholder, planted bug, fix, how the program exits)."""


@pytest.mark.slow
@pytest.mark.parametrize("fixed", [False, True], ids=["racy", "handed"])
@pytest.mark.parametrize("shape", sorted(CALLING_BACK))
def test_a_change_while_c_code_calls_the_program_back(
    tmp_path: Path, shape: str, fixed: bool
) -> None:
    text, slot, bug, fix, exits = CALLING_BACK[shape]
    program = write_program(tmp_path, text.format(**{slot: fix if fixed else bug}))
    result = explore_program(program, "--strategy", "dpor")
    assert_proved_or_found(
        result, fixed, f"threadcheck: exit: the program exited with status 1: {exits}"
    )
