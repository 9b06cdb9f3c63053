"""Hypothesis strategies for schedules: program and schedule shrink together.

::

    from hypothesis import given, strategies as st
    import threadcheck
    from threadcheck.hypothesis import schedules

    @given(jobs=st.integers(1, 4), schedule=schedules())
    def test_total(jobs, schedule):
        threadcheck.run(lambda reactor: scenario(reactor, jobs), schedule=schedule)

A schedule is drawn in the test thread, as a preemption plan over the
no-preemption default: nothing is drawn while threads run, so the draws never
depend on timing (Hypothesis cannot draw from other threads). Hypothesis
shrinks it towards fewer and earlier preemptions; a failure's message holds
the replay token. Importing this module imports Hypothesis.
"""

from __future__ import annotations

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from threadcheck._sched._once import Schedule

DEFAULT_MAX_PREEMPTIONS = 4
DEFAULT_MAX_GAP = 100
DEFAULT_MAX_THREADS = 6
_NEAR = 16
_FEW = 3


@st.composite
def _plans(draw: st.DrawFn, max_preemptions: int, max_gap: int, max_threads: int) -> Schedule:
    # Races sit close together and between few threads: small gaps and low
    # thread numbers are drawn half the time, the whole range otherwise.
    gaps = st.integers(0, min(max_gap, _NEAR)) | st.integers(0, max_gap)
    threads = st.integers(0, min(max_threads, _FEW) - 1) | st.integers(0, max_threads - 1)
    steps = draw(st.lists(st.tuples(gaps, threads), max_size=max_preemptions))
    # Gaps, not absolute positions: dropping one preemption while shrinking
    # leaves the later ones where they were relative to each other.
    decision = -1
    preemptions = []
    for gap, thread in steps:
        decision += gap + 1
        preemptions.append((decision, thread))
    return Schedule(tuple(preemptions))


def schedules(
    *,
    max_preemptions: int = DEFAULT_MAX_PREEMPTIONS,
    max_gap: int = DEFAULT_MAX_GAP,
    max_threads: int = DEFAULT_MAX_THREADS,
) -> st.SearchStrategy[Schedule]:
    """Schedules with at most ``max_preemptions`` preemptions, each within
    ``max_gap`` decisions of the one before, naming threads ``T0`` to
    ``T<max_threads - 1>``. Shrinks towards :class:`Schedule()`, no preemption."""
    for name, value, low in (
        ("max_preemptions", max_preemptions, 0),
        ("max_gap", max_gap, 0),
        ("max_threads", max_threads, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise InvalidArgument(f"{name} must be an int >= {low}, not {value!r}")
    return _plans(max_preemptions, max_gap, max_threads)


__all__ = ["Schedule", "schedules"]
