"""``threadcheck run``: the program once, on the instrumented reactor, then the report.

Exit status:

* the program's own when no violation was found: 0, 1 for an uncaught
  exception (as python), or its ``sys.exit`` code;
* 3 when violations were found, whatever the program's status (the report
  goes to stderr, and a line says if the program failed too); with
  ``--report-only``, the program's own status instead;
* 2 for usage errors, as one line on stderr; also, after it, for a program
  that installed a reactor threadcheck does not instrument (nothing was checked);
* 130 on Ctrl-C, after the report.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import runpy
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any

from threadcheck import _forks
from threadcheck._cli._options import (
    INTERRUPTED,
    UNCAUGHT_EXCEPTION,
    USAGE_ERROR,
    VIOLATIONS_FOUND,
    Command,
    UsageError,
    add_program_arguments,
    check_output_paths,
    check_script,
    clear_stale_reports,
    command_line,
    program_command,
    program_is_user_code,
    said,
)
from threadcheck._modes import DEFAULT_MODE, Mode
from threadcheck._text import nothing_found

if TYPE_CHECKING:
    from threadcheck._activity import Activity
    from threadcheck._affinity import AffinityChecker

EXIT_STATUS_HELP = f"""\
exit status:
  the program's own when no violation was found: 0, {UNCAUGHT_EXCEPTION} for an uncaught
  exception (as python), or its sys.exit code
  {VIOLATIONS_FOUND}    violations were found (report on stderr), whatever the program's
       status; with --report-only, the program's own status instead
  {USAGE_ERROR}    usage error, or the program installed a reactor threadcheck does not
       instrument
  {INTERRUPTED}  interrupted by Ctrl-C (after the report)
"""

# Modules that start the program: their frames are left out of its tracebacks.
# Import machinery leads when `-m module` fails to compile or its package fails.
_LAUNCHERS = (
    "threadcheck._cli",
    "threadcheck._races._hook",
    "runpy",
    "importlib.",
    "_frozen_importlib",
)

REACTORS = ("default", "select", "poll", "epoll", "asyncio")
"""--reactor's names (threadcheck_reactor.KINDS: those this platform has); listed
here, as importing the reactors costs every --help."""

# Private, and missing from typeshed: CPython's own thread shutdown at exit.
_THREADING_SHUTDOWN = "_shutdown"


def _add(subparsers: Any) -> None:
    run = program_command(
        subparsers,
        "run",
        help="run a program with the instrumented reactor installed",
        description=(
            "Run a Twisted program on threadcheck's instrumented reactor, then report\n"
            "thread-affinity violations. The reactor the program installs itself\n"
            "(asyncioreactor.install(), scrapy's TWISTED_REACTOR) is instrumented; one\n"
            "that just imports twisted.internet.reactor gets the platform's default.\n"
            "Options go before the script or -m module; everything after it is the\n"
            "program's."
        ),
        usage=(
            "[--mode MODE] [--json PATH] [--html PATH] [--trace PATH] [--report-only] "
            "[--stall-ms MS] [--races] [--include PATH ...] [--reactor NAME]"
        ),
        epilog=EXIT_STATUS_HELP,
    )
    run.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=DEFAULT_MODE.value,
        help="raise in the offending call, record and report at the end (default), or warn",
    )
    run.add_argument("--json", metavar="PATH", help="also write the JSON report to PATH")
    run.add_argument(
        "--html",
        metavar="PATH",
        help="also write the findings as a self-contained HTML page to PATH",
    )
    run.add_argument(
        "--trace",
        metavar="PATH",
        help="also write the threads' activity (reactor callbacks, pool jobs, hand-offs) "
        "as a Chrome trace (Perfetto, chrome://tracing) to PATH",
    )
    run.add_argument(
        "--report-only",
        action="store_true",
        help="report violations, but exit with the program's own status",
    )
    run.add_argument(
        "--stall-ms",
        metavar="MS",
        help="report a callback that holds the reactor thread longer than MS milliseconds "
        "(default 100, or THREADCHECK_STALL_MS; 0: off); stalls fail nothing",
    )
    run.add_argument(
        "--races",
        action="store_true",
        help="also report data races: two threads accessing one attribute, global, closure "
        "variable or container, one of them writing, with no synchronisation ordering them "
        "(in your code: not installed packages, Twisted or the standard library)",
    )
    run.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="with --races, also watch this folder, file or module, though it is library "
        "code (an installed package); repeatable",
    )
    run.add_argument(
        "--reactor",
        metavar="NAME",
        help="install this instrumented reactor before the program starts, whatever it "
        f"asks for: {', '.join(REACTORS)} (those this platform has)",
    )
    add_program_arguments(run)


def _run(args: argparse.Namespace) -> int:
    target: list[str] = args.target
    if args.module is None and not target:
        raise UsageError("run: expected a script or -m module")
    check_output_paths(args)
    if args.module is None:
        check_script(target[0])
    include = _include(args.include, args.races)
    clear_stale_reports(args)

    from threadcheck import _stacks

    # The console-script wrapper and runpy are how the program starts, not part of it.
    _stacks.register_script(sys.argv[0], "threadcheck")
    program_is_user_code(args.module, target)

    checker = _prepare_reactor(Mode.parse(args.mode), args.stall_ms, args.reactor)
    forks = _forks.Forks(checker)
    _forks.watch(forks)
    if args.races:
        from threadcheck._races import _detector
        from threadcheck_reactor import _race_edges

        is_user_file = _stacks.user_code(include)
        _detector.start(
            checker.recorder,
            is_user_file,
            include=include,
            edges=_race_edges.edges(is_user_file),
        )
        if _runs_pytest(args.module, target):
            _rewrite_test_modules(is_user_file)
    activity, stop_tracing = _start_tracing() if args.trace is not None else (None, None)
    streams = sys.stdout, sys.stderr

    statuses: list[int] = []

    def finish(status: int, interrupted: bool) -> int:
        if not statuses:  # once: maybe already before the program killed itself
            # The report is ours: on our stderr, not where the program sent its
            # own (twisted.python.log.startLogging(sys.stdout) makes stderr a log).
            sys.stdout, sys.stderr = streams
            left = forks.leave() if forks.in_child else None
            if left is not None:  # a forked child: its parent reports what it found
                statuses.append(_final_status(status, left, args.report_only))
            else:
                statuses.append(
                    _finish(args, checker, activity, stop_tracing, status, interrupted, forks)
                )
        return statuses[0]

    with _finished_before_killing_itself(finish), _ended_if_signalled_while_stopping(finish):
        status, interrupted = _run_to_exit(args.module, target, args.races)
    return finish(status, interrupted)


def _finish(
    args: argparse.Namespace,
    checker: AffinityChecker,
    activity: Activity | None,
    stop_tracing: Callable[[], None] | None,
    status: int,
    interrupted: bool,
    forks: _forks.Forks,
) -> int:
    """Print the report, write the views; the exit status."""
    from threadcheck import _report

    if stop_tracing is not None:
        stop_tracing()
    unchecked = _uninstrumented_reactor()
    if unchecked is not None:
        print(f"threadcheck: error: {unchecked}", file=sys.stderr)
        return INTERRUPTED if interrupted else USAGE_ERROR
    from_children = forks.take_children_findings()
    finished = _report.finish(checker, args.json, sys.stderr)
    if from_children:
        print(f"threadcheck: {from_children} of them in forked child processes", file=sys.stderr)
    if not finished.found:
        # 3 is also ours for "found": said, so that the two are told apart.
        own = "; the program's own exit status is 3" if status == VIOLATIONS_FOUND else ""
        print(f"{nothing_found(args.races)} found{own}", file=sys.stderr)
    views_written = _write_views(args, checker, activity)
    # Twisted's own SIGINT/SIGTERM handler stops the reactor and the program ends
    # "normally": it was still interrupted, as a shell should hear (130, 143).
    stopped_by = getattr(sys.modules.get("twisted.internet.reactor"), "_exitSignal", None)
    if interrupted or stopped_by is not None:
        return INTERRUPTED if stopped_by is None else 128 + int(stopped_by)
    if not (finished.json_written and views_written) and not finished.found:
        return USAGE_ERROR
    return _final_status(status, finished.found, args.report_only)


_KILLING = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name)
)


@contextmanager
def _finished_before_killing_itself(finish: Callable[[int, bool], int]) -> Iterator[None]:
    """A program that ends by killing itself with the signal that stopped it
    (twistd: ``app._exitWithSignal``) gets its report first, then dies so."""
    original, me = os.kill, os.getpid()  # not a forked child's own

    def kill(pid: int, sig: int) -> None:
        dies = sig in _KILLING and signal.getsignal(sig) == signal.SIG_DFL
        if dies and pid == me == os.getpid():
            os.kill = original
            finish(0, False)
            sys.stdout.flush()
            sys.stderr.flush()
        original(pid, sig)

    os.kill = kill
    try:
        yield
    finally:
        os.kill = original


@contextmanager
def _ended_if_signalled_while_stopping(finish: Callable[[int, bool], int]) -> Iterator[None]:
    """Ctrl-C or SIGTERM while the reactor's shutdown waits (a pool job stuck
    for ever, reported by then): the report, then the exit, 130 or 143."""
    from threadcheck_reactor import ThreadCheckMixin

    def end(number: int) -> None:
        print(
            f"threadcheck: {signal.Signals(number).name} while the reactor was shutting "
            "down: not waiting for its shutdown any longer",
            file=sys.stderr,
        )
        status = finish(0, True)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)

    ThreadCheckMixin.signalled_while_stopping = staticmethod(end)  # type: ignore[assignment]
    try:
        yield
    finally:
        ThreadCheckMixin.signalled_while_stopping = None


def _start_tracing() -> tuple[Activity, Callable[[], None]]:
    from threadcheck._activity import Activity
    from threadcheck_reactor import _activity

    activity = Activity()
    return activity, _activity.install(activity)


def _write_views(
    args: argparse.Namespace, checker: AffinityChecker, activity: Activity | None
) -> bool:
    """The findings page and the activity trace asked for; False, each problem said
    in one line, when one cannot be written."""
    if args.html is None and activity is None:
        return True
    from threadcheck._view._outputs import write_activity, write_findings

    title = command_line(args)
    problems = []
    if args.html is not None:
        recorder = checker.recorder
        problems += write_findings(args.html, recorder.violations(), recorder.stalls(), title)
    if activity is not None:
        problems += write_activity(args.trace, activity, title)
    return said(problems)


COMMAND = Command(
    "run",
    _add,
    _run,
    frozenset({"--mode", "--json", "--html", "--trace", "--stall-ms", "--reactor", "--include"}),
)


def _include(names: list[str], races: bool) -> tuple[str, ...]:
    if names and not races:
        raise UsageError("--include: only with --races")
    from threadcheck._stacks import include_paths

    try:
        return include_paths(names)
    except ValueError as error:
        raise UsageError(f"--include: {error}") from None


def _prepare_reactor(mode: Mode, stall_ms: str | None, kind: str | None) -> AffinityChecker:
    """Make Twisted's reactor installers install the instrumented reactors
    (``kind``, if given, now); return the checker they report to."""
    import threadcheck_reactor
    from threadcheck_reactor import _installers

    stall_threshold = _stall_threshold(stall_ms)
    if kind is not None:
        try:
            threadcheck_reactor.reactor_class(kind)
        except ValueError as error:
            raise UsageError(f"--reactor: {error}") from None
    checker = _installers.redirect(mode, stall_threshold)
    if kind is not None:
        try:
            _installers.install(kind, chosen=True)  # the program may install it again
        except threadcheck_reactor.ReactorAlreadyInstalledError as error:
            raise UsageError(str(error)) from None
    return checker


def _stall_threshold(stall_ms: str | None) -> float | None:
    # Read now, not where the program happens to make its reactor.
    from threadcheck_reactor._stalls import threshold_from_environment, threshold_from_milliseconds

    try:
        if stall_ms is None:
            return threshold_from_environment()
        return threshold_from_milliseconds(stall_ms, "--stall-ms")
    except ValueError as error:
        raise UsageError(str(error)) from None


def _uninstrumented_reactor() -> str | None:
    """What to say if the program ran on a reactor threadcheck does not instrument."""
    from threadcheck_reactor import KINDS, unchecked_reactor

    name = unchecked_reactor()
    if name is None:
        return None
    return (
        f"the program installed {name}, which threadcheck does not instrument: nothing was "
        f"checked (instrumented: {', '.join(KINDS)})"
    )


def _final_status(program_status: int, found: int, report_only: bool) -> int:
    if not found or report_only:
        return program_status
    if program_status != 0:
        print(
            f"threadcheck: the program also failed (exit status {program_status})",
            file=sys.stderr,
        )
    return VIOLATIONS_FOUND


def _check_module(module: str) -> None:
    """``module`` can be run, or python's one line (not runpy's chained traceback)."""
    try:
        spec = importlib.util.find_spec(module)
        runs = spec is None or spec.submodule_search_locations is None
        runs = runs or importlib.util.find_spec(f"{module}.__main__") is not None
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise UsageError(f"no module named {module!r}")
    if not runs:
        raise UsageError(
            f"No module named {module}.__main__; {module!r} is a package and cannot be "
            "directly executed"
        )


def _runs_pytest(module: str | None, target: list[str]) -> bool:
    name = module if module is not None else os.path.basename(target[0])
    return name in ("pytest", "py.test")


def _rewrite_test_modules(is_user_file: Callable[[str], bool]) -> None:
    """pytest compiles test modules itself, past the race detector's import hook."""
    from threadcheck._races._pytest_modules import rewrite_test_modules

    undo = rewrite_test_modules(is_user_file)
    if isinstance(undo, str):
        raise UsageError(f"--races with pytest: {undo}")


def _run_to_exit(module: str | None, target: list[str], races: bool) -> tuple[int, bool]:
    """Run the program, then wait for its threads as the interpreter would at exit.

    Returns the program's exit status, and whether Ctrl-C cut either short.
    """
    interrupted = False
    try:
        status = _execute_program(module, target, races)
    except KeyboardInterrupt as interrupt:
        _show_uncaught(interrupt)
        status, interrupted = INTERRUPTED, True
    # Violations the program's threads make meanwhile belong in the report.
    return status, _wait_for_threads() or interrupted


def _execute_program(module: str | None, target: list[str], races: bool) -> int:
    if module is None:
        return _execute_script(target[0], target[1:], races)
    return _execute_module(module, target)


def _execute_script(script: str, args: list[str], races: bool = False) -> int:
    # Absolute, as python (3.9+) makes a script's __file__ and traceback paths.
    path = os.path.abspath(script)
    sys.argv = [path, *args]
    # As `python script`: the script's folder (or the directory run) comes first.
    sys.path[0] = path if os.path.isdir(path) else os.path.dirname(path)
    if races and not os.path.isdir(path):
        from threadcheck._races._hook import run_script

        return _execute(lambda: run_script(path))
    return _execute(lambda: runpy.run_path(path, run_name="__main__"))


def _execute_module(module: str, args: list[str]) -> int:
    sys.argv = [module, *args]
    sys.path[0] = os.getcwd()

    def run() -> None:
        # Part of the program: finding a submodule imports its parent packages,
        # which may import the reactor (and must get the instrumented one) or fail.
        _check_module(module)
        runpy.run_module(module, run_name="__main__", alter_sys=True)

    return _execute(run)


def _execute(run: Callable[[], object]) -> int:
    """Run the program; its exit status as the interpreter would compute it.

    KeyboardInterrupt goes on to the caller: Ctrl-C is not the program's status.
    """
    from threadcheck_reactor._installers import ChosenReactorConflict

    try:
        run()
    except SystemExit as exit_:
        return _exit_status(exit_.code)
    except (KeyboardInterrupt, UsageError):
        raise
    except ChosenReactorConflict as conflict:  # our --reactor's, not the program's
        raise UsageError(str(conflict)) from None
    except BaseException as error:
        _show_uncaught(error)
        return UNCAUGHT_EXCEPTION
    return 0


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return UNCAUGHT_EXCEPTION


def _show_uncaught(error: BaseException) -> None:
    """Print an exception as the interpreter would: via sys.excepthook, without our frames.

    The traceback goes on the exception itself, since the default hook prints
    ``error.__traceback__`` when set, whatever it is passed.
    """
    traceback = error.__traceback__
    while traceback is not None and _is_launcher(traceback.tb_frame):
        traceback = traceback.tb_next
    sys.excepthook(type(error), error.with_traceback(traceback), traceback)


def _is_launcher(frame: FrameType) -> bool:
    return str(frame.f_globals.get("__name__")).startswith(_LAUNCHERS)


def _wait_for_threads() -> bool:
    """Shut threading down as the interpreter does at exit; True if Ctrl-C (or
    SIGTERM) cut it short: the threads still waited for are then named."""
    noted: list[int] = []
    with _stopped_reactors_signals_interrupt(), _unraisable_interrupts_noted(noted):
        try:
            _shutdown_threading()
        except KeyboardInterrupt:
            noted.append(signal.SIGINT)
    if noted:
        _name_threads_waited_for()
    return bool(noted)


@contextmanager
def _stopped_reactors_signals_interrupt() -> Iterator[None]:
    """The reactor's SIGINT and SIGTERM handlers stay installed once it stopped,
    and only ask it to stop again: waiting at exit for a thread nobody stops (a
    ThreadPool the program never stopped), Ctrl-C and SIGTERM did nothing, and
    the report never came. Here they interrupt the wait (the reactor still
    notes the signal: the exit status says which)."""
    replaced = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        reactor = getattr(handler, "__self__", None)
        if reactor is None or getattr(reactor, "running", True) or not callable(handler):
            continue

        def interrupt(number: int, frame: FrameType | None, handler: Any = handler) -> None:
            handler(number, frame)
            raise KeyboardInterrupt

        signal.signal(signum, interrupt)
        replaced.append((signum, handler))
    try:
        yield
    finally:
        for signum, handler in replaced:
            signal.signal(signum, handler)


@contextmanager
def _unraisable_interrupts_noted(noted: list[int]) -> Iterator[None]:
    """Python 3.13's ``_thread._shutdown`` hands a KeyboardInterrupt raised in its
    wait to ``sys.unraisablehook`` (a traceback of ours) and returns: noted here
    (earlier Pythons raise it from the wait)."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            noted.append(signal.SIGINT)
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def _name_threads_waited_for() -> None:
    from threadcheck import _stacks

    # Running, as the interpreter sees it: a join cut short by Ctrl-C leaves
    # is_alive() False on 3.11 (an executor's worker, joined at exit).
    running = _stacks.current_frames()
    waited = [
        t
        for t in threading.enumerate()
        if t.ident in running and not t.daemon and t is not threading.main_thread()
    ]
    if waited:
        names = ", ".join(repr(t.name) for t in waited)
        print(
            f"threadcheck: interrupted while waiting at exit for {names}, which nobody "
            "stopped (a non-daemon thread: the interpreter waits for it)",
            file=sys.stderr,
        )


def _shutdown_threading() -> None:
    """Call ``threading._shutdown`` (3.10-3.13), as the interpreter does before exiting.

    It marks the main thread finished (crochet's watchdog waits for that to
    stop its reactor), runs ``threading._register_atexit`` callbacks, then
    joins the non-daemon threads. Without it, the interpreter is left to wait
    at exit, and violations made meanwhile go unreported.
    """
    shutdown: Callable[[], None] | None = getattr(threading, _THREADING_SHUTDOWN, None)
    if shutdown is None:
        return
    try:
        shutdown()
    finally:
        # The interpreter calls it again at exit. Once it has marked the main
        # thread finished it returns at once; but if Ctrl-C cut it short before
        # that, it would run the atexit callbacks and wait again, where python
        # exits. Once it is, as in a plain run.
        setattr(threading, _THREADING_SHUTDOWN, _already_shut_down)


def _already_shut_down() -> None:
    pass
