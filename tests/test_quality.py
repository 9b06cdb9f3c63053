"""Quality: on random programs, threadcheck reports exactly the wrong-thread calls.

Each example is a few worker threads, each making a random sequence of reactor
calls, either directly (a bug) or routed through callFromThread (correct). The
recorder must hold exactly the direct calls, per API and per thread: no false
negatives, no false positives.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from threadcheck import Kind, Mode

from support import RunningReactor, run_threads

pytestmark = pytest.mark.quality


def noop() -> None:
    pass


CALLS: dict[str, Callable[[Any], object]] = {
    "reactor.callLater": lambda r: r.callLater(3600, noop),
    "reactor.callWhenRunning": lambda r: r.callWhenRunning(noop),
    "reactor.addSystemEventTrigger": lambda r: r.addSystemEventTrigger("after", "tc-q", noop),
    "reactor.fireSystemEvent": lambda r: r.fireSystemEvent("tc-q-unused"),
    "reactor.getThreadPool": lambda r: r.getThreadPool(),
    "reactor.resolve": lambda r: r.resolve("127.0.0.1"),
}

step = st.tuples(st.sampled_from(sorted(CALLS)), st.booleans())  # (api, direct?)
program = st.lists(st.lists(step, max_size=25), min_size=1, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=program)
def test_reports_exactly_the_direct_calls(program: list[list[tuple[str, bool]]]) -> None:
    running = RunningReactor(Mode.RECORD)
    try:
        _run_workers(running, program)
        running.in_reactor(noop)  # every routed call has run once this returns
    finally:
        running.stop()

    expected = Counter(
        (f"w{index}", api)
        for index, steps in enumerate(program)
        for api, direct in steps
        if direct
    )
    violations = running.recorder.violations()
    assert Counter((v.thread.name, v.api) for v in violations) == expected
    assert {v.kind for v in violations} <= {Kind.FOREIGN_THREAD}


def _run_workers(running: RunningReactor, program: list[list[tuple[str, bool]]]) -> None:
    reactor = running.reactor

    def worker(steps: list[tuple[str, bool]]) -> None:
        for api, direct in steps:
            if direct:
                CALLS[api](reactor)
            else:
                reactor.callFromThread(CALLS[api], reactor)

    run_threads(
        [
            threading.Thread(target=worker, args=(steps,), name=f"w{i}")
            for i, steps in enumerate(program)
        ]
    )
