"""Waits on child processes: not controlled, so a schedule that makes one fails.

A child process runs outside the scheduler: its timing cannot be chosen or
replayed, and waiting for it holds the turn in real time (a bare stack from
the watchdog after 10 s). During a schedule, a controlled thread that waits on
one (``subprocess`` ``wait``/``communicate``/``run``, ``os.waitpid``,
``multiprocessing`` ``Process.join`` and pool results, a
``ProcessPoolExecutor``) fails the schedule at once with where it waits; the
exploration stops there, as for any thread blocked outside its control.

Thread safety: as the scheduler's; the replacements only act in the thread
holding the turn.
"""

from __future__ import annotations

import multiprocessing.pool
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.process import BaseProcess
from typing import Any

from threadcheck._sched._core import BLOCKED, Abort, Failure, describe, here, stack_of


def replacements() -> list[tuple[Any, str, Any]]:
    """(target, name, replacement) for :class:`~threadcheck._sched._patch.Patches`."""
    waits: list[tuple[Any, str]] = [
        (subprocess.Popen, "wait"),
        (subprocess.Popen, "communicate"),
        (BaseProcess, "join"),
        (multiprocessing.pool.ApplyResult, "wait"),
        (multiprocessing.pool.ApplyResult, "get"),
        (ProcessPoolExecutor, "submit"),
        (os, "waitpid"),
        (os, "wait"),
    ]
    return [(target, name, _refused(getattr(target, name), name)) for target, name in waits]


def _refused(wait: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        place = here()
        if place is None or _polls(name, args, kwargs):
            return wait(*args, **kwargs)
        scheduler, me = place
        owner = getattr(wait, "__qualname__", name)
        where = describe(scheduler.where(sys._getframe(1)))
        scheduler.fail(
            Failure(
                BLOCKED,
                f"T{me.tid} ({me.name}) waits on a child process: not controlled "
                f"({owner} at {where})",
                thread=me.name,
                location=where,
                details=stack_of(me.ident),
            )
        )
        raise Abort

    call.__name__ = name
    call.__wrapped__ = wait  # type: ignore[attr-defined]
    return call


def _polls(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """A check that does not wait: ``os.waitpid(pid, WNOHANG)``."""
    if name != "waitpid":
        return False
    options = args[1] if len(args) > 1 else kwargs.get("options", 0)
    return bool(options & os.WNOHANG)
