"""The standard library's synchronisation, made to carry happens-before.

* ``threading.Lock`` and ``RLock`` made from now on (and so every
  ``Condition``, ``Event``, ``Semaphore``, ``Barrier``, ``queue.Queue`` and
  ``Future`` built on them): a release sends, the next acquire receives.
* A method Twisted's ``threadable.synchronize`` wraps sends as it returns to
  the next one entered on the same object (the legacy log publisher calls
  every observer so, under a lock it may have made before detection began).
* ``Thread.start`` sends to the new thread's first step; a thread's end
  sends to the ``join`` that sees it ended, and to an ``is_alive()`` that
  returns False (a reactor polling for it). ``_thread.start_new_thread``
  (a C library's callback thread, a framework's own) sends to its thread's
  first step too, and the thread's clock ends with it (a later thread with
  the same ident starts afresh).
* ``Event.set`` sends to an ``is_set()`` that returns True (a poll, where
  ``wait`` takes the Event's lock).
* asyncio's ``call_soon_threadsafe`` (and so ``run_coroutine_threadsafe``)
  sends to the callback it hands to another thread's event loop.
* ``queue.SimpleQueue`` (C, lock-free; ``ThreadPoolExecutor`` hands its jobs
  over one): each item carries its sender's snapshot to whoever gets it.
* An import (``import m``, ``from m import x``, ``importlib.import_module``)
  receives what the thread that ran ``m``'s code had done by its end: a module
  imported lazily in one thread and found done by another's import is not a
  race on its globals (the import lock orders them).

Thread safety: :func:`install` and :func:`uninstall` are called by one thread
while no other is starting; the wrappers are used from any thread.
"""

from __future__ import annotations

import _thread
import builtins
import functools
import importlib
import importlib.util
import queue
import sys
import threading
import types
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, NoReturn

from threadcheck import _stacks
from threadcheck._races._clocks import (
    VectorClock,
    begin_thread,
    end_thread,
    imported,
    receive,
    run_received,
    send,
)
from threadcheck._synchronize import raw_lock_replacements, synch_edge_replacements

_START = "_threadcheck_races_start"
_END = "_threadcheck_races_end"
_SET = "_threadcheck_races_set"
_allocate_lock = _thread.allocate_lock
_RLock: Any = _thread.RLock


class TrackedLock:
    """A ``threading.Lock`` whose release happens before the next acquire."""

    __slots__ = ("__weakref__", "_lock", "_sent")

    def __init__(self) -> None:
        self._lock: Any = _allocate_lock()
        self._sent: VectorClock | None = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(blocking, timeout):
            receive(self._sent)
            return True
        return False

    def release(self) -> None:
        self._sent = send()
        self._lock.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def locked(self) -> bool:
        return bool(self._lock.locked())

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()  # type: ignore[attr-defined]
        self._sent = None

    def __repr__(self) -> str:
        return f"<tracked {self._lock!r}>"


class TrackedRLock(TrackedLock):
    """A ``threading.RLock``, tracked; ``Condition`` uses its private protocol."""

    __slots__ = ()

    def __init__(self) -> None:
        self._lock = _RLock()
        self._sent = None

    def locked(self) -> bool:
        return bool(self._lock._is_owned())

    def _is_owned(self) -> bool:
        return bool(self._lock._is_owned())

    def _recursion_count(self) -> int:
        # multiprocessing's resource tracker reads it (3.11+: the real RLock has it).
        return int(self._lock._recursion_count())

    def _release_save(self) -> Any:
        self._sent = send()
        return self._lock._release_save()

    def _acquire_restore(self, state: Any) -> None:
        self._lock._acquire_restore(state)
        receive(self._sent)


class TrackedSimpleQueue:
    """A ``queue.SimpleQueue`` whose items carry their sender's past."""

    __class_getitem__: Any = classmethod(types.GenericAlias)  # SimpleQueue[int], as the real one

    def __init__(self) -> None:
        self._queue: Any = _SimpleQueue()

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self._queue.put((send(), item))

    def put_nowait(self, item: Any) -> None:
        self.put(item)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        sent, item = self._queue.get(block, timeout)
        receive(sent)
        return item

    def get_nowait(self) -> Any:
        return self.get(False)

    def empty(self) -> bool:
        return bool(self._queue.empty())

    def qsize(self) -> int:
        return int(self._queue.qsize())


_SimpleQueue = queue.SimpleQueue
_undo: list[tuple[Any, str, Any]] = []


def install() -> None:
    if _undo:
        return
    start, bootstrap, join = (
        threading.Thread.start,
        threading.Thread._bootstrap_inner,  # type: ignore[attr-defined]
        threading.Thread.join,
    )

    def tracked_start(self: threading.Thread) -> None:
        setattr(self, _START, send())
        start(self)

    def tracked_bootstrap(self: threading.Thread) -> None:
        begin_thread(self, getattr(self, _START, None))
        try:
            bootstrap(self)
        finally:
            setattr(self, _END, end_thread())

    def tracked_join(self: threading.Thread, timeout: float | None = None) -> None:
        join(self, timeout)
        self.is_alive()  # the tracked one: ended, it receives what the thread did

    for target, name, replacement in (
        (threading, "Lock", TrackedLock),
        (threading, "RLock", TrackedRLock),
        (queue, "SimpleQueue", TrackedSimpleQueue),
        (threading.Thread, "start", tracked_start),
        (threading.Thread, "_bootstrap_inner", tracked_bootstrap),
        (threading.Thread, "join", tracked_join),
        *_raw_starts(),
        *_imports(),
        *_polls(),
        *synch_edge_replacements(send, receive),
        *raw_lock_replacements(TrackedLock, _stacks.is_user_code),
    ):
        _undo.append((target, name, getattr(target, name)))
        setattr(target, name, replacement)


def _raw_starts() -> list[tuple[Any, str, Any]]:
    """``_thread.start_new_thread`` (and its old alias): threads threading does not
    know, ordered after what their starter did, with a clock of their own."""
    raw_start = _thread.start_new_thread

    def tracked_start_new_thread(
        function: Callable[..., Any], args: tuple[Any, ...], kwargs: Any = None
    ) -> int:
        if not callable(function) or not isinstance(args, tuple):
            return raw_start(function, args)  # its own TypeError
        if kwargs is not None and not isinstance(kwargs, dict):
            return raw_start(function, args, kwargs)
        inherited = send()

        @functools.wraps(function)
        def run(*args: Any, **kwargs: Any) -> Any:
            begin_thread(None, inherited)
            try:
                return function(*args, **kwargs)
            finally:
                end_thread()

        return raw_start(run, args, kwargs or {})

    names = [name for name in ("start_new_thread", "start_new") if hasattr(_thread, name)]
    return [(_thread, name, tracked_start_new_thread) for name in names]


def _imports() -> list[tuple[Any, str, Any]]:
    """``__import__`` and ``importlib.import_module``: each receives the end of
    the import of the modules it returns (see :func:`_received`)."""
    original_import = builtins.__import__
    import_module = importlib.import_module

    def tracked_import(
        name: str,
        globals: Any = None,
        locals: Any = None,
        fromlist: Any = (),
        level: int = 0,
    ) -> Any:
        try:
            module = original_import(name, globals, locals, fromlist, level)
        except ImportError as error:
            if error.__traceback__ is not None and error.__traceback__.tb_next is None:
                _raise_where_imported(error, sys._getframe(1))  # no such module
            raise
        if imported:
            package = globals.get("__package__") if isinstance(globals, dict) else None
            _received("." * level + name, package, fromlist)
        return module

    def tracked_import_module(name: str, package: str | None = None) -> Any:
        try:
            module = import_module(name, package)
        except ImportError as error:
            if error.__traceback__ is not None and error.__traceback__.tb_next is None:
                _raise_where_imported(error, sys._getframe(1))
            raise
        if imported:
            _received(name, package, ())
        return module

    # warnings.warn(..., stacklevel=2) in a module's top level names the line
    # that imported it, past the import system's frames, which it knows by
    # their file: ours are taken for them too (the DeprecationWarning a user
    # module warns of at import went to this file, where no filter shows it).
    for wrapper in (tracked_import, tracked_import_module):
        wrapper.__code__ = wrapper.__code__.replace(co_filename=_LIKE_IMPORTLIB)
    return [
        (builtins, "__import__", tracked_import),
        (importlib, "import_module", tracked_import_module),
    ]


_LIKE_IMPORTLIB = f"{__file__} (importlib._bootstrap's __import__, watched)"
"""The file our import wrappers' frames show: with "importlib" and "_bootstrap"
in it, ``warnings`` skips them as the import system's own."""


def _raise_where_imported(error: ImportError, importer: FrameType) -> NoReturn:
    """Raise ``error`` (no such module) from a frame with the importer's file and line.

    Whether a module exists is told from the deepest frame of the ImportError:
    trial's loader (``module.Class`` names, ``trial -j``) takes one from its own
    ``reflect`` module for "no module by that name, try a shorter one", and
    one from anywhere else for a module that failed inside; the wrapper's
    frame made every miss a failure inside."""
    where = (importer.f_code.co_filename, importer.f_lineno, importer.f_code.co_name)
    code = _RAISERS.get(where)
    if code is None:
        raiser = compile("\n" * (where[1] - 1) + "raise error", where[0], "exec")
        # Named as the importer's function (a function's own import of a missing
        # module read as the module's top level, "<module>").
        code = _RAISERS[where] = raiser.replace(co_name=where[2])
    exec(code, {"__name__": __name__, "error": error.with_traceback(None)})  # raises
    raise AssertionError("unreachable")  # pragma: no cover


_RAISERS: dict[tuple[str, int, str], CodeType] = {}


def _received(name: str, package: str | None, fromlist: Any) -> None:
    """Receive the ends of the imports of ``name`` (relative to ``package``),
    its parents, and the submodules ``fromlist`` names."""
    try:
        full = importlib.util.resolve_name(name, package) if name.startswith(".") else name
    except (ImportError, ValueError):
        return
    parts = full.split(".")
    for end in range(1, len(parts) + 1):
        receive(imported.get(".".join(parts[:end])))
    for item in fromlist or ():
        if isinstance(item, str):
            receive(imported.get(f"{full}.{item}"))


def _polls() -> list[tuple[Any, str, Any]]:
    """The checks that see another thread's work done without waiting for it:
    ``Thread.is_alive()`` False, ``Event.is_set()`` True, and asyncio's
    thread-safe hand-off to another loop."""
    import asyncio

    is_alive, event_set, is_set = (
        threading.Thread.is_alive,
        threading.Event.set,
        threading.Event.is_set,
    )
    call_soon_threadsafe = asyncio.BaseEventLoop.call_soon_threadsafe

    def tracked_is_alive(self: threading.Thread) -> bool:
        alive = is_alive(self)
        if not alive:
            receive(getattr(self, _END, None))
        return alive

    def tracked_set(self: threading.Event) -> None:
        setattr(self, _SET, send())
        event_set(self)

    def tracked_is_set(self: threading.Event) -> bool:
        flag = is_set(self)
        if flag:
            receive(getattr(self, _SET, None))
        return flag

    def tracked_call_soon_threadsafe(
        self: asyncio.BaseEventLoop, callback: Any, *args: Any, context: Any = None
    ) -> Any:
        snapshot = send()
        if snapshot is None:
            return call_soon_threadsafe(self, callback, *args, context=context)
        kwargs: dict[str, Any] = {}
        return call_soon_threadsafe(
            self, run_received, snapshot, callback, args, kwargs, context=context
        )

    return [
        (threading.Thread, "is_alive", tracked_is_alive),
        (threading.Event, "set", tracked_set),
        (threading.Event, "is_set", tracked_is_set),
        (asyncio.BaseEventLoop, "call_soon_threadsafe", tracked_call_soon_threadsafe),
    ]


def uninstall() -> None:
    while _undo:
        target, name, original = _undo.pop()
        setattr(target, name, original)
