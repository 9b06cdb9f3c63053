"""Quality: the scheduler finds each planted race, replays it exactly from its token
in a fresh process, and finds nothing in the fixed twins.

The races (tests/races.py): a one-line lost update between a reactor callback and
a deferToThread worker, check-then-act with a blocking step, an ABBA deadlock
between a lock and blockingCallFromThread, an ordering assumption across two
workers, and reactor.stop() before every result arrived. Plain runs on real
threads show none of them in 1,000 tries (tests/benchmarks/explore_quality.py
prints those baselines beside the schedules-to-failure medians).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from races import BUGGY, FIXED

import threadcheck

pytestmark = [pytest.mark.quality, pytest.mark.slow]

BUDGET = 2000
TESTS = Path(__file__).parent
EXPECTED_KIND = {
    "lost_update": "exception",
    "check_then_act": "exception",
    "abba_deadlock": "deadlock",
    "ordering": "exception",
    "early_stop": "incomplete",
}

REPLAY = """
import sys
import threadcheck
from races import BUGGY

result = threadcheck.replay(BUGGY[sys.argv[1]], sys.argv[2])
print(result.failure.signature() if result.failure else "no failure")
print(result.run.preemption_count)
"""


@pytest.mark.parametrize("name", sorted(BUGGY))
def test_each_race_is_found_shrunk_and_replayed_in_a_fresh_process(name: str) -> None:
    result = threadcheck.explore(BUGGY[name], budget=BUDGET)

    assert result.found, f"{name}: not found in {BUDGET} schedules"
    assert result.failure is not None and result.run is not None and result.token
    assert result.failure.kind == EXPECTED_KIND[name]
    assert result.run.preemption_count <= 2
    report = result.report()
    # A choice among threads after one blocked is shown, and is no preemption.
    switches = report.count("   <- preempted: ") + report.count("   <- time +")
    assert switches == result.run.preemption_count
    assert f"replay: threadcheck.replay({BUGGY[name].__name__}, 'tc1." in report

    replayed = subprocess.run(
        [sys.executable, "-c", REPLAY, name, result.token],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=TESTS,
    )
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.split() == [
        result.failure.signature(),
        str(result.run.preemption_count),
    ]


@pytest.mark.parametrize("name", sorted(FIXED))
def test_each_fixed_twin_is_clean_over_the_whole_budget(name: str) -> None:
    result = threadcheck.explore(FIXED[name], budget=BUDGET)
    assert not result.found, result.report()
    if not result.proof:  # else the portfolio's DPOR phase explored every interleaving
        assert result.schedules == BUDGET
        assert result.distinct > 10
