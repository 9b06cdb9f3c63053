"""Carrier threads: OS threads that run controlled threads, kept between schedules.

A schedule's threads live for a few hundred microseconds; creating each OS
thread and waiting for it to exit cost more than running it. While an
exploration runs, the start of a *controlled* thread hands its bootstrap to an
idle carrier instead of a new OS thread. Everything else is the standard
library's own: the ``Thread`` object, ``_bootstrap_inner`` (ident,
``threading._active``, ``run``, the excepthook), ``join`` and ``is_alive``.
When the body ends, the carrier does what the end of an OS thread does:

* a fresh ``contextvars`` context ran the body, and the thread's
  ``threading.local`` data is cleared (a new thread has none: a per-thread
  cache must be filled again, or a schedule would differ from its replay);
* then what ``join`` waits on is released: the thread's state lock
  (3.10-3.12, from ``threading._set_sentinel``) or its handle (3.13).

Where thread-local data cannot be cleared (no ``ctypes``, or a 3.13 thread
state whose local key was not found), every controlled thread gets a new OS
thread, as without carriers.

Thread safety: ``start`` is called by the thread holding the turn, and a
carrier returns itself to the idle list from its own thread: the list is
guarded by a lock. ``close`` is called by the exploring thread once no
schedule runs.
"""

from __future__ import annotations

import _thread
import contextlib
import contextvars
import functools
import gc
import sys
import threading
from collections.abc import Callable
from typing import Any

from threadcheck._sched import _chained

_STATE_LOCK = sys.version_info < (3, 13)
"""Whether ``join`` waits on a state lock (3.10-3.12), not on a thread handle (3.13)."""


class _Carrier:
    __slots__ = ("finished", "go", "task")

    def __init__(self) -> None:
        self.go = _thread.allocate_lock()
        self.go.acquire()
        self.task: tuple[Callable[[], None], Any] | None = None
        self.finished: Any = None
        """What ``join`` of the current thread waits on: released when its body ended."""


class _Handle:
    """Stands in for a 3.13 ``_ThreadHandle``: done once the carrier ran the body."""

    def __init__(self) -> None:
        self._done = _thread.allocate_lock()
        self._done.acquire()
        self.ident: int | None = None

    def join(self, timeout: float | None = None) -> None:
        if self._done.acquire(True, -1 if timeout is None else max(timeout, 0.0)):
            self._done.release()

    def is_done(self) -> bool:
        return not self._done.locked()

    def _set_done(self) -> None:
        if self._done.locked():
            self._done.release()


class Carriers:
    """Idle carrier threads, and the hooks that route controlled starts to them."""

    def __init__(self, is_controlled: Callable[[threading.Thread], bool]) -> None:
        self._is_controlled = is_controlled
        self._idle: list[_Carrier] = []
        self._running: dict[int, _Carrier] = {}
        self._lock = _thread.allocate_lock()
        self._closed = False
        self._clear_locals = thread_locals_clearer()
        self._originals: dict[str, Any] = {}
        """threading's module globals the hooks replaced, by name."""

    @property
    def available(self) -> bool:
        return self._clear_locals is not None

    def install(self) -> None:
        """Route controlled threads' starts to carriers (a no-op where unavailable)."""
        if not self.available:
            return
        if _STATE_LOCK:
            self._swap("_start_new_thread", self._start_new_thread)
            self._swap("_set_sentinel", self._set_sentinel)
        else:
            self._swap("_start_joinable_thread", self._start_joinable_thread)

    def close(self) -> None:
        """Undo the hooks; idle carriers end (one still running a body ends after it)."""
        for name, original in self._originals.items():
            setattr(threading, name, original)
        self._originals.clear()
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for carrier in idle:
            carrier.task = None
            carrier.go.release()

    def _swap(self, name: str, replacement: Any) -> None:
        self._originals[name] = getattr(threading, name)
        setattr(threading, name, replacement)

    # -- the hooks (threading's module globals) ---------------------------------

    def _start_new_thread(self, function: Callable[[], None], args: tuple[()]) -> int:
        original = self._originals["_start_new_thread"]
        thread = getattr(function, "__self__", None)
        if not isinstance(thread, threading.Thread) or not self._is_controlled(thread):
            return int(original(function, args))
        self._dispatch(function, None)
        return 0

    def _set_sentinel(self) -> Any:
        carrier = self._running.get(_thread.get_ident())
        if carrier is None:
            return self._originals["_set_sentinel"]()
        carrier.finished = _thread.allocate_lock()  # _set_tstate_lock acquires it
        return carrier.finished

    def _start_joinable_thread(
        self, function: Callable[[], None], handle: Any = None, daemon: bool = True
    ) -> Any:
        original = self._originals["_start_joinable_thread"]
        thread = getattr(function, "__self__", None)
        if not isinstance(thread, threading.Thread) or not self._is_controlled(thread):
            return original(function, handle=handle, daemon=daemon)
        stand_in = _Handle()
        thread._handle = stand_in  # type: ignore[attr-defined]
        self._dispatch(function, stand_in)
        return stand_in

    # -- carriers -------------------------------------------------------------

    def _dispatch(self, bootstrap: Callable[[], None], handle: _Handle | None) -> None:
        with self._lock:
            carrier = self._idle.pop() if self._idle else None
        if carrier is None:
            carrier = _Carrier()
            _thread.start_new_thread(self._loop, (carrier,))
        carrier.task = (bootstrap, handle)
        carrier.go.release()

    def _loop(self, carrier: _Carrier) -> None:
        ident = _thread.get_ident()
        while True:
            carrier.go.acquire()
            task = carrier.task
            if task is None:
                return  # closed
            bootstrap, handle = task
            carrier.task = None
            self._running[ident] = carrier
            with contextlib.suppress(BaseException):  # _bootstrap_inner reported it
                contextvars.Context().run(bootstrap)
            self._running.pop(ident, None)
            self._end_of_thread(carrier, handle)
            with self._lock:
                if self._closed:
                    return
                self._idle.append(carrier)

    def _end_of_thread(self, carrier: _Carrier, handle: _Handle | None) -> None:
        """What an OS thread's exit does for the thread's observers, in that order."""
        _chained.settrace(None)  # the real one (the program's may be ours while tracing)
        sys.setprofile(None)
        assert self._clear_locals is not None
        self._clear_locals()
        if handle is not None:
            handle._set_done()
        finished, carrier.finished = carrier.finished, None
        if finished is not None and finished.locked():
            finished.release()


@functools.cache
def thread_locals_clearer() -> Callable[[], None] | None:
    """Clears the calling thread's ``threading.local`` data; None when it cannot.
    Made once (3.13's starts a thread to find its fields), for any thread."""
    try:
        import ctypes
    except ImportError:
        return None
    clear_dict = _dict_clearer(ctypes)
    if _STATE_LOCK:
        return clear_dict
    clear_key = _key_clearer(ctypes)
    if clear_key is None:
        return None

    def clear_both() -> None:
        clear_dict()  # what C code keeps per thread (asyncio's running loop, say)
        clear_key()

    return clear_both


def _dict_clearer(ctypes: Any) -> Callable[[], None]:
    """Empties the thread state's dict, as a new thread's is: 3.10-3.12 keep
    local data there."""
    get_dict = ctypes.pythonapi.PyThreadState_GetDict
    get_dict.restype = ctypes.c_void_p  # a borrowed reference: py_object would steal it
    get_dict.argtypes = []

    def clear() -> None:
        address = get_dict()
        if address:
            ctypes.cast(address, ctypes.py_object).value.clear()

    return clear


def _key_clearer(ctypes: Any) -> Callable[[], None] | None:
    """3.13 keys local data by the thread state's ``threading_local_key``, and
    drops it when the state's ``threading_local_sentinel`` dies: clearing both
    fields, as the end of a thread does, leaves the next body none."""
    get_state = ctypes.pythonapi.PyThreadState_Get
    get_state.restype = ctypes.c_void_p
    get_state.argtypes = []
    decref = ctypes.pythonapi.Py_DecRef
    decref.argtypes = [ctypes.c_void_p]
    decref.restype = None
    offsets = _local_key_offsets(ctypes, get_state)
    if offsets is None:
        return None

    def clear() -> None:
        state = get_state()
        for offset in offsets:  # the key, then the sentinel, as PyThreadState_Clear
            field = ctypes.c_void_p.from_address(state + offset)
            address, field.value = field.value, None
            if address:
                decref(address)

    return clear


_FIELDS_SEARCHED = 128
"""Words of a thread state searched for its two local fields (288 and 296 bytes in on 3.13)."""


def _local_key_offsets(ctypes: Any, get_state: Any) -> tuple[int, int] | None:
    """Where a thread state holds its local key and sentinel: found in a new
    thread by the addresses of the two objects, as its first local made them."""
    found: list[tuple[int, int] | None] = [None]
    done = _thread.allocate_lock()
    done.acquire()

    def probe() -> None:
        try:
            found[0] = _offsets_here(ctypes, get_state())
        finally:
            done.release()

    _thread.start_new_thread(probe, ())
    done.acquire()
    return found[0]


def _offsets_here(ctypes: Any, state: int) -> tuple[int, int] | None:
    local = threading.local()
    local.made = True  # makes this thread's key and sentinel
    referents = gc.get_referents(local)  # its {key: data} dict and {weakref to sentinel} set
    keys = [key for item in referents if isinstance(item, dict) for key in item]
    sentinels = [ref() for item in referents if isinstance(item, set) for ref in item]
    if len(keys) != 1 or len(sentinels) != 1:
        return None
    wanted = (id(keys[0]), id(sentinels[0]))
    word = ctypes.sizeof(ctypes.c_void_p)
    offsets: dict[int, int] = {}
    for index in range(_FIELDS_SEARCHED):
        value = ctypes.c_void_p.from_address(state + index * word).value
        if value in wanted:
            offsets.setdefault(value, index * word)
    if len(offsets) != 2:
        return None
    return offsets[wanted[0]], offsets[wanted[1]]
