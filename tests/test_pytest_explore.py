"""Explorations as pytest tests, end to end (pytester, one subprocess per run).

The marker, each option (budget override by count and by time, replay, seed,
shard), sharding into disjoint schedule sets, pytest-xdist splitting one
exploration between workers, junitxml, pytest-twisted beside it, and the
one-line errors.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import textwrap
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from threadcheck._sched._runner import WARM_UP

from support import before_short_summary

pytestmark = pytest.mark.slow

NO_PYTEST_TWISTED = ("-p", "no:twisted")

RACE = """
import pytest
from twisted.internet import threads


class Counter:
    total = 0


def in_thread(reactor, job, *args):
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), job, *args)


@pytest.mark.threadcheck_explore(budget=500)
def test_lost_update(threadcheck_reactor):
    reactor = threadcheck_reactor
    counter = Counter()

    def add(n):
        counter.total += n

    reactor.callLater(0, add, 10)
    done = in_thread(reactor, add, 1)
    done.addCallback(lambda _: in_thread(reactor, lambda: None))
    return done.addCallback(lambda _: check(counter.total))


def check(total):
    assert total == 11, f"total is {total}"


@pytest.mark.threadcheck_explore(budget=300)
def test_fixed(threadcheck_reactor):
    reactor = threadcheck_reactor
    counter = Counter()

    def add(n):
        counter.total += n

    reactor.callLater(0, add, 10)
    done = in_thread(reactor, reactor.callFromThread, add, 1)
    done.addCallback(lambda _: in_thread(reactor, lambda: None))
    done.addCallback(lambda _: in_thread(reactor, lambda: None))
    return done.addCallback(lambda _: check(counter.total))
"""

# Each schedule appends its index (and the order its two workers ran in) to a file.
RECORDING = """
import os
import pytest
from twisted.internet import threads
from twisted.internet.defer import gatherResults


@pytest.mark.threadcheck_explore(budget=BUDGET, strategy=STRATEGY)
def test_recorded(threadcheck_reactor):
    reactor = threadcheck_reactor
    order = []

    def job(name):
        order.append(name)

    pool = reactor.getThreadPool()
    jobs = [threads.deferToThreadPool(reactor, pool, job, name) for name in "ab"]

    def write(_):
        with open(os.environ["RECORD"], "a") as record:
            record.write(f"{reactor.schedule_index} {''.join(order)}\\n")

    return gatherResults(jobs).addCallback(write)
"""


# The same race, explored by the test itself rather than by the marker.
DIRECT = """
import threadcheck
from test_race import test_lost_update as scenario  # the marked test's body, a scenario


def test_direct():
    threadcheck.explore(scenario, budget=500).assert_clean()
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*NO_PYTEST_TWISTED, *args, timeout=180)


def recording(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, budget: int, strategy: str = "None"
) -> Path:
    pytester.makepyfile(
        test_recorded=RECORDING.replace("BUDGET", str(budget)).replace("STRATEGY", strategy)
    )
    record = pytester.path / "record.txt"
    monkeypatch.setenv("RECORD", str(record))
    return record


def recorded(record: Path) -> list[tuple[int, str]]:
    if not record.exists():
        return []
    lines = (line.split() for line in record.read_text().split("\n") if line)
    return [(int(i), order) for i, order in lines if int(i) != WARM_UP]


def token_of(result: pytest.RunResult) -> str:
    match = re.search(r"--threadcheck-replay=(tc1\.\S+)", result.stdout.str())
    assert match, result.stdout.str()
    return match.group(1)


def test_the_marker_finds_the_race_and_prints_its_replay_command(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_race=RACE)
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*threadcheck: exception: AssertionError: total is *",
            "*<- preempted*",
            "*replay: pytest test_race.py::test_lost_update --threadcheck-replay=tc1.*",
            "*threadcheck explore*",
            "2 explorations: * schedules in * s of exploring (*/s), * proved exhaustively, "
            "1 failing",
        ]
    )
    assert "@pytest_ar" not in result.stdout.str()  # assertion rewriting is not a point
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_under_pytest_repeat_the_replay_command_collects_the_test_again(
    pytester: pytest.Pytester,
) -> None:
    # It printed `pytest 'test_race.py::test_lost_update[1-2]' ...`, which
    # pytest could not find without --count 2: "not found", exit 4.
    pytester.makepyfile(test_race=RACE)
    result = run(pytester, "-p", "repeat", "--count", "2", "-k", "lost_update")
    result.assert_outcomes(failed=2)
    replays = sorted({line for line in result.outlines if line.startswith("replay: pytest ")})
    assert len(replays) == 2, replays
    command = shlex.split(replays[1].removeprefix("replay: "))
    assert command[1:4] == ["test_race.py::test_lost_update[2-2]", "--count", "2"]
    replayed = pytester.runpytest_subprocess(
        *NO_PYTEST_TWISTED, "-p", "repeat", *command[1:], timeout=180
    )
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(["*threadcheck: exception: AssertionError: total is *"])


@pytest.mark.parametrize("workers", [None, "2"], ids=["one-process", "xdist-n2"])
def test_the_session_page_shows_each_failing_exploration_s_schedule(
    pytester: pytest.Pytester, workers: str | None
) -> None:
    from test_view import parse, script_data

    pytester.makepyfile(test_race=RACE, test_direct=DIRECT)
    xdist = ("-n", workers) if workers else ()
    result = run(pytester, "--threadcheck-html=session.html", *xdist)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    page = (pytester.path / "session.html").read_text()
    parsed = parse(page)
    explorations = parsed.classes["card-schedule"]
    assert "test_direct.py::test_direct" in page  # explore().assert_clean() in a test
    assert explorations >= 2  # under xdist each worker explores its share, and may find it
    assert parsed.tags["svg"] == explorations and parsed.external == []
    assert "test_race.py::test_lost_update" in page and "test_fixed" not in page
    assert "exception: AssertionError: total is " in page
    assert "pytest test_race.py::test_lost_update --threadcheck-replay=tc1." in page
    views = script_data(parsed)["views"]
    assert sorted(views) == [f"x{n}" for n in range(1, explorations + 1)]
    assert all(f"x{n}-step-1" in parsed.ids for n in range(1, explorations + 1))


def test_a_marked_test_may_take_other_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fixtures="""
import logging
import pytest
from twisted.internet import threads


@pytest.mark.threadcheck_explore(budget=50)
def test_writes(threadcheck_reactor, tmp_path, caplog):
    reactor = threadcheck_reactor

    def write():
        (tmp_path / "out.txt").write_text("done")
        logging.getLogger("svc").warning("written")

    d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), write)
    return d.addCallback(lambda _: (tmp_path / "out.txt").read_text() == "done")
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["1 exploration: * 1 proved exhaustively, 0 failing"])


def test_a_strict_xfail_that_passed_is_counted_as_proved(pytester: pytest.Pytester) -> None:
    # pytest fails the test (XPASS strict): the summary said "0 proved, 1 failing",
    # though no schedule failed.
    pytester.makepyfile(
        test_xpass="""
import pytest
from twisted.internet import threads


@pytest.mark.xfail(strict=True, reason="the race was fixed since")
@pytest.mark.threadcheck_explore(budget=50)
def test_fixed(threadcheck_reactor):
    return threads.deferToThreadPool(
        threadcheck_reactor, threadcheck_reactor.getThreadPool(), lambda: None
    )
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["1 exploration: * 1 proved exhaustively, 0 failing"])


def test_a_skip_or_xfail_inside_an_explored_or_stressed_test_is_its_outcome(
    pytester: pytest.Pytester,
) -> None:
    # Each was FAILED, "fails on every schedule tried: not an interleaving bug",
    # with a replay token: a CI runner without an optional dependency went red.
    pytester.makepyfile(
        test_outcomes="""
import pytest


@pytest.mark.threadcheck_explore(budget=50)
def test_optional(threadcheck_reactor):
    pytest.importorskip("no_such_module_anywhere")


@pytest.mark.threadcheck_explore(budget=50)
def test_known(threadcheck_reactor):
    pytest.xfail("known race, ticket 12")


@pytest.mark.threadcheck_stress(runs=20)
def test_stressed(threadcheck_reactor):
    pytest.skip("needs a database")


@pytest.mark.threadcheck_explore(budget=50)
def test_failed(threadcheck_reactor):
    pytest.fail("the test's own failure")
"""
    )
    result = run(pytester, "-rsx")
    result.assert_outcomes(skipped=2, xfailed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "SKIPPED [[]1[]] test_outcomes.py:4: could not import 'no_such_module_anywhere'*",
            "SKIPPED [[]1[]] test_outcomes.py:*: needs a database",
        ],
        consecutive=False,
    )


def test_a_fixture_built_on_the_reactor_reaches_each_schedules(
    pytester: pytest.Pytester,
) -> None:
    # The fixture got None: "'NoneType' object has no attribute 'callLater'", a
    # failure on every schedule, with a token.
    pytester.makepyfile(
        test_service="""
import pytest
from twisted.internet import defer


class Service:
    def __init__(self, reactor):
        self.reactor = reactor

    def later(self, value):
        return _later(self.reactor, value)


def _later(reactor, value):
    d = defer.Deferred()
    reactor.callLater(0, d.callback, value)
    return d


@pytest.fixture
def service(threadcheck_reactor):
    return Service(threadcheck_reactor)


@pytest.fixture
def early(threadcheck_reactor):
    return threadcheck_reactor.seconds()


@pytest.mark.threadcheck_explore(budget=20)
def test_service(service, threadcheck_reactor):
    return service.later(3).addCallback(lambda value: value == 3 or pytest.fail("lost"))


@pytest.mark.threadcheck_explore(budget=20)
def test_early(early, threadcheck_reactor):
    pass
"""
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*AttributeError: threadcheck_reactor.seconds: a fixture's reactor is each schedule's*"]
    )


def test_an_explored_tests_own_body_runs_rewritten(pytester: pytest.Pytester) -> None:
    # Under its marker (a decorator that is a call) the test's code was never
    # swapped: a list's append taken as a value in its body went unseen, and
    # the dpor search "proved" the test.
    pytester.makepyfile(
        test_body="""
import pytest
from twisted.internet import threads
from twisted.internet.defer import gatherResults


@pytest.mark.threadcheck_explore(budget=300, strategy="dpor")
def test_admit_one(threadcheck_reactor):
    lines = []
    record = lines.append

    def admit(x):
        if len(lines) < 1:
            record(x)

    pool = threadcheck_reactor.getThreadPool()
    work = [threads.deferToThreadPool(threadcheck_reactor, pool, admit, n) for n in (1, 2)]

    def check(_):
        assert len(lines) == 1, f"admitted {lines}"

    return gatherResults(work).addCallback(check)
"""
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["threadcheck: exception: AssertionError: admitted *"])


def test_the_replay_command_reproduces_the_failure(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_race=RACE)
    token = token_of(run(pytester, "-k", "lost_update"))
    replayed = run(pytester, "test_race.py::test_lost_update", f"--threadcheck-replay={token}")
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(["*AssertionError: total is 10", "*1 failing*"])
    assert token_of(replayed) == token


def test_a_replay_that_goes_elsewhere_is_an_error_not_a_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_race=RACE)
    token = token_of(run(pytester, "-k", "lost_update"))
    # The test changed since: its second job is gone.
    pytester.makepyfile(test_race=RACE.replace("in_thread(reactor, lambda: None)", "None"))
    replayed = run(pytester, "test_race.py::test_lost_update", f"--threadcheck-replay={token}")
    replayed.assert_outcomes(failed=1)
    replayed.stdout.fnmatch_lines(
        ["*threadcheck: the replay diverged:*", "1 exploration: 1 schedule in * 1 failing"]
    )


def test_a_replay_runs_the_test_its_token_names_only(pytester: pytest.Pytester) -> None:
    # Every selected explored test replayed it: the correct twin failed, "diverged".
    pytester.makepyfile(test_race=RACE)
    token = token_of(run(pytester, "-k", "lost_update"))
    replayed = run(pytester, "test_race.py", "-rfs", f"--threadcheck-replay={token}")
    replayed.assert_outcomes(failed=1, skipped=1)
    replayed.stdout.fnmatch_lines(["FAILED test_race.py::test_lost_update - *"])
    replayed.stdout.fnmatch_lines(  # at the test's line, not at threadcheck's own
        ["SKIPPED [[]1[]] test_race.py:*: --threadcheck-replay: the token is of *test_lost_update"]
    )
    assert "diverged" not in replayed.stdout.str()


def test_a_replay_of_another_test_than_its_tokens_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_race=RACE)
    token = token_of(run(pytester, "-k", "lost_update"))
    replayed = run(pytester, "test_race.py::test_fixed", f"--threadcheck-replay={token}")
    assert replayed.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in replayed.stderr.lines if line] == [
        "ERROR: --threadcheck-replay: the token is of the test test_race.py::test_lost_update, "
        "which is not selected; run the replay command as printed (it names the test)"
    ]


def test_a_tests_token_replays_it_selected_from_another_folder(
    pytester: pytest.Pytester,
) -> None:
    # Printed as `test_race.py::...` in the tests' folder, the token was refused
    # from the project's root ("not selected"), where the test is
    # `tests/test_race.py::...`, and the printed command named no such file there.
    tests = pytester.mkpydir("tests")
    (tests / "test_race.py").write_text(textwrap.dedent(RACE))
    recorded = token_of(run(pytester, "tests/test_race.py", "-k", "lost_update"))
    from threadcheck._sched import _token

    document = _token.decode(recorded)
    assert document["target"] == "tests/test_race.py::test_lost_update"
    # As printed in the tests' own folder: a node id without the folder.
    token = _token.encode({**document, "target": "test_race.py::test_lost_update"})
    test = "tests/test_race.py::test_lost_update"
    replayed = run(pytester, test, f"--threadcheck-replay={token}")
    replayed.assert_outcomes(failed=1)
    assert "not selected" not in replayed.stderr.str()


RERUN_ONCE = """
import pytest
from _pytest.runner import runtestprotocol


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    # What pytest-rerunfailures does: a failed test runs again, on the same item.
    item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
    for attempt in range(2):
        reports = runtestprotocol(item, nextitem=nextitem, log=False)
        failed = any(report.failed for report in reports)
        for report in reports:
            if failed and attempt == 0 and report.when == "call":
                report.outcome = "rerun"
            item.ihook.pytest_runtest_logreport(report=report)
        if not failed:
            break
    item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
    return True
"""


def test_a_rerun_test_counts_each_attempt_once(pytester: pytest.Pytester) -> None:
    # Each attempt's report held the figures of every earlier one too: 17
    # schedules a time, three attempts said 17 + 34 + 51.
    pytester.makepyfile(test_race=RACE)
    once = run(pytester, "-k", "lost_update").stdout.str()
    schedules = int(re.search(r"1 exploration: (\d+) schedules", once)[1])  # type: ignore[index]
    pytester.makeconftest(RERUN_ONCE)
    twice = run(pytester, "-k", "lost_update")
    twice.stdout.fnmatch_lines([f"1 exploration: {2 * schedules} schedules in *"])


def test_a_replay_of_a_programs_token_is_a_usage_error(pytester: pytest.Pytester) -> None:
    # Every explored test replayed the program's decisions, and failed (its
    # correct twin too): "the replay diverged".
    from threadcheck._sched import _token

    pytester.makepyfile(test_race=RACE)
    recorded = _token.decode(token_of(run(pytester, "-k", "lost_update")))
    token = _token.encode({**recorded, "target": "cache_lost.py"})
    replayed = run(pytester, "test_race.py", f"--threadcheck-replay={token}")
    assert replayed.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in replayed.stderr.lines if line] == [
        "ERROR: --threadcheck-replay: the token is of cache_lost.py, not of a pytest test; "
        "replay it with threadcheck replay TOKEN cache_lost.py"
    ]
    # A scenario's, as a Hypothesis test's run() prints: threadcheck replay
    # TOKEN on its module said "the replay diverged".
    token = _token.encode({**recorded, "target": "test_cache:test_cache.<locals>.<lambda>"})
    replayed = run(pytester, "test_race.py", f"--threadcheck-replay={token}")
    assert [line for line in replayed.stderr.lines if line] == [
        "ERROR: --threadcheck-replay: the token is of test_cache:test_cache.<locals>.<lambda>, "
        "not of a pytest test; replay it with threadcheck.replay(scenario, TOKEN) with that "
        "scenario, as printed beside it"
    ]


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["alone", "xdist"])
def test_a_replay_of_no_explored_test_is_a_usage_error(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    # Under -n 2 the workers raised it: an INTERNALERROR, exit 3.
    pytester.makepyfile(test_race=RACE, test_plain="def test_plain():\n    pass\n")
    token = token_of(run(pytester, "-k", "lost_update"))
    replayed = run(pytester, *xdist, "test_plain.py", f"--threadcheck-replay={token}")
    assert replayed.ret == pytest.ExitCode.USAGE_ERROR
    assert "passed" not in replayed.stdout.str()
    assert [line for line in replayed.stderr.lines if line] == [
        "ERROR: --threadcheck-replay: no selected test carries "
        "@pytest.mark.threadcheck_explore; run the replay command as printed (it names the test)"
    ]


def test_a_marker_that_runs_no_schedule_fails_its_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_nothing="""
        import pytest

        @pytest.mark.threadcheck_explore(budget=0)
        def test_nothing_explored(threadcheck_reactor):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["threadcheck: inconclusive: no schedule ran (budget 0 was spent before the first *"]
    )


def test_budget_override_by_count(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # random: the portfolio's dpor phase proves this scenario in fewer than 40
    record = recording(pytester, monkeypatch, budget=2000, strategy="'random'")
    run(pytester, "--threadcheck-explore=40").assert_outcomes(passed=1)
    assert [index for index, _ in recorded(record)] == list(range(40))


def test_budget_override_by_time(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = recording(pytester, monkeypatch, budget=5)
    result = run(pytester, "--threadcheck-explore=2s")
    result.assert_outcomes(passed=1)
    assert len(recorded(record)) > 5  # ran past the marker's budget, until the time was spent


def test_the_seed_chooses_the_schedules(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = recording(pytester, monkeypatch, budget=30, strategy="'random'")
    orders = {}
    for seed in ("1", "1", "2"):
        record.unlink(missing_ok=True)
        run(pytester, f"--threadcheck-seed={seed}").assert_outcomes(passed=1)
        orders.setdefault(seed, []).append([order for _, order in recorded(record)])
    assert orders["1"][0] == orders["1"][1]
    assert orders["1"][0] != orders["2"][0]


def test_shards_run_disjoint_schedules_that_together_make_the_whole(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = recording(pytester, monkeypatch, budget=60)
    seen = []
    for shard in ("1/3", "2/3", "3/3"):
        record.unlink(missing_ok=True)
        run(pytester, f"--threadcheck-shard={shard}").assert_outcomes(passed=1)
        seen.append([index for index, _ in recorded(record)])
    assert all(seen)
    assert sorted(i for indices in seen for i in indices) == list(range(60))  # disjoint, whole


def test_xdist_workers_split_one_exploration(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = recording(pytester, monkeypatch, budget=60)
    result = run(pytester, "-n", "2", "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*test_recorded[[]threadcheck-part1of2[]]*",
            "*test_recorded[[]threadcheck-part2of2[]]*",
        ],
        consecutive=False,
    )
    # One exploration in two parts: counted once (it said "2 explorations").
    result.stdout.fnmatch_lines(["1 exploration: 60 schedules in *"])
    assert sorted(index for index, _ in recorded(record)) == list(range(60))


def test_under_xdist_the_replay_command_names_the_test_itself(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_race=RACE)
    result = run(pytester, "-n", "2", "-k", "lost_update")
    result.stdout.fnmatch_lines(
        ["*replay: pytest test_race.py::test_lost_update --threadcheck-replay=tc1.*"]
    )
    assert "part1of2] --threadcheck-replay" not in result.stdout.str()
    # Each part that finds it fails; the exploration counts once, failing.
    result.stdout.fnmatch_lines(["1 exploration: * 1 failing"])


@pytest.mark.parametrize("strategy", ["bounded:1", "dpor"])
def test_a_search_in_order_runs_whole_in_the_first_shard(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, strategy: str
) -> None:
    record = recording(pytester, monkeypatch, budget=100, strategy=f"{strategy!r}")
    skipped = run(pytester, "--threadcheck-shard=2/2", "-rs")
    skipped.assert_outcomes(skipped=1)
    skipped.stdout.fnmatch_lines([f"*a {strategy} search runs whole, in the first part"])
    assert recorded(record) == []
    run(pytester, "--threadcheck-shard=1/2").assert_outcomes(passed=1)
    assert recorded(record)


def test_junitxml_carries_the_failure_and_the_token(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_race=RACE)
    result = run(pytester, "--junitxml=report.xml")
    token = token_of(result)
    tree = ElementTree.parse(pytester.path / "report.xml")
    case = tree.find(".//testcase[@name='test_lost_update']")
    assert case is not None
    failure = case.find("failure")
    assert failure is not None and token in (failure.text or "")
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["threadcheck_token"] == token


def test_beside_pytest_twisted_explorations_use_their_own_reactors(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_both="""
        import pytest
        import pytest_twisted
        from twisted.internet import reactor as global_reactor
        from twisted.internet import threads


        @pytest.mark.threadcheck_explore(budget=50)
        def test_explored(threadcheck_reactor):
            assert threadcheck_reactor is not global_reactor
            pool = threadcheck_reactor.getThreadPool()
            return threads.deferToThreadPool(threadcheck_reactor, pool, lambda: 1)


        @pytest.mark.threadcheck_explore(budget=20)
        async def test_a_coroutine(threadcheck_reactor):
            pool = threadcheck_reactor.getThreadPool()
            assert await threads.deferToThreadPool(threadcheck_reactor, pool, lambda: 2) == 2


        @pytest_twisted.inlineCallbacks
        def test_on_the_global_reactor():
            value = yield threads.deferToThread(lambda: 3)
            assert value == 3
        """
    )
    result = pytester.runpytest_subprocess("-p", "twisted", timeout=180)
    result.assert_outcomes(passed=3)


LOCKED_INLINE_CALLBACKS = """
import threading
import pytest, pytest_twisted
from twisted.internet import defer, task, threads


def test_DECORATOR(threadcheck_reactor):
    reactor = threadcheck_reactor
    lock = threading.Lock()
    total = [0]

    def bump(k):
        with lock:
            total[0] += k

    pool = reactor.getThreadPool()
    yield defer.gatherResults([
        threads.deferToThreadPool(reactor, pool, bump, 1),
        task.deferLater(reactor, 0, bump, 10),
    ])
    assert total[0] == 11
"""


def test_a_pytest_twisted_inline_callbacks_test_is_proved_as_defer_s(
    pytester: pytest.Pytester,
) -> None:
    # pytest-twisted compiles its wrapper from text, holding the test in the
    # wrapper's globals: the test ran unrewritten, so no proof (100 schedules).
    marked = "\n@pytest.mark.threadcheck_explore(budget=100)\n@{}\ndef test_{}"
    tests = "".join(
        LOCKED_INLINE_CALLBACKS.replace(
            "\ndef test_DECORATOR", marked.format(name, name.partition(".")[0])
        )
        for name in ("pytest_twisted.inlineCallbacks", "defer.inlineCallbacks")
    )
    pytester.makepyfile(test_locked=tests)
    result = pytester.runpytest_subprocess("-p", "twisted", timeout=180)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 explorations: * schedules in *, 2 proved exhaustively, *"])


# pytest-asyncio in auto mode wraps every `async def` test in a sync function
# that runs it on an asyncio loop: awaiting a Deferred there failed every
# schedule ("Task got bad yield"), the locked twin included.
ASYNC_TALLIES = """
import threading
import pytest
from twisted.internet import task, threads


class Tally:
    def __init__(self):
        self.n = 0
        self.lock = threading.Lock()

    def bump(self, k, locked):
        if locked:
            with self.lock:
                self.n += k
        else:
            self.n += k


async def both_bump(reactor, locked):
    tally = Tally()
    pool = reactor.getThreadPool()
    await threads.deferToThreadPool(reactor, pool, tally.bump, 1, locked)
    await task.deferLater(reactor, 0, tally.bump, 10, locked)
    return tally.n


@pytest.mark.threadcheck_explore(budget=100)
async def test_lost(threadcheck_reactor):
    pool = threadcheck_reactor.getThreadPool()
    tally = Tally()
    work = threads.deferToThreadPool(threadcheck_reactor, pool, tally.bump, 1, False)
    tally.bump(10, False)
    await work
    assert tally.n == 11


@pytest.mark.threadcheck_explore(budget=100)
async def test_locked(threadcheck_reactor):
    assert await both_bump(threadcheck_reactor, True) == 11


@pytest.mark.threadcheck_stress(runs=10, acceptable=[11])
async def test_stressed(threadcheck_reactor):
    return await both_bump(threadcheck_reactor, True)


async def test_plain_asyncio():
    import asyncio

    assert await asyncio.sleep(0, result=5) == 5
"""


def test_under_pytest_asyncio_auto_mode_async_explorations_run_on_the_reactor(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_tallies=ASYNC_TALLIES)
    result = pytester.runpytest_subprocess(
        "-p", "asyncio", "-o", "asyncio_mode=auto", *NO_PYTEST_TWISTED, timeout=180
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "threadcheck: exception: AssertionError: assert 10 == 11",
            "FAILED test_tallies.py::test_lost*",
        ]
    )
    result.stdout.no_fnmatch_line("*bad yield*")


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--threadcheck-explore=lots", "*--threadcheck-explore=lots: give a count*"),
        ("--threadcheck-explore=0", "*--threadcheck-explore=0: give a count*"),
        ("--threadcheck-explore=infs", "*--threadcheck-explore=infs: give a count*"),
        ("--threadcheck-shard=3/2", "*--threadcheck-shard=3/2: give i/n with 1 <= i <= n*"),
        ("--threadcheck-replay=nonsense", "*threadcheck: *token*"),
    ],
)
def test_a_bad_option_is_a_one_line_error(
    pytester: pytest.Pytester, option: str, message: str
) -> None:
    pytester.makepyfile(test_race=RACE)
    result = run(pytester, option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = result.stdout.lines + result.stderr.lines
    assert any(fnmatch.fnmatch(line, message) for line in lines), lines


def test_misuse_fails_with_what_to_do(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_misuse="""
        import unittest

        import pytest


        def test_fixture_without_marker(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(budget=5)
        def test_marker_without_fixture():
            pass


        class ReserveTests(unittest.TestCase):
            # A TestCase method runs through unittest: it passed, never explored.
            @pytest.mark.threadcheck_explore(budget=5)
            def test_explored(self):
                pass

            @pytest.mark.threadcheck_stress(runs=5, acceptable=[None])
            def test_stressed(self):
                pass


        @pytest.mark.threadcheck_explore(budget=5)
        def test_module_reactor(threadcheck_reactor):
            # Bound when the module was imported, before exploring.
            return task.deferLater(reactor, 0, lambda: None)
        """
    )
    test_file = pytester.path / "test_misuse.py"
    imports = "from twisted.internet import reactor, task\n"
    test_file.write_text(imports + test_file.read_text())
    result = run(pytester)
    result.assert_outcomes(failed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*threadcheck_reactor is made afresh for every schedule: mark the test*",
            "*threadcheck_explore and threadcheck_stress run a test through its "
            "threadcheck_reactor argument*",
        ],
        consecutive=False,
    )
    assert before_short_summary(result).count("not a TestCase method") == 2
    # One line, not the misuse twice with "During handling of the above exception".
    assert before_short_summary(result).count("used Twisted's global reactor") == 1


def test_pytest_timeout_ends_an_exploration_not_the_session(pytester: pytest.Pytester) -> None:
    # Its SIGALRM handler raised in the scheduler's thread: the timeout was
    # taken for the program's exception ("found", with a token), or, raised
    # inside a hand-off, broke the session's later explorations.
    pytester.makepyfile(
        test_slow="""
        import threading

        import pytest
        from twisted.internet import defer, threads


        @pytest.mark.threadcheck_explore(budget=1000000)
        def test_slow(threadcheck_reactor):
            lock = threading.Lock()

            def work():
                for _ in range(20):
                    with lock:
                        pass

            pool = threadcheck_reactor.getThreadPool()
            jobs = [threads.deferToThreadPool(threadcheck_reactor, pool, work) for _ in range(3)]
            return defer.gatherResults(jobs)


        @pytest.mark.threadcheck_explore(budget=50)
        def test_after(threadcheck_reactor):
            pool = threadcheck_reactor.getThreadPool()
            return threads.deferToThreadPool(threadcheck_reactor, pool, lambda: 1)
        """
    )
    result = run(pytester, "--timeout", "2", "-p", "timeout")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["FAILED test_slow.py::test_slow - Failed: Timeout (>2.0s)*"])
    assert "threadcheck: exception" not in result.stdout.str()


def test_pytest_timeout_while_shrinking_reports_the_failure_found(
    pytester: pytest.Pytester,
) -> None:
    # The timeout fired during the shrinking of a lost update already found:
    # the test failed with "Timeout" alone, no failure, no token.
    pytester.makepyfile(
        test_shrinking="""
        import time

        import pytest
        from twisted.internet import threads
        from twisted.internet.defer import gatherResults


        class Stats:
            total = 0


        @pytest.mark.threadcheck_explore(budget=2000, strategy="random")
        def test_ingest(threadcheck_reactor):
            stats = Stats()

            def ingest(i):
                for _ in range(40):
                    time.sleep(0.0005)  # real time passes: each schedule is slow
                stats.total += 1  # BUG: lost update
                return 1

            pool = threadcheck_reactor.getThreadPool()
            jobs = [
                threads.deferToThreadPool(threadcheck_reactor, pool, ingest, i)
                for i in range(8)
            ]

            def check(done):
                assert stats.total == len(done), f"lost update: {stats.total}"

            return gatherResults(jobs).addCallback(check)
        """
    )
    # Imported before the timed test: on a loaded machine the 1 s ran out there.
    pytester.makeconftest("import threadcheck._sched._explore, threadcheck_reactor._scheduled")
    result = run(pytester, "--timeout", "1", "-p", "timeout")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*threadcheck: exception: AssertionError: lost update: *",
            "*(shrinking stopped by the test's timeout)*",
            "*replay: pytest test_shrinking.py::test_ingest --threadcheck-replay=tc1.*",
        ]
    )


# Two pool workers each add 1, 300 times, without a lock: on real threads
# switching every microsecond, updates get lost in almost every run.
STRESS_RACE = """
import pytest
from twisted.internet import threads
from twisted.internet.defer import gatherResults


class Counter:
    total = 0


@pytest.mark.threadcheck_explore(budget=10)
def test_unlocked_counter(threadcheck_reactor):
    reactor = threadcheck_reactor
    counter = Counter()

    def work():
        for _ in range(300):
            counter.total += 1

    pool = reactor.getThreadPool()
    jobs = [threads.deferToThreadPool(reactor, pool, work) for _ in range(2)]
    return gatherResults(jobs).addCallback(lambda _: check(counter.total))


def check(total):
    assert total == 600, f"total is {total}"


@pytest.mark.threadcheck_explore(budget=10)
def test_quiet(threadcheck_reactor):
    return None
"""


def test_stress_option_hammers_explorations_on_real_threads(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_race=STRESS_RACE)
    result = run(pytester, "--threadcheck-stress=200")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*threadcheck stress: 200 runs in * on real threads*",
            "*raised AssertionError: total is *FORBIDDEN, first in run*",
            "*Example of raised AssertionError*",
            "*2 stress tests: 400 runs on real threads in * s (*/s), * with a forbidden "
            "outcome, 1 failing",
        ]
    )


def test_stress_marker_names_the_outcomes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_outcomes="""
        import pytest


        @pytest.mark.threadcheck_stress(runs=20, acceptable=[1, 2])
        def test_acceptable(threadcheck_reactor):
            return 1


        @pytest.mark.threadcheck_stress(runs=20, forbidden=[3])
        def test_forbidden(threadcheck_reactor):
            return 3
        """
    )
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=2, failed=2)  # each test split between the two workers
    result.stdout.fnmatch_lines(["*3 * 10  FORBIDDEN, first in run 0*"])
    result.stdout.fnmatch_lines(  # tests, not their parts (it said "4 stress tests")
        ["*2 stress tests: 40 runs on real threads*, 20 with a forbidden outcome, 1 failing"]
    )


def test_a_bad_stress_budget_is_a_one_line_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_race=RACE)
    result = run(pytester, "--threadcheck-stress=-5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = result.stdout.lines + result.stderr.lines
    assert any("--threadcheck-stress=-5: give a count" in line for line in lines), lines


def test_bad_marker_arguments_fail_their_test_in_one_line(pytester: pytest.Pytester) -> None:
    # They were internal errors with tracebacks of ours, or ran as "inconclusive".
    pytester.makepyfile(
        test_bad="""
        import pytest


        @pytest.mark.threadcheck_explore(strategy="bogus")
        def test_strategy(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(granularity="word")
        def test_granularity(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(budget=-1)
        def test_budget(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(seconds=float("nan"))
        def test_seconds(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(budgett=10)
        def test_typo(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_stress(acceptable=1)
        def test_acceptable(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_stress(yield_probability=7)
        def test_probability(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(strategy="dpor", granularity="line")
        def test_dpor_by_lines(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(max_delay=-1)
        def test_max_delay(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(include="json")
        def test_include_string(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(include=["no_such_lib"])
        def test_include_missing(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(budget=3, include=["json"])
        def test_include_json(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_explore(races="yes")
        def test_races_word(threadcheck_reactor):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=12, passed=1)
    result.stdout.fnmatch_lines(
        [
            "test_bad.py::test_strategy: threadcheck_explore strategy='bogus': unknown strategy*",
            "test_bad.py::test_granularity: threadcheck_explore granularity='word': choose one*",
            "test_bad.py::test_budget: threadcheck_explore budget=-1: give a whole number*",
            "test_bad.py::test_seconds: threadcheck_explore seconds=nan: give seconds*",
            "test_bad.py::test_typo: threadcheck_explore has no argument budgett*",
            "test_bad.py::test_acceptable: threadcheck_stress acceptable=1: give a list*",
            "test_bad.py::test_probability: threadcheck_stress yield_probability=7: give a*",
            "test_bad.py::test_dpor_by_lines: threadcheck_explore the dpor strategy reasons on "
            "accesses: it needs granularity 'access', not 'line'",
            "test_bad.py::test_max_delay: threadcheck_explore max_delay must be 0 or more*",
            "test_bad.py::test_include_string: threadcheck_explore include='json': give a list*",
            "test_bad.py::test_include_missing: threadcheck_explore no such file, folder or "
            "module: no_such_lib",
            "test_bad.py::test_races_word: threadcheck_explore races='yes': give True or False",
        ],
        consecutive=False,
    )
    output = result.stdout.str()
    assert "internal error" not in output and "_testexplore.py" not in output
    assert "During handling of the above exception" not in output


def test_a_stress_test_with_no_run_is_inconclusive(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_zero="""
        import pytest


        @pytest.mark.threadcheck_stress(runs=0, acceptable=[13])
        def test_runs_zero(threadcheck_reactor):
            return 13
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*threadcheck stress: inconclusive: no run happened*"])


def test_fewer_schedules_or_runs_than_workers_run_in_the_first_part(
    pytester: pytest.Pytester,
) -> None:
    # The second part had no schedule to run: "inconclusive" turned a passing test red.
    pytester.makepyfile(
        test_small="""
        import pytest


        @pytest.mark.threadcheck_explore(budget=1)
        def test_explored_once(threadcheck_reactor):
            pass


        @pytest.mark.threadcheck_stress(runs=1, acceptable=[None])
        def test_stressed_once(threadcheck_reactor):
            pass
        """
    )
    result = run(pytester, "-n", "2")
    result.assert_outcomes(passed=2, skipped=2)


def test_the_replay_command_works_from_where_pytest_ran(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run from a subdirectory of the rootdir, it printed the rootdir-relative
    # path, which pytest could not find from there.
    pytester.makeini("[pytest]\n")
    tests = pytester.mkdir("tests")
    (tests / "test_race.py").write_text(textwrap.dedent(RACE))
    monkeypatch.chdir(tests)
    result = run(pytester, "test_race.py")
    [replay] = [
        line for line in before_short_summary(result).splitlines() if line.startswith("replay: ")
    ]
    assert replay.startswith("replay: pytest test_race.py::test_lost_update --threadcheck-replay=")
    replayed = run(pytester, *shlex.split(replay.removeprefix("replay: pytest ")))
    replayed.assert_outcomes(failed=1)


def test_the_sessions_clean_line_says_it_does_not_cover_explorations(
    pytester: pytest.Pytester,
) -> None:
    # "no thread-affinity violations" stood under explorations that had just failed.
    pytester.makepyfile(test_race=RACE)
    result = run(pytester, "--threadcheck", "-k", "lost_update")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "threadcheck: no thread-affinity violations outside explorations "
            "(an exploration's failures fail its test)"
        ]
    )


def test_last_failed_without_xdist_reruns_the_test_its_parts_failed(
    pytester: pytest.Pytester,
) -> None:
    # The cache knew only `test_lost_update[threadcheck-part1of2]`: --lf without
    # -n found no such test and ran every test again.
    pytester.makepyfile(test_race=RACE)
    pytester.runpytest_subprocess(*NO_PYTEST_TWISTED, "-n", "2", timeout=180)
    again = pytester.runpytest_subprocess(*NO_PYTEST_TWISTED, "--lf", timeout=180)
    again.assert_outcomes(failed=1)  # test_fixed not run again
    again.stdout.fnmatch_lines(["FAILED test_race.py::test_lost_update - *"])


def test_last_failed_with_another_number_of_workers_reruns_the_failed_test(
    pytester: pytest.Pytester,
) -> None:
    # Failed in parts of 1 (no -n), rerun with -n 2: its parts were new to --lf,
    # which ran every test again.
    pytester.makepyfile(test_race=RACE)
    pytester.runpytest_subprocess(*NO_PYTEST_TWISTED, timeout=180)
    again = pytester.runpytest_subprocess(*NO_PYTEST_TWISTED, "--lf", "-n", "2", timeout=180)
    again.stdout.re_match_lines([r"2 workers \[2 items\]"])
    again.assert_outcomes(failed=2)  # the failed test's two parts, and nothing else


@pytest.mark.parametrize(
    ("nodeid", "plain"),
    [
        ("t.py::test_x[threadcheck-part1of2]", "t.py::test_x"),
        ("t.py::test_x[3-threadcheck-part2of2]", "t.py::test_x[3]"),
        ("t.py::test_x[threadcheck-part1of2-3]", "t.py::test_x[3]"),
        ("t.py::test_x[3]", "t.py::test_x[3]"),
    ],
)
def test_a_part_is_taken_out_of_a_node_id(nodeid: str, plain: str) -> None:
    from threadcheck._testexplore import without_part

    assert without_part(nodeid) == plain


ENDED_IN_ONE_LINE = """
import pytest
from twisted.internet import threads
from twisted.python.threadpool import ThreadPool


@pytest.mark.threadcheck_explore(budget=20)
def test_clean(threadcheck_reactor):
    return threads.deferToThread(lambda: 1)


@pytest.mark.threadcheck_explore(budget=20)
def test_pool_never_started(threadcheck_reactor):
    pool = ThreadPool(1, 2, name="svc")  # BUG: never started
    return threads.deferToThreadPool(threadcheck_reactor, pool, lambda: 1)
"""


def test_an_exploration_ended_in_one_line_counts_as_failing(pytester: pytest.Pytester) -> None:
    # It was left out of the summary: "1 exploration ... 0 failing" beside its FAILED.
    pytester.makepyfile(test_one_line=ENDED_IN_ONE_LINE)
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*thread pool that never started*", "2 explorations: * 1 failing"]
    )
