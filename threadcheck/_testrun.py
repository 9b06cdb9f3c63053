"""Charging violations to the tests that made them (pytest, trial).

A test runner tells :class:`TestRun` which test and phase is running; the
checker stamps each violation captured meanwhile with it (through
``Recorder.context``). When a test ends the runner asks for that test's
violations: those allowed by a marker or caught by :meth:`TestRun.expect` are
kept as expected, the others fail the test. Whatever no test claimed (made
during collection, between tests, or by threads that outlive their test) is
judged when the run finishes.

Thread safety: :class:`TestRun` is driven by the test runner's thread only;
the recorder underneath is written by any thread.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

from threadcheck import _threads
from threadcheck._affinity import AffinityChecker
from threadcheck._text import nothing_found
from threadcheck._violation import Kind, TestContext, ThreadAffinityError, Violation

PHASES = ("setup", "call", "teardown")
OUTLIVING_GRACE = 5.0
"""Seconds the run's end waits for threads that outlive their tests."""


class MissingViolationError(AssertionError):
    """``expect()`` saw no matching violation."""

    __module__ = "threadcheck"  # shown to users by its public name


class ThreadAffinityViolationsError(AssertionError):
    """A test made thread-affinity violations (trial); the message is their report."""

    __module__ = "threadcheck"  # shown to users by its public name


class TestRun:
    """Test-by-test bookkeeping over one checker's recorder."""

    __test__ = False  # not a test class

    def __init__(self, checker: AffinityChecker) -> None:
        self.checker = checker
        self._recorder = checker.recorder
        recorder = self._recorder
        _threads.started_during = lambda: recorder.context  # charged to their test only
        self._taken = 0
        self._expected: dict[int, str] = {}  # id(violation) -> reason
        self._failed: dict[str, set[tuple[str, object]]] = {}  # nodeid -> (api, kind)
        self.judged: list[Violation] = []
        """Every violation taken so far, charged and marked, in recording order."""

    # -- what runs now --------------------------------------------------------

    def enter(self, nodeid: str, phase: str) -> None:
        if phase == "setup":
            self.checker.allowed = frozenset()  # the last test's allow= is not this one's
        self._recorder.context = TestContext(nodeid, phase)

    def allow(self, apis: Iterable[str]) -> None:
        """The running test accepts calls of ``apis``: in raise mode they do not raise."""
        self.checker.allowed = frozenset(apis)

    def leave(self) -> None:
        self._recorder.context = None
        self.checker.allowed = frozenset()

    def test_violations(self, nodeid: str) -> list[Violation]:
        """``nodeid``'s violations so far: those already taken and those still pending."""
        self.checker.flush_pending()
        taken = [v for v in self.judged if v.test is not None and v.test.nodeid == nodeid]
        pending = self._recorder.since(self._taken)
        return taken + [v for v in pending if v.test is not None and v.test.nodeid == nodeid]

    # -- judging ----------------------------------------------------------------

    def take(self, nodeid: str, allow: Mapping[str, str]) -> list[Violation]:
        """Judge what was recorded since the last call; return what fails ``nodeid``.

        ``allow`` maps API names to the reason they are accepted in this test.
        Calls held since before ``run()`` are judged first: a reactor that has
        not run by the end of a test phase is judged against its creator.
        """
        self.checker.flush_pending()
        failing: list[Violation] = []
        failed = self._failed.setdefault(nodeid, set())
        for violation in self._take_new():
            if violation.test is not None and violation.test.nodeid == nodeid:
                violation = self._mark(violation, allow)
                # The same mistake again in a later phase (a race hit again in
                # teardown) is counted, not one more failure of the test.
                if violation.expected is None and (violation.api, violation.kind) not in failed:
                    failing.append(violation)
            self.judged.append(violation)
        failed.update((v.api, v.kind) for v in failing)
        return failing

    def finish(self, grace: float = OUTLIVING_GRACE) -> list[Violation]:
        """Judge everything left (outside any test); return all violations. The
        threads tests started that still run are waited for, up to ``grace``
        seconds, as the interpreter's exit waits for them: what they do is judged."""
        _threads.join_outliving(grace)
        self.checker.flush_pending()
        self.judged.extend(self._take_new())
        return self.judged

    def _take_new(self) -> list[Violation]:
        new = self._recorder.since(self._taken)
        self._taken += len(new)
        return new

    def _mark(self, violation: Violation, allow: Mapping[str, str]) -> Violation:
        reason = self._expected.pop(id(violation), None) or allow.get(violation.api)
        return violation if reason is None else replace(violation, expected=reason)

    # -- expecting --------------------------------------------------------------

    @contextmanager
    def expect(self, api: str | None = None) -> Iterator[list[Violation]]:
        """Violations recorded in the block (of ``api``, or any) are expected.

        Yields the list of them, filled when the block ends. Fails when the
        block recorded none. A :class:`ThreadAffinityError` raised in the
        block (raise mode) for one of them is swallowed, as ``pytest.raises``
        would.
        """
        __tracebackhide__ = True
        start = len(self._recorder)
        caught: list[Violation] = []
        try:
            yield caught
        except ThreadAffinityError as error:
            self._collect(start, api, caught)
            if error.violation not in caught:
                raise
        else:
            self._collect(start, api, caught)
        if not caught:
            what = "a thread-affinity violation" + (f" of {api}" if api else "")
            hint = "" if api is None else _closest_api(api, self._recorder.since(start))
            raise MissingViolationError(f"expected {what}; none was recorded{hint}")

    def _collect(self, start: int, api: str | None, into: list[Violation]) -> None:
        self.checker.flush_pending()
        into.extend(v for v in self._recorder.since(start) if api is None or v.api == api)
        reason = f"expected by threadcheck.expect({api!r})" if api else "expected by expect()"
        for violation in into:
            self._expected[id(violation)] = reason


def _closest_api(api: str, recorded: list[Violation]) -> str:
    """``; did you mean reactor.stop?`` for a misspelt ``reactor.stopp``: the
    closest of what the block recorded, else of the checked APIs."""
    import difflib

    from threadcheck_reactor import CHECKED_APIS

    for names in ({v.api for v in recorded}, CHECKED_APIS):
        if api not in names:
            close = difflib.get_close_matches(api, sorted(names), n=1, cutoff=0.6)
            if close:
                return f"; did you mean {close[0]}?"
    return ""


class ThreadCheckFixture:
    """What the pytest fixture ``threadcheck`` gives a test.

    Thread safety: use it from the test's own thread.
    """

    def __init__(self, run: TestRun, nodeid: str, reactor: Any) -> None:
        self._run = run
        self._nodeid = nodeid
        self.reactor = reactor
        """The instrumented global reactor."""

    @property
    def violations(self) -> list[Violation]:
        """This test's violations so far, expected ones included."""
        return self._run.test_violations(self._nodeid)

    def expect(self, api: str | None = None) -> AbstractContextManager[list[Violation]]:
        """A context manager: the block must record a violation (of ``api``, or any)."""
        return self._run.expect(api)


def summary_lines(violations: Iterable[Violation], races: bool = False) -> list[str]:
    """Totals per API and per test, for a test runner's closing summary
    (``races``: data races were looked for too)."""
    violations = list(violations)
    if not violations:
        return [nothing_found(races)]
    expected = [v for v in violations if v.expected is not None]
    outside = [v for v in violations if v.test is None]
    tests = {v.test.nodeid for v in violations if v.test is not None}
    head = f"threadcheck: {_counted(violations)}"
    head += f" in {len(tests)} test{'s' if len(tests) != 1 else ''}"
    if outside:
        head += f", {len(outside)} outside any test"
    if expected:
        head += f" ({len(expected)} expected)"
    by_api = Counter(v.api for v in violations)
    lines = [head, "  by API: " + ", ".join(f"{api}: {n}" for api, n in by_api.most_common())]
    lines.append("  by test:")
    by_test = Counter((_where(v), v.expected is not None) for v in violations)
    for (where, is_expected), count in by_test.items():
        lines.append(f"    {where}: {count}{' (expected)' if is_expected else ''}")
    return lines


def _counted(violations: list[Violation]) -> str:
    """``3 thread-affinity violations and 1 data race``, leaving out a kind with none."""
    races = sum(v.kind is Kind.DATA_RACE for v in violations)
    calls = len(violations) - races
    parts = []
    if calls or not races:
        parts.append(f"{calls} thread-affinity violation{'s' if calls != 1 else ''}")
    if races:
        parts.append(f"{races} data race{'s' if races != 1 else ''}")
    return " and ".join(parts)


def _where(violation: Violation) -> str:
    return "(outside any test)" if violation.test is None else violation.test.describe()
