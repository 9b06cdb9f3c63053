"""Stress runs: a scenario many times on real threads, with an outcome histogram.

What the scheduler cannot control (C extensions, real sockets, code that
blocks outside it) still needs hammering. Each run gets a fresh instrumented
reactor (a real one, not scheduled) and real threads; the interpreter switches
threads every microsecond, and at the scheduler's points in user code a thread
gives up the GIL now and then, at random. As in jcstress, the user names the
outcomes: the scenario's result is the outcome; an outcome that is forbidden,
or not among the acceptable ones when those are given, fails the stress run
with its count and an example. An exception, a thread-affinity violation or a
run that never finishes is an outcome too, forbidden unless listed.

Nothing here is reproducible run by run: it is the complement of ``explore``,
not a substitute.

Thread safety: :func:`stress` runs in one thread at a time (it runs the
reactors there).
"""

from __future__ import annotations

import random
import re
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Any

from threadcheck import _arguments, _stacks
from threadcheck._text import plural

DEFAULT_RUNS = 1000
DEFAULT_YIELD_PROBABILITY = 0.05
DEFAULT_RUN_TIMEOUT = 10.0
SWITCH_INTERVAL = 1e-6
YIELD_SLEEP = 1e-6
"""A real sleep, however short: time.sleep(0) gives the GIL back, but on 3.10 the
same thread mostly takes it again at once."""
TIMEOUT_OUTCOME = "timeout"


@dataclass
class Example:
    run: int
    details: str


@dataclass
class StressResult:
    runs: int
    seconds: float
    histogram: Counter[Hashable]
    acceptable: frozenset[Hashable] | None
    forbidden: frozenset[Hashable]
    examples: dict[Hashable, Example] = field(default_factory=dict)
    yield_probability: float = DEFAULT_YIELD_PROBABILITY
    seed: int = 0

    def is_forbidden(self, outcome: Hashable) -> bool:
        if outcome in self.forbidden:
            return True
        if self.acceptable is not None:
            return outcome not in self.acceptable
        return isinstance(outcome, Raised)  # errors, violations, timeouts

    @property
    def failed(self) -> bool:
        return any(self.is_forbidden(outcome) for outcome in self.histogram)

    @property
    def inconclusive(self) -> bool:
        """No run happened (runs=0, or seconds too short for one): not a pass."""
        return self.runs == 0

    def report(self) -> str:
        if self.inconclusive:
            return (
                "threadcheck stress: inconclusive: no run happened (runs 0, or seconds "
                "too short for one): nothing was tested\n"
            )
        rate = self.runs / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"threadcheck stress: {plural(self.runs, 'run')} in {self.seconds:.1f} s "
            f"({rate:.0f}/s) on real threads (switch interval {SWITCH_INTERVAL:g} s, a yield at "
            f"{self.yield_probability:.0%} of points, seed {self.seed})",
            "",
            f"  {'outcome':<40} {'count':>8}  verdict",
        ]
        for outcome, count in self.histogram.most_common():
            forbidden = self.is_forbidden(outcome)
            verdict = "FORBIDDEN" if forbidden else "acceptable"
            example = self.examples.get(outcome)
            if forbidden and example is not None:
                verdict += f", first in run {example.run}"
            lines.append(f"  {_shown(outcome):<40} {count:>8}  {verdict}")
        for outcome, example in self.examples.items():
            if self.is_forbidden(outcome) and example.details:
                lines += [
                    "",
                    f"Example of {_shown(outcome)} (run {example.run}):",
                    example.details,
                ]
        return "\n".join(lines) + "\n"

    def assert_clean(self) -> None:
        """Raise :class:`StressFailedError` with the histogram if a forbidden outcome
        showed, or with why nothing was tested if no run happened (as an
        exploration's ``assert_clean()`` does)."""
        __tracebackhide__ = True  # pytest: the failing test's line, then the report
        if self.failed or self.inconclusive:
            raise StressFailedError(self)

    assert_ok = assert_clean  # its first name, kept for the tests written with it


class StressFailedError(AssertionError):
    __module__ = "threadcheck"  # shown to users by its public name

    def __init__(self, result: StressResult) -> None:
        super().__init__(result.report())
        self.result = result


@dataclass(frozen=True)
class Raised:
    """An outcome that is not a value: an exception, a violation, a timeout."""

    text: str

    def __str__(self) -> str:
        return self.text


def stress(
    scenario: Callable[[Any], Any],
    runs: int | None = DEFAULT_RUNS,
    *,
    seconds: float | None = None,
    acceptable: Collection[Hashable] | None = None,
    forbidden: Collection[Hashable] = (),
    yield_probability: float = DEFAULT_YIELD_PROBABILITY,
    seed: int | None = None,
    run_timeout: float = DEFAULT_RUN_TIMEOUT,
    progress: Callable[[int, int, float], None] | None = None,
) -> StressResult:
    """Run ``scenario(reactor)`` ``runs`` times (or for ``seconds``) on real threads."""
    from threadcheck._sched._core import refuse_while_exploring

    # Its real threads would wait on the schedule's primitives.
    refuse_while_exploring("threadcheck.stress()")
    if runs is None and seconds is None:
        raise ValueError("give runs, seconds or both")
    if runs is not None:
        _arguments.require("runs", runs, _arguments.count)
    _arguments.require("seconds", seconds, _arguments.seconds)
    _arguments.require("acceptable", acceptable, _arguments.outcomes)
    _arguments.require("forbidden", forbidden, _arguments.outcomes)
    _arguments.require("yield_probability", yield_probability, _arguments.probability)
    _arguments.require("seed", seed, _arguments.seed)
    from threadcheck._sched._points import Instrumentation, perturb_with

    seed = random.randrange(2**32) if seed is None else seed
    chooser = random.Random(seed)
    result = StressResult(
        runs=0,
        seconds=0.0,
        histogram=Counter(),
        acceptable=None if acceptable is None else frozenset(map(_hashable, acceptable)),
        forbidden=frozenset(map(_hashable, forbidden)),
        yield_probability=yield_probability,
        seed=seed,
    )
    instrumentation = Instrumentation("access", _stacks.is_user_code)
    interval = sys.getswitchinterval()
    started = time.monotonic()
    perturb_with(lambda: time.sleep(YIELD_SLEEP) if chooser.random() < yield_probability else None)
    instrumentation.start(every_thread=True)
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        while _allows(runs, seconds, result.runs, started):
            outcome, details = _one_run(scenario, run_timeout)
            result.histogram[outcome] += 1
            if outcome not in result.examples:
                result.examples[outcome] = Example(result.runs, details)
            result.runs += 1
            if outcome == Raised(TIMEOUT_OUTCOME):
                break  # its threads are stuck: another run would pile up more
            if progress is not None:
                failures = sum(n for o, n in result.histogram.items() if result.is_forbidden(o))
                progress(result.runs, failures, time.monotonic() - started)
    finally:
        sys.setswitchinterval(interval)
        instrumentation.stop()
        perturb_with(None)
        result.seconds = time.monotonic() - started
    return result


def _allows(runs: int | None, seconds: float | None, done: int, started: float) -> bool:
    if runs is not None and done >= runs:
        return False
    return seconds is None or time.monotonic() - started < seconds


def _one_run(scenario: Callable[[Any], Any], timeout: float) -> tuple[Hashable, str]:
    """One run on a fresh reactor: its outcome, and what to show as its example."""
    from twisted.python.failure import Failure

    from threadcheck._report import format_report
    from threadcheck._sched._targets import global_reactor, run_scenario
    from threadcheck_reactor import ThreadCheckReactor

    reactor = ThreadCheckReactor("record")
    # Workers stuck in a run that timed out must not keep the process alive.
    reactor.getThreadPool().threadFactory = _daemon_thread  # type: ignore[assignment]
    stuck: list[str] = []

    def give_up() -> None:
        stuck.append(_all_stacks())
        # ThreadPool.stop would join the stuck workers for ever.
        if reactor.threadpoolShutdownID is not None:
            reactor.removeSystemEventTrigger(reactor.threadpoolShutdownID)
        reactor.stop()

    limit = reactor.callLater(timeout, give_up)
    try:
        # Twisted's global one meanwhile, as an explored test's is: deferToThread
        # would hand its job to an idle real reactor, whose answer never came.
        with global_reactor(reactor):
            outcome = run_scenario(reactor, scenario)
    finally:
        reactor.dispose()
    violations = reactor.threadcheck.recorder.violations()
    if violations:
        first = violations[0]
        return Raised(f"violation: {first.api}"), format_report(violations)
    if stuck:
        return Raised(TIMEOUT_OUTCOME), f"no result within {timeout:g} s:\n{stuck[0]}"
    if not outcome:
        return Raised("stopped early"), "the reactor stopped before the scenario's result"
    value = outcome[0]
    if isinstance(value, Failure):
        if value.value is not None and _is_pytest_outcome(value.value):
            value.raiseException()  # the test's own skip or xfail: pytest's to take
        name = type(value.value).__name__
        first_line = str(value.value).partition("\n")[0]  # pytest adds its explanation below
        # One row per kind of error, not per object named in its message.
        first_line = _ADDRESS.sub("0x…", first_line)
        return Raised(f"raised {name}: {first_line}"), value.getTraceback()
    if limit.active():
        limit.cancel()
    return _hashable(value), ""


_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
"""An object's address in its default repr: ``<Record object at 0x7fe690e78c10>``."""

PYTEST_OUTCOMES = frozenset({"Skipped", "XFailed", "Exit"})
"""What ``pytest.skip``, ``importorskip``, ``xfail`` and ``exit`` raise: the test's
outcome, decided by the test, never an interleaving's (``pytest.fail`` is one)."""


def _is_pytest_outcome(error: BaseException) -> bool:
    kind = type(error)  # pytest names its module "builtins": its base tells
    return kind.__name__ in PYTEST_OUTCOMES and any(
        base.__name__ == "OutcomeException" for base in kind.__mro__
    )


def _daemon_thread(*args: Any, **kwargs: Any) -> threading.Thread:
    return threading.Thread(*args, daemon=True, **kwargs)


def _all_stacks() -> str:
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    parts = []
    for ident, frame in _stacks.current_frames().items():
        if ident == threading.get_ident():
            continue
        stack = "".join(traceback.format_stack(frame))
        parts.append(f"Thread {names.get(ident, ident)}:\n{stack}")
    return "\n".join(parts)


def _hashable(value: object) -> Hashable:
    """An outcome (or an acceptable one) as a histogram key: a list is the tuple
    of its items, so ``acceptable=[["r", "w"]]`` and ``[("r", "w")]`` both name
    the outcome ``["r", "w"]``; a set is a frozenset; else its repr."""
    if isinstance(value, list | tuple):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, set | frozenset):
        return frozenset(_hashable(item) for item in value)
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value  # type: ignore[return-value]


def _shown(outcome: Hashable) -> str:
    return str(outcome) if isinstance(outcome, Raised) else repr(outcome)
