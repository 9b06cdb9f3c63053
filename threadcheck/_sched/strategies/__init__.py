"""Scheduling strategies, one per module, behind :class:`~threadcheck._sched._core.Strategy`.

``parse("pct:3", seed)`` builds one from its command-line spelling.
"""

from __future__ import annotations

from collections.abc import Sequence

from threadcheck._sched._core import Strategy
from threadcheck._sched.strategies.bounded import BoundedPreemption
from threadcheck._sched.strategies.dpor import Dpor
from threadcheck._sched.strategies.pct import PCT
from threadcheck._sched.strategies.plan import Plan
from threadcheck._sched.strategies.portfolio import Portfolio
from threadcheck._sched.strategies.random_walk import RandomWalk
from threadcheck._sched.strategies.replay import Replay, ReplayDivergenceError

DEFAULT = "portfolio"
MAX_BOUND = 1000
"""The largest PCT depth or preemption bound: far more than a schedule's
preemptions ever need, and each costs memory up front."""
SPELLINGS = (
    f"portfolio, random, pct:DEPTH (e.g. pct:3), bounded:PREEMPTIONS (e.g. bounded:2),"
    f" dpor; DEPTH from 1 and PREEMPTIONS from 0, up to {MAX_BOUND}"
)


def parse(spec: str | None, seed: int, *, prove: bool = True) -> Strategy:
    """The strategy ``spec`` names; ValueError with the valid spellings otherwise.
    ``prove=False``: the portfolio leaves out its DPOR phase (sharded, each
    shard would repeat it; at a granularity other than access it cannot run)."""
    name, colon, argument = (spec or DEFAULT).partition(":")
    try:
        if colon and not argument:  # `pct:`: a bound left out, not the default one
            raise ValueError(spec)
        if name == "portfolio" and not argument:
            return Portfolio(seed, prove=prove)
        if name == "random" and not argument:
            return RandomWalk(seed)
        if name == "pct" and 1 <= int(argument or 3) <= MAX_BOUND:
            return PCT(int(argument or 3), seed)
        if name == "bounded" and 0 <= int(argument or 2) <= MAX_BOUND:
            return BoundedPreemption(int(argument or 2))
        if name == "dpor" and not argument:
            return Dpor()
    except ValueError:
        pass
    raise ValueError(f"unknown strategy {spec!r}: use {SPELLINGS}")


def default_choice(runnable: Sequence[int], current: int | None) -> int:
    """No preemption: the running thread goes on; else the oldest runnable one."""
    return current if current is not None and current in runnable else runnable[0]


__all__ = [
    "DEFAULT",
    "PCT",
    "BoundedPreemption",
    "Dpor",
    "Plan",
    "Portfolio",
    "RandomWalk",
    "Replay",
    "ReplayDivergenceError",
    "default_choice",
    "parse",
]
