"""The ``threadcheck`` command: ``run``, ``explore`` and ``replay`` a Twisted program.

Everything from the script or ``-m module`` on is the program's command line,
as with ``python -m`` and ``coverage run -m``: the command's own options go
before it (``replay``'s token too), and ``--`` ends them.

``run`` runs the program once on the instrumented reactor. Exit status:

* the program's own when no violation was found: 0, 1 for an uncaught
  exception (as python), or its ``sys.exit`` code;
* 3 when violations were found, whatever the program's status (the report
  goes to stderr, and a line says if the program failed too); with
  ``--report-only``, the program's own status instead;
* 2 for usage errors, as one line on stderr;
* 130 on Ctrl-C, after the report.

``explore`` runs it once per schedule under the controlled scheduler, with
the hash seed pinned (it re-executes itself with PYTHONHASHSEED=0 unless set),
and exits 0 when the budget is spent clean (not a proof), 1 with the shrunk
schedule and its replay command when a schedule fails, 2 for usage errors,
130 on Ctrl-C. ``replay`` reruns one schedule from its token: 1 when it fails
again as recorded, 2 for a damaged token or a replay that diverged.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import runpy
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from threadcheck import __version__
from threadcheck._modes import DEFAULT_MODE, Mode

if TYPE_CHECKING:
    from threadcheck._sched._explore import ExploreResult
    from threadcheck._sched._progress import Progress
    from threadcheck._sched._targets import ProgramTarget

UNCAUGHT_EXCEPTION = 1  # as python exits on one
SCHEDULE_FAILED = 1  # explore and replay: a schedule failed
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

EXPLORE_STATUS_HELP = f"""\
exit status:
  0    the budget was spent (or the strategy exhausted) without a failure; not a proof
  {SCHEDULE_FAILED}    a schedule failed: the shrunk schedule and its replay command are printed
  {USAGE_ERROR}    usage error
  {INTERRUPTED}  interrupted by Ctrl-C
"""

REPLAY_STATUS_HELP = f"""\
exit status:
  {SCHEDULE_FAILED}    the schedule failed again, as recorded (the report is printed)
  {USAGE_ERROR}    usage error, a damaged token, or the replay diverged from the recorded run
"""

# Per command that runs a program, its options that take a separate value; the
# first other non-option starts the program's command line (replay's token first).
_VALUE_OPTIONS = {
    "run": frozenset({"--mode", "--json", "--stall-ms"}),
    "explore": frozenset(
        {"--budget", "--time", "--strategy", "--seed", "--granularity", "--include", "--json"}
    ),
    "replay": frozenset(),
}

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
        description="Thread-safety checking for Twisted programs.",
    )
    parser.add_argument("--version", action="version", version=f"threadcheck {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_run(commands)
    _add_explore(commands)
    _add_replay(commands)
    return parser


def _program_command(
    commands: Any, name: str, help: str, description: str, usage: str, epilog: str
) -> argparse.ArgumentParser:
    """A command that runs a program: its parser, with the program's arguments for --help."""
    command: argparse.ArgumentParser = commands.add_parser(
        name,
        help=help,
        description=description,
        usage=f"threadcheck {name} {usage} [--] (script.py | -m module) [args ...]",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # An abbreviated option would not be recognised by _split_program.
        allow_abbrev=False,
    )
    return command


def _add_program_arguments(command: argparse.ArgumentParser) -> None:
    # For --help only: _split_program takes these off before argparse sees them.
    command.add_argument(
        "-m", dest="module", metavar="module", help="run a module, like python -m"
    )
    command.add_argument("target", nargs="*", metavar="script.py", help="script and its arguments")


def _add_run(commands: Any) -> None:
    run = _program_command(
        commands,
        "run",
        help="run a program with the instrumented reactor installed",
        description=(
            "Run a Twisted program with threadcheck's reactor installed as the global\n"
            "reactor, then report thread-affinity violations. Options go before the\n"
            "script or -m module; everything after it is the program's."
        ),
        usage="[--mode MODE] [--json PATH] [--report-only] [--stall-ms MS]",
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
    _add_program_arguments(run)


def _add_explore(commands: Any) -> None:
    from threadcheck._sched._explore import DEFAULT_BUDGET
    from threadcheck._sched._points import DEFAULT_GRANULARITY, GRANULARITIES
    from threadcheck._sched.strategies import DEFAULT, SPELLINGS

    explore = _program_command(
        commands,
        "explore",
        help="explore a program's thread interleavings under a controlled scheduler",
        description=(
            "Run a Twisted program again and again, one controlled thread at a time, each\n"
            "time in another interleaving and on a fresh global reactor, until one run\n"
            "fails (an exception, a non-zero exit, a deadlock, a thread-affinity\n"
            "violation, an unhandled error) or the budget is spent. A failure is shrunk\n"
            "to its fewest preemptions and printed with its replay command. Options go\n"
            "before the script or -m module; everything after it is the program's."
        ),
        usage=(
            "[--budget N | --time SECONDS] [--strategy S] [--seed N] "
            "[--granularity G] [--include PATH ...] [--json PATH]"
        ),
        epilog=EXPLORE_STATUS_HELP,
    )
    limits = explore.add_mutually_exclusive_group()
    limits.add_argument(
        "--budget",
        type=_positive(int),
        metavar="N",
        help=f"run at most N schedules (default {DEFAULT_BUDGET})",
    )
    limits.add_argument(
        "--time", type=_positive(float), metavar="SECONDS", help="explore for SECONDS instead"
    )
    explore.add_argument(
        "--strategy", metavar="S", default=DEFAULT, help=f"{SPELLINGS} (default {DEFAULT})"
    )
    explore.add_argument("--seed", type=int, default=0, metavar="N", help="default 0")
    explore.add_argument(
        "--granularity",
        choices=GRANULARITIES,
        default=DEFAULT_GRANULARITY,
        help=(
            "where threads may be preempted in your code: at synchronisation only, before "
            f"each attribute/subscript/global access, line or instruction (default "
            f"{DEFAULT_GRANULARITY})"
        ),
    )
    explore.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="PATH",
        help="also put scheduling points in this folder or file, though it is library code "
        "(an installed package); repeatable",
    )
    explore.add_argument("--json", metavar="PATH", help="also write the outcome as JSON to PATH")
    _add_program_arguments(explore)


def _add_replay(commands: Any) -> None:
    replay = _program_command(
        commands,
        "replay",
        help="rerun the one schedule of a replay token",
        description=(
            "Rerun exactly the schedule a replay token names (threadcheck explore prints\n"
            "it), on the same program and arguments. A run that goes anywhere else is\n"
            "reported as diverged, never as a pass."
        ),
        usage="TOKEN",
        epilog=REPLAY_STATUS_HELP,
    )
    replay.add_argument("token", metavar="TOKEN", help="the tc1. token explore printed")
    _add_program_arguments(replay)


def _positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:  # not `<= 0`: also refuses nan
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parse(list(sys.argv[1:] if argv is None else argv))
        if args.command is None:
            raise UsageError("missing command (try: threadcheck run script.py)")
        args.invocation = None if argv is None else list(argv)
        return _COMMANDS[args.command](args)
    except UsageError as error:
        print(f"threadcheck: error: {error}", file=sys.stderr)
        return USAGE_ERROR


def _parse(argv: list[str]) -> argparse.Namespace:
    """Parse threadcheck's arguments, leaving the program's command line alone."""
    command_at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
    command = argv[command_at] if command_at < len(argv) else None
    if command not in _VALUE_OPTIONS:
        return _parser().parse_args(argv)  # --help, --version or a usage error
    rest = argv[command_at + 1 :]
    if command == "replay":
        options, module, target = _split_replay(rest)
    else:
        options, module, target = _split_program(rest, _VALUE_OPTIONS[command])
    args = _parser().parse_args([*argv[: command_at + 1], *options])
    args.module, args.target = module, target
    return args


def _split_program(
    args: list[str], value_options: frozenset[str]
) -> tuple[list[str], str | None, list[str]]:
    """The command's own options; the module (with -m); the script and/or program arguments."""
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
        index += 2 if arg in value_options else 1
    return args, None, []


def _split_replay(args: list[str]) -> tuple[list[str], str | None, list[str]]:
    """``replay``'s options and token (for argparse), then the program as for ``run``."""
    options, module, rest = _split_program(args, _VALUE_OPTIONS["replay"])
    if module is not None or not rest:
        raise UsageError("replay: expected a token, then a script or -m module")
    more_options, module, target = _split_program(rest[1:], _VALUE_OPTIONS["replay"])
    return [*options, rest[0], *more_options], module, target


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
    from threadcheck_reactor._stalls import threshold_from_milliseconds

    # The console-script wrapper and runpy are how the program starts, not part of it.
    _stacks.register_library_path(os.path.abspath(sys.argv[0]), "threadcheck")

    try:
        reactor = threadcheck_reactor.install(args.mode)
        if args.stall_ms is not None:
            reactor.stall_threshold = threshold_from_milliseconds(args.stall_ms, "--stall-ms")
    except (threadcheck_reactor.ReactorAlreadyInstalledError, ValueError) as error:
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


# -- explore and replay ----------------------------------------------------------

_HASH_SEED = "PYTHONHASHSEED"


def _explore(args: argparse.Namespace) -> int:
    from threadcheck._sched._progress import Progress

    _check_explore_options(args)
    _check_program(args)
    _pin_hash_seed(args.invocation, "0")
    with Progress(sys.stderr) as progress:
        try:
            result = _exploration(args, progress)
        except KeyboardInterrupt:
            progress.clear()
            print(
                f"threadcheck: interrupted after {progress.schedules} schedules, "
                "no failure seen so far",
                file=sys.stderr,
            )
            return INTERRUPTED
    sys.stderr.write(result.report())
    if args.json is not None:
        _write_outcome(args.json, result)
    return SCHEDULE_FAILED if result.found else 0


def _check_explore_options(args: argparse.Namespace) -> None:
    from threadcheck._sched.strategies import parse as parse_strategy

    try:
        parse_strategy(args.strategy, args.seed)
    except ValueError as error:
        raise UsageError(f"--strategy: {error}") from None
    for path in args.include:
        if not os.path.exists(path):
            raise UsageError(f"--include: no such file or folder: {path}")
    if args.json is not None:
        _check_writable(args.json)


def _exploration(args: argparse.Namespace, progress: Progress) -> ExploreResult:
    from threadcheck._sched._explore import DEFAULT_BUDGET, Budget, Settings, explore

    return explore(
        _program_target(args),
        budget=Budget(None, args.time) if args.time else Budget(args.budget or DEFAULT_BUDGET),
        strategy=args.strategy,
        seed=args.seed,
        settings=Settings(granularity=args.granularity, include=tuple(args.include)),
        replay_command=lambda token: _replay_command(token, args.module, args.target),
        progress=progress,
    )


def _replay(args: argparse.Namespace) -> int:
    from threadcheck._sched import _token
    from threadcheck._sched._explore import replay
    from threadcheck._sched.strategies import ReplayDivergenceError

    _check_program(args)
    try:
        recorded = _token.decode(args.token)
    except _token.TokenError as error:
        raise UsageError(str(error)) from None
    _pin_hash_seed(args.invocation, _recorded_hash_seed(recorded))
    try:
        result = replay(_program_target(args), args.token, warn=_warn)
    except ReplayDivergenceError as error:
        print(f"threadcheck: {error}", file=sys.stderr)
        return USAGE_ERROR
    sys.stderr.write(result.report())
    return SCHEDULE_FAILED if result.found else 0


def _check_program(args: argparse.Namespace) -> None:
    """The script or module exists; ``sys.path`` begins as python would begin it."""
    target: list[str] = args.target
    if args.module is None and not target:
        raise UsageError(f"{args.command}: expected a script or -m module")
    if args.module is None:
        _check_script(target[0])
        path = os.path.abspath(target[0])
        sys.path[0] = path if os.path.isdir(path) else os.path.dirname(path)
    else:
        sys.path[0] = os.getcwd()
        _check_module_unimported(args.module)


def _program_target(args: argparse.Namespace) -> ProgramTarget:
    from threadcheck import _stacks
    from threadcheck._sched._targets import ProgramTarget

    # The console-script wrapper is how the program starts, not part of it.
    _stacks.register_library_path(os.path.abspath(sys.argv[0]), "threadcheck")
    # Imported by the first schedule otherwise, where (from a source tree, before it
    # registers as a library) it would add points that a replay's first schedule lacks.
    import threadcheck_reactor._scheduled  # noqa: F401

    return ProgramTarget(args.module, args.target)


def _check_module_unimported(module: str) -> None:
    """As ``_check_module``, without importing the module's packages: imported now,
    before any schedule, they would keep Twisted's default reactor if they import it."""
    parts = module.split(".")
    path: list[str] | None = None
    for depth in range(len(parts)):
        spec = _find_spec(".".join(parts[: depth + 1]), path)
        if spec is None or (depth < len(parts) - 1 and spec.submodule_search_locations is None):
            raise UsageError(f"no module named {module!r}")
        path = spec.submodule_search_locations
    if path is not None and _find_spec(f"{module}.__main__", path) is None:
        raise UsageError(f"{module!r} is a package and has no __main__ module")


def _find_spec(name: str, path: list[str] | None) -> Any:
    """What the import system would find for ``name``, given its package's path."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find(name, path) if find is not None else None
        if spec is not None:
            return spec
    return None


def _pin_hash_seed(invocation: list[str] | None, seed: str) -> None:
    """Re-execute this command with PYTHONHASHSEED set, unless it is set already.

    Set iteration order follows string hashes: with a random seed, the same
    decisions lead elsewhere, and a replay token would not replay.
    """
    if os.environ.get(_HASH_SEED, "random") != "random":
        return
    # As started (interpreter flags, the console script or -m threadcheck), unless
    # main() was handed its arguments.
    command = sys.orig_argv[1:] if invocation is None else ["-m", "threadcheck", *invocation]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *command], {**os.environ, _HASH_SEED: seed})


def _recorded_hash_seed(recorded: dict[str, Any]) -> str:
    """The hash seed a token was recorded with; 0 when it was random (replay warns then)."""
    seed = str(recorded.get("hashseed", ""))
    return seed if seed.isdigit() else "0"


def _replay_command(token: str, module: str | None, target: list[str]) -> str:
    program = ["-m", module, *target] if module is not None else target
    return shlex.join(["threadcheck", "replay", token, *program])


def _write_outcome(path: str, result: ExploreResult) -> None:
    failure = result.failure
    outcome = {
        "found": result.found,
        "token": result.token,
        "schedules": result.schedules,
        "distinct": result.distinct,
        "failure": None
        if failure is None
        else {
            "kind": failure.kind,
            "message": failure.message,
            "thread": failure.thread,
            "location": failure.location,
        },
    }
    with open(path, "w", encoding="utf-8") as file:
        json.dump(outcome, file, indent=2)
        file.write("\n")


def _warn(message: str) -> None:
    print(f"threadcheck: warning: {message}", file=sys.stderr)


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": _run,
    "explore": _explore,
    "replay": _replay,
}
