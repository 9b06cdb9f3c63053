"""``threadcheck run``: run a Twisted program on the instrumented reactor.

Exit status: the program's own when no violation was found; 1 when any was
(the report goes to stderr); 2 for usage errors, as one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import runpy
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

from threadcheck._modes import DEFAULT_MODE, Mode

USAGE_ERROR = 2
VIOLATIONS_FOUND = 1


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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = commands.add_parser(
        "run",
        help="run a program with the instrumented reactor installed",
        description=(
            "Run a Twisted program with threadcheck's reactor installed as the global "
            "reactor, then report thread-affinity violations."
        ),
        usage="threadcheck run [--mode MODE] [--json PATH] (script.py | -m module) [args ...]",
    )
    run.add_argument(
        "--mode",
        choices=[m.value for m in Mode],
        default=DEFAULT_MODE.value,
        help="raise in the offending call, record and report at the end (default), or warn",
    )
    run.add_argument("--json", metavar="PATH", help="also write the JSON report to PATH")
    run.add_argument("-m", dest="module", metavar="module", help="run a module, like python -m")
    run.add_argument("target", nargs=argparse.REMAINDER, help="script and its arguments")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            raise UsageError("missing command (try: threadcheck run script.py)")
        return _run(args)
    except UsageError as error:
        print(f"threadcheck: error: {error}", file=sys.stderr)
        return USAGE_ERROR


def _run(args: argparse.Namespace) -> int:
    target: list[str] = args.target
    if target[:1] == ["--"]:
        target = target[1:]
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
    if args.module is not None:
        # Only now: finding a submodule imports its parent packages, which may
        # import the reactor and must get the instrumented one.
        _check_module(args.module)
        status = _execute_module(args.module, target)
    else:
        status = _execute_script(target[0], target[1:])
    _join_non_daemon_threads()
    found = _report.finish(reactor.threadcheck, args.json, sys.stderr)
    if found:
        return VIOLATIONS_FOUND
    print("threadcheck: no thread-affinity violations found", file=sys.stderr)
    return status


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


def _execute_script(script: str, args: list[str]) -> int:
    sys.argv = [script, *args]
    # As `python script`: the script's folder (or the directory run) comes first.
    sys.path[0] = os.path.abspath(script if os.path.isdir(script) else os.path.dirname(script))
    return _execute(lambda: runpy.run_path(script, run_name="__main__"))


def _execute_module(module: str, args: list[str]) -> int:
    sys.argv = [module, *args]
    sys.path[0] = os.getcwd()
    return _execute(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True))


def _execute(run: Callable[[], object]) -> int:
    """Run the program; its exit status as the interpreter would compute it."""
    try:
        run()
    except SystemExit as exit_:
        return _exit_status(exit_.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        return 130
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _join_non_daemon_threads() -> None:
    # The interpreter would wait for these before exiting; violations they
    # make meanwhile belong in the report.
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
