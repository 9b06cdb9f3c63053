"""``threadcheck run``: run a Twisted program on the instrumented reactor.

Everything from the script or ``-m module`` on is the program's command line,
as with ``python -m`` and ``coverage run -m``: ``run``'s own options go before
it, and ``--`` ends them.

Exit status:

* the program's own when no violation was found: 0, 1 for an uncaught
  exception (as python), or its ``sys.exit`` code;
* 3 when violations were found, whatever the program's status (the report
  goes to stderr, and a line says if the program failed too); with
  ``--report-only``, the program's own status instead;
* 2 for usage errors, as one line on stderr;
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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import NoReturn

from threadcheck import __version__
from threadcheck._modes import DEFAULT_MODE, Mode

UNCAUGHT_EXCEPTION = 1  # as python exits on one
USAGE_ERROR = 2
VIOLATIONS_FOUND = 3
INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C

EXIT_STATUS_HELP = f"""\
exit status:
  the program's own when no violation was found: 0, {UNCAUGHT_EXCEPTION} for an uncaught
  exception (as python), or its sys.exit code
  {VIOLATIONS_FOUND}    violations were found (report on stderr), whatever the program's
       status; with --report-only, the program's own status instead
  {USAGE_ERROR}    usage error
  {INTERRUPTED}  interrupted by Ctrl-C (after the report)
"""

# `run` options that take a separate value; the first other non-option starts
# the program's command line.
_VALUE_OPTIONS = frozenset({"--mode", "--json"})

# Modules that start the program: their frames are left out of its tracebacks.
# Import machinery leads when `-m module` fails to compile or its package fails.
_LAUNCHER_MODULES = frozenset({__name__, "runpy"})
_IMPORT_MACHINERY = ("importlib.", "_frozen_importlib")

# Private, and missing from typeshed: CPython's own thread shutdown at exit.
_THREADING_SHUTDOWN = "_shutdown"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="threadcheck",
        description="Thread-affinity checking for Twisted programs.",
    )
    parser.add_argument("--version", action="version", version=f"threadcheck {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = commands.add_parser(
        "run",
        help="run a program with the instrumented reactor installed",
        description=(
            "Run a Twisted program with threadcheck's reactor installed as the global\n"
            "reactor, then report thread-affinity violations. Options go before the\n"
            "script or -m module; everything after it is the program's."
        ),
        usage=(
            "threadcheck run [--mode MODE] [--json PATH] [--report-only] [--] "
            "(script.py | -m module) [args ...]"
        ),
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # An abbreviated option would not be recognised by _split_program.
        allow_abbrev=False,
    )
    run.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=DEFAULT_MODE.value,
        help="raise in the offending call, record and report at the end (default), or warn",
    )
    run.add_argument("--json", metavar="PATH", help="also write the JSON report to PATH")
    run.add_argument(
        "--report-only",
        action="store_true",
        help="report violations, but exit with the program's own status",
    )
    # For --help only: _split_program takes these off before argparse sees them.
    run.add_argument("-m", dest="module", metavar="module", help="run a module, like python -m")
    run.add_argument("target", nargs="*", metavar="script.py", help="script and its arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parse(list(sys.argv[1:] if argv is None else argv))
        if args.command is None:
            raise UsageError("missing command (try: threadcheck run script.py)")
        return _run(args)
    except UsageError as error:
        print(f"threadcheck: error: {error}", file=sys.stderr)
        return USAGE_ERROR


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse threadcheck's arguments, leaving the program's command line alone."""
    command_at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
    if argv[command_at : command_at + 1] != ["run"]:
        return _parser().parse_args(argv)  # --help, --version or a usage error
    options, module, target = _split_program(argv[command_at + 1 :])
    args = _parser().parse_args([*argv[: command_at + 1], *options])
    args.module, args.target = module, target
    return args


def _split_program(args: list[str]) -> tuple[list[str], str | None, list[str]]:
    """``run``'s own options; the module (with -m); the script and/or program arguments."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return args[:index], None, args[index + 1 :]
        if arg.startswith("-m"):
            module, rest = _module_argument(arg, args[index + 1 :])
            return args[:index], module, rest
        if not arg.startswith("-"):
            return args[:index], None, args[index:]
        index += 2 if arg in _VALUE_OPTIONS else 1
    return args, None, []


def _module_argument(arg: str, rest: list[str]) -> tuple[str, list[str]]:
    if arg != "-m":
        return arg[2:], rest  # -mmodule, as python accepts
    if not rest:
        raise UsageError("argument -m: expected one argument")
    return rest[0], rest[1:]


def _run(args: argparse.Namespace) -> int:
    target: list[str] = args.target
    if args.module is None and not target:
        raise UsageError("run: expected a script or -m module")
    if args.json is not None:
        _check_writable(args.json)
    if args.module is None:
        _check_script(target[0])

    import threadcheck_reactor
    from threadcheck import _report, _stacks

    # The console-script wrapper and runpy are how the program starts, not part of it.
    _stacks.register_library_path(os.path.abspath(sys.argv[0]), "threadcheck")

    try:
        reactor = threadcheck_reactor.install(args.mode)
    except threadcheck_reactor.ReactorAlreadyInstalledError as error:
        raise UsageError(str(error)) from None
    status, interrupted = _run_to_exit(args.module, target)
    found = _report.finish(reactor.threadcheck, args.json, sys.stderr)
    if not found:
        print("threadcheck: no thread-affinity violations found", file=sys.stderr)
    if interrupted:
        return INTERRUPTED
    return _final_status(status, found, args.report_only)


def _final_status(program_status: int, found: int, report_only: bool) -> int:
    if not found or report_only:
        return program_status
    if program_status != 0:
        print(
            f"threadcheck: the program also failed (exit status {program_status})",
            file=sys.stderr,
        )
    return VIOLATIONS_FOUND


def _check_writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"--json: no such directory: {folder}")
    if os.path.isdir(path):
        raise UsageError(f"--json: is a directory: {path}")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--json: cannot write in {folder}")


def _check_script(script: str) -> None:
    if not os.path.exists(script):
        raise UsageError(f"no such file: {script}")
    if os.path.isdir(script) and not os.path.exists(os.path.join(script, "__main__.py")):
        raise UsageError(f"not a script, and has no __main__.py: {script}")


def _check_module(module: str) -> None:
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise UsageError(f"no module named {module!r}")


def _run_to_exit(module: str | None, target: list[str]) -> tuple[int, bool]:
    """Run the program, then wait for its threads as the interpreter would at exit.

    Returns the program's exit status, and whether Ctrl-C cut either short.
    """
    interrupted = False
    try:
        status = _execute_program(module, target)
    except KeyboardInterrupt as interrupt:
        _show_uncaught(interrupt)
        status, interrupted = INTERRUPTED, True
    # Violations the program's threads make meanwhile belong in the report.
    return status, _wait_for_threads() or interrupted


def _execute_program(module: str | None, target: list[str]) -> int:
    if module is None:
        return _execute_script(target[0], target[1:])
    return _execute_module(module, target)


def _execute_script(script: str, args: list[str]) -> int:
    # Absolute, as python (3.9+) makes a script's __file__ and traceback paths.
    path = os.path.abspath(script)
    sys.argv = [path, *args]
    # As `python script`: the script's folder (or the directory run) comes first.
    sys.path[0] = path if os.path.isdir(path) else os.path.dirname(path)
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
    try:
        run()
    except SystemExit as exit_:
        return _exit_status(exit_.code)
    except (KeyboardInterrupt, UsageError):
        raise
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
    module = str(frame.f_globals.get("__name__"))
    return module in _LAUNCHER_MODULES or module.startswith(_IMPORT_MACHINERY)


def _wait_for_threads() -> bool:
    """Shut threading down as the interpreter does at exit; True if Ctrl-C cut it short."""
    with _noting_sigint() as noted:
        try:
            _shutdown_threading()
        except KeyboardInterrupt:
            return True
    return bool(noted)


@contextmanager
def _noting_sigint() -> Iterator[list[int]]:
    """Note Ctrl-C even where the wait swallows it.

    Python 3.13's ``_thread._shutdown`` prints the KeyboardInterrupt as
    unraisable and returns. A handler the program installed is left alone.
    """
    noted: list[int] = []
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield noted
        return

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)
        signal.default_int_handler(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
