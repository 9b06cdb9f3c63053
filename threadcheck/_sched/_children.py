"""Waits on child processes during a schedule.

A child process runs outside the scheduler: its timing cannot be chosen or
replayed. A controlled thread that waits on a ``subprocess`` child
(``Popen.wait``/``communicate``, so ``subprocess.run`` too) or on a pid
(``os.waitpid``/``os.wait``) waits off its turn: the wait runs in a helper
thread of its own while the other threads run, as for a blocking socket read
(best effort, no proof: the child's timing is real). A schedule that ends
while a ``Popen`` is waited on kills that child. ``multiprocessing`` waits
(``Process.join``, pool results) and a ``ProcessPoolExecutor`` still fail the
schedule at once with where they wait: their children re-import or fork the
program, and their results come back through threads that block in C.

Thread safety: as the scheduler's; the replacements only act in the thread
holding the turn.
"""

from __future__ import annotations

import _thread
import contextlib
import multiprocessing.pool
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.process import BaseProcess
from typing import Any

from threadcheck import _stacks
from threadcheck._sched._core import BLOCKED, Abort, Failure, describe, here, stack_of


def replacements() -> list[tuple[Any, str, Any]]:
    """(target, name, replacement) for :class:`~threadcheck._sched._patch.Patches`."""
    off_turn: list[tuple[Any, str]] = [
        (subprocess.Popen, "wait"),
        (subprocess.Popen, "communicate"),
        (os, "waitpid"),
        (os, "wait"),
    ]
    refused: list[tuple[Any, str]] = [
        (BaseProcess, "join"),
        (multiprocessing.pool.ApplyResult, "wait"),
        (multiprocessing.pool.ApplyResult, "get"),
        (ProcessPoolExecutor, "submit"),
    ]
    return [
        *((target, name, _off_turn(getattr(target, name), name)) for target, name in off_turn),
        *((target, name, _refused(getattr(target, name), name)) for target, name in refused),
    ]


def _off_turn(wait: Callable[..., Any], name: str) -> Callable[..., Any]:
    owner = getattr(wait, "__qualname__", name)

    def call(*args: Any, **kwargs: Any) -> Any:
        place = here()
        if place is None or _polls(name, args, kwargs):
            return wait(*args, **kwargs)
        scheduler, _ = place
        outcome: list[tuple[bool, Any]] = []
        done, signal_done = os.pipe()  # reads as ready once the helper closes its end

        def run() -> None:
            try:
                outcome.append((True, wait(*args, **kwargs)))
            except BaseException as error:  # handed to the waiting thread
                outcome.append((False, error))
            finally:
                os.close(signal_done)

        _thread.start_new_thread(run, ())
        _waited.append(args)
        try:
            while not outcome:
                why = f"{owner} (a real child process)"
                scheduler.wait_for_io(done, True, why, None, ends_alone=True)
        except BaseException:  # the schedule ends: its child must not outlive it
            _kill(args)
            raise
        finally:
            os.close(done)
            _waited.remove(args)
        succeeded, value = outcome[0]
        if succeeded:
            return value
        raise value

    call.__name__ = name
    call.__wrapped__ = wait  # type: ignore[attr-defined]
    return call


_waited: list[tuple[Any, ...]] = []
"""The arguments of the waits on children under way (a ``Popen`` first)."""


def kill_waited_children() -> None:
    """Kill the children controlled threads wait on: their schedule is over,
    its threads left blocked (they would outlive the exploring process)."""
    for args in list(_waited):
        _kill(args)


def _kill(args: tuple[Any, ...]) -> None:
    """Kill the ``Popen`` a method of it was waiting on (a pid alone is left alone)."""
    # os.kill, not Popen.kill: that would poll through a lock, a scheduling point.
    if args and isinstance(args[0], subprocess.Popen) and args[0].returncode is None:
        with contextlib.suppress(OSError):  # already gone
            os.kill(args[0].pid, signal.SIGKILL)


def _refused(wait: Callable[..., Any], name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        place = here()
        if place is None or _polls(name, args, kwargs) or _of_threads(args):
            return wait(*args, **kwargs)
        scheduler, me = place
        owner = getattr(wait, "__qualname__", name)
        caller = scheduler.where(sys._getframe(1))
        where = describe(caller)
        shown = _stacks.stack_from(caller, 1)[0].location() if caller is not None else where
        scheduler.fail(
            Failure(
                BLOCKED,
                f"T{me.tid} ({me.name}) waits on a child process: not controlled "
                f"({owner} at {shown})",
                thread=me.name,
                location=where,
                details=stack_of(me.ident),
            )
        )
        raise Abort

    call.__name__ = name
    call.__wrapped__ = wait  # type: ignore[attr-defined]
    return call


def _of_threads(args: tuple[Any, ...]) -> bool:
    """A result of a ``multiprocessing`` ``ThreadPool`` (``multiprocessing.dummy``),
    whose workers are threads and whose queues and Events are the scheduler's
    (:mod:`~threadcheck._sched._mp`), or one already set (its pool let go)."""
    result = args[0] if args else None
    if not isinstance(result, multiprocessing.pool.ApplyResult):
        return False
    pool = result._pool  # type: ignore[attr-defined]
    return pool is None or isinstance(pool, multiprocessing.pool.ThreadPool)


def _polls(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """A check that does not wait: ``os.waitpid(pid, WNOHANG)``."""
    if name != "waitpid":
        return False
    options = args[1] if len(args) > 1 else kwargs.get("options", 0)
    return bool(options & os.WNOHANG)
