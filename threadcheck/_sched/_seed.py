"""The random generator behind schedules nobody planned, and its Hypothesis hook.

``threadcheck.run(scenario)`` without a schedule runs a random walk seeded
from :data:`scheduler_random`. Hypothesis loads :func:`hypothesis_plugin_setup`
through the ``hypothesis`` entry point (as trio does) and seeds the generator
per example, so such runs are reproducible inside ``@given``.

Thread safety: drawn from only by the thread that starts a schedule.
"""

from __future__ import annotations

import os
import random
import sys

scheduler_random = random.Random()


def hash_seed() -> str:
    """This process's ``PYTHONHASHSEED``, ``"random"`` unless it is pinned (Python
    hashes strings randomly when it is empty too)."""
    return os.environ.get("PYTHONHASHSEED") or "random"


def next_seed() -> int:
    """The seed of an unplanned schedule: inside a Hypothesis example, drawn
    from its data (each example walks its own schedule, which its database
    replays and its shrinker shrinks); else from :data:`scheduler_random`
    (which Hypothesis seeds alike for every example: one walk for all)."""
    if in_example():
        from hypothesis import strategies as st
        from hypothesis.control import current_build_context

        seed: int = current_build_context().data.draw(st.integers(0, 2**64 - 1))
        return seed
    return scheduler_random.getrandbits(64)


def in_example() -> bool:
    """Whether a Hypothesis example is running in this thread."""
    control = sys.modules.get("hypothesis.control")  # loaded if a test uses it
    return control is not None and bool(control.currently_in_test_context())


def hypothesis_plugin_setup() -> None:
    from hypothesis import register_random

    register_random(scheduler_random)
    _left_out_of_explanations()


def _left_out_of_explanations() -> None:
    """Hypothesis's explain phase names the first lines only failing examples
    ran: for a race, ours (that raise the failure), never the racing lines
    (passing examples ran them too). Left out, as it leaves out pytest's."""
    try:
        from hypothesis.internal import scrutineer
    except ImportError:
        return
    locations = getattr(scrutineer, "UNHELPFUL_LOCATIONS", None)
    ours = ("/threadcheck/**", "/threadcheck_reactor/**")
    if isinstance(locations, tuple) and not set(ours) <= set(locations):
        scrutineer.UNHELPFUL_LOCATIONS = locations + ours
