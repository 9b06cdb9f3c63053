"""``threadcheck explore``: the program once per schedule, under the controlled scheduler.

The hash seed is pinned (the command re-executes itself with PYTHONHASHSEED=0
unless it is set). Exit status: 0 when the budget is spent clean (not a
proof), 1 with the shrunk schedule and its replay command when a schedule
fails, 2 for usage errors, 130 on Ctrl-C.

What ``replay`` shares with it (checking the program, the target, the hash
seed) lives here too.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from typing import TYPE_CHECKING, Any

from threadcheck._cli._options import (
    INTERRUPTED,
    SCHEDULE_FAILED,
    USAGE_ERROR,
    Command,
    UsageError,
    add_program_arguments,
    check_output_paths,
    check_script,
    clear_stale_reports,
    command_line,
    non_negative,
    positive,
    program_command,
    program_is_user_code,
    program_words,
    said,
    warn_of_misplaced_options,
)
from threadcheck._sched._seed import hash_seed
from threadcheck._text import plural

if TYPE_CHECKING:
    from threadcheck._sched._progress import Progress
    from threadcheck._sched._report import ExploreResult
    from threadcheck._sched._targets import ProgramTarget

EXPLORE_STATUS_HELP = f"""\
exit status:
  0    the budget was spent (or the strategy exhausted) without a failure; not a proof,
       unless dpor printed "every interleaving explored"
  {SCHEDULE_FAILED}    a schedule failed: the shrunk schedule and its replay command are printed
  {USAGE_ERROR}    usage error; or inconclusive: no schedule ran, or the program cannot start
  {INTERRUPTED}  interrupted by Ctrl-C (143: by SIGTERM)
"""

_HASH_SEED = "PYTHONHASHSEED"


def _add(subparsers: Any) -> None:
    from threadcheck._sched._core import DEFAULT_MAX_DELAY
    from threadcheck._sched._explore import DEFAULT_BUDGET
    from threadcheck._sched._points import DEFAULT_GRANULARITY, GRANULARITIES
    from threadcheck._sched.strategies import DEFAULT, SPELLINGS

    explore = program_command(
        subparsers,
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
            "[--granularity G] [--include PATH ...] [--max-delay SECONDS] [--races] "
            "[--json PATH] [--html PATH] [--trace PATH]"
        ),
        epilog=EXPLORE_STATUS_HELP,
    )
    limits = explore.add_mutually_exclusive_group()
    limits.add_argument(
        "--budget",
        type=positive(int),
        metavar="N",
        help=f"run at most N schedules (default {DEFAULT_BUDGET})",
    )
    limits.add_argument(
        "--time", type=positive(float), metavar="SECONDS", help="explore for SECONDS instead"
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
            "each attribute/subscript/global access, container mutator call and loop step, "
            f"line or instruction (default "
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
    explore.add_argument(
        "--max-delay",
        type=non_negative,
        default=DEFAULT_MAX_DELAY,
        metavar="SECONDS",
        help="let time pass while threads could run (a sleep ends, a timeout fires "
        "before a preempted thread goes on), holding them at most SECONDS of virtual "
        f"time; 0: only when every thread waits (default {DEFAULT_MAX_DELAY:g})",
    )
    explore.add_argument(
        "--races",
        action="store_true",
        help="a data race in your code (two threads, one location, one writing, nothing "
        "ordering them) fails the schedule it happens in, even if nothing else does",
    )
    explore.add_argument("--json", metavar="PATH", help="also write the outcome as JSON to PATH")
    add_view_arguments(explore)
    add_program_arguments(explore)


def add_view_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--html",
        metavar="PATH",
        help="also write the failing schedule as a self-contained HTML page to PATH",
    )
    command.add_argument(
        "--trace",
        metavar="PATH",
        help="also write the failing schedule as a Chrome trace (Perfetto, chrome://tracing)",
    )


def write_views(args: argparse.Namespace, result: ExploreResult, status: int) -> int:
    """Write the views asked for; a path that cannot be written turns a pass into 2."""
    if args.html is None and args.trace is None:
        return status
    from threadcheck._view._outputs import write_views as write

    written = said(write(result, command_line(args), html=args.html, trace=args.trace))
    return status or (0 if written else USAGE_ERROR)


def _explore(args: argparse.Namespace) -> int:
    from threadcheck._sched._progress import Progress

    _check_explore_options(args)
    check_program(args)
    clear_stale_reports(args)
    pin_hash_seed(args.invocation, "0")
    warn_of_misplaced_options(args)  # here: not again after a re-execution
    if sys.flags.optimize:
        print(
            "threadcheck: warning: python runs with -O (or PYTHONOPTIMIZE): the program's "
            "assert statements are stripped, and what only they check is not seen",
            file=sys.stderr,
        )
    with Progress(sys.stderr, signals=(signal.SIGINT, signal.SIGTERM)) as progress:
        try:
            result = _exploration(args, progress)
        except KeyboardInterrupt:
            progress.clear()
            schedules = plural(progress.schedules, "schedule")
            said = (
                f"after {schedules}, no failure seen so far"
                if progress.schedules
                else "before any schedule ran: nothing explored"
            )
            print(f"threadcheck: interrupted {said}", file=sys.stderr)
            return progress.exit_status
    problem = _program_error(result)
    if problem is not None:
        raise UsageError(problem)
    if result.inconclusive:
        if args.json is not None:  # an outcome too: the job's JSON says so, and the views
            _write_outcome(args.json, result)
        write_views(args, result, USAGE_ERROR)
        raise UsageError(result.report().strip().removeprefix("threadcheck: "))
    stopped = result.shrink_interrupted and progress.received is not None
    if stopped:
        result.interrupted_by = "Ctrl-C" if progress.received == signal.SIGINT else "SIGTERM"
    sys.stderr.write(result.report())
    # Stopped while shrinking: 130 or 143, with what was found so far printed.
    status = progress.exit_status if stopped else SCHEDULE_FAILED if result.found else 0
    if args.json is not None and not _write_outcome(args.json, result):
        status = status or USAGE_ERROR
    status = write_views(args, result, status)
    return status


# Failing on every schedule with one of these is the program not starting (a typo,
# a missing dependency imported at the top of a module), not a race: no step
# table, no token. Not an import a handler makes later, once the program runs.
_SYNTAX_ERRORS = frozenset({"SyntaxError", "IndentationError", "TabError"})
_PROGRAM_ERRORS = _SYNTAX_ERRORS | {"ImportError", "ModuleNotFoundError"}


def _program_error(result: ExploreResult) -> str | None:
    failure = result.failure
    if failure is None or not result.every_schedule or failure.what not in _PROGRAM_ERRORS:
        return None
    where = failure.location
    if failure.what in _SYNTAX_ERRORS:
        return failure.message  # python's message names the file and line
    if where is None or not where.endswith(" in <module>") or failure.kind != "exception":
        return None
    path, _, rest = where.partition(":")
    return f"{failure.message} ({os.path.basename(path)}:{rest.split(' ')[0]})"


COMMAND = Command(
    "explore",
    _add,
    _explore,
    frozenset(
        {
            "--budget",
            "--time",
            "--strategy",
            "--seed",
            "--granularity",
            "--include",
            "--max-delay",
            "--json",
            "--html",
            "--trace",
        }
    ),
)


def _check_explore_options(args: argparse.Namespace) -> None:
    from threadcheck._sched._explore import checked_strategy
    from threadcheck._stacks import include_paths

    try:
        checked_strategy(args.strategy, args.seed, args.granularity, 1)
    except ValueError as error:
        raise UsageError(f"--strategy: {error}") from None
    try:
        args.include = list(include_paths(args.include))
    except ValueError as error:
        raise UsageError(f"--include: {error}") from None
    check_output_paths(args)


def _exploration(args: argparse.Namespace, progress: Progress) -> ExploreResult:
    from threadcheck._sched._explore import DEFAULT_BUDGET, Budget, explore
    from threadcheck._sched._runner import Settings

    return explore(
        program_target(args),
        budget=Budget(None, args.time) if args.time else Budget(args.budget or DEFAULT_BUDGET),
        strategy=args.strategy,
        seed=args.seed,
        settings=Settings(
            granularity=args.granularity,
            include=tuple(args.include),
            max_delay=args.max_delay,
            races=args.races,
        ),
        replay_command=lambda token: _replay_command(token, args.module, args.target),
        progress=progress,
        shrink_progress=progress.shrinking,
    )


def check_program(args: argparse.Namespace) -> None:
    """The script or module exists; ``sys.path`` begins as python would begin it."""
    target: list[str] = args.target
    if args.module is None and not target:
        raise UsageError(f"{args.command}: expected a script or -m module")
    if args.module is None:
        check_script(target[0], args.command)
        path = os.path.abspath(target[0])
        sys.path[0] = path if os.path.isdir(path) else os.path.dirname(path)
    else:
        sys.path[0] = os.getcwd()
        _check_module_unimported(args.module)


def program_target(args: argparse.Namespace) -> ProgramTarget:
    from threadcheck import _stacks
    from threadcheck._sched._targets import ProgramTarget

    # The console-script wrapper is how the program starts, not part of it.
    _stacks.register_script(sys.argv[0], "threadcheck")
    program_is_user_code(args.module, args.target)
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


def pin_hash_seed(invocation: list[str] | None, seed: str) -> None:
    """Re-execute this command with PYTHONHASHSEED set, unless it is set already.

    Set iteration order follows string hashes: with a random seed, the same
    decisions lead elsewhere, and a replay token would not replay.
    """
    if hash_seed() != "random":
        return
    # As started (interpreter flags, the console script or -m threadcheck), unless
    # main() was handed its arguments.
    command = sys.orig_argv[1:] if invocation is None else ["-m", "threadcheck", *invocation]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *command], {**os.environ, _HASH_SEED: seed})


def _replay_command(token: str, module: str | None, target: list[str]) -> str:
    return shlex.join(["threadcheck", "replay", token, *program_words(module, target)])


def _bounded_by(result: ExploreResult) -> list[str]:
    """What left interleavings out of a finished search: what thinned it, or the
    strategy's own bound (``bounded:1``: at most 1 preemption)."""
    from threadcheck._sched._report import strategy_bound

    bound = strategy_bound(result.strategy)
    if result.thinned or not result.exhausted or result.proof or bound is None:
        return list(result.thinned)
    return [bound]


def _write_outcome(path: str, result: ExploreResult) -> bool:
    """Write the outcome as JSON; one line on stderr (and False) if that fails."""
    failure = result.failure
    outcome = {
        "found": result.found,
        "inconclusive": result.inconclusive,
        "token": result.token,
        "schedules": result.schedules,
        "distinct": result.distinct,
        "exhausted": result.exhausted,
        "proof": result.proof,
        "bounded_by": _bounded_by(result),
        "failure": None
        if failure is None
        else {
            "kind": failure.kind,
            "message": failure.message,
            "thread": failure.thread,
            "location": failure.location,
        },
    }
    try:
        with open(path, "w", encoding="utf-8") as file:
            json.dump(outcome, file, indent=2)
            file.write("\n")
    except OSError as error:
        print(
            f"threadcheck: error: cannot write {path}: {error.strerror or error}", file=sys.stderr
        )
        return False
    return True
