"""Whole programs end each schedule as the interpreter would end them.

What ``python program.py`` does at its end, done at the end of each schedule
instead of once when the explorer exits: ``sys.exit``/``os._exit``/an uncaught
``SystemExit`` in any thread end *that schedule* with its status (0 a normal
end, anything else a failure); ``atexit`` handlers the program registered in
the schedule run once its threads are joined; idle ``ThreadPoolExecutor``
workers are told to stop; ``signal.signal``/``alarm``/``setitimer`` from the
program do nothing (a watchdog alarm would fire in the explorer, in real time).

Thread safety: the wrappers act only in the controlled thread holding the
turn; the rest is called by the exploring thread as a schedule ends.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, NoReturn

from threadcheck._sched import _primitives
from threadcheck._sched._core import (
    Abort,
    ControlledThread,
    Failure,
    Scheduler,
    TargetError,
    active,
    describe,
    here,
)

CONTROLLED_ATTR = "_threadcheck_controlled"
"""On a ``threading.Thread`` the scheduler controls: (its scheduler, its record)."""


def stop_idle_executor_workers(scheduler: Scheduler) -> None:
    """What the interpreter does at exit before joining threads: idle
    ``ThreadPoolExecutor`` workers of this schedule are told to stop (they
    finish the work queued first). Others' executors are left alone."""
    futures_thread = sys.modules.get("concurrent.futures.thread")
    if futures_thread is None:
        return
    for thread, work_queue in list(futures_thread._threads_queues.items()):
        owner = getattr(thread, CONTROLLED_ATTR, None)
        if owner is None or owner[0] is not scheduler or owner[1].finished:
            continue
        # The interpreter sets the module's _shutdown flag; this executor's own
        # flag has the same effect on its workers and none on anyone else's.
        executor = thread._args[0]() if getattr(thread, "_args", None) else None
        if executor is not None and not executor._shutdown:
            executor._shutdown = True
            _stopped_by_us.add(executor)
        work_queue.put(None)


_stopped_by_us: weakref.WeakSet[Any] = weakref.WeakSet()
"""Executors whose workers an earlier schedule's end stopped, the program still holding them."""


def revive_executors() -> None:
    """Before a schedule: an executor a program keeps between schedules (made
    lazily, in a module global) works again, as it would have in the one run
    the schedules stand for: not shut down, with no worker (they ended with
    their schedule) and none idle, so that its next job starts one."""
    while _stopped_by_us:
        executor = _stopped_by_us.pop()
        with executor._shutdown_lock:
            executor._threads.clear()
            executor._idle_semaphore = threading.Semaphore(0)
            executor._shutdown = False


_EXECUTOR_STATE = ("_work_queue", "_shutdown_lock", "_idle_semaphore", "_threads", "_shutdown")
_adopted: dict[int, tuple[Any, dict[str, Any]]] = {}
"""Executors made before exploring, given the scheduler's primitives: their own, by id."""


def adopting_submit(submit: Callable[..., Any]) -> Callable[..., Any]:
    """``ThreadPoolExecutor.submit``: an executor made before exploring (at
    import, in a module global) has the real queue, lock and idle count its
    workers block on, out of the scheduler's sight ("blocked outside the
    scheduler's control" for a correct program). Given work in a schedule, it
    takes the scheduler's, as one made there has, until exploring ends."""

    def call(executor: Any, *args: Any, **kwargs: Any) -> Any:
        if (
            id(executor) not in _adopted
            and here() is not None
            and not isinstance(executor._work_queue, _primitives.SimpleQueue)
        ):
            _adopted[id(executor)] = (executor, {n: getattr(executor, n) for n in _EXECUTOR_STATE})
            executor._work_queue = _primitives.SimpleQueue()
            executor._shutdown_lock = _primitives.Lock()
            executor._idle_semaphore = _primitives.Semaphore(0)
            executor._threads = set()  # its real workers, if any, wait on the real queue
        return submit(executor, *args, **kwargs)

    return call


def give_back_executors() -> None:
    """Exploring ends: the executors :func:`adopting_submit` adopted have their own again."""
    for executor, state in _adopted.values():
        for name, value in state.items():
            setattr(executor, name, value)
    _adopted.clear()


def per_schedule_atexit(
    register: Callable[..., Any], is_user_file: Callable[[str], bool]
) -> Callable[..., Any]:
    """``atexit.register`` by the program, in a schedule: run when that schedule's
    program ends (:func:`run_at_exit`), not once when the explorer exits."""

    def per_schedule(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        scheduler = _program_in_schedule(is_user_file)
        if scheduler is None:
            return register(function, *args, **kwargs)
        scheduler.at_exit.append((function, args, kwargs))
        return function

    return per_schedule


def _program_in_schedule(is_user_file: Callable[[str], bool]) -> Scheduler | None:
    """The active scheduler, when the wrapper calling this was called by the
    program's own code in a controlled thread; else None (the real call)."""
    scheduler = active()
    if scheduler is None or scheduler.controlled() is None:
        return None
    return scheduler if is_user_file(sys._getframe(2).f_code.co_filename) else None


def run_at_exit(scheduler: Scheduler, me: ControlledThread) -> None:
    """The program's atexit handlers, last registered first, as the interpreter
    runs them once its threads are joined. One that raises fails the schedule."""
    while scheduler.at_exit:
        function, args, kwargs = scheduler.at_exit.pop()
        try:
            function(*args, **kwargs)
        except Abort:
            raise
        except BaseException as error:
            failure = program_failure(me.name, error)
            if failure is not None and isinstance(error, SystemExit):
                # Python ignores it there: the process exits with the status it had.
                failure = dataclasses.replace(
                    failure,
                    kind="exception",
                    message=f"an atexit handler raised SystemExit({error.code!r}), which"
                    " Python ignores: the exit status stays the program's",
                    what="SystemExit",
                )
            if failure is not None:
                scheduler.fail(failure)


def _in_schedule() -> Scheduler | None:
    """The active scheduler, when called in a controlled thread, by the program's
    code or a library's: a library's signal handler outlives the schedule as much
    as the program's (Scrapy's shutdown handler, set by each run's
    ``CrawlerProcess``, took the explorer's Ctrl-C and SIGTERM)."""
    scheduler = active()
    return None if scheduler is None or scheduler.controlled() is None else scheduler


def inert_in_schedules(function: Callable[..., Any]) -> Callable[..., Any]:
    """``signal.signal``/``alarm``/``setitimer`` from the program (or a library
    it calls), in a schedule, do nothing: a watchdog alarm would fire in real
    time, in the explorer; a handler would outlive the schedule. Outside
    schedules, the real call."""

    # Told apart now: once swapped, signal.signal is this wrapper.
    setting, alarm = function is signal.signal, function is signal.alarm

    def call(*args: Any, **kwargs: Any) -> Any:
        scheduler = _in_schedule()
        if scheduler is None:
            return function(*args, **kwargs)
        if setting:
            number, handler = args[0], args[1]
            previous = _handler_seen(scheduler, number, signal.getsignal)
            scheduler.signal_handlers[number] = handler  # what os.kill of itself runs
            return previous
        return 0 if alarm else (0.0, 0.0)

    return call


def handler_in_schedules(getsignal: Callable[[int], Any]) -> Callable[[int], Any]:
    """``signal.getsignal`` from the program (or a library), in a schedule: the handler its
    ``signal.signal`` set there (see :func:`inert_in_schedules`), as a handler
    chained to the one before it asks (it got SIG_DFL, the real one); else, while
    the reactor runs, Twisted's for SIGINT and SIGTERM (a drain handler chaining
    to it got the explorer's own, and calling it ended the exploration); else
    the process's, Python's own where the explorer has set one."""

    def call(number: int) -> Any:
        scheduler = _in_schedule()
        if scheduler is None:
            return getsignal(number)
        return _handler_seen(scheduler, number, getsignal)

    return call


def _handler_seen(scheduler: Scheduler, number: int, getsignal: Callable[[int], Any]) -> Any:
    """The handler of signal ``number`` the program has in this schedule."""
    if number in scheduler.signal_handlers:
        return scheduler.signal_handlers[number]
    twisteds = _TWISTED_HANDLERS.get(number)
    reactor = sys.modules.get("twisted.internet.reactor")
    if twisteds is not None and getattr(reactor, "running", False):
        return getattr(reactor, twisteds)  # what reactor.run() installs
    handler = getsignal(number)
    if str(getattr(handler, "__module__", "")).startswith("threadcheck"):
        # The explorer's (Ctrl-C ends the exploration): a new process has Python's.
        return signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL
    return handler


FORKS = (
    "the program forks (os.fork()): the child would run on as a copy of the explorer,"
    " which cannot follow it; check this program with `threadcheck run`, and explore"
    " the child's code in scenarios"
)


def refused_fork(
    original: Callable[[], int], is_user_file: Callable[[str], bool]
) -> Callable[[], int]:
    """``os.fork()`` from the program's own code, in a schedule, refused in one
    line (a self-daemonizing service): each copy of the explorer went on, with
    internal errors, and the parent's end of the program was "proved"."""

    def fork() -> int:
        if _program_in_schedule(is_user_file) is None:
            return original()
        raise TargetError(FORKS)

    return fork


_IGNORED = frozenset(
    getattr(signal, name)
    for name in ("SIGCHLD", "SIGURG", "SIGWINCH", "SIGCONT")
    if hasattr(signal, name)
)
"""Signals whose default action is to do nothing."""


_TWISTED_HANDLERS: dict[int, str] = {signal.SIGINT: "sigInt", signal.SIGTERM: "sigTerm"}
"""The reactor's methods that ``reactor.run()`` installs for these signals."""


def controlled_kill(original: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """``os.kill`` of its own process by a controlled thread: what the program
    would get, not the explorer (which took it for Ctrl-C): see :func:`_signalled`."""

    def kill(pid: int, number: int) -> None:
        if pid not in (os.getpid(), 0) or not _signalled(number, "os.kill of itself"):
            original(pid, number)

    return kill


def controlled_killpg(original: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """``os.killpg`` of its own process group: as ``os.kill`` of itself (the rest
    of the group is not the program's)."""

    def killpg(group: int, number: int) -> None:
        if group not in (os.getpgid(0), 0) or not _signalled(number, "os.killpg of its group"):
            original(group, number)

    return killpg


def controlled_raise_signal(original: Callable[[int], None]) -> Callable[[int], None]:
    """``signal.raise_signal``: as ``os.kill`` of itself."""

    def raise_signal(number: int) -> None:
        if not _signalled(number, "signal.raise_signal"):
            original(number)

    return raise_signal


def controlled_pthread_kill(original: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """``signal.pthread_kill`` of one of its threads: the process gets the signal."""

    def pthread_kill(thread_id: int, number: int) -> None:
        if not _signalled(number, "signal.pthread_kill"):
            original(thread_id, number)

    return pthread_kill


def controlled_abort(original: Callable[[], NoReturn]) -> Callable[[], NoReturn]:
    """``os.abort``: the program ends, killed by SIGABRT (no handler runs)."""

    def abort() -> NoReturn:
        _signalled(signal.SIGABRT, "os.abort", handled=False)
        original()

    return abort


def _signalled(number: int, how: str, handled: bool = True) -> bool:
    """Signal ``number`` sent by the program to itself (``how``), in a controlled
    thread: what it would get, and True; False outside schedules (send it). SIGINT
    or SIGTERM while the reactor runs: Twisted's handler, a graceful stop; a
    handler the program set in this schedule: run, in the calling thread; SIGINT
    else: KeyboardInterrupt, as Python's handler raises; a signal whose default
    ignores it: nothing; else (or not ``handled``) the program ends, killed by it."""
    scheduler = active()
    me = scheduler.controlled() if scheduler is not None else None
    if scheduler is None or me is None or number == 0:
        return False
    handler = scheduler.signal_handlers.get(number) if handled else None
    reactor = sys.modules.get("twisted.internet.reactor")
    twisteds = _TWISTED_HANDLERS.get(number) if handled else None
    if callable(handler):
        handler(number, sys._getframe(2))
    elif twisteds is not None and getattr(reactor, "running", False):
        getattr(reactor, twisteds)(number, None)
    elif handled and number == signal.SIGINT and handler is None:
        raise KeyboardInterrupt  # Python's own handler (the explorer takes it as Ctrl-C)
    elif not handled or (handler != signal.SIG_IGN and number not in _IGNORED):
        name = signal.Signals(number).name
        where = describe(sys._getframe(2))
        message = f"the program was killed by {name} ({how})"
        scheduler.fail(Failure("exit", message, me.name, where, what=str(128 + number)))
        scheduler.aborting = True  # the process would end here: so does the schedule
        raise Abort
    return True


def program_failure(name: str, error: BaseException) -> Failure | None:
    """What the program's uncaught ``error`` in thread ``name`` means: a
    ``SystemExit`` is its exit status (None for 0), anything else an exception."""
    if isinstance(error, SystemExit):
        return _exit_failure(name, error)
    return thread_failure(name, error)


def thread_failure(name: str | None, error: BaseException) -> Failure:
    """An uncaught exception in a controlled thread (or the scenario; ``name``
    None when which thread raised it is not known)."""
    import traceback

    from threadcheck import _stacks

    frames = traceback.extract_tb(error.__traceback__)
    user = [f for f in frames if _stacks.classify(f.filename) is None]
    where = user[-1] if user else (frames[-1] if frames else None)
    location = f"{where.filename}:{where.lineno} in {where.name}" if where else None
    again = _reraised_at(frames)
    if again is not None and location is not None and where is not again:
        # A Failure kept and raised again (a pool job's): its frames may be
        # another thread's, and ``name`` is the one that raised it again.
        at = f"{os.path.basename(again.filename)}:{again.lineno} in {again.name}"
        location += f" (raised again at {at})"
    message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return Failure(
        "exception",
        message,
        thread=name,
        location=location,
        details="".join(traceback.format_exception(type(error), error, _from_theirs(error))),
        what=type(error).__name__,
    )


def _from_theirs(error: BaseException) -> TracebackType | None:
    """``error``'s traceback from its first frame that is not ours (the body a
    controlled thread runs in): the frames a thread's own traceback shows."""
    from threadcheck import _stacks

    tb = error.__traceback__
    while (
        tb is not None
        and tb.tb_next is not None
        and _stacks.is_own(tb.tb_frame.f_code.co_filename)
    ):
        tb = tb.tb_next
    return tb


_REPLAYS = ("raiseException", "throwExceptionIntoGenerator")
"""Twisted's Failure methods that raise a stored exception with its traceback."""


def _reraised_at(frames: Any) -> Any:
    """The user's frame that raised a Twisted Failure again, if the traceback
    goes through one (the frames after it are where it was first raised)."""
    from threadcheck import _stacks

    for index, frame in enumerate(frames):
        if frame.name in _REPLAYS and frame.filename.endswith(_FAILURE_MODULE):
            user = [f for f in frames[:index] if _stacks.classify(f.filename) is None]
            return user[-1] if user else None
    return None


_FAILURE_MODULE = os.path.join("twisted", "python", "failure.py")


def _exit_failure(thread: str, exit_: SystemExit) -> Failure | None:
    """``sys.exit`` as the interpreter reads it: None or 0 is success, text is status 1."""
    code = exit_.code
    # The status the process would have: POSIX keeps its low 8 bits (256 is 0, -1 is 255).
    status = int(code) & 0xFF if isinstance(code, int) else 1  # sys.exit(not ok): True is 1
    if code is None or status == 0:
        return None
    message = f"the program exited with status {status}"
    if not isinstance(code, int):
        message += f": {code}"
    where = thread_failure(thread, exit_).location
    return Failure("exit", message, thread=thread, location=where, what=str(status))


def controlled_exit(original: Callable[[int], NoReturn]) -> Callable[[int], NoReturn]:
    """``os._exit`` in a controlled thread ends the schedule, not the explorer:
    with its status as the program's (0: a normal end; else a failure)."""

    def _exit(status: int) -> NoReturn:
        scheduler = active()
        me = scheduler.controlled() if scheduler is not None else None
        if scheduler is None or me is None:
            original(status)
        status &= 0xFF  # as the process's status would be
        if status != 0:
            where = describe(sys._getframe(1))
            message = f"the program exited with status {status} (os._exit)"
            scheduler.fail(Failure("exit", message, me.name, where, what=str(status)))
        scheduler.aborting = True  # the process would end here: so does the schedule
        raise Abort

    return _exit
