"""What a schedule runs: a scenario callable, or a whole program (``threadcheck explore``)."""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import importlib.util
import inspect
import os
import runpy
import shlex
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType, FunctionType, MethodType, ModuleType
from typing import Any, TypeVar

from threadcheck import _stacks, _threads
from threadcheck._races import _detector as _race_detector
from threadcheck._races import _hook as _race_hook
from threadcheck._races._rewrite import GLOBALS
from threadcheck._sched import _adapters, _idle_pools
from threadcheck._sched._carriers import thread_locals_clearer
from threadcheck._sched._core import Abort, Failure, TargetError, here
from threadcheck._sched._process import as_in_a_new_process
from threadcheck._sched._program import program_failure, thread_failure
from threadcheck._sched._stdin import recorded_stdin
from threadcheck._text import plural

_REACTOR_MODULE = "twisted.internet.reactor"
_IMPORT_MACHINERY = ("importlib.", "_frozen_importlib")

E = TypeVar("E", bound=BaseException)


class ScenarioTarget:
    """``scenario(reactor)`` on a fresh reactor; it returns None or a Deferred.

    The reactor runs until the scenario's Deferred fires (at once for None),
    then, once the thread pool's workers that ended a job went idle, stops;
    its thread pool is stopped and every non-daemon thread joined as the
    interpreter would. The scenario fails if it raises, if its
    Deferred fails, or if the reactor stops before its Deferred fired.
    """

    def __init__(self, scenario: Callable[[Any], Any]) -> None:
        if not callable(scenario):  # the caller's mistake, not a schedule's failure
            raise TypeError(f"scenario={scenario!r}: give a function taking the reactor")
        self.scenario = scenario
        self._call = _with_reactor(scenario)  # once: reading a signature costs ~50 us
        module = getattr(scenario, "__module__", None) or "?"
        self.description = f"{module}:{getattr(scenario, '__qualname__', repr(scenario))}"

    def rewrite_for_races(self) -> None:
        """The scenario's module was imported before races were watched: rewrite it
        now, and the scenario itself if it was made inside a function (a test),
        and the program's own modules it uses (a test file's ``import helper``:
        its races went unseen, Z51), with the functions of theirs it holds.
        Not the modules' tests: pytest's own rewriting of their asserts stays."""
        from threadcheck._races._inplace import is_test, rewrite_loaded

        module = sys.modules.get(getattr(self.scenario, "__module__", None) or "")
        if module is None or not _is_users(module):
            return
        made = [self.scenario, getattr(self.scenario, "__wrapped__", None)]
        reached = _reached(made)
        for used in _used_modules(module, reached):
            filename = getattr(used, "__file__", "") or ""
            also = [f for f in reached if f.__code__.co_filename == filename]
            rewrite_loaded(used, also, keep=is_test)

    def run(self, reactor: Any) -> Failure | None:
        from twisted.python.failure import Failure as TwistedFailure

        # The scheduled reactor is Twisted's global one meanwhile: threads.deferToThread
        # and code importing the reactor as it runs get it, not an idle real one.
        with global_reactor(reactor) as replaced:
            before = _activity(replaced)
            try:
                outcome = _run_until_fired(reactor, self._call)
            finally:
                if _activity(replaced) != before:
                    raise TargetError(
                        _STALE_REACTOR.format(self.description, type(replaced).__name__)
                    )
                if not outcome and _idle_pools.given_work():
                    raise TargetError(_IDLE_POOL.format(self.description))
        if not outcome:
            return Failure(
                "incomplete",
                "the reactor stopped before the scenario's Deferred fired",
                thread=None,
            )
        result = outcome[0]
        if isinstance(result, TwistedFailure):
            result = _inside_gathered(result)
            error = result.value
            if isinstance(error, BaseException):
                traceback = result.getTracebackObject()  # type: ignore[no-untyped-call]
                # Raised in the reactor's thread (the exploring one), unless in a
                # thread-pool job whose failure was handed to it: which worker is
                # not kept, so none is named.
                pool_job = _threads.runs_submitted_work(traceback)
                name = None if pool_job else threading.current_thread().name
                return thread_failure(name, error.with_traceback(traceback))
        return None


def _inside_gathered(failure: Any) -> Any:
    """What failed inside a ``gatherResults`` (or a ``DeferredList`` with
    ``fireOnOneErrback``): its ``FirstError`` headline was Twisted's repr of
    the whole failure, the error's own message deep inside it."""
    from twisted.internet.defer import FirstError

    while failure.check(FirstError):
        failure = failure.value.subFailure
    return failure


def run_scenario(reactor: Any, scenario: Callable[[Any], Any]) -> list[object]:
    """Run ``reactor`` (in this thread) until ``scenario(reactor)``'s Deferred
    fires, at once for a plain value, then stop it. Its result (a Twisted
    Failure if it failed), or nothing when the reactor stopped first."""
    return _run_until_fired(reactor, _with_reactor(scenario))


def _run_until_fired(reactor: Any, call: Callable[[Any], Any]) -> list[object]:
    from twisted.internet.defer import maybeDeferred

    outcome: list[object] = []

    def finish(result: object) -> None:
        outcome.append(result)
        found = here()
        if found is not None:  # workers that ended a job go idle first: see Scheduler.settle
            found[0].settle()
            pending = _pending_work(reactor)
            if pending:
                found[0].thinned.add(PENDING.format(pending))
        if reactor.running and not reactor._stopped:  # the scenario may have stopped it
            reactor.stop()

    reactor.callWhenRunning(lambda: maybeDeferred(call, reactor).addBoth(finish))
    reactor.run(installSignalHandlers=False)
    return outcome


PENDING = (
    "work left pending as the scenario's Deferred fired ({}), cut off by the reactor's"
    " stop: return a Deferred that fires once it is done"
)
"""Why a clean search is no proof: what the scenario started was not waited for
(a forgotten ``return d``: its check ran in 8 schedules of 65, and the search
said every interleaving was explored)."""


def _pending_work(reactor: Any) -> str:
    """What the scenario started and the reactor would still run: its delayed
    calls, the thread pool's queued and running jobs (as trial calls a reactor
    unclean)."""
    counts: list[str] = []
    calls = sum(1 for call in reactor.getDelayedCalls() if call.active())
    if calls:
        counts.append(plural(calls, "delayed call"))
    pool = getattr(reactor, "threadpool", None)
    team = getattr(pool, "_team", None)
    if team is not None:
        statistics = team.statistics()
        jobs = statistics.busyWorkerCount + statistics.backloggedWorkCount
        if jobs:
            counts.append(plural(jobs, "thread-pool job"))
    return ", ".join(counts)


def _with_reactor(scenario: Callable[..., Any]) -> Callable[[Any], Any]:
    """``scenario`` called with the reactor, unless it takes no argument at all
    (a scenario of plain threads need not name a reactor it never uses), or its
    first is an option with a default, not named ``reactor``: the reactor given
    as ``ordered=False`` explored the other branch, silently."""
    try:
        signature = inspect.signature(scenario)
        signature.bind(None)
    except TypeError:
        return lambda reactor: scenario()
    except ValueError:
        return scenario  # no signature to read (a builtin): give it the reactor
    first = next(iter(signature.parameters.values()))
    if first.default is not first.empty and first.name != "reactor":
        return lambda reactor: scenario()
    return scenario


class ProgramTarget:
    """A whole program, as ``python script.py`` or ``python -m module`` would run it.

    Each schedule runs it from scratch with the scheduled reactor as Twisted's
    global one: fresh module globals, its own ``sys.argv``, the working
    directory and the environment variables it started with, and afterwards the
    user modules it imported are forgotten, so that no module-level state
    carries over to the next schedule. The program's ``reactor.run()`` runs the
    scheduled reactor, without signal handlers (Ctrl-C is the exploration's).
    It fails if it raises, or exits with a non-zero status.
    """

    fresh_user_code = True
    """Its user modules are imported afresh each schedule, through the rewriting
    hook when code is rewritten: no user code runs that was made before."""

    def __init__(self, module: str | None, argv: Sequence[str]) -> None:
        """``module`` for ``-m``, with ``argv`` its arguments; else ``argv[0]`` is the script."""
        self.unrewritten: str | None = None
        """After a run that rewrote user code: a user module it imported that was
        not rewritten (a compiled-only one), if any."""
        self.module = module
        self.argv = list(argv)
        # Absolute now: the program may change directory.
        self.script = None if module is not None else os.path.abspath(argv[0])
        self.description = shlex.join(["-m", module, *argv] if module is not None else argv)
        self.stdin = recorded_stdin()
        """A piped stdin, read once for all runs (see :mod:`._stdin`)."""

    def run(self, reactor: Any) -> Failure | None:
        modules_before = set(sys.modules)
        try:
            _clear_thread_locals()
            with (
                as_in_a_new_process(),
                self.stdin.given() if self.stdin is not None else contextlib.nullcontext(),
                global_reactor(reactor),
                _installers_kept(reactor),
                _adapters.forgotten_after(_stacks.is_user_code),
            ):
                # A fresh context: the ContextVars (decimal's context) of none before.
                return contextvars.Context().run(self._outcome, reactor)
        finally:
            self.unrewritten = _forget_user_modules(modules_before)

    def _outcome(self, reactor: Any) -> Failure | None:
        thread = threading.current_thread().name
        _without_signal_handlers(reactor)
        try:
            self._execute()
        except (Abort, TargetError):
            raise
        except BaseException as error:
            return program_failure(thread, _from_program(error))
        return None

    def _execute(self) -> None:
        if self.script is not None:
            sys.argv = [self.script, *self.argv[1:]]
            if _race_detector.rewriting():
                # A folder runs its __main__.py, as python runs it.
                main = os.path.join(self.script, "__main__.py")
                _race_hook.run_script(main if os.path.isdir(self.script) else self.script)
            else:
                runpy.run_path(self.script, run_name="__main__")
            return
        assert self.module is not None
        sys.argv = [self.module, *self.argv]  # run_module puts the module's file first
        runpy.run_module(self.module, run_name="__main__", alter_sys=True)


def _clear_thread_locals() -> None:
    """The main thread runs each schedule's program as a new process's would:
    without the thread-local data an earlier schedule's left (asyncio's current
    event loop, a library's per-thread session), as a carrier runs each body."""
    clear = thread_locals_clearer()
    if clear is not None:
        clear()


def _is_users(module: ModuleType) -> bool:
    filename = getattr(module, "__file__", "") or ""
    return bool(filename) and _stacks.is_user_code(filename)


def _used_modules(
    module: ModuleType, functions: Sequence[FunctionType], limit: int = 64
) -> list[ModuleType]:
    """``module``, and the program's own modules it or ``functions`` use, transitively:
    those its globals name (``import helper``), or whose functions and classes
    they hold (``from helper import counters``), up to ``limit`` modules."""
    found: list[ModuleType] = []
    todo: collections.deque[object] = collections.deque([module, *functions])
    seen: set[str] = set()
    while todo and len(found) < limit:
        value = todo.popleft()
        used = value if isinstance(value, ModuleType) else sys.modules.get(_module_of(value))
        if used is None or used.__name__ in seen:
            continue
        seen.add(used.__name__)
        if _is_users(used):
            found.append(used)
            todo.extend(vars(used).values())
    return found


def _module_of(value: object) -> str:
    """The name of the module ``value`` was defined in ("" if none, or if asking raised:
    a lazy proxy's ``__getattr__``)."""
    try:
        name = getattr(value, "__module__", None)
    except Exception:
        return ""
    return name if isinstance(name, str) else ""


def _reached(functions: Sequence[object], limit: int = 256) -> list[FunctionType]:
    """``functions`` and the functions their closures hold, and those they wrap,
    transitively: a worker a test defines beside its scenario was made before
    exploring, and runs as written unless its code is swapped too. (A decorator
    that compiles its wrapper from text, as pytest-twisted's ``inlineCallbacks``
    does, holds the test in the wrapper's globals, not in a closure.)"""
    found: list[FunctionType] = []
    todo = list(functions)
    seen: set[int] = set()
    while todo and len(found) < limit:
        value = todo.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, MethodType):
            value = value.__func__
        elif isinstance(value, functools.partial):
            value = value.func
        if not isinstance(value, FunctionType):
            continue
        found.append(value)
        todo.append(getattr(value, "__wrapped__", None))
        for cell in value.__closure__ or ():
            with contextlib.suppress(ValueError):  # a cell not yet assigned
                todo.append(cell.cell_contents)
    return found


_STALE_REACTOR = (
    "{0} used Twisted's global reactor as imported before exploring (a {1}), which no"
    " schedule runs: use the reactor the scenario is given, scenario(reactor)"
)


_IDLE_POOL = (
    "{0} gave work to a thread pool that never started: one made before exploring"
    " (an adbapi.ConnectionPool made at import, say) starts when Twisted's global"
    " reactor runs, which no schedule does; make it in the scenario, with the reactor"
    " it is given (adbapi.ConnectionPool(..., cp_reactor=reactor))"
)


def _activity(reactor: Any) -> tuple[object, ...] | None:
    """What a scenario leaves on a reactor it wrongly uses: delayed calls, calls
    from threads, a thread pool made or given jobs."""
    if reactor is None or not hasattr(reactor, "getDelayedCalls"):
        return None
    pool = getattr(reactor, "threadpool", None)
    return (
        len(reactor.getDelayedCalls()),
        len(getattr(reactor, "threadCallQueue", ())),
        id(pool),
        pool.q.qsize() if pool is not None else 0,
    )


@contextmanager
def global_reactor(reactor: Any) -> Iterator[Any]:
    """``reactor`` is what ``from twisted.internet import reactor`` gives, for now;
    yields the one it replaced (None when no reactor was installed)."""
    import twisted.internet

    saved_module = sys.modules.get(_REACTOR_MODULE)
    saved_attribute = getattr(twisted.internet, "reactor", None)
    sys.modules[_REACTOR_MODULE] = reactor
    twisted.internet.reactor = reactor  # type: ignore[attr-defined]
    try:
        yield saved_module
    finally:
        _restore(sys.modules, _REACTOR_MODULE, saved_module)
        _restore(vars(twisted.internet), "reactor", saved_attribute)


_ASYNCIO = (
    "the program installs Twisted's asyncio reactor: explore runs programs on its own"
    " scheduled reactor, which cannot drive asyncio's event loop; check this program"
    " with `threadcheck run` (its checks and --races work on the asyncio reactor), and"
    " explore its threaded code in a scenario, threadcheck.explore(scenario)"
)


@contextmanager
def _installers_kept(reactor: Any) -> Iterator[None]:
    """The program's ``epollreactor.install()`` (and the like) keeps the scheduled
    reactor, as if it had installed it; ``asyncioreactor.install()`` is refused
    in one line, instead of a ``ReactorAlreadyInstalledError`` on every schedule."""
    import importlib

    from threadcheck_reactor._installers import INSTALLERS

    def keep() -> None:
        pass

    def refuse(eventloop: object = None) -> None:
        raise TargetError(_ASYNCIO)

    modules: list[Any] = [importlib.import_module(name) for name in INSTALLERS.values()]
    saved = [module.install for module in modules]
    for kind, module, install in zip(INSTALLERS, modules, saved, strict=True):
        # With Twisted's name and module: pytest-twisted finds the default
        # reactor's class through the module of twisted.internet.default.install.
        kept = refuse if kind == "asyncio" else keep
        module.install = functools.wraps(install)(kept)
    try:
        with _crochet_refused():
            yield
    finally:
        for module, install in zip(modules, saved, strict=True):
            module.install = install


_CROCHET = {
    "setup": "runs Twisted through crochet (crochet.setup()): its reactor runs in a thread"
    " of crochet's, and its calls wait on real queues",
    "no_setup": "uses crochet (crochet.no_setup()): its wait_for and run_in_reactor calls"
    " wait on real queues",
}
_CROCHET_ADVICE = (
    ", which explore cannot schedule; check this program with `threadcheck run`, and"
    " explore its Twisted code in scenarios"
)


@contextmanager
def _crochet_refused() -> Iterator[None]:
    """``crochet.setup()`` (or ``no_setup()``) refused in one line: after a 10 s
    wait its log writer thread was reported "blocked outside the scheduler's
    control" on every crochet program, correct or not."""
    if importlib.util.find_spec("crochet") is None:
        yield
        return
    import crochet

    def refusal(called: str) -> Callable[..., None]:
        def refuse(*args: object, **kwargs: object) -> None:
            raise TargetError(f"the program {_CROCHET[called]}{_CROCHET_ADVICE}")

        return refuse

    saved = crochet.setup, crochet.no_setup
    crochet.setup, crochet.no_setup = refusal("setup"), refusal("no_setup")
    try:
        yield
    finally:
        crochet.setup, crochet.no_setup = saved


def _restore(namespace: dict[str, Any], name: str, value: object) -> None:
    if value is None:
        namespace.pop(name, None)
    else:
        namespace[name] = value


def _without_signal_handlers(reactor: Any) -> None:
    """The program's ``reactor.run()`` installs no signal handlers: they would take
    Ctrl-C from the exploration, and change process state on every schedule."""
    run = reactor.run

    def run_without_handlers(installSignalHandlers: bool = True) -> None:
        run(installSignalHandlers=False)

    reactor.run = run_without_handlers


def _forget_user_modules(before: set[str]) -> str | None:
    """Drop the user modules the program imported: the next schedule imports them
    afresh. The first that code rewriting missed, if it was on."""
    rewriting = _race_detector.rewriting()
    missed = None
    for name in set(sys.modules) - before:
        module = sys.modules[name]
        filename = getattr(module, "__file__", None)
        if not (isinstance(filename, str) and _stacks.is_user_code(filename)):
            continue
        if rewriting and missed is None and GLOBALS not in vars(module):
            missed = name
        del sys.modules[name]
        # `from package import module` would find it on its package otherwise.
        parent, _, child = name.rpartition(".")
        if getattr(sys.modules.get(parent), child, None) is module:
            delattr(sys.modules[parent], child)
    return missed


def _from_program(error: E) -> E:
    """``error`` with its traceback starting at the program: runpy, the runner of a
    rewritten script and this module left out."""
    traceback = error.__traceback__
    while traceback is not None and _is_launcher(traceback.tb_frame):
        traceback = traceback.tb_next
    return error.with_traceback(traceback)


def _is_launcher(frame: FrameType) -> bool:
    module = str(frame.f_globals.get("__name__"))
    return module in (__name__, "runpy", "importlib", _race_hook.__name__) or module.startswith(
        _IMPORT_MACHINERY
    )
