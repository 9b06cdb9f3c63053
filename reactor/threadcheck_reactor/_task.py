"""twisted.internet.task: LoopingCall, Cooperator and deferLater, under their own names.

``LoopingCall.stop`` from a worker cancels a DelayedCall the reactor may be
running; ``Cooperator.cooperate`` from a worker only appends to a list when
the cooperator is already scheduled, so no reactor check would see it.

A LoopingCall (or ``deferLater``) on a clock that is not an instrumented
reactor, a ``task.Clock`` in a worker's own test say, is that worker's
business and is not reported; nor is a Cooperator with its own scheduler.

Thread safety: Twisted's have none; the checks run in any thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import task

from threadcheck._affinity import AffinityChecker
from threadcheck_reactor._running import Patch, checked, checked_methods

LOOPING_CALL_APIS = ("start", "stop", "reset")
COOPERATOR_APIS = ("cooperate", "coiterate", "start", "stop")
TASK_APIS = ("pause", "resume", "stop")


APIS = (
    "task.deferLater",
    *(f"LoopingCall.{name}" for name in LOOPING_CALL_APIS),
    *(f"Cooperator.{name}" for name in COOPERATOR_APIS),
    *(f"CooperativeTask.{name}" for name in TASK_APIS),
)
"""Every name a task violation can carry."""


def _private_clock(clock: object) -> bool:
    return not isinstance(getattr(clock, "_threadcheck", None), AffinityChecker)


def _private_loop(loop: task.LoopingCall) -> bool:
    return _private_clock(loop.clock)


def _private_cooperator(cooperator: task.Cooperator) -> bool:
    return cooperator._scheduler is not task._defaultScheduler


def _private_task(cooperative: task.CooperativeTask[Any]) -> bool:
    return _private_cooperator(cooperative._cooperator)


def patches() -> list[Patch]:
    """The task checks, for :func:`threadcheck_reactor._running.register`."""
    found: list[Patch] = [
        (task, "deferLater", checked("task.deferLater", task.deferLater, _private_clock))
    ]
    classes: tuple[tuple[type, str, tuple[str, ...], Callable[[Any], bool]], ...] = (
        (task.LoopingCall, "LoopingCall", LOOPING_CALL_APIS, _private_loop),
        (task.Cooperator, "Cooperator", COOPERATOR_APIS, _private_cooperator),
        (task.CooperativeTask, "CooperativeTask", TASK_APIS, _private_task),
    )
    for cls, prefix, names, private in classes:
        found += checked_methods(cls, prefix, names, private)
    return found
