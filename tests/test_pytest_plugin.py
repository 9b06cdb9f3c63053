"""The pytest plugin, end to end: real pytest runs in subprocesses (pytester).

Each run is a fresh process, since the plugin installs a global reactor.
Runs pass ``-p no:twisted`` unless they are about pytest-twisted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jsonschema
import pytest

from threadcheck._report import SCHEMA_PATH

from support import before_short_summary

pytestmark = pytest.mark.slow

NO_PYTEST_TWISTED = ("-p", "no:twisted")

# A helper every test module below imports: a thread that calls the
# non-thread-safe reactor.callLater and is joined.
HELPERS = """
import threading

from twisted.internet import reactor


def call_later_from_a_thread(n=1):
    def work():
        for _ in range(n):
            reactor.callLater(3600, print)

    thread = threading.Thread(target=work, name="worker")
    thread.start()
    thread.join()
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*args, timeout=120)


@pytest.fixture
def helpers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tc_helpers=HELPERS)


@pytest.mark.parametrize("args", [["--version"], ["--collect-only", "-q"]])
def test_switched_off_it_imports_no_twisted(pytester: pytest.Pytester, args: list[str]) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    code = textwrap.dedent(
        f"""
        import sys
        import pytest

        pytest.main({[*args, *NO_PYTEST_TWISTED]!r})
        print("plugin loaded:", "threadcheck._pytest_plugin" in sys.modules)
        print("twisted modules:", sorted(m for m in sys.modules if m.startswith("twisted")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=pytester.path,
    )
    assert "twisted modules: []" in result.stdout, result.stdout + result.stderr
    if "--collect-only" in args:  # --version stops before plugins load
        assert "plugin loaded: True" in result.stdout


def test_switched_off_the_marker_is_known_and_nothing_is_checked(
    pytester: pytest.Pytester, helpers: None
) -> None:
    pytester.makepyfile(
        """
        import sys
        import pytest
        from tc_helpers import call_later_from_a_thread

        @pytest.mark.threadcheck(allow=["reactor.callLater"])
        def test_unchecked():
            call_later_from_a_thread()
            assert "threadcheck_reactor" not in sys.modules
        """
    )
    result = run(pytester, "--strict-markers", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*= threadcheck =*")


@pytest.mark.parametrize("on", [[], ["--threadcheck"]])
def test_pytests_own_error_in_setup_is_not_shown_at_the_plugins_hook(
    pytester: pytest.Pytester, on: list[str]
) -> None:
    # Z49: pytest's deprecation of a class-scoped fixture, an error in setup,
    # was shown at "_pytest_plugin.py:399", even without --threadcheck.
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def broken():  # pytest's own error, raised in its code, which it hides
            if False:
                yield

        def test_uses(broken):
            pass
        """
    )
    result = run(pytester, "-rE", *on, *NO_PYTEST_TWISTED)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*ValueError: broken did not yield a value*"])
    result.stdout.no_fnmatch_line("*_pytest_plugin.py*")


def test_reactor_is_installed_before_conftest_imports(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from twisted.internet import reactor
        from threadcheck_reactor import ThreadCheckMixin

        INSTRUMENTED = isinstance(reactor, ThreadCheckMixin)
        """
    )
    pytester.makepyfile(
        "from conftest import INSTRUMENTED\n\ndef test_it():\n    assert INSTRUMENTED\n"
    )
    run(pytester, "--threadcheck", *NO_PYTEST_TWISTED).assert_outcomes(passed=1)


def test_ini_switch_enables_it(pytester: pytest.Pytester, helpers: None) -> None:
    pytester.makeini("[pytest]\nthreadcheck = true\n")
    pytester.makepyfile(
        "from tc_helpers import call_later_from_a_thread\n\n"
        "def test_bug():\n    call_later_from_a_thread()\n"
    )
    result = run(pytester, *NO_PYTEST_TWISTED)
    result.assert_outcomes(failed=1)
    assert result.ret == 1


RECORD_MODE_TESTS = """
import threading

import pytest
from twisted.internet import reactor

from tc_helpers import call_later_from_a_thread


def test_clean():
    reactor.callFromThread(print)


def test_call_phase():
    call_later_from_a_thread()


@pytest.fixture
def leaves_a_mess():
    yield
    call_later_from_a_thread()


def test_teardown_phase(leaves_a_mess):
    pass


@pytest.mark.xfail(reason="something else")
def test_xfail_does_not_hide_it():
    call_later_from_a_thread()
"""


def test_record_mode_fails_each_test_with_its_own_report(
    pytester: pytest.Pytester, helpers: None
) -> None:
    pytester.makepyfile(test_record=RECORD_MODE_TESTS)
    result = run(pytester, "--threadcheck", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=2, failed=2, errors=1)
    assert result.ret == 1
    out = result.stdout.str()
    assert "ERROR at teardown of test_teardown_phase" in out
    assert "during test: test_record.py::test_teardown_phase (teardown)" in out
    assert "during test: test_record.py::test_call_phase\n" in out
    assert "offending call: tc_helpers.py:" in out
    assert "reactor.callLater(3600, print)" in out
    assert "FAILED test_record.py::test_xfail_does_not_hide_it" in out
    # The summary section: totals per API and per test.
    result.stdout.fnmatch_lines(
        [
            "*= threadcheck =*",
            "threadcheck: 3 thread-affinity violations in 3 tests",
            "  by API: reactor.callLater: 3",
            "  by test:",
            "    test_record.py::test_call_phase: 1",
            "    test_record.py::test_teardown_phase (teardown): 1",
            "    test_record.py::test_xfail_does_not_hide_it: 1",
        ]
    )


def test_report_only_fails_nothing(pytester: pytest.Pytester, helpers: None) -> None:
    pytester.makepyfile(test_record=RECORD_MODE_TESTS)
    result = run(pytester, "--threadcheck-report-only", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=3, xpassed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["threadcheck: 3 thread-affinity violations in 3 tests"])


def test_raise_mode_traceback_ends_at_the_users_call(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest_twisted
        from twisted.internet import reactor, threads

        def refresh_cache():
            reactor.callLater(0, print)  # the user's line

        @pytest_twisted.inlineCallbacks
        def test_refresh():
            yield threads.deferToThread(refresh_cache)
        """
    )
    result = run(pytester, "--threadcheck", "--threadcheck-mode=raise")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            ">       reactor.callLater(0, print)  # the user's line",
            "E       threadcheck.ThreadAffinityError: reactor.callLater called from thread *",
            "test_raise_mode_traceback_ends_at_the_users_call.py:5: ThreadAffinityError",
        ]
    )
    text = result.stdout.str()
    assert "checker.violation" not in text and "threadcheck_reactor" not in text


def test_raise_mode_fails_a_test_that_never_waited_for_its_worker(
    pytester: pytest.Pytester,
) -> None:
    # pytest-twisted runs the reactor, so the pool's workers are foreign threads.
    pytester.makepyfile(
        """
        import pytest_twisted
        from twisted.internet import reactor, threads

        # One worker: the job nobody waits for runs before the one the test
        # waits for, not (under load) after the whole session has ended.
        reactor.suggestThreadPoolSize(1)

        @pytest_twisted.inlineCallbacks
        def test_waited():
            yield threads.deferToThread(reactor.callLater, 0, print)

        @pytest_twisted.inlineCallbacks
        def test_never_waited():
            threads.deferToThread(reactor.callLater, 0, print)  # nobody looks at it
            yield threads.deferToThread(lambda: None)
        """
    )
    result = run(pytester, "--threadcheck", "--threadcheck-mode=raise")
    # The test that got the error fails once (the report is a section), not twice.
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "ThreadAffinityError: reactor.callLater called from thread" in out
    assert "during test: test_raise_mode_fails_a_test_that_never_waited_for_its_worker.py" in out
    result.stdout.fnmatch_lines(["*- threadcheck: violations during this test -*"])


def test_warn_mode_warns_at_the_offending_line_and_fails_the_test(
    pytester: pytest.Pytester, helpers: None
) -> None:
    pytester.makepyfile(
        "from tc_helpers import call_later_from_a_thread\n\n"
        "def test_bug():\n    call_later_from_a_thread()\n"
    )
    result = run(pytester, "--threadcheck", "--threadcheck-mode", "warn", *NO_PYTEST_TWISTED)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*tc_helpers.py:*ThreadAffinityWarning: reactor.callLater*"])


def test_violations_outside_any_test_fail_the_session(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import threading
        from twisted.internet import reactor

        def call_later():
            reactor.callLater(3600, print)

        # At collection: a thread calls the reactor before any test runs.
        collecting = threading.Thread(target=call_later, name="at-collection")
        collecting.start()
        collecting.join()

        # A thread that outlives the tests, released as the session ends.
        release = threading.Event()
        def outlive():
            release.wait(30)
            call_later()
        late = threading.Thread(target=outlive, name="outliving")
        late.start()

        def pytest_sessionfinish(session):
            release.set()
            late.join(30)
        """
    )
    pytester.makepyfile("def test_fine():\n    pass\n")
    result = run(pytester, "--threadcheck", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=1)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "threadcheck: 2 thread-affinity violations in 0 tests, 2 outside any test",
            "*(outside any test): 2",
            "Outside any test:",
            "*reactor.callLater called before run() from thread 'at-collection'*",
            "*reactor.callLater called before run() from thread 'outliving'*",
        ]
    )


STRAGGLERS = {
    "a function": 'threading.Thread(target=late, name="straggler")',
    "a Timer": "threading.Timer(0.3, schedule)",
    "a partial": 'threading.Thread(target=functools.partial(late, 0.3), name="straggler")',
}


@pytest.mark.parametrize("started", STRAGGLERS.values(), ids=STRAGGLERS.keys())
def test_a_thread_outliving_its_test_is_charged_to_no_test(
    pytester: pytest.Pytester, started: str
) -> None:
    # Its violation failed the innocent test running then, or, after the last
    # test, was made after the session's report and lost (exit 0). A Timer's
    # function and a partial's were taken for a pool's job: the same then.
    pytester.makepyfile(
        f"""
        import functools
        import threading
        import time
        from twisted.internet import reactor

        def schedule():
            reactor.callLater(3600, print)  # BUG: from a thread, after its test

        def late(delay=0.3):
            time.sleep(delay)
            schedule()

        def test_a_starts_a_straggler():
            straggler = {started}
            straggler.name = "straggler"
            straggler.start()

        def test_b_innocent():
            time.sleep(0.6)

        def test_c_starts_the_last_straggler():
            test_a_starts_a_straggler()
        """
    )
    result = run(pytester, "--threadcheck", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=3)
    assert result.ret == 1
    result.stdout.fnmatch_lines(
        [
            "threadcheck: 2 thread-affinity violations in 0 tests, 2 outside any test",
            "Outside any test:",
            "*reactor.callLater called * thread 'straggler'*",
        ]
    )


def test_marker_allows_known_violations(pytester: pytest.Pytester, helpers: None) -> None:
    pytester.makepyfile(
        """
        import pytest
        from tc_helpers import call_later_from_a_thread

        @pytest.mark.threadcheck(allow=["reactor.callLater"], reason="upstream bug #42")
        def test_known():
            call_later_from_a_thread()
        """
    )
    result = run(pytester, "--threadcheck", "--threadcheck-json=report.json", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*test_known: 1 (expected)"])
    [entry] = json.loads((pytester.path / "report.json").read_text())["violations"]
    assert entry["expected"] == "upstream bug #42"


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            'allow=["reactor.calLater"]',
            "allow=: 'reactor.calLater' is not a checked API; did you mean reactor.callLater?",
        ),
        (
            'allow=["transport.wrote"]',
            "allow=: 'transport.wrote' is not a checked API; did you mean transport.write?",
        ),
        (
            'allow=["frobnicate"]',
            "allow=: 'frobnicate' is not a checked API; docs/checks.md lists the APIs",
        ),
        ('allow="reactor.callLater"', "allow= takes a list of API names"),
        ('alow=["reactor.callLater"]', "takes allow=, allow_races= and reason= only; got alow"),
    ],
)
def test_a_bad_marker_is_a_one_line_error(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    pytester.makepyfile(
        f"import pytest\n\n@pytest.mark.threadcheck({marker})\ndef test_x():\n    pass\n"
    )
    result = run(pytester, "--threadcheck", *NO_PYTEST_TWISTED)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([f"threadcheck marker{'' if 'got' in message else ':'} {message}"])
    # Not again, as the error it came from.
    assert before_short_summary(result).count(message) == 1


def test_fixture_gives_violations_reactor_and_expect(
    pytester: pytest.Pytester, helpers: None
) -> None:
    pytester.makepyfile(
        """
        from twisted.internet import reactor
        from tc_helpers import call_later_from_a_thread

        def test_expected(threadcheck):
            assert threadcheck.reactor is reactor
            with threadcheck.expect("reactor.callLater") as caught:
                call_later_from_a_thread(2)
            assert len(caught) == 2
            assert [v.api for v in threadcheck.violations] == ["reactor.callLater"] * 2

        def test_expected_but_missing(threadcheck):
            with threadcheck.expect("reactor.callLater"):
                pass

        def test_only_the_expected_api(threadcheck):
            with threadcheck.expect("reactor.stop"):
                call_later_from_a_thread()

        def test_a_misspelt_api(threadcheck):
            with threadcheck.expect("reactor.calLater"):
                call_later_from_a_thread()
        """
    )
    result = run(pytester, "--threadcheck", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=1, failed=3)
    result.stdout.fnmatch_lines(
        [
            "*MissingViolationError: expected a thread-affinity violation of reactor.callLater; "
            "none was recorded",
            "*MissingViolationError: expected a thread-affinity violation of reactor.calLater; "
            "none was recorded; did you mean reactor.callLater?",
        ],
        consecutive=False,
    )
    # expect("reactor.stop") did not catch the callLater: it failed the test as well.
    assert "during test: test_fixture_gives_violations_reactor_and_expect.py::test_only_the" in (
        result.stdout.str()
    )


def test_expect_swallows_the_error_it_expects_in_raise_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from twisted.internet import reactor
        from threadcheck_reactor import ThreadCheckReactor

        def test_guard(threadcheck):
            # The test's own thread is foreign to a reactor started elsewhere;
            # a reactor that is running proves it: fake one with ownership moved.
            reactor.threadcheck.owner = -1
            reactor.threadcheck.started = True
            with threadcheck.expect("reactor.callLater"):
                reactor.callLater(0, print)
        """
    )
    result = run(pytester, "--threadcheck", "--threadcheck-mode=raise", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=1)


def test_an_allowed_violation_does_not_raise_in_raise_mode(pytester: pytest.Pytester) -> None:
    # The marker accepts it ("reported as expected, not failing"): it raised in
    # the worker all the same, and the test failed.
    pytester.makepyfile(
        """
        import threading
        import pytest
        from twisted.internet import reactor

        def call_later_in_a_worker():
            raised = []
            def work():
                try:
                    reactor.callLater(3600, print)
                except Exception as error:
                    raised.append(type(error).__name__)
            worker = threading.Thread(target=work)
            worker.start()
            worker.join()
            return raised

        @pytest.fixture(autouse=True)
        def running_elsewhere():
            # A reactor running in another thread: this test's threads are foreign.
            reactor.threadcheck.owner = -1
            reactor.threadcheck.started = True

        @pytest.mark.threadcheck(allow=["reactor.callLater"], reason="upstream bug #42")
        def test_a_known():
            assert call_later_in_a_worker() == []

        def test_b_next():
            assert call_later_in_a_worker() == ["ThreadAffinityError"]
        """
    )
    result = run(pytester, "--threadcheck", "--threadcheck-mode=raise", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_a_known: 1 (expected)", "FAILED *test_b_next*"])


def test_fixture_skips_when_threadcheck_is_off(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(threadcheck):\n    pass\n")
    result = run(pytester, "-rs", *NO_PYTEST_TWISTED)
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*threadcheck is not enabled: run pytest --threadcheck*"])


def test_a_conftest_install_is_checked_too(pytester: pytest.Pytester, helpers: None) -> None:
    pytester.makeconftest("import threadcheck\n\nthreadcheck.install()\n")
    pytester.makepyfile(
        "from tc_helpers import call_later_from_a_thread\n\n"
        "def test_bug():\n    call_later_from_a_thread()\n\n"
        "def test_fine():\n    pass\n"
    )
    result = run(pytester, *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == 1


JSON_TESTS = """
import pytest
from tc_helpers import call_later_from_a_thread

@pytest.mark.parametrize("n", range(6))
def test_n(n):
    call_later_from_a_thread(n)
"""


@pytest.mark.parametrize("workers", [None, "2"], ids=["one-process", "xdist-n2"])
def test_json_report_totals_equal_the_violations_made(
    pytester: pytest.Pytester, helpers: None, workers: str | None
) -> None:
    pytester.makepyfile(test_json=JSON_TESTS)
    xdist = ("-n", workers) if workers else ()
    result = run(
        pytester, "--threadcheck", "--threadcheck-json=out.json", *xdist, *NO_PYTEST_TWISTED
    )
    result.assert_outcomes(passed=1, failed=5)
    document = json.loads((pytester.path / "out.json").read_text())
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    made = sum(range(6))  # 0 + 1 + ... + 5 calls
    assert document["total"] == made
    assert sum(entry["count"] for entry in document["violations"]) == made
    per_test: dict[str, int] = {}
    for entry in document["violations"]:
        nodeid = entry["test"]["nodeid"]
        per_test[nodeid] = per_test.get(nodeid, 0) + entry["count"]
    assert per_test == {f"test_json.py::test_n[{n}]": n for n in range(1, 6)}
    result.stdout.fnmatch_lines([f"threadcheck: {made} thread-affinity violations in 5 tests"])


def test_a_worker_that_crashed_leaves_the_report_marked_incomplete(
    pytester: pytest.Pytester, helpers: None
) -> None:
    # Its violations are lost with it: the summary said "no thread-affinity
    # violations" and the JSON report total 0, as if complete.
    pytester.makepyfile(
        test_crash="""
        import os
        from tc_helpers import call_later_from_a_thread

        def test_a():
            call_later_from_a_thread()

        def test_crash():
            os._exit(1)
        """
    )
    result = run(
        pytester,
        "--threadcheck",
        "--threadcheck-json=out.json",
        "-n",
        "1",
        "--max-worker-restart=0",
        *NO_PYTEST_TWISTED,
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "threadcheck: no thread-affinity violations from the workers that handed their "
            "report over",
            "threadcheck: worker gw0 went down without its report; its violations are lost",
        ]
    )
    document = json.loads((pytester.path / "out.json").read_text())
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    assert document["lost"] == ["pytest-xdist worker gw0"]


@pytest.mark.parametrize("workers", [None, "2"], ids=["one-process", "xdist-n2"])
def test_the_session_page_has_every_worker_s_findings(
    pytester: pytest.Pytester, helpers: None, workers: str | None
) -> None:
    from test_view import parse

    pytester.makepyfile(test_json=JSON_TESTS)
    xdist = ("-n", workers) if workers else ()
    result = run(
        pytester, "--threadcheck", "--threadcheck-html=out.html", *xdist, *NO_PYTEST_TWISTED
    )
    result.assert_outcomes(passed=1, failed=5)
    page = (pytester.path / "out.html").read_text()
    parsed = parse(page)
    assert parsed.external == []
    assert parsed.classes["card"] == 5  # one distinct finding per failing test
    assert "threadcheck: 15 thread-affinity violations" in page
    for n in range(1, 6):
        assert f'<option value="test_json.py::test_n[{n}]">' in page
        count = f'<td class="mono">test_json.py::test_n[{n}]</td><td class="num">{n}</td>'
        assert count in page  # the counts per test
    assert page.count('<span class="count-badge">x') == 4  # n = 2..5 repeat


def test_an_unwritable_session_page_is_a_one_line_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = run(pytester, "--threadcheck-html=no/such/dir/r.html", *NO_PYTEST_TWISTED)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --threadcheck-html: no such directory: *no/such/dir"])


def test_with_pytest_twisted_inline_callbacks_and_ensure_deferred(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest_twisted
        from twisted.internet import reactor, threads
        from threadcheck_reactor import ThreadCheckMixin

        @pytest_twisted.inlineCallbacks
        def test_clean():
            assert isinstance(reactor, ThreadCheckMixin) and reactor.running
            value = yield threads.deferToThread(lambda: 42)
            assert value == 42

        @pytest_twisted.inlineCallbacks
        def test_worker_bug():
            yield threads.deferToThread(reactor.callLater, 0, print)

        @pytest_twisted.ensureDeferred
        async def test_async_worker_bug():
            await threads.deferToThread(reactor.callLater, 0, print)
        """
    )
    result = run(pytester, "--threadcheck")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*offending call: test_with_pytest_twisted*.py:* in test_worker_bug"
            "  (work handed to the thread pool here)",
        ]
    )


def test_pytest_twisted_asyncio_reactor_is_instrumented(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio
        import pytest_twisted
        from twisted.internet import defer, reactor, threads
        from threadcheck_reactor._asyncio import ThreadCheckAsyncioReactor

        @pytest_twisted.ensureDeferred
        async def test_clean():
            assert isinstance(reactor, ThreadCheckAsyncioReactor) and reactor.running
            assert await threads.deferToThread(lambda: 42) == 42
            await defer.Deferred.fromFuture(asyncio.ensure_future(asyncio.sleep(0.01)))

        @pytest_twisted.ensureDeferred
        async def test_worker_bug():
            await threads.deferToThread(reactor.callLater, 0, print)

        @pytest_twisted.ensureDeferred
        async def test_worker_fires_the_reactors_deferred():
            d = defer.Deferred()
            await threads.deferToThread(d.callback, 1)
        """
    )
    result = run(pytester, "--threadcheck", "--reactor=asyncio")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*reactor.callLater called from thread*",
            "*Deferred.callback called from thread*",
            "*fix: do it in the reactor thread: reactor.callFromThread(d.callback, 1)",
        ],
        consecutive=False,
    )


def test_pytest_twisted_reactor_not_instrumented_is_a_usage_error(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = run(pytester, "--threadcheck", "--reactor=qt5reactor")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [
        "ERROR: threadcheck does not instrument pytest-twisted's --reactor=qt5reactor yet; "
        "use --reactor=default or --reactor=asyncio with --threadcheck"
    ]


def test_bad_json_path_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = run(pytester, "--threadcheck-json=no/such/dir/r.json", *NO_PYTEST_TWISTED)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --threadcheck-json: no such directory: *no/such/dir"])


@pytest.mark.parametrize("value", ["-1", "inf"])
def test_a_bad_stall_threshold_alone_is_a_usage_error(
    pytester: pytest.Pytester, value: str
) -> None:
    # Without --threadcheck it was ignored: no checks ran, and nothing said so.
    pytester.makepyfile("def test_x():\n    pass\n")
    result = run(pytester, f"--threadcheck-stall-ms={value}", *NO_PYTEST_TWISTED)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--threadcheck-stall-ms takes milliseconds up to a day*"])


def test_trial_test_cases_collected_by_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from twisted.internet import reactor, threads
        from twisted.trial import unittest

        class Tests(unittest.TestCase):
            def test_clean(self):
                return threads.deferToThread(lambda: None)

            def test_worker_bug(self):
                return threads.deferToThread(reactor.callLater, 0, print)
        """
    )
    result = run(pytester, "--threadcheck", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*during test: *Tests::test_worker_bug*"])


def test_reactor_in_a_background_thread_crochet_style(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import crochet
        from twisted.internet import reactor

        crochet.setup()

        @crochet.wait_for(timeout=10)
        def schedule():
            reactor.callLater(0, print)

        def test_through_crochet():
            schedule()

        def test_direct_from_the_test_thread():
            reactor.callLater(0, print)  # the reactor runs in crochet's thread
        """
    )
    result = run(pytester, "--threadcheck", *NO_PYTEST_TWISTED)
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*reactor.callLater called from thread 'MainThread'*"])


INSTALLED_TESTS = """
import threading, time
from twisted.internet import reactor

def test_worker_schedules_a_call():
    def worker():
        reactor.callLater(0, lambda: None)  # BUG: from a worker thread
    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
"""


def test_tests_of_an_installed_package_are_the_users_code(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest --pyargs pkg.tests (tox's layout): the test module sits under
    # site-packages, was folded as a library, and the report had no offending line.
    package = pytester.path / "venv" / "site-packages" / "tcinstalled"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "test_service.py").write_text(INSTALLED_TESTS)
    monkeypatch.setenv("PYTHONPATH", str(package.parent), prepend=os.pathsep)
    result = run(pytester, "--threadcheck", "-p", "no:cacheprovider", "--pyargs", "tcinstalled")
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*offending call: *site-packages/tcinstalled/test_service.py:7 in worker",
            "*fix: do it in the reactor thread: "
            "reactor.callFromThread(reactor.callLater, 0, lambda: None)",
        ]
    )


def test_a_conftest_installing_the_asyncio_reactor_gets_it_instrumented(
    pytester: pytest.Pytester,
) -> None:
    # It met the instrumented default reactor, installed first, and the session
    # ended with ReactorAlreadyInstalledError.
    pytester.makeconftest(
        "from twisted.internet import asyncioreactor\n\nasyncioreactor.install()\n"
    )
    pytester.makepyfile(
        """
        import threading
        from twisted.internet import reactor
        from threadcheck_reactor._asyncio import ThreadCheckAsyncioReactor

        def test_asyncio_and_instrumented():
            assert isinstance(reactor, ThreadCheckAsyncioReactor)

        def test_worker_bug():
            worker = threading.Thread(target=reactor.callLater, args=(0, print))
            worker.start()
            worker.join()
        """
    )
    # (pytest-twisted would install its --reactor itself, and refuse another.)
    result = run(pytester, "--threadcheck", "-p", "no:twisted")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*reactor.callLater called before run() from thread*"])


def test_a_reactor_installed_before_the_plugin_is_refused_in_one_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(tc_early="from twisted.internet import reactor\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    result = run(pytester, "--threadcheck", "-p", "tc_early")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: twisted.internet.epollreactor.EPollReactor is already the global reactor*"]
    )


def test_a_violation_after_the_calls_report_is_the_teardowns(pytester: pytest.Pytester) -> None:
    # A heartbeat's violation between the call's report and the teardown was
    # charged to the call, whose failure had already counted the ones before it.
    pytester.makeconftest(
        """
        import threading
        reported = threading.Event()
        beaten = threading.Event()

        def pytest_runtest_logreport(report):
            if report.when == "call":
                reported.set()
                beaten.wait(10)
        """
    )
    pytester.makepyfile(
        """
        import threading
        from conftest import beaten, reported

        def test_heartbeat():
            from twisted.internet import reactor
            first = threading.Event()

            def beat():
                reactor.callLater(0, lambda: None)  # during the call
                first.set()
                reported.wait(10)
                reactor.callLater(0, lambda: None)  # after the call's report
                beaten.set()

            threading.Thread(target=beat, name="heartbeat").start()
            first.wait(10)
        """
    )
    result = run(pytester, "--threadcheck", "--threadcheck-json=report.json", *NO_PYTEST_TWISTED)
    result.assert_outcomes(failed=1)
    violations = json.loads((pytester.path / "report.json").read_text())["violations"]
    phases = sorted((entry["test"]["phase"], entry["count"]) for entry in violations)
    assert phases == [("call", 1), ("teardown", 1)], violations


FORKING_TEST = """
import os

from tc_helpers import call_later_from_a_thread


def test_forks_a_worker():
    pid = os.fork()
    if pid == 0:
        {child}
        os._exit(0)  # as a forked worker ends: past every hook of the session
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_after():
    pass
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
@pytest.mark.parametrize(
    ("child", "outcomes"),
    [("call_later_from_a_thread()", {"failed": 1, "passed": 1}), ("pass", {"passed": 2})],
)
def test_a_forked_child_s_violation_fails_the_test_it_was_forked_in(
    pytester: pytest.Pytester, helpers: None, child: str, outcomes: dict[str, int]
) -> None:
    # The child ended with os._exit: its violation was lost, and the test passed.
    pytester.makepyfile(test_forks=FORKING_TEST.format(child=child))
    result = run(pytester, "--threadcheck", *NO_PYTEST_TWISTED)
    result.assert_outcomes(**outcomes)
    if outcomes.get("failed"):
        result.stdout.fnmatch_lines(["FAILED test_forks.py::test_forks_a_worker - threadcheck: *"])
