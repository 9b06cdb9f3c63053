"""Locks made past ``threading.Lock``: made by us when the program makes them.

``synchronize(Klass)`` wraps each method named in ``Klass.synchronized`` in
``_synchPre``/``_synchPost``, which give the object, on first use, an
``XLock``: a ``threading._RLock`` built on ``_thread.allocate_lock``, past the
``threading.RLock`` that the race detector and the scheduler replace. Its
order went unseen (a race reported between two methods holding it), and under
the scheduler a thread waiting for it blocked outside its control.

So, under the scheduler, ``_synchPre`` is replaced: an object of a class
defined in user code gets the lock ``make_lock`` gives; every other object
(Twisted's legacy log publisher among them, whose lock outlives any run)
keeps Twisted's own. The race detector needs no lock of its own: entering a
synchronized method receives what the last one to leave it sent
(:func:`synch_edge_replacements`), for every object, whenever its lock was made.

Older code makes its locks the same way: ``_thread.allocate_lock()``, or a
class of its own built on ``threading._RLock``. :func:`raw_lock_replacements`
gives those, when user code makes them, the lock ``make_lock`` gives.

Thread safety: the replacements run in any thread; two first uses at once
each make a lock and ``dict.setdefault`` keeps one.
"""

from __future__ import annotations

import _thread
import sys
import threading
from collections.abc import Callable
from typing import Any

_LOCK = "_threadable_lock"
_SENT = "_threadcheck_races_synch_sent"


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


def synch_edge_replacements(
    send: Callable[[], Any], receive: Callable[[Any], None]
) -> list[tuple[Any, str, Any]]:
    """(module, name, replacement) of ``threadable._synchPre`` and ``_synchPost``:
    leaving a synchronized method sends (``send()``), the next one to enter
    receives it. Any object's, keeping its lock: Twisted's legacy log
    publisher calls every observer holding one it made lazily, or long before."""
    from twisted.python import threadable

    pre, post = threadable._synchPre, threadable._synchPost

    def synch_pre(obj: Any) -> None:
        pre(obj)  # type: ignore[no-untyped-call]
        receive(obj.__dict__.get(_SENT))  # _synchPre itself needs a __dict__

    def synch_post(obj: Any) -> None:
        sent = send()
        if sent is not None:  # else not detecting: the object is left as it is
            obj.__dict__[_SENT] = sent
        post(obj)  # type: ignore[no-untyped-call]

    return [(threadable, "_synchPre", synch_pre), (threadable, "_synchPost", synch_post)]


def raw_lock_replacements(
    make_lock: Callable[[], Any], is_user_file: Callable[[str], bool]
) -> list[tuple[Any, str, Any]]:
    """``_thread.allocate_lock`` called by user code, and a user class's
    ``threading._RLock`` subclass: their lock is ``make_lock()`` (None: the real
    one). Only the caller's own file counts: the import system makes its module
    locks with ``_thread.allocate_lock`` too."""
    real_allocate = _thread.allocate_lock
    real_rlock_init = threading._RLock.__init__  # type: ignore[attr-defined]

    def allocate_lock() -> Any:
        if is_user_file(sys._getframe(1).f_code.co_filename):
            lock = make_lock()
            if lock is not None:
                return lock
        return real_allocate()

    def rlock_init(self: Any) -> None:
        real_rlock_init(self)
        if _defined_by_user(type(self), is_user_file):
            lock = make_lock()
            if lock is not None:
                self._block = lock

    return [
        (_thread, "allocate_lock", allocate_lock),
        (threading._RLock, "__init__", rlock_init),  # type: ignore[attr-defined]
    ]


def _defined_by_user(cls: type, is_user_file: Callable[[str], bool]) -> bool:
    filename = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return isinstance(filename, str) and is_user_file(filename)
