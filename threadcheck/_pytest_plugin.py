"""pytest plugin: ``pytest --threadcheck`` runs the tests on threadcheck's reactor.

Registered through the ``pytest11`` entry point and inert unless enabled
(``--threadcheck``, any other ``--threadcheck-*`` option, or ini
``threadcheck = true``): switched off, it only registers its options and
marker, and imports neither Twisted nor the reactor.

Switched on, it redirects Twisted's reactor installers to the instrumented
reactors before any conftest or test module is imported (the first import of
``twisted.internet.reactor``, a conftest's own ``asyncioreactor.install()``
and pytest-twisted's choice all get one, checked alike), charges every
violation to the test and phase during which it was recorded, and fails that
test: a passing call phase is turned into a failure, a later violation fails
the teardown. Violations made outside any test are shown in the terminal
summary; any violation makes the session's exit status non-zero. Under
pytest-xdist each worker sends its violations to the controller, which writes
the one JSON report and summary.

A conftest that calls ``threadcheck.install()`` itself gets the same treatment.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from threadcheck import _testexplore
    from threadcheck._affinity import AffinityChecker
    from threadcheck._testrun import TestRun, ThreadCheckFixture
    from threadcheck._violation import Violation

MODES = ("record", "raise", "warn")
WORKER_KEY = "threadcheck"
STALLS_KEY = "threadcheck_stalls"


class _State:
    """The plugin's per-session state, in ``config.stash``."""

    def __init__(self, checker: AffinityChecker, json_path: str | None, report_only: bool) -> None:
        from threadcheck import _forks
        from threadcheck._testrun import TestRun

        self.run: TestRun = TestRun(checker)
        self.forks = _forks.Forks(checker)
        """What a test's forked children find (they end with ``os._exit``)."""
        _forks.watch(self.forks)
        self.json_path = json_path
        self.html_path: str | None = None
        self.report_only = report_only
        self.from_workers: list[Violation] = []
        self.stalls_from_workers: list[Violation] = []
        self.lost_workers: list[str] = []
        self.violations: list[Violation] | None = None  # set when the session finishes
        self.schedules: list[tuple[str, str]] = []
        """Failing explorations' schedules (test, JSON), from every xdist worker too."""


_STATE = pytest.StashKey[_State]()
_STARTUP_ERROR = pytest.StashKey[str]()
_ALLOWED = pytest.StashKey[dict[str, str]]()  # per item: api -> reason
_EXPLORE: pytest.StashKey[_testexplore.Options] = pytest.StashKey()
_SESSION = pytest.StashKey[pytest.Session]()
EXPLORE_MARKERS = ("threadcheck_explore", "threadcheck_stress")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("threadcheck", "thread-affinity checks for Twisted (threadcheck)")
    group.addoption(
        "--threadcheck",
        action="store_true",
        default=False,
        help="run on threadcheck's instrumented reactor; a test that calls a non-thread-safe "
        "Twisted API from the wrong thread fails",
    )
    group.addoption(
        "--threadcheck-mode",
        choices=MODES,
        default=None,
        help="record (default): fail the test at its end; raise: also raise in the offending "
        "call; warn: also warn there",
    )
    group.addoption(
        "--threadcheck-json", metavar="PATH", default=None, help="write the JSON report to PATH"
    )
    group.addoption(
        "--threadcheck-html",
        metavar="PATH",
        default=None,
        help="write the session's findings as one self-contained HTML page to PATH "
        "(pytest-xdist workers' merged)",
    )
    group.addoption(
        "--threadcheck-report-only",
        action="store_true",
        default=False,
        help="report violations but fail neither tests nor the session",
    )
    group.addoption(
        "--threadcheck-stall-ms",
        metavar="MS",
        default=None,
        help="report a callback that holds the reactor thread longer than MS milliseconds "
        "(default 100, or THREADCHECK_STALL_MS; 0: off); stalls fail nothing",
    )
    group.addoption(
        "--threadcheck-races",
        action="store_true",
        default=False,
        help="also fail a test during which two threads access one attribute, global, "
        "closure variable or container of your code, one writing, with nothing ordering "
        "them (a data race)",
    )
    group.addoption(
        "--threadcheck-races-include",
        action="append",
        default=[],
        metavar="PATH",
        help="with --threadcheck-races, also watch this folder, file or module, though it "
        "is library code (an installed package); repeatable",
    )
    parser.addini("threadcheck", type="bool", default=False, help="enable threadcheck")
    group.addoption(
        "--threadcheck-explore",
        metavar="N|Ns",
        default=None,
        help="explore every threadcheck_explore test for N schedules, or N seconds (30s), "
        "instead of its marker's budget",
    )
    group.addoption(
        "--threadcheck-replay",
        metavar="TOKEN",
        default=None,
        help="rerun exactly the schedule TOKEN names (select its test)",
    )
    group.addoption(
        "--threadcheck-seed", metavar="N", type=int, default=None, help="the explorations' seed"
    )
    group.addoption(
        "--threadcheck-stress",
        metavar="N|Ns",
        default=None,
        help="run every threadcheck_explore and threadcheck_stress test N times, or for N "
        "seconds, on real threads with random perturbation (not reproducible: a stress job)",
    )
    group.addoption(
        "--threadcheck-shard",
        metavar="i/n",
        default=None,
        help="run shard i of n of every exploration (a CI matrix); pytest-xdist workers "
        "split each exploration among themselves by themselves",
    )


def _enabled(config: pytest.Config) -> bool:
    options = config.known_args_namespace
    return bool(
        options.threadcheck
        or options.threadcheck_mode
        or options.threadcheck_json
        or options.threadcheck_html
        or options.threadcheck_report_only
        or options.threadcheck_races
        or options.threadcheck_stall_ms is not None  # a threshold alone was ignored
        or config.getini("threadcheck")
    )


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    # Before pytest-xdist's: a replay is one schedule of one test, run here (as
    # xdist runs --pdb); in workers, a replay that selects none was an INTERNALERROR.
    if config.option.threadcheck_replay is not None and getattr(
        config.option, "numprocesses", None
    ):
        config.option.numprocesses = 0


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    # Before any conftest is imported: one that imports twisted.internet.reactor
    # would otherwise install Twisted's default reactor, unchecked.
    if not _enabled(early_config):
        return
    options = early_config.known_args_namespace
    kind = _pytest_twisted_reactor(early_config)
    error = (
        _unsupported_reactor(kind)
        or _check_report_path(options.threadcheck_json)
        or _check_report_path(options.threadcheck_html, "--threadcheck-html")
    )
    if error is None:
        error = _install(early_config, options.threadcheck_mode or "record", kind)
    if error is None and options.threadcheck_races:
        error = _start_races(early_config)
    if error is not None:
        early_config.stash[_STARTUP_ERROR] = error


def _start_races(config: pytest.Config) -> str | None:
    """Watch user code for data races, test modules included: pytest's assertion
    rewriting and ours both apply to them (its cache is bypassed, so that a
    later run without races does not load code rewritten for one)."""
    from threadcheck import _stacks
    from threadcheck._races import _detector
    from threadcheck._races._pytest_modules import rewrite_test_modules

    try:
        include = _stacks.include_paths(config.known_args_namespace.threadcheck_races_include)
    except ValueError as error:
        return f"--threadcheck-races-include: {error}"
    is_user_file = _stacks.user_code(include)
    from threadcheck_reactor import _race_edges

    _detector.start(
        config.stash[_STATE].run.checker.recorder,
        is_user_file,
        include=include,
        edges=_race_edges.edges(is_user_file),
    )

    undo = rewrite_test_modules(is_user_file)
    if isinstance(undo, str):
        return f"--threadcheck-races: {undo}"
    config.add_cleanup(lambda: _stop_races(undo))
    return None


def _stop_races(undo: Callable[[], None]) -> None:
    from threadcheck._races import _detector

    _detector.stop()
    undo()


def _pytest_twisted_reactor(config: pytest.Config) -> str:
    """pytest-twisted's ``--reactor`` choice (``default`` without pytest-twisted)."""
    if not config.pluginmanager.has_plugin("twisted"):
        return "default"
    return str(getattr(config.known_args_namespace, "reactor", "default"))


PYTEST_TWISTED_KINDS = ("default", "asyncio")
"""pytest-twisted's --reactor choices that threadcheck instruments."""


def _unsupported_reactor(kind: str) -> str | None:
    if kind in PYTEST_TWISTED_KINDS:
        return None
    return (
        f"threadcheck does not instrument pytest-twisted's --reactor={kind} yet; "
        f"use --reactor={' or --reactor='.join(PYTEST_TWISTED_KINDS)} with --threadcheck"
    )


def _check_report_path(path: str | None, option: str = "--threadcheck-json") -> str | None:
    """Why a report (JSON or page) cannot go to ``path``; checked before any test runs."""
    from threadcheck._report import json_path_problem

    return None if path is None else json_path_problem(path, option)


def _install(config: pytest.Config, mode: str, kind: str) -> str | None:
    """Make Twisted's reactor installers install the instrumented reactors: the
    one pytest-twisted installs, the one a conftest installs itself
    (``asyncioreactor.install()``), or the default one the first import of
    ``twisted.internet.reactor`` installs, each checked by one checker."""
    import threadcheck_reactor
    from threadcheck_reactor import _installers
    from threadcheck_reactor._stalls import threshold_from_environment, threshold_from_milliseconds

    options = config.known_args_namespace
    installed = threadcheck_reactor.unchecked_reactor()
    if installed is not None:
        return f"{installed} is already the global reactor: threadcheck cannot check it"
    try:
        threadcheck_reactor.reactor_class(kind)
        stall_ms = options.threadcheck_stall_ms
        threshold = (
            threshold_from_environment()
            if stall_ms is None
            else threshold_from_milliseconds(stall_ms, "--threadcheck-stall-ms")
        )
    except ValueError as error:
        return str(error)
    from threadcheck._modes import Mode

    checker = _installers.redirect(Mode.parse(mode), threshold)
    config.stash[_STATE] = _State(
        checker, options.threadcheck_json, options.threadcheck_report_only
    )
    _wants_page(config, config.stash[_STATE])
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Before pytest-twisted's, which installs (and imports) the reactor it was asked for.
    _exit_on_startup_error(config)
    config.addinivalue_line(
        "markers",
        "threadcheck(allow=[api, ...], allow_races=[location, ...], reason=...): accept "
        "these thread-affinity violations, and data races on these locations "
        "('Stats.handled', 'global _registry'), in this test (reported as expected, not "
        "failing)",
    )
    config.addinivalue_line(
        "markers",
        "threadcheck_explore(budget=2000, seconds=None, strategy=None, seed=0, "
        "granularity='access', max_delay=1.0, races=False): run the test once per "
        "schedule under threadcheck's "
        "scheduler, with a fresh reactor as its threadcheck_reactor fixture",
    )
    config.addinivalue_line(
        "markers",
        "threadcheck_stress(runs=1000, seconds=None, acceptable=None, forbidden=(), "
        "yield_probability=0.05, seed=None): run the test many times on real threads, each "
        "with a fresh reactor as threadcheck_reactor; its result is the outcome, and a "
        "forbidden outcome (or one not acceptable) fails it",
    )
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        config.pluginmanager.register(_LastFailedParts(config), "threadcheck-last-failed")
    if _explore_options_given(config):
        from threadcheck._testexplore import options_from

        try:
            config.stash[_EXPLORE] = options_from(config)
        except ValueError as error:
            raise pytest.UsageError(f"threadcheck: {error}") from None


def _explore_options_given(config: pytest.Config) -> bool:
    option = config.option
    return any(
        getattr(option, name, None) is not None
        for name in (
            "threadcheck_explore",
            "threadcheck_replay",
            "threadcheck_seed",
            "threadcheck_shard",
            "threadcheck_stress",
        )
    )


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _exit_on_startup_error(session.config)


def _exit_on_startup_error(config: pytest.Config) -> None:
    error = config.stash.get(_STARTUP_ERROR, None)
    if error is not None:
        raise pytest.UsageError(error)


def _state(config: pytest.Config) -> _State | None:
    state = config.stash.get(_STATE, None)
    if state is None:
        state = _adopt_installed_reactor(config)
    return state


def _adopt_installed_reactor(config: pytest.Config) -> _State | None:
    """A conftest (or plugin) installed the instrumented reactor itself: check the tests."""
    if "threadcheck_reactor" not in sys.modules:
        return None  # cheap exit: nothing can have installed it
    from threadcheck_reactor import ThreadCheckMixin

    reactor = sys.modules.get("twisted.internet.reactor")
    if not isinstance(reactor, ThreadCheckMixin):
        return None
    options = config.known_args_namespace
    state = _State(reactor.threadcheck, options.threadcheck_json, options.threadcheck_report_only)
    _wants_page(config, state)
    config.stash[_STATE] = state
    return state


# -- charging violations to tests -----------------------------------------------


def _enter(item: pytest.Item, phase: str) -> _State | None:
    state = _state(item.config)
    if state is not None:
        state.run.enter(item.nodeid, phase)
    return state


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = True  # a fixture's error ends at the user's line, not here
    state = _enter(item, "setup")
    result = yield
    if state is not None:
        # Parsed here, so that a bad marker fails the test before it runs.
        allowed = item.stash[_ALLOWED] = _allowed(item)
        state.run.allow(allowed)
    return result


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = True
    _enter(item, "call")
    if _marked(item) and _is_unittest_method(item):
        # Its body runs through unittest, not pytest_pyfunc_call: it would pass unexplored.
        pytest.fail(
            "threadcheck_explore and threadcheck_stress run a test function through its "
            "threadcheck_reactor argument, not a TestCase method: move the scenario "
            "into a test function that takes threadcheck_reactor",
            pytrace=False,
        )
    return (yield)


def _is_unittest_method(item: pytest.Item) -> bool:
    import unittest

    cls = getattr(item, "cls", None)
    return isinstance(cls, type) and issubclass(cls, unittest.TestCase)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    __tracebackhide__ = True
    _enter(item, "teardown")
    try:
        return (yield)
    finally:
        state = _state(item.config)
        if state is not None:
            state.run.leave()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # tryfirst: outermost, so that neither xfail nor a skip hides the violation.
    report = yield
    state = _state(item.config)
    if state is None or report.when == "setup":
        return report
    if state.html_path is not None and call.excinfo is not None:
        _keep_schedule(report, call.excinfo.value)
    allowed: dict[str, str] = item.stash.get(_ALLOWED, {})
    state.forks.gather()  # charged to the test each child was forked in
    failing = state.run.take(item.nodeid, allowed)
    if report.when == "call":
        # The call's report is made: what a thread does from now on is the
        # teardown's (it was charged to the call, past the failure that counts it).
        state.run.enter(item.nodeid, "teardown")
    if failing and not state.report_only:
        _fail(report, failing, _unmatched_races(item, failing))
    return report


def _unmatched_races(item: pytest.Item, failing: list[Violation]) -> str:
    """A line for the failure of a test whose marker accepts races by names that
    none of its failing races has (a misspelt or outdated location)."""
    import difflib

    from threadcheck._violation import Kind

    races = sorted({v.api for v in failing if v.kind is Kind.DATA_RACE})
    marker = item.get_closest_marker("threadcheck")
    named = marker.kwargs.get("allow_races", ()) if marker is not None else ()
    unmatched = [name for name in named if name not in races]
    if not races or not unmatched:
        return ""
    guesses = {name: difflib.get_close_matches(name, races, n=1) for name in unmatched}
    said = ", ".join(
        repr(name) + (f" (did you mean {guess[0]!r}?)" if guess else "")
        for name, guess in guesses.items()
    )
    return f"threadcheck marker: allow_races= names no race of this test: {said}"


def _keep_schedule(report: pytest.TestReport, error: BaseException) -> None:
    """A test that called ``threadcheck.explore(...).assert_clean()`` and failed:
    its schedule, for the session page (the marker's explorations add their own)."""
    from threadcheck import ExplorationFailedError
    from threadcheck._testexplore import schedule_property

    if isinstance(error, ExplorationFailedError):
        report.user_properties.extend(schedule_property(error.result))


def _allowed(item: pytest.Item) -> dict[str, str]:
    marker = item.get_closest_marker("threadcheck")
    if marker is None:
        return {}
    unknown = sorted(set(marker.kwargs) - {"allow", "allow_races", "reason"})
    if marker.args or unknown:
        pytest.fail(
            "threadcheck marker takes allow=, allow_races= and reason= only"
            + (f"; got {', '.join(unknown)}" if unknown else ""),
            pytrace=False,
        )
    allow = marker.kwargs.get("allow", ())
    reason = marker.kwargs.get("reason") or "allowed by @pytest.mark.threadcheck"
    from threadcheck_reactor import allowed_apis

    problem = None
    try:
        allow = allowed_apis(allow, "threadcheck marker: allow=")
    except ValueError as error:
        problem = str(error)
    if problem is not None:  # not inside the except: its error would be shown twice
        pytest.fail(problem, pytrace=False)
    races = marker.kwargs.get("allow_races", ())
    if isinstance(races, str) or not all(isinstance(race, str) for race in races):
        pytest.fail(
            "threadcheck marker: allow_races= takes a list of locations, "
            f"such as ['Stats.handled']; got {races!r}",
            pytrace=False,
        )
    return dict.fromkeys([*allow, *races], reason)


def _fail(report: pytest.TestReport, failing: list[Violation], hint: str = "") -> None:
    from threadcheck._report import format_report

    text = format_report(failing) + (f"\n{hint}" if hint else "")
    if report.failed:
        report.sections.append(("threadcheck: violations during this test", text))
        return
    report.outcome = "failed"
    report.longrepr = text
    if hasattr(report, "wasxfail"):
        del report.wasxfail  # an expected failure, but not this one


@pytest.fixture
def threadcheck(request: pytest.FixtureRequest) -> ThreadCheckFixture:
    """This test's violations, the instrumented reactor, and ``expect()``."""
    from threadcheck._testrun import ThreadCheckFixture

    state = _state(request.config)
    if state is None:
        pytest.skip("threadcheck is not enabled: run pytest --threadcheck")
    from twisted.internet import reactor  # the instrumented one: installed now if not yet

    return ThreadCheckFixture(state.run, request.node.nodeid, reactor)


# -- explorations -----------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Under pytest-xdist, one item per worker for each exploration: each takes
    its own part of the schedule indices, so the workers explore it together."""
    if not _marked(metafunc.definition):
        return
    if not hasattr(metafunc.config, "workerinput"):
        return
    from threadcheck._testexplore import SHARD_ARGUMENT, shard_id, xdist_parts

    parts = xdist_parts(metafunc.config)
    if parts > 1 and SHARD_ARGUMENT in metafunc.fixturenames:
        metafunc.parametrize(
            SHARD_ARGUMENT,
            [(part, parts) for part in range(parts)],
            ids=[shard_id(part, parts) for part in range(parts)],
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``--lf`` with another number of xdist workers than the failing run's: the
    parts of an exploration that failed are parts of other numbers now
    (``[threadcheck-part1of3]``), which ``--lf`` knew nothing of (it ran every
    test). Run inside ``--lf``'s own hook, before it picks the failed ones."""
    last_failed = getattr(config.pluginmanager.get_plugin("lfplugin"), "lastfailed", None)
    if not isinstance(last_failed, dict) or not last_failed:
        return
    from threadcheck._testexplore import without_part

    failed = {str(key) for key in last_failed}  # pytest 9 keys them by NodeId
    for item in items:
        if "threadcheck-part" in item.nodeid and without_part(item.nodeid) in failed:
            last_failed.setdefault(getattr(item, "id", item.nodeid), True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Tests collected from an installed package are the user's code; a replay
    that would replay nothing is a usage error, not "1 passed"."""
    _tests_are_user_code(session.items)
    if session.config.option.threadcheck_replay is None or not session.items:
        return  # (no items: an xdist controller, or --collect-only of nothing)
    explored = [item for item in session.items if item.get_closest_marker("threadcheck_explore")]
    if not explored:
        raise pytest.UsageError(
            "--threadcheck-replay: no selected test carries @pytest.mark.threadcheck_explore; "
            "run the replay command as printed (it names the test)"
        )
    from threadcheck._sched._token import of_a_scenario
    from threadcheck._testexplore import recorded_target, replayed_test, same_test, without_part

    token = session.config.option.threadcheck_replay
    recorded = replayed_test(token)
    target = recorded_target(token)
    if recorded is None and target:  # every test replayed another's decisions
        how = (
            "threadcheck.replay(scenario, TOKEN) with that scenario, as printed beside it"
            if of_a_scenario(target)
            else f"threadcheck replay TOKEN {target}"  # a program's command line
        )
        raise pytest.UsageError(
            f"--threadcheck-replay: the token is of {target}, not of a pytest test; "
            f"replay it with {how}"
        )
    if recorded is not None and not any(
        same_test(recorded, without_part(item.nodeid)) for item in explored
    ):
        raise pytest.UsageError(
            f"--threadcheck-replay: the token is of the test {recorded}, which is not selected; "
            "run the replay command as printed (it names the test)"
        )


def _tests_are_user_code(items: list[pytest.Item]) -> None:
    """The folders of tests an installed package holds (``--pyargs``, tox's
    layout; Twisted's own suites) hold the user's code: reports show their
    lines, not the package folded as a library."""
    from threadcheck import _stacks

    folders = {os.path.dirname(str(item.path)) for item in items}
    installed = [folder for folder in folders if _stacks.classify(folder + os.sep) is not None]
    if installed:
        _stacks.register_user_paths([folder + os.sep for folder in installed])


def _marked(node: pytest.Item) -> bool:
    return any(node.get_closest_marker(name) is not None for name in EXPLORE_MARKERS)


@pytest.fixture
def _threadcheck_shard() -> tuple[int, int] | None:
    return None  # parametrized under pytest-xdist (pytest_generate_tests)


@pytest.fixture
def threadcheck_reactor(request: pytest.FixtureRequest, _threadcheck_shard: Any) -> Any:
    """A fresh scheduled reactor for each schedule of a threadcheck_explore test."""
    if not _marked(request.node):
        pytest.fail(
            "threadcheck_reactor is made afresh for every schedule: mark the test "
            "@pytest.mark.threadcheck_explore(budget=...)",
            pytrace=False,
        )
    from threadcheck._testexplore import ScheduleReactor

    # The test gets each schedule's own reactor; a fixture built on this one
    # (a service made with it) reaches the running schedule's through it.
    return ScheduleReactor()


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not _marked(pyfuncitem):
        return None
    if "threadcheck_reactor" not in pyfuncitem.funcargs:
        pytest.fail(
            "threadcheck_explore and threadcheck_stress run a test through its "
            "threadcheck_reactor argument: take it, and use it instead of the global reactor",
            pytrace=False,
        )
    from threadcheck._testexplore import Options, run_item

    run_item(pyfuncitem, pyfuncitem.config.stash.get(_EXPLORE, Options()))
    return True


# -- the session's end ----------------------------------------------------------


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """pytest-xdist, in the controller: collect a worker's violations."""
    state = _state(node.config)
    if state is None:
        return
    document = getattr(node, "workeroutput", {}).get(WORKER_KEY)
    if document is None:
        state.lost_workers.append(str(node.gateway.id))
        return
    from threadcheck._report import from_json

    state.from_workers.extend(from_json(json.loads(document)))
    stalls = node.workeroutput.get(STALLS_KEY)  # type: ignore[attr-defined]
    if stalls is not None:
        state.stalls_from_workers.extend(from_json(json.loads(stalls)))


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    config.stash[_SESSION] = session
    state = _state(config)
    if state is None:
        return
    from threadcheck._report import save_json, to_json

    if state.forks.in_child:  # a test's forked child that went on with the session
        state.forks.leave()
        return
    state.forks.take_children_findings()
    violations = state.run.finish() + state.from_workers
    state.violations = violations
    mode = state.run.checker.mode.value
    if hasattr(config, "workerinput"):  # an xdist worker: the controller reports
        config.workeroutput[WORKER_KEY] = json.dumps(to_json(violations, mode))  # type: ignore[attr-defined]
        stalls = state.run.checker.recorder.stalls()
        config.workeroutput[STALLS_KEY] = json.dumps(to_json(stalls, mode))  # type: ignore[attr-defined]
        return
    if state.json_path is not None and not save_json(
        violations,
        mode,
        state.json_path,
        sys.stderr,
        [f"pytest-xdist worker {w}" for w in state.lost_workers],
    ):
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    if state.html_path is not None and not _write_page(session, state, violations):
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    counted = [v for v in violations if v.expected is None]
    if (counted or state.lost_workers) and not state.report_only and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


class _LastFailedParts:
    """Registered in the xdist controller: a part of an exploration that failed
    also marks the test itself failed in pytest's cache, so ``--lf`` without
    ``-n`` (which knew only ``test_x[threadcheck-part1of2]``, no such test
    there, and ran every test) reruns it."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)  # after --lf's own record of the part
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if not report.failed or "threadcheck-part" not in report.nodeid:
            return
        last_failed = getattr(self.config.pluginmanager.get_plugin("lfplugin"), "lastfailed", None)
        if isinstance(last_failed, dict):
            from threadcheck._testexplore import without_part

            last_failed[without_part(report.nodeid)] = True


class _ScheduleCollector:
    """Registered with ``--threadcheck-html``: keeps each failing exploration's
    schedule for the session page (in the xdist controller, the workers' too)."""

    def __init__(self, state: _State) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or not report.user_properties:
            return
        from threadcheck._testexplore import SCHEDULE_PROPERTY

        for name, value in report.user_properties:
            if name == SCHEDULE_PROPERTY:
                self.state.schedules.append((report.nodeid, str(value)))


def _wants_page(config: pytest.Config, state: _State) -> None:
    state.html_path = config.known_args_namespace.threadcheck_html
    if state.html_path is not None:
        config.pluginmanager.register(_ScheduleCollector(state), "threadcheck-schedules")


def _write_page(session: pytest.Session, state: _State, violations: list[Violation]) -> bool:
    """The session's findings page (every worker's merged); False, said in one
    line, when it cannot be written."""
    from threadcheck._view._outputs import write_findings
    from threadcheck._view._schedule import from_json

    assert state.html_path is not None
    stalls = state.run.checker.recorder.stalls() + state.stalls_from_workers
    title = f"pytest session in {session.config.rootpath}"
    schedules = [(test, from_json(json.loads(text))) for test, text in state.schedules]
    lost = [f"pytest-xdist worker {w}" for w in state.lost_workers]
    problems = write_findings(state.html_path, violations, stalls, title, schedules, lost)
    for problem in problems:
        sys.stderr.write(f"threadcheck: error: {problem}\n")
    return not problems


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Last of all (reports and junitxml written): an exploration that left a
    thread blocked outside the scheduler's control would hang the interpreter's
    exit, which joins it; end the process with the session's status instead."""
    watchdog = sys.modules.get("threadcheck._sched._watchdog")
    session = config.stash.get(_SESSION, None)
    if watchdog is not None:
        watchdog.exit_if_abandoned(int(session.exitstatus) if session is not None else 1)


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    explored = not hasattr(config, "workerinput") and _explore_summary(terminalreporter)
    state = config.stash.get(_STATE, None)
    if state is None or state.violations is None or hasattr(config, "workerinput"):
        return
    from threadcheck._report import format_report, format_stalls
    from threadcheck._testrun import summary_lines

    terminalreporter.section("threadcheck")
    races = bool(config.getoption("threadcheck_races", False))
    lines = summary_lines(state.violations, races)
    if state.lost_workers and not state.violations:
        lines[0] += " from the workers that handed their report over"
    elif explored and not state.violations:
        # Not a word on the explorations, which fail their own tests.
        lines[0] += " outside explorations (an exploration's failures fail its test)"
    for line in lines:
        terminalreporter.write_line(line)
    for worker in state.lost_workers:
        terminalreporter.write_line(
            f"threadcheck: worker {worker} went down without its report; its violations are lost"
        )
    outside = [v for v in state.violations if v.test is None]
    if outside:
        terminalreporter.write_line("")
        terminalreporter.write_line("Outside any test:")
        terminalreporter.write(format_report(outside))
    stalls = state.run.checker.recorder.stalls() + state.stalls_from_workers
    if stalls:
        terminalreporter.write_line("")
        terminalreporter.write(format_stalls(stalls))


def _explore_summary(terminalreporter: Any) -> bool:
    """Totals over the explorations' reports (from every xdist worker too);
    whether there were any."""
    reports = [
        report
        for category in terminalreporter.stats.values()
        for report in category
        if getattr(report, "when", None) == "call" and getattr(report, "user_properties", None)
    ]
    if not reports:
        return False
    from threadcheck._testexplore import STATS_PROPERTY, STRESS_PROPERTY, Totals

    lines = []
    for kind in (STATS_PROPERTY, STRESS_PROPERTY):
        totals = Totals(kind)
        for report in reports:
            totals.add(report)
        if totals.tests:
            lines.append(totals.line())
    if lines:
        terminalreporter.section("threadcheck explore")
        for line in lines:
            terminalreporter.write_line(line)
    return bool(lines)
