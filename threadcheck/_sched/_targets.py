"""What a schedule runs: a scenario callable, or a whole program (``threadcheck explore``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from threadcheck._sched._core import Failure
from threadcheck._sched._patch import thread_failure


class ScenarioTarget:
    """``scenario(reactor)`` on a fresh reactor; it returns None or a Deferred.

    The reactor runs until the scenario's Deferred fires (at once for None),
    then stops; its thread pool is stopped and every non-daemon thread joined
    as the interpreter would. The scenario fails if it raises, if its
    Deferred fails, or if the reactor stops before its Deferred fired.
    """

    def __init__(self, scenario: Callable[[Any], Any]) -> None:
        self.scenario = scenario
        module = getattr(scenario, "__module__", None) or "?"
        self.description = f"{module}:{getattr(scenario, '__qualname__', repr(scenario))}"

    def run(self, reactor: Any) -> Failure | None:
        from twisted.internet.defer import maybeDeferred
        from twisted.python.failure import Failure as TwistedFailure

        outcome: list[object] = []

        def start() -> None:
            maybeDeferred(self.scenario, reactor).addBoth(finish)

        def finish(result: object) -> None:
            outcome.append(result)
            if reactor.running and not reactor._stopped:  # the scenario may have stopped it
                reactor.stop()

        reactor.callWhenRunning(start)
        reactor.run(installSignalHandlers=False)
        if not outcome:
            return Failure(
                "incomplete",
                "the reactor stopped before the scenario's Deferred fired",
                thread=None,
            )
        result = outcome[0]
        if isinstance(result, TwistedFailure):
            error = result.value
            if isinstance(error, BaseException):
                traceback = result.getTracebackObject()  # type: ignore[no-untyped-call]
                return thread_failure("reactor", error.with_traceback(traceback))
        return None
