"""The import system's module locks while exploring.

A module's own code, run by an import in a controlled thread, switches no
thread at its points: it holds the import system's lock of that module, and
the module lock's own bookkeeping holds a real lock. Yet that code may block
(a ``time.sleep`` at its top level, a wait on another thread): the turn then
goes on, and a second thread importing the same module meanwhile (a lazy
``import`` in two pool jobs) must wait for the first in the scheduler, not for
real ("blocked outside the scheduler's control" on a correct program). So a
module lock made in a controlled thread lets its waiters sleep on a scheduled
lock, the lock Python gives them to sleep on (``_ModuleLock.wakeup``). A
deadlock through one names the import waited for and the thread importing it.

Thread safety: the replacements act only in controlled threads, one at a time;
a module lock made elsewhere keeps Python's own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from threadcheck._sched import _primitives
from threadcheck._sched._core import ControlledThread, here, looked_past, without_points


def replacements() -> list[tuple[Any, str, Any]]:
    bootstrap: Any = sys.modules["importlib._bootstrap"]  # the import system's own
    manager, module_lock = bootstrap._ModuleLockManager, bootstrap._ModuleLock
    return [
        (manager, "__enter__", _entered(manager.__enter__)),
        (manager, "__exit__", _exited(manager.__exit__)),
        (module_lock, "__init__", _waking_in_the_scheduler(module_lock.__init__)),
        # Their points (the wake-up lock's) come while they hold the real lock.
        (module_lock, "acquire", without_points(module_lock.acquire)),
        (module_lock, "release", without_points(module_lock.release)),
    ]


def _entered(enter: Callable[[Any], None]) -> Callable[[Any], None]:
    @looked_past
    def entered(self: Any) -> None:
        enter(self)
        found = here()
        if found is not None:
            found[1].holding += 1
            self._threadcheck_held = found[1]

    return entered


def _exited(exit_: Callable[..., None]) -> Callable[..., None]:
    @looked_past
    def exited(self: Any, *exc: object) -> None:
        held = getattr(self, "_threadcheck_held", None)
        if held is not None:
            held.holding -= 1
        exit_(self, *exc)

    return exited


def _waking_in_the_scheduler(init: Callable[[Any, str], None]) -> Callable[[Any, str], None]:
    def made(self: Any, name: str) -> None:
        init(self, name)
        if here() is not None:
            self.wakeup = _ImportWakeup(self)

    return made


class _ImportWakeup(_primitives.Lock):
    """A module lock's wake-up lock. Python's protocol has each waiter take it
    before sleeping on it, so its holder is the waiter itself: a deadlock's
    edge goes instead to the thread importing the module, the module lock's
    owner."""

    def __init__(self, module_lock: Any) -> None:
        self._module_lock = module_lock
        self._taken_by: ControlledThread | None = None
        super().__init__()
        self.waited_as = f"the import of {module_lock.name}"

    @property
    def holder(self) -> ControlledThread | None:
        found = here()
        owner = self._module_lock.owner
        if found is None or owner is None:
            return None
        return next((t for t in found[0].threads if t.ident == owner), None)

    @holder.setter
    def holder(self, taken_by: ControlledThread | None) -> None:
        self._taken_by = taken_by
