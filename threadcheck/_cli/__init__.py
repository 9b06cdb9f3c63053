"""The ``threadcheck`` command: ``run``, ``explore`` and ``replay`` a Twisted program.

Everything from the script or ``-m module`` on is the program's command line,
as with ``python -m`` and ``coverage run -m``: the command's own options go
before it (``replay``'s token too), and ``--`` ends them.

One module per command (``_run``, ``_explore``, ``_replay``), over the shared
option parsing and checks of ``_options``; each command's module documents its
exit statuses.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from threadcheck import _stacks
from threadcheck._cli import _explore, _replay, _run
from threadcheck._cli._options import (
    INTERRUPTED,
    SCHEDULE_FAILED,
    UNCAUGHT_EXCEPTION,
    USAGE_ERROR,
    VIOLATIONS_FOUND,
    Command,
    UsageError,
    parse,
)
from threadcheck._text import internal_error

__all__ = [
    "INTERRUPTED",
    "SCHEDULE_FAILED",
    "UNCAUGHT_EXCEPTION",
    "USAGE_ERROR",
    "VIOLATIONS_FOUND",
    "main",
]

COMMANDS: tuple[Command, ...] = (_run.COMMAND, _explore.COMMAND, _replay.COMMAND)


def main(argv: Sequence[str] | None = None) -> int:
    status = _main(argv)
    if "threadcheck._sched._watchdog" in sys.modules:
        from threadcheck._sched._watchdog import exit_if_abandoned

        # The schedules' leftovers freed as the interpreter ends (an asyncio loop
        # whose daemon thread never returned): their finalizers' errors are not
        # the program's, whose process ended with its threads.
        sys.unraisablehook = lambda unraisable: None

        # A thread an exploration left blocked would hang the interpreter's
        # exit (its last resort exits 1): every status ends the process here.
        exit_if_abandoned(status)
    return status


def _main(argv: Sequence[str] | None) -> int:
    args = None
    try:
        args = parse(list(sys.argv[1:] if argv is None else argv), COMMANDS)
        if args.command is None:
            raise UsageError("missing command (try: threadcheck run script.py)")
        args.invocation = None if argv is None else list(argv)
        command = next(command for command in COMMANDS if command.name == args.command)
        return command.run(args)
    except UsageError as error:
        print(f"threadcheck: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:  # before a command took Ctrl-C over (while starting)
        print("threadcheck: interrupted", file=sys.stderr)
        return INTERRUPTED
    except Exception as error:  # ours, not the program's (each command catches those)
        shadowing = _shadowing(error)
        if shadowing is not None:
            print(f"threadcheck: error: the program cannot start: {shadowing}", file=sys.stderr)
            return USAGE_ERROR
        print(internal_error(error, getattr(args, "token", None)), file=sys.stderr)
        return USAGE_ERROR


def _shadowing(error: Exception) -> str | None:
    """A module of the program's own (``attrs.py`` beside it) found in place of
    one that Twisted or threadcheck imports: the program's doing, not ours."""
    if not isinstance(error, ImportError):
        return None
    path = error.path
    if path is None or not _stacks.is_user_code(path):
        return None
    return (
        f"{error}: the program's own {os.path.basename(path)} shadows the {error.name!r} "
        "module that Twisted or threadcheck imports; rename it"
    )
