"""What an exploration swaps in while it runs, and takes out afterwards.

* ``threading.Lock``/``RLock``/``Condition``/``Event``/``Semaphore``/
  ``BoundedSemaphore`` and ``queue.Queue``/``LifoQueue``/``PriorityQueue``/
  ``SimpleQueue`` become factories: *user code* in a controlled thread gets
  the scheduler's version (:mod:`._primitives`); everyone else, including the
  standard library's own internals, gets the real one. Names user modules
  imported directly (``from threading import Lock``) are swapped too.
* ``time.sleep`` sleeps in virtual time in controlled threads, and
  ``time.time``/``monotonic``/``perf_counter`` (and ``_ns``) read the
  scheduler's virtual clock there: ``time.time`` as ``reactor.seconds()``
  does (from 2026-01-01), the monotonic ones from
  :data:`~threadcheck._sched._core.CLOCK_START`.
* ``datetime.now()`` and ``utcnow()`` read that clock too, in the real class
  (:mod:`._dates`); ``today()`` and ``date.today()`` read it through ``time.time``.
* ``Thread.start`` in a controlled thread starts a controlled thread, and
  ``Thread.join`` of one waits in the scheduler.
* Twisted's ``blockingCallFromThread`` waits on a scheduler queue.
* Log events of the scheduler's own ``Abort`` (Twisted logs what its
  handlers catch while a schedule is torn down) are dropped.

Thread safety: :meth:`Patches.install` and :meth:`Patches.uninstall` are
called by the exploring thread between schedules.
"""

from __future__ import annotations

import _thread
import atexit
import datetime
import logging
import os
import queue
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from types import CodeType, ModuleType, SimpleNamespace
from typing import Any

from threadcheck import _stacks
from threadcheck._races import _clocks, _footprint
from threadcheck._sched import (
    _children,
    _dates,
    _idle_pools,
    _imports,
    _lazy,
    _mp,
    _order,
    _premade,
    _primitives,
    _sockets,
    _sqlite,
)
from threadcheck._sched._core import (
    WALL_OFFSET,
    Abort,
    ControlledThread,
    Scheduler,
    TargetError,
    active,
    here,
    without_points,
)
from threadcheck._sched._program import (
    CONTROLLED_ATTR,
    adopting_submit,
    controlled_abort,
    controlled_exit,
    controlled_kill,
    controlled_killpg,
    controlled_pthread_kill,
    controlled_raise_signal,
    handler_in_schedules,
    inert_in_schedules,
    per_schedule_atexit,
    program_failure,
    refused_fork,
)
from threadcheck._synchronize import raw_lock_replacements, synch_pre_replacement

_ABSENT = object()


class Patches:
    def __init__(
        self,
        is_user_file: Callable[[str], bool],
        on_thread_start: Callable[[], None] = lambda: None,
        on_thread_end: Callable[[], None] = lambda: None,
    ) -> None:
        self.is_user_file = is_user_file
        self._machinery = _stdlib_machinery()
        self.on_thread_start = on_thread_start
        self.on_thread_end = on_thread_end
        self._undo: list[tuple[Any, str, Any]] = []
        self._premade: list[_premade.Found] = []

    def install(self) -> None:
        global os_randomness_drawn
        os_randomness_drawn = False
        replacements = self._replacements()
        # What user modules may have imported by name: the originals, before the swap.
        by_original = {
            id(getattr(target, name)): replacement
            for target, name, replacement in replacements
            if target in (threading, queue, time, datetime)
        }
        try:
            for target, name, replacement in replacements:
                self._swap(target, name, replacement)
            self._swap_user_imports(by_original)
            self._premade = _premade.find(self._user_modules())
            for holder, name, twin in _premade.fresh(self._premade):
                self._swap(holder, name, twin)
        except BaseException:
            self.uninstall()
            raise

    def restart(self) -> None:
        """As a schedule starts: what the replacements keep per schedule starts
        afresh (futures' order, cached_property's locks), and the program's
        primitives made before the exploration get fresh scheduled twins (see
        :mod:`._premade`)."""
        _order.restart()
        _lazy.restart()
        _idle_pools.restart()
        _mp.forget()
        for holder, name, twin in _premade.fresh(self._premade):
            setattr(holder, name, twin)

    def uninstall(self) -> None:
        # Nothing kept of the program's primitives: the next exploration counts
        # who else holds one, and this list would be one more.
        self._premade = []
        _mp.forget()
        while self._undo:
            target, name, original = self._undo.pop()
            _assign(target, name, original)

    def _swap(self, target: Any, name: str, replacement: Any) -> None:
        # A class's own entry, not what getattr makes of it: a staticmethod
        # must come back a staticmethod, an inherited method must be deleted.
        namespace = vars(target) if isinstance(target, type) else None
        original = (
            namespace.get(name, _ABSENT)
            if namespace is not None
            else getattr(target, name, _ABSENT)
        )
        self._undo.append((target, name, original))
        _assign(target, name, replacement)

    def _replacements(self) -> list[tuple[Any, str, Any]]:
        factories: list[tuple[Any, str, Any]] = [
            (module, name, self._factory(getattr(module, name), getattr(_primitives, name)))
            for module, names in (
                (
                    threading,
                    ("Lock", "RLock", "Condition", "Event", "Semaphore", "BoundedSemaphore"),
                ),
                (queue, ("Queue", "LifoQueue", "PriorityQueue", "SimpleQueue")),
            )
            for name in names
        ]
        clocks = {name: _virtual_clock(getattr(time, name)) for name in _CLOCKS}
        from concurrent.futures import ThreadPoolExecutor

        import twisted.internet.threads as twisted_threads
        from twisted.logger import LogPublisher
        from twisted.python import log
        from twisted.python.threadpool import ThreadPool

        return [
            *factories,
            (twisted_threads, "Queue", blocking_call_queue_module()),
            (LogPublisher, "__call__", _without_aborts(LogPublisher.__call__)),
            (logging.Logger, "handle", _without_abort_records(logging.Logger.handle)),
            # Legacy log.msg holds a real lock (created long before) while it
            # calls observers, which may be user code with scheduling points:
            # no point may switch threads inside it. Swapping the lock (or
            # threadable.XLock, which makes it on first use) would leave a
            # scheduled lock in the process-wide publisher after the run.
            (log, "msg", without_points(log.msg)),
            synch_pre_replacement(_scheduled_rlock, self.is_user_file),
            *raw_lock_replacements(_scheduled_lock, self.is_user_file),
            (logging.Handler, "handle", _handler_handle(logging.Handler.handle)),
            (time, "sleep", _sleep),
            *((time, name, clock) for name, clock in clocks.items()),
            # Bound at their import: a Queue subclass's get(timeout=) waits in virtual time.
            (queue, "time", clocks["monotonic"]),
            (threading, "_time", clocks["monotonic"]),
            (random.Random, "seed", _reproducible_seed(random.Random.seed)),
            # uuid4(), secrets, SystemRandom: the OS's bytes, the schedule's instead.
            (os, "urandom", _reproducible_bytes(os.urandom)),
            (random, "_urandom", _reproducible_bytes(random._urandom)),  # type: ignore[attr-defined]
            (atexit, "register", per_schedule_atexit(atexit.register, self.is_user_file)),
            (signal, "signal", inert_in_schedules(signal.signal)),
            (signal, "getsignal", handler_in_schedules(signal.getsignal)),
            (signal, "alarm", inert_in_schedules(signal.alarm)),
            (signal, "setitimer", inert_in_schedules(signal.setitimer)),
            (os, "_exit", controlled_exit(os._exit)),
            (os, "kill", controlled_kill(os.kill)),
            *_imports.replacements(),
            (os, "killpg", controlled_killpg(os.killpg)),
            (os, "fork", refused_fork(os.fork, self.is_user_file)),
            (os, "abort", controlled_abort(os.abort)),
            (signal, "raise_signal", controlled_raise_signal(signal.raise_signal)),
            (signal, "pthread_kill", controlled_pthread_kill(signal.pthread_kill)),
            (
                _thread,
                "start_new_thread",
                _started_as_thread(_thread.start_new_thread, self.is_user_file),
            ),
            (threading.Thread, "start", _controlled_start(threading.Thread.start, self)),
            (threading.Thread, "join", _controlled_join(threading.Thread.join)),
            (threading.Thread, "is_alive", _controlled_is_alive(threading.Thread.is_alive)),
            # A ThreadPool the program makes: Twisted's team, made by library
            # code (so the factories above would hand it real primitives).
            (ThreadPool, "_pool", staticmethod(_controlled_pool(ThreadPool._pool))),
            # submit holds a real module-wide lock while it starts a worker: no
            # thread may be switched in there (it could submit too, and block).
            (
                ThreadPoolExecutor,
                "submit",
                without_points(adopting_submit(ThreadPoolExecutor.submit)),
            ),
            *_order.replacements(),
            *_lazy.replacements(),
            *_idle_pools.replacements(),
            *_sqlite.replacements(),
            *_children.replacements(),
            *_mp.replacements(),
            *_sockets.replacements(),
            *_dates.replacements(),
        ]

    def _factory(self, real: Any, scheduled: Any) -> Any:
        is_user_file = self.is_user_file

        codes, folders = self._machinery
        # By the calling code, asked per primitive made: real, or the
        # scheduler's (with its points, or quiet, for an installed library).
        scheduled_for: dict[CodeType, str] = {}

        def kind_for(caller: CodeType) -> str:
            filename = caller.co_filename
            if is_user_file(filename) or caller in codes or filename.startswith(folders):
                return "scheduled"
            return "quiet" if _an_installed_librarys(filename) else "real"

        def make(*args: Any, **kwargs: Any) -> Any:
            scheduler = active()
            if scheduler is not None and scheduler.controlled() is not None:
                frame = sys._getframe(2)  # past _Factory.__call__
                while frame.f_back is not None and (
                    # Code made at run time (a dataclass's __init__ calling its
                    # field's default_factory), or a real primitive's constructor
                    # (a program's Queue subclass, its locks): their caller says.
                    frame.f_code.co_filename.startswith("<") or frame.f_code in _CONSTRUCTORS
                ):
                    frame = frame.f_back
                caller = frame.f_code
                kind = scheduled_for.get(caller)
                if kind is None:
                    kind = scheduled_for[caller] = kind_for(caller)
                if kind == "scheduled":
                    return scheduled(*args, **kwargs)
                if kind == "quiet":
                    return _primitives.made_quiet(scheduled(*args, **kwargs))
            return real(*args, **kwargs)

        return _Factory(make, real, scheduled)

    def _swap_user_imports(self, replacements: dict[int, Any]) -> None:
        """``from threading import Lock`` in a user module bound the real one: swap it.

        ``replacements`` maps the id of each real object (still bound where it was
        imported) to what replaces it.
        """
        for module in self._user_modules():
            for name, value in list(vars(module).items()):
                replacement = replacements.get(id(value))
                if replacement is not None:
                    self._swap(module, name, replacement)

    def _user_modules(self) -> list[ModuleType]:
        return _stacks.user_modules(self.is_user_file)


def _assign(target: Any, name: str, value: Any) -> None:
    """``target.name = value``, or ``del target.name`` for ``_ABSENT``; a C type
    that refuses it (``datetime``) is written to in place."""
    try:
        if value is _ABSENT:
            delattr(target, name)
        else:
            setattr(target, name, value)
    except TypeError:
        if not isinstance(target, type):
            raise
        _dates.set_in_type(target, name, value, delete=value is _ABSENT)


_CONSTRUCTORS = frozenset(
    {
        queue.Queue.__init__.__code__,
        threading.Condition.__init__.__code__,
        threading.Event.__init__.__code__,
        threading.Semaphore.__init__.__code__,
        threading.BoundedSemaphore.__init__.__code__,
    }
)
"""The real primitives' constructors, which make their inner locks through the factories."""


class _Factory:
    """``threading.Lock`` (and the other factories) while exploring. Called, it
    makes a scheduled or a real primitive; kept by a class (``lock_class =
    threading.Lock``, as werkzeug's routing Map does), it is not bound as a
    method; copied (``copy.deepcopy`` of an object keeping it), it is itself:
    as the builtins it stands for. A class that subclasses it subclasses the
    real class (whose inner locks the factories make for the subclass's
    caller), and ``isinstance`` against it accepts the real and the scheduled
    kinds; its attributes are the real class's."""

    def __init__(self, make: Callable[..., Any], real: Any, scheduled: type) -> None:
        self._make = make
        self.__wrapped__ = real
        self._scheduled = scheduled
        self.__name__ = getattr(real, "__name__", "factory")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._make(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # queue.Queue.put(self, item) in a subclass: the real class's.
        if name == "__wrapped__":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.__wrapped__, name)

    def __mro_entries__(self, bases: tuple[Any, ...]) -> tuple[Any, ...]:
        return (self.__wrapped__,)

    def __instancecheck__(self, instance: Any) -> bool:
        return isinstance(instance, self._kinds())

    def __subclasscheck__(self, subclass: type) -> bool:
        return issubclass(subclass, self._kinds())

    def _kinds(self) -> Any:
        # threading.Lock is a function before 3.13: isinstance fails as it would.
        real = self.__wrapped__
        return (real, self._scheduled) if isinstance(real, type) else real

    def __copy__(self) -> _Factory:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Factory:
        return self

    def __repr__(self) -> str:
        return f"<threadcheck's {self.__name__}>"


def _scheduled_lock() -> _primitives.Lock | None:
    """A lock user code makes past ``threading.Lock``, in a controlled thread."""
    return _primitives.Lock() if here() is not None else None


def _scheduled_rlock() -> _primitives.RLock | None:
    """A user object's ``threadable.synchronize`` lock, in a controlled thread."""
    return _primitives.RLock() if here() is not None else None


_NOT_SCHEDULED = frozenset({"python", "twisted", "threadcheck", "hypothesis", "coverage"})
"""Libraries whose own primitives stay real (see :func:`_an_installed_librarys`)."""


def _an_installed_librarys(filename: str) -> bool:
    """Whether ``filename`` is an installed library's (APScheduler, SQLAlchemy's
    pool) whose primitives are the scheduler's when made in a controlled thread,
    quiet (no points: its code has none): its threads wait on them (a
    scheduler's Event, a pool's Condition with a checkout timeout), and it may
    hold one while it calls code with points (a Twisted pool's submit), where a
    real one blocked the next thread for real. Not the standard library's (see
    :func:`_stdlib_machinery`), Twisted's (its thread pools are scheduled on
    their own), nor a test harness's."""
    library = _stacks.classify(filename)
    return (
        library is not None
        and library not in _NOT_SCHEDULED
        and library not in _stacks.HARNESS_NAMES
    )


def _stdlib_machinery() -> tuple[frozenset[object], tuple[str, ...]]:
    """The standard library's thread machinery that user code waits on: what it
    creates in a controlled thread is the scheduler's too (a ``threading.Timer``
    waits on its Event; an executor's futures, queue and semaphore; a
    ``socketserver`` server's shutdown Event). Not the
    rest of the standard library: ``Thread``'s own start handshake, logging's
    module lock and the import system's locks stay real."""
    import concurrent.futures
    import multiprocessing.pool
    import socketserver

    pools = multiprocessing.pool
    codes = frozenset(
        {
            threading.Timer.__init__.__code__,
            threading.Barrier.__init__.__code__,
            logging.Handler.createLock.__code__,  # a handler's lock, held while it emits
            socketserver.BaseServer.__init__.__code__,  # the Event shutdown() waits on
            # A multiprocessing ThreadPool's task queue, its workers' queues and
            # its results' Event and Condition.
            pools.Pool.__init__.__code__,
            pools.ThreadPool._setup_queues.__code__,  # type: ignore[attr-defined]
            pools.ApplyResult.__init__.__code__,
            pools.IMapIterator.__init__.__code__,
        }
    )
    folder = os.path.dirname(os.path.abspath(concurrent.futures.__file__)) + os.sep
    return codes, (folder,)


class _SeededLater:
    """A generator reseeded as each schedule starts, seeded only if the schedule
    draws from it (few do; seeding costs as much as a dozen scheduling points)."""

    def __init__(self) -> None:
        self._random = random.Random(0)
        self._seed: int | str | None = None

    def reseed(self, seed: int | str) -> None:
        self._seed = seed

    def drawn(self) -> random.Random:
        if self._seed is not None:
            self._random.seed(self._seed)
            self._seed = None
        return self._random


# Seeds for the generators a schedule makes without one: drawn in schedule
# order from a generator reseeded as each schedule starts, so a replay repeats them.
_unseeded = _SeededLater()
_entropy = _SeededLater()
"""The bytes ``os.urandom`` draws in controlled threads: seeded per schedule run."""


os_randomness_drawn = False
"""Whether a controlled thread drew ``os.urandom`` bytes since the patches were
installed: every run draws others, so a run that repeats another's decisions
may take another path (a search's runs may not repeat their prefixes)."""


def reseed_randomness(seed: int, entropy: str) -> None:
    """As a schedule starts: the ``random`` module and every ``random.Random()``
    made without a seed draw the same numbers on every run of this schedule;
    ``os.urandom`` (uuid4) draws bytes of this run's ``entropy``: the same in
    its replay, others in other schedules and explorations (an id they keep, a
    file they leave, would collide)."""
    random.seed(seed)
    _unseeded.reseed(seed)
    _entropy.reseed(entropy)


def _reproducible_seed(original: Callable[..., None]) -> Any:
    """``Random.seed`` (``Random()`` calls it): no seed, in a controlled thread,
    is the next of the schedule's seeds instead of the OS's entropy."""

    def seed(self: random.Random, a: Any = None, version: int = 2) -> None:
        scheduler = active()
        if a is None and scheduler is not None and scheduler.controlled() is not None:
            a = _unseeded.drawn().getrandbits(64)
        original(self, a, version)

    return seed


def _reproducible_bytes(original: Callable[[int], bytes]) -> Any:
    """``os.urandom`` (``uuid.uuid4``, ``secrets``, ``random.SystemRandom``): in a
    controlled thread, the next of the schedule's bytes, so a replay repeats them."""

    def urandom(size: int) -> bytes:
        global os_randomness_drawn
        scheduler = active()
        if scheduler is not None and scheduler.controlled() is not None:
            os_randomness_drawn = True
            return _entropy.drawn().randbytes(size)
        return original(size)

    return urandom


def _without_aborts(publish: Callable[[Any, dict[str, Any]], None]) -> Any:
    """Twisted logs every exception its handlers catch, Abort included: not
    ours to show (before logging begins, Twisted prints critical events)."""

    def call(self: Any, event: dict[str, Any]) -> None:
        failure = event.get("log_failure", event.get("failure"))  # new and legacy keys
        if failure is not None and hasattr(failure, "check") and failure.check(Abort):
            return
        publish(self, event)

    return call


def _without_abort_records(handle: Callable[[logging.Logger, logging.LogRecord], Any]) -> Any:
    """The standard library logs what its workers catch (an executor's "Exception
    in worker"), Abort included: not the program's error."""

    def call(self: logging.Logger, record: logging.LogRecord) -> Any:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, Abort):
            return None
        return handle(self, record)

    return call


def _controlled_pool(original: Callable[..., Any]) -> Callable[..., Any]:
    """``ThreadPool._pool`` (a staticmethod): the scheduled team in controlled threads."""

    def _pool(currentLimit: Callable[[], int], threadFactory: Any = threading.Thread) -> Any:
        scheduler = active()
        if scheduler is not None and scheduler.controlled() is not None:
            from threadcheck._sched._pool import scheduled_team

            return scheduled_team(currentLimit, threadFactory)
        return original(currentLimit, threadFactory)

    return _pool


def _handler_handle(handle: Callable[[logging.Handler, logging.LogRecord], Any]) -> Any:
    """``Handler.handle``: a handler made in a schedule has the scheduler's lock
    (see :func:`_stdlib_machinery`) and runs as written. One made before (by
    pytest's log capture, say) holds a real lock while it emits: its filters,
    which run before it takes the lock and may be user code, keep their
    points; its emit switches no thread (another thread that logged meanwhile
    would block for real)."""

    def call(self: logging.Handler, record: logging.LogRecord) -> Any:
        scheduler = active()
        if (
            scheduler is None
            or scheduler.controlled() is None
            or self.lock is None
            or isinstance(self.lock, _primitives.RLock)
        ):
            return handle(self, record)
        passed = self.filter(record)
        if isinstance(passed, logging.LogRecord):  # 3.12+: a filter may replace it
            record = passed
        if passed:
            with holding(scheduler):
                self.acquire()
                try:
                    self.emit(record)
                finally:
                    self.release()
        return passed

    return call


@contextmanager
def holding(scheduler: Scheduler) -> Iterator[None]:
    """The running controlled thread's points switch no thread meanwhile."""
    me = scheduler.controlled()
    assert me is not None
    me.holding += 1
    try:
        yield
    finally:
        me.holding -= 1


_CLOCKS = ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "perf_counter_ns")


def _virtual_clock(real: Callable[[], Any]) -> Callable[[], Any]:
    """A clock that reads virtual time in controlled threads, so deadline loops
    agree with sleeps and DelayedCalls. Test frameworks that time the test
    itself (Hypothesis's deadlines) keep the real clock."""
    scale = 1_000_000_000 if real.__name__.endswith("_ns") else 0
    offset = WALL_OFFSET if real.__name__.startswith("time") else 0.0
    timing = _timing_frameworks()

    def clock() -> Any:
        place = here()
        if place is None or sys._getframe(1).f_code.co_filename.startswith(timing):
            return real()
        now = place[0].now
        if _footprint.collecting:
            _footprint.looked_at(_footprint.CLOCK)
        if scale:  # exact nanoseconds: the offset is whole seconds
            return int(now * scale) + int(offset) * scale
        return now + offset

    clock.__name__ = real.__name__
    clock.__wrapped__ = real  # type: ignore[attr-defined]
    return clock


def _timing_frameworks() -> tuple[str, ...]:
    folders = []
    for name in ("hypothesis", "_pytest", "pluggy", "coverage"):
        module = sys.modules.get(name)
        filename = getattr(module, "__file__", None)
        if isinstance(filename, str):
            folders.append(os.path.dirname(filename) + os.sep)
    return tuple(folders)


def _sleep(seconds: float) -> None:
    _primitives.sleep(seconds)


def blocking_call_queue_module() -> SimpleNamespace:
    """Stands in for ``queue`` inside ``twisted.internet.threads``: its waits are scheduled."""

    def make_queue(maxsize: int = 0) -> Any:
        scheduler = active()
        if scheduler is not None and scheduler.controlled() is not None:
            return _primitives.Queue(maxsize)
        return queue.Queue(maxsize)

    return SimpleNamespace(Queue=make_queue, Empty=queue.Empty, Full=queue.Full)


def _controlled_start(original: Callable[[threading.Thread], None], patches: Patches) -> Any:
    def start(self: threading.Thread) -> None:
        scheduler = active()
        if scheduler is None or scheduler.controlled() is None:
            original(self)
            return
        scheduler.point("sync", "thread.start")
        controlled = scheduler.new_thread(self.name, self.daemon)
        if _footprint.collecting:  # its first step comes after this one
            _footprint.released(_footprint.thread(controlled.tid))
        controlled.handle = self
        setattr(self, CONTROLLED_ATTR, (scheduler, controlled))
        self.run = _controlled_body(scheduler, controlled, self.run, patches)  # type: ignore[method-assign]
        original(self)

    return start


def _started_as_thread(
    original: Callable[..., int], is_user_file: Callable[[str], bool]
) -> Callable[..., int]:
    """``_thread.start_new_thread`` called by the program in a controlled thread
    starts a controlled (daemon) ``threading.Thread``: a raw thread ran for
    real, and a program waiting on its lock was reported deadlocked on every
    schedule. (Not the carriers' own starts, nor a library's.)"""

    def start_new_thread(function: Any, args: Any, kwargs: Any = None) -> int:
        if here() is None or not is_user_file(sys._getframe(1).f_code.co_filename):
            return original(function, args, *(() if kwargs is None else (kwargs,)))
        thread = threading.Thread(target=function, args=args, kwargs=kwargs, daemon=True)
        thread.start()
        assert thread.ident is not None
        return thread.ident

    return start_new_thread


def _controlled_body(
    scheduler: Scheduler, thread: ControlledThread, run: Callable[[], None], patches: Patches
) -> Callable[[], None]:
    def body() -> None:
        try:
            scheduler.enter(thread)
            patches.on_thread_start()
            run()
        except Abort:
            pass
        except TargetError as error:  # explore() called by a worker of the program, say
            scheduler.misuse = scheduler.misuse or error
        except BaseException as error:
            try:
                unhandled = _past_the_programs_hook(error, patches.is_user_file)
            except Abort:
                unhandled = None
            failure = None if unhandled is None else program_failure(thread.name, unhandled)
            if failure is not None and failure.kind == "exit":
                # Python ends only this thread, quietly; a non-zero status is the
                # program reporting a failure (as it would in its main thread).
                note = f" (sys.exit in thread {thread.name!r}: python would end only that thread)"
                failure = replace(failure, message=failure.message + note)
            if failure is not None:
                scheduler.fail(failure)
        finally:
            patches.on_thread_end()
            thread.end_clock = _clocks.send()  # its OS thread (a carrier) ends later
            scheduler.exit(thread)

    return body


def _past_the_programs_hook(
    error: BaseException, is_user_file: Callable[[str], bool]
) -> BaseException | None:
    """An uncaught exception Python hands to the program's own
    ``threading.excepthook`` (one it wrote: pytest's and other tools' are not)
    is the program's to handle: None, or what the hook raised in turn."""
    hook = threading.excepthook
    code = getattr(hook, "__code__", None)
    if isinstance(error, SystemExit) or code is None or not is_user_file(code.co_filename):
        return error
    thread = threading.current_thread()
    try:
        hook(threading.ExceptHookArgs((type(error), error, error.__traceback__, thread)))
    except Abort:
        raise
    except BaseException as raised:
        return raised
    return None


def _controlled_join(original: Callable[..., None]) -> Any:
    def join(self: threading.Thread, timeout: float | None = None) -> None:
        scheduler = active()
        owner = getattr(self, CONTROLLED_ATTR, None)
        me = scheduler.controlled() if scheduler is not None else None
        if owner is None or me is None or owner[0] is not scheduler:
            original(self, timeout)
            return
        assert scheduler is not None
        target: ControlledThread = owner[1]
        if target.finished:  # else it blocks: a switch here would be no preemption
            scheduler.point("sync", "thread.join")
        deadline = None if timeout is None else scheduler.now + timeout
        while not target.finished:
            if deadline is not None and scheduler.now >= deadline:
                return
            target.joiners.append(me)
            scheduler.block(
                f"join of T{target.tid} ({target.name})",
                deadline,
                _footprint.thread(target.tid),
                waiting_for=target,
            )
        if _footprint.collecting:  # after its end: see Scheduler.exit
            _footprint.acquired(_footprint.thread(target.tid), changed=False)
        _clocks.receive(target.end_clock)
        original(self, 5.0)  # the OS thread is leaving: it needs no turn to finish

    return join


def _controlled_is_alive(original: Callable[[threading.Thread], bool]) -> Any:
    """A controlled thread is alive until its body ended in the schedule: its OS
    thread (or carrier) lets go a moment later, outside the schedule's order."""

    def is_alive(self: threading.Thread) -> bool:
        owner = getattr(self, CONTROLLED_ATTR, None)
        if owner is None or owner[0] is not active():
            return original(self)
        if owner[1].finished:
            _clocks.receive(owner[1].end_clock)  # seen ended: after all it did
            return False
        return True

    return is_alive
