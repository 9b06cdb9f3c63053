"""``pytest --threadcheck-races``, end to end with ``pytester``: races charged to
the test they happen in, ``allow_races=`` markers, test modules rewritten
(assertion rewriting kept), and the JSON report merged from xdist workers."""

from __future__ import annotations

import json

import jsonschema
import pytest

from threadcheck._report import SCHEMA_PATH

pytestmark = pytest.mark.slow

NO_PYTEST_TWISTED = ("-p", "no:twisted")

SERVICE = """
import threading

class Stats:
    def __init__(self):
        self.handled = 0

def handle(stats):
    stats.handled += 1

def handled_twice(join_first):
    stats = Stats()
    worker = threading.Thread(target=handle, args=(stats,))
    worker.start()
    if join_first:
        worker.join()
    handle(stats)
    worker.join()
    return stats.handled
"""

TESTS = """
\"\"\"A docstring first: pytest's imports then start below line 1.\"\"\"
import threading
import pytest
from service import handled_twice

def test_racy():
    assert handled_twice(join_first=False) == 2

def test_fixed():
    assert handled_twice(join_first=True) == 2

@pytest.mark.threadcheck(allow_races=["Stats.handled"], reason="known: issue 7")
def test_allowed():
    assert handled_twice(join_first=False) == 2

def test_race_in_the_test_module():
    box = {}
    def worker():
        box["k"] = 1
    thread = threading.Thread(target=worker)
    thread.start()
    box["k"] = 2
    thread.join()

def test_assertions_are_still_rewritten():
    value = handled_twice(join_first=True)
    assert value == 3
"""


@pytest.mark.parametrize("workers", [None, "2"], ids=["one-process", "xdist-n2"])
def test_races_fail_the_tests_they_happen_in(
    pytester: pytest.Pytester, workers: str | None
) -> None:
    pytester.makepyfile(service=SERVICE, test_service=TESTS)
    xdist = ("-n", workers) if workers else ()
    result = pytester.runpytest_subprocess(
        "--threadcheck-races", "--threadcheck-json=out.json", *xdist, *NO_PYTEST_TWISTED,
        timeout=120,
    )  # fmt: skip
    result.assert_outcomes(passed=2, failed=3)
    outcomes = {r.split(" ")[1]: r.split(" ")[0] for r in result.outlines if " - " in r}
    assert outcomes.keys() == {
        "test_service.py::test_racy",
        "test_service.py::test_race_in_the_test_module",
        "test_service.py::test_assertions_are_still_rewritten",
    }
    result.stdout.fnmatch_lines(["*assert 2 == 3*"])  # pytest's own message, not a bare assert
    result.stdout.fnmatch_lines(
        [
            "*data race on Stats.handled: update in thread*",
            "*during test: test_service.py::test_racy",
        ]
    )
    result.stdout.fnmatch_lines(["*data race on box[[]...[]]: write in thread*"])
    document = json.loads((pytester.path / "out.json").read_text())
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    by_test = {(v["test"]["nodeid"], v["api"], v["expected"]) for v in document["violations"]}
    assert by_test == {
        ("test_service.py::test_racy", "Stats.handled", None),
        ("test_service.py::test_allowed", "Stats.handled", "known: issue 7"),
        ("test_service.py::test_race_in_the_test_module", "box[...]", None),
    }
    race = next(v for v in document["violations"] if v["api"] == "Stats.handled")
    assert race["kind"] == "data-race" and race["access"] == "update"
    assert race["prior"]["what"] == "update"
    assert race["prior"]["stack"][-1]["code"] == "stats.handled += 1"


BLAME = """
import threading, time
import pytest

class Heartbeat:
    beats = 0

@pytest.fixture(scope="session")
def heartbeat():
    beat = Heartbeat()
    def run():
        time.sleep(0.3)  # its next beat comes while the next test runs
        beat.beats += 1
    threading.Thread(target=run, name="heartbeat", daemon=True).start()
    return beat

def test_a_status(heartbeat):
    assert heartbeat.beats >= 0  # the read nothing orders before the beat

def test_b_unrelated():
    time.sleep(1)
"""


def test_a_race_found_after_its_test_ended_fails_no_other_test(pytester: pytest.Pytester) -> None:
    # A session fixture's heartbeat wrote after test_a_status's read: the race
    # failed whichever test ran then (test_b_unrelated, or a teardown).
    pytester.makepyfile(test_blame=BLAME)
    result = pytester.runpytest_subprocess("--threadcheck-races", *NO_PYTEST_TWISTED, timeout=120)
    result.assert_outcomes(passed=2)
    assert result.ret == 1  # the session fails: the race is not lost
    result.stdout.fnmatch_lines(["threadcheck: 1 data race in 0 tests, 1 outside any test"])


def test_a_bad_allow_races_marker_fails_its_test_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.threadcheck(allow_races="Stats.handled")
        def test_x():
            pass
        """
    )
    result = pytester.runpytest_subprocess("--threadcheck-races", *NO_PYTEST_TWISTED, timeout=120)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*allow_races= takes a list of locations*"])


def test_a_race_an_allow_races_name_misses_fails_saying_so(pytester: pytest.Pytester) -> None:
    # A misspelt name accepted nothing, and the failure did not say why.
    test = TESTS.replace('allow_races=["Stats.handled"]', 'allow_races=["Stats.handeld"]')
    pytester.makepyfile(service=SERVICE, test_service=test)
    result = pytester.runpytest_subprocess(
        "--threadcheck-races", "-k", "test_allowed", *NO_PYTEST_TWISTED, timeout=120
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*data race on Stats.handled: update in thread*",
            "threadcheck marker: allow_races= names no race of this test:"
            " 'Stats.handeld' (did you mean 'Stats.handled'?)",
        ]
    )


CLEAN = """
import service, test_service

def test_nothing_is_rewritten():
    for module in (service, test_service):
        assert not [name for name in vars(module) if name.startswith("__tc_")]
"""


def test_a_later_run_without_races_loads_no_rewritten_code(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(service=SERVICE, test_service=TESTS, test_clean=CLEAN)
    first = pytester.runpytest_subprocess("--threadcheck-races", *NO_PYTEST_TWISTED, timeout=120)
    first.assert_outcomes(passed=2, failed=4)  # rewritten, test_clean sees it
    result = pytester.runpytest_subprocess("-p", "no:threadcheck", *NO_PYTEST_TWISTED, timeout=120)
    result.assert_outcomes(passed=5, failed=1)  # only the rewritten assertion's own failure


def test_an_explored_test_with_races_fails_on_a_race_alone(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest
        from twisted.internet import threads

        class Stats:
            def __init__(self):
                self.handled = 0

        def handled_twice(reactor):
            stats = Stats()
            def handle():
                stats.handled += 1
            done = threads.deferToThreadPool(reactor, reactor.getThreadPool(), handle)
            handle()
            return done

        @pytest.mark.threadcheck_explore(budget=50, races=True)
        def test_handled(threadcheck_reactor):
            return handled_twice(threadcheck_reactor)

        @pytest.mark.threadcheck_explore(budget=50)
        def test_handled_without_races(threadcheck_reactor):
            return handled_twice(threadcheck_reactor)  # no assertion fails: passes
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:twisted", timeout=120)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*data race on Stats.handled: update in thread*"])


def test_an_explored_test_with_races_watches_the_modules_its_file_imports(
    pytester: pytest.Pytester,
) -> None:
    # Z51: `import helper` at the top of the test file, as usual: helper's
    # race went unseen ("50 schedules ... 0 failing"), found only with
    # --threadcheck-races or the import moved into the test.
    pytester.makepyfile(
        counting="""
        from twisted.internet import defer, task, threads

        def counters(reactor):
            served = {}

            def count(user):
                served[user] = served.get(user, 0) + 1  # a pool job's and the reactor's

            def query(user):
                count(user)
                return [1]

            pool = reactor.getThreadPool()
            work = [threads.deferToThreadPool(reactor, pool, query, "u0")]
            work.append(task.deferLater(reactor, 0, count, "u0"))
            return defer.gatherResults(work, consumeErrors=True)
        """,
        test_counting="""
        import pytest

        import counting

        @pytest.mark.threadcheck_explore(budget=50, races=True)
        def test_counters(threadcheck_reactor):
            return counting.counters(threadcheck_reactor)
        """,
    )
    result = pytester.runpytest_subprocess("-p", "no:twisted", timeout=120)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*data race on served[[]...[]]: *"])


def test_an_exploration_failed_by_a_race_proved_nothing(pytester: pytest.Pytester) -> None:
    # dpor explores every interleaving and no assertion fails, but the session's
    # race detector fails the test: the summary must not count it as a proof.
    pytester.makepyfile(
        """
        import threading
        import pytest

        class Box:
            n = 0

        @pytest.mark.threadcheck_explore(budget=200, strategy="dpor")
        def test_racy_but_never_wrong(threadcheck_reactor):
            box = Box()
            def bump():
                box.n += 1
            workers = [threading.Thread(target=bump) for _ in range(2)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            assert box.n >= 1
        """
    )
    result = pytester.runpytest_subprocess("--threadcheck-races", *NO_PYTEST_TWISTED, timeout=120)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["1 exploration: * 0 proved exhaustively, 1 failing"])


EXPLORED_TWICE = """
from types import SimpleNamespace

import pytest
from twisted.internet import task, threads
from twisted.internet.defer import gatherResults


def scenario(reactor):
    stats = SimpleNamespace(handled=0)

    def handle():
        stats.handled += 1  # a race, though nothing asserts on it

    pool = reactor.getThreadPool()
    work = [threads.deferToThreadPool(reactor, pool, handle), task.deferLater(reactor, 0, handle)]
    return gatherResults(work)


@pytest.mark.threadcheck_explore(budget=20)
def test_a(threadcheck_reactor):
    return scenario(threadcheck_reactor)


@pytest.mark.threadcheck_explore(budget=20)
def test_b(threadcheck_reactor):
    return scenario(threadcheck_reactor)
"""


def test_each_explored_test_is_charged_its_own_races(pytester: pytest.Pytester) -> None:
    # The first exploration stopped the session's detector when it ended: the
    # second test's races went unseen, and it passed (alone, it failed).
    pytester.makepyfile(test_twice=EXPLORED_TWICE)
    result = pytester.runpytest_subprocess("--threadcheck-races", *NO_PYTEST_TWISTED, timeout=120)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*test_twice.py::test_a: *", "*test_twice.py::test_b: *"])


DOUBLE_CHECKED = """
import threading
import pytest

_config = None
_lock = threading.Lock()


def get_config():
    global _config
    if _config is None:  # unlocked: races the build (races.md says why it is reported)
        with _lock:
            if _config is None:
                _config = {{"retries": 3}}
    return _config


{marker}
def test_config_is_built_once():
    workers = [threading.Thread(target=get_config) for _ in range(3)]
    for worker in workers:
        worker.start()
    config = get_config()
    for worker in workers:
        worker.join()
    assert config is get_config()
"""


@pytest.mark.parametrize("accepted", [False, True], ids=["reported", "accepted"])
def test_double_checked_locking_is_reported_and_accepted_as_races_md_says(
    pytester: pytest.Pytester, accepted: bool
) -> None:
    marker = '@pytest.mark.threadcheck(allow_races=["global _config"], reason="built once")'
    pytester.makepyfile(test_config=DOUBLE_CHECKED.format(marker=marker if accepted else ""))
    result = pytester.runpytest_subprocess("--threadcheck-races", *NO_PYTEST_TWISTED, timeout=120)
    if accepted:
        result.assert_outcomes(passed=1)
        result.stdout.fnmatch_lines(["*test_config.py::test_config_is_built_once: * (expected)"])
    else:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["*data race on global _config*"])
