"""The random generator behind schedules nobody planned, and its Hypothesis hook.

``threadcheck.run(scenario)`` without a schedule runs a random walk seeded
from :data:`scheduler_random`. Hypothesis loads :func:`hypothesis_plugin_setup`
through the ``hypothesis`` entry point (as trio does) and seeds the generator
per example, so such runs are reproducible inside ``@given``.

Thread safety: drawn from only by the thread that starts a schedule.
"""

from __future__ import annotations

import random

scheduler_random = random.Random()


def next_seed() -> int:
    return scheduler_random.getrandbits(64)


def hypothesis_plugin_setup() -> None:
    from hypothesis import register_random

    register_random(scheduler_random)
