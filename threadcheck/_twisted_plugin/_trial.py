"""Under trial: a test that makes a violation fails, and so does the run.

Each test runs with a reporter that charges violations to it: when the test
would succeed, or when it stops, its violations become one error naming them.
A test method or class may accept known ones, as trial's ``skip`` and
``todo`` attributes do: ``threadcheck_allow = ["reactor.callLater"]``.
Violations that no test made (at import, between tests, in a ``-j`` worker
outside its tests) fail the run when the runner finishes.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

from twisted.python.failure import Failure
from twisted.trial import itrial, reporter, runner, unittest
from twisted.trial._dist.disttrial import DistTrialRunner
from zope.interface import implementer  # type: ignore[import-untyped]

from threadcheck import _stacks
from threadcheck._processes import ProcessReport
from threadcheck._races import _hook
from threadcheck._report import format_report
from threadcheck._testrun import ThreadAffinityViolationsError
from threadcheck._violation import Violation
from threadcheck_reactor._reactor import allowed_apis


def hook(report: ProcessReport) -> None:
    _charge_each_test(report)
    _named_tests_are_user_code()
    for runner_class in (runner.TrialRunner, DistTrialRunner):
        for name in ("run", "runUntilFailure"):
            _fail_the_run_for_leftovers(runner_class, name, report)


def rewrite_test_files(is_user_file: Callable[[str], bool]) -> None:
    """Test modules trial loads from a file path (``trial tests/test_x.py``,
    not importable as named) are rewritten for races, as imported ones are:
    they ran as written, their races silently unlooked for."""
    runner.SourceFileLoader = _hook.file_loader(is_user_file)  # type: ignore[attr-defined,assignment]


def _failure(violations: list[Violation]) -> Failure:
    return Failure(ThreadAffinityViolationsError(format_report(violations)))  # type: ignore[no-untyped-call]


def _charge_each_test(report: ProcessReport) -> None:
    original = unittest.SynchronousTestCase.run

    @functools.wraps(original)
    def run(self: unittest.SynchronousTestCase, result: Any) -> None:
        # As SynchronousTestCase.run adapts it (a pyunit result is wrapped).
        adapted = itrial.IReporter(result, None)
        if adapted is None:
            adapted = unittest.PyUnitResultAdapter(result)  # type: ignore[no-untyped-call]
        try:
            allowed, bad_allow = _allowed(self), None
        except ValueError as error:
            allowed, bad_allow = {}, error
        _tests_are_user_code(type(self))
        charging = _ChargingReporter(adapted, report, self.id(), allowed, bad_allow)
        report.tests.enter(self.id(), "call")
        try:
            original(self, charging)  # type: ignore[no-untyped-call]
        finally:
            report.tests.leave()

    unittest.SynchronousTestCase.run = run  # type: ignore[method-assign]


def _allowed(test: unittest.SynchronousTestCase) -> dict[str, str]:
    """``threadcheck_allow`` of the test method, else of its class."""
    method = getattr(test, test._testMethodName, None)
    allow: Any = getattr(method, "threadcheck_allow", None)
    if allow is None:
        allow = getattr(test, "threadcheck_allow", ())
    allow = allowed_apis(allow, "threadcheck_allow")
    return dict.fromkeys(allow, "allowed by threadcheck_allow")


@implementer(itrial.IReporter)
class _ChargingReporter:
    """Trial's reporter for one test, failing the test for its violations."""

    def __init__(
        self,
        original: Any,
        report: ProcessReport,
        test_id: str,
        allowed: dict[str, str],
        bad_allow: ValueError | None,
    ) -> None:
        self._original = original
        self._report = report
        self._test_id = test_id
        self._allowed = allowed
        self._bad_allow = bad_allow
        self._failed = False
        """The test failed or errored already: its violations add no second
        result (``BlockingCallInReactorThreadError`` raised in it is one)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)

    def addError(self, test: Any, error: Any) -> None:
        self._failed = True
        self._original.addError(test, error)

    def addFailure(self, test: Any, failure: Any) -> None:
        self._failed = True
        self._original.addFailure(test, failure)

    def addSuccess(self, test: Any) -> None:
        failed = self._charge(test)
        if self._bad_allow is not None:
            # A fresh error, never raised: its message alone, with no frames of ours.
            bad = ValueError(str(self._bad_allow))
            self._original.addError(test, Failure(bad))  # type: ignore[no-untyped-call]
            self._bad_allow, failed = None, True
        if not failed:
            self._original.addSuccess(test)

    def stopTest(self, test: Any) -> None:
        self._charge(test)  # what the test's cleanups and late threads did
        self._original.stopTest(test)

    def _charge(self, test: Any) -> bool:
        failing = self._report.tests.take(self._test_id, self._allowed)
        if not failing or self._report.report_only or self._failed:
            return False
        self.addError(test, _failure(failing))
        return True


_seen_folders: set[str] = set()


def _tests_are_user_code(test_class: type) -> None:
    """A test module an installed package holds (``trial pkg.tests``) is the
    user's code: reports show its lines, not the package folded as a library."""
    filename = getattr(sys.modules.get(test_class.__module__), "__file__", None)
    if isinstance(filename, str):
        _user_folder(os.path.dirname(os.path.abspath(filename)))


def _named_tests_are_user_code() -> None:
    """So too the folder of each test trial is named (``trial pkg.tests``),
    before it imports the tests: imported as the user's code, they are
    rewritten for races. Registered only as a test ran, a serial trial had
    imported every module unwatched (and ``-j`` workers all but the first)."""
    original = runner.TestLoader.findByName

    @functools.wraps(original)
    def find_by_name(self: runner.TestLoader, name: str, recurse: bool = False) -> Any:
        if os.sep not in name:  # a file path is loaded by rewrite_test_files' loader
            for folder in _test_folders_of(name):
                _user_folder(folder)
        return original(self, name, recurse)  # type: ignore[no-untyped-call]

    runner.TestLoader.findByName = find_by_name  # type: ignore[method-assign]


def _test_folders_of(name: str) -> list[str]:
    """The folders of the tests dotted ``name`` names (a test, its class, its
    module; a package of tests, or its ``test``/``tests`` package: not the
    rest of a package named whole). Outermost first: only packages that hold
    no test are imported on the way (``find_spec`` imports a name's parents)."""
    parts = name.split(".")
    package: str | None = None
    for end in range(1, len(parts) + 1):
        try:
            spec = importlib.util.find_spec(".".join(parts[:end]))
        except Exception:  # a parent that fails to import: trial reports it, as ever
            spec = None
        if spec is None:
            return []  # a class or a test of a module found already, or nothing
        if not spec.submodule_search_locations:  # a module
            origin = spec.origin
            return [os.path.dirname(os.path.abspath(origin))] if origin else []
        package = os.path.abspath(next(iter(spec.submodule_search_locations)))
        if "test" in parts[end - 1]:
            return [package]
    assert package is not None
    inside = (os.path.join(package, sub) for sub in ("test", "tests"))
    return [sub for sub in inside if os.path.isdir(sub)]


def _user_folder(folder: str) -> None:
    folder = folder.rstrip(os.sep) + os.sep
    if folder not in _seen_folders:
        _seen_folders.add(folder)
        if _stacks.classify(folder) is not None:
            _stacks.register_user_paths([folder])


def _fail_the_run_for_leftovers(runner_class: type, name: str, report: ProcessReport) -> None:
    original = getattr(runner_class, name)

    @functools.wraps(original)
    def run(self: Any, test: Any) -> Any:
        result = original(self, test)
        leftovers = report.failing_outside_tests()
        if leftovers and not report.report_only:
            # The summary is printed already: record the error without
            # printing it again, so that trial's exit status says FAILED.
            failure = _failure(leftovers)
            name = "threadcheck: violations outside any test"
            holder = runner.ErrorHolder(name, failure)  # type: ignore[no-untyped-call]
            reporter.TestResult.addError(result, holder, failure)  # type: ignore[arg-type]
            print(
                f"threadcheck: {len(leftovers)} thread-affinity violation(s) outside any test "
                "fail this run (report below)",
                file=sys.stderr,
            )
        return result

    setattr(runner_class, name, run)
