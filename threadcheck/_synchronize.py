"""Twisted's ``threadable.synchronize``: the lock it gives a user's object, made by us.

``synchronize(Klass)`` wraps each method named in ``Klass.synchronized`` in
``_synchPre``/``_synchPost``, which give the object, on first use, an
``XLock``: a ``threading._RLock`` built on ``_thread.allocate_lock``, past the
``threading.RLock`` that the race detector and the scheduler replace. Its
order went unseen (a race reported between two methods holding it), and under
the scheduler a thread waiting for it blocked outside its control.

So ``_synchPre`` is replaced: an object of a class defined in user code gets
the lock ``make_lock`` gives; every other object (Twisted's legacy log
publisher among them, whose lock outlives any run) keeps Twisted's own.

Thread safety: the replacement runs in any thread; two first uses at once
each make a lock and ``dict.setdefault`` keeps one.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

_LOCK = "_threadable_lock"


def synch_pre_replacement(
    make_lock: Callable[[], Any], is_user_file: Callable[[str], bool]
) -> tuple[Any, str, Any]:
    """(module, name, replacement) of ``threadable._synchPre``; ``make_lock``
    returns the lock, or None for Twisted's own (say outside a schedule)."""
    from twisted.python import threadable

    original = threadable._synchPre

    def synch_pre(obj: Any) -> None:
        state = getattr(obj, "__dict__", None)
        if state is not None and _LOCK not in state and _defined_by_user(type(obj), is_user_file):
            lock = make_lock()
            if lock is not None:
                state.setdefault(_LOCK, lock)
        original(obj)  # type: ignore[no-untyped-call]

    return (threadable, "_synchPre", synch_pre)


def _defined_by_user(cls: type, is_user_file: Callable[[str], bool]) -> bool:
    filename = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return isinstance(filename, str) and is_user_file(filename)
