"""``threadcheck replay``: one schedule again, from the token ``explore`` printed.

Exit status: 1 when it fails again as recorded, 2 for a damaged token or a
replay that diverged (never a pass).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
from typing import Any

from threadcheck._cli._explore import (
    add_view_arguments,
    check_program,
    pin_hash_seed,
    program_target,
    write_views,
)
from threadcheck._cli._options import (
    SCHEDULE_FAILED,
    USAGE_ERROR,
    Command,
    UsageError,
    add_program_arguments,
    check_output_paths,
    clear_stale_reports,
    program_command,
    program_words,
    warn_of_misplaced_options,
)

REPLAY_STATUS_HELP = f"""\
exit status:
  {SCHEDULE_FAILED}    the schedule failed again, as recorded (the report is printed)
  {USAGE_ERROR}    usage error, a damaged token, or the replay diverged from the recorded run
"""


def _add(subparsers: Any) -> None:
    replay = program_command(
        subparsers,
        "replay",
        help="rerun the one schedule of a replay token",
        description=(
            "Rerun exactly the schedule a replay token names (threadcheck explore prints\n"
            "it), on the same program and arguments. A run that goes anywhere else is\n"
            "reported as diverged, never as a pass."
        ),
        usage="[--html PATH] [--trace PATH] TOKEN",
        epilog=REPLAY_STATUS_HELP,
    )
    replay.add_argument("token", metavar="TOKEN", help="the tc1. token explore printed")
    add_view_arguments(replay)
    add_program_arguments(replay)


def _replay(args: argparse.Namespace) -> int:
    from threadcheck._sched import _token
    from threadcheck._sched._explore import replay
    from threadcheck._sched._progress import Progress
    from threadcheck._sched.strategies import ReplayDivergenceError

    check_output_paths(args)
    if not args.token.startswith("tc") and args.target and args.target[0].startswith("tc1."):
        raise UsageError("replay: the token comes first: threadcheck replay TOKEN script.py")
    try:
        recorded = _token.decode(args.token)
    except _token.TokenError as error:
        check_program(args)  # a missing program is said first
        raise UsageError(str(error)) from None
    _refuse_a_tests_token(recorded, args.token)
    check_program(args)
    clear_stale_reports(args)
    pin_hash_seed(args.invocation, _recorded_hash_seed(recorded))
    warn_of_misplaced_options(args)  # here: not again after a re-execution
    # Ctrl-C (or SIGTERM) ends a replay stuck outside the scheduler's control at
    # once, not after the watchdog's 10 s; one that runs on finishes its schedule.
    target = program_target(args)
    with Progress(sys.stderr, signals=(signal.SIGINT, signal.SIGTERM)) as progress:
        try:
            result = replay(target, args.token, warn=_warn)
        except ReplayDivergenceError as error:
            recorded_run = str(recorded.get("target", ""))
            other = "" if _same_run(recorded_run, target.description) else _OTHER_RUN
            print(f"threadcheck: {error}{other.format(recorded_run)}", file=sys.stderr)
            return USAGE_ERROR
        except KeyboardInterrupt:
            print("threadcheck: interrupted: the replay did not finish", file=sys.stderr)
            return progress.exit_status
    sys.stderr.write(result.report())
    if result.replay_command is None:  # the views name the command that reruns it: this one
        result.replay_command = shlex.join(
            ["threadcheck", "replay", args.token, *program_words(args.module, args.target)]
        )
    status = write_views(args, result, SCHEDULE_FAILED if result.found else 0)
    return status


_OTHER_RUN = "; the token was recorded running {}: replay it with the same arguments"


def _same_run(recorded: str, description: str) -> bool:
    """Whether the replay runs the program as it was recorded: the same module
    or script name (its folder may be typed otherwise), the same arguments."""
    try:
        before, now = shlex.split(recorded), shlex.split(description)
    except ValueError:
        return True  # not a program's (nothing to say)
    if not before or not now or before[0] == "-m" or now[0] == "-m":
        return before == now or not before
    return os.path.basename(before[0]) == os.path.basename(now[0]) and before[1:] == now[1:]


def _refuse_a_tests_token(recorded: dict[str, Any], token: str) -> None:
    """A token pytest printed: its test runs in a pytest session, not as a
    program; a scenario's runs in Python."""
    from threadcheck._sched import _token

    test = str(recorded.get("target", ""))
    if "::" in test:
        raise UsageError(
            f"replay: the token is of the pytest test {test}: replay it with "
            f"pytest '{test}' --threadcheck-replay={token}"
        )
    if _token.of_a_scenario(test):
        raise UsageError(
            f"replay: the token is of the scenario {test}, not of a program: replay it "
            "in Python with threadcheck.replay(scenario, TOKEN), that scenario with the "
            "same values, as printed beside it"
        )


COMMAND = Command("replay", _add, _replay, frozenset({"--html", "--trace"}), takes_token=True)


def _recorded_hash_seed(recorded: dict[str, Any]) -> str:
    """The hash seed a token was recorded with; 0 when it was random (replay warns then)."""
    seed = str(recorded.get("hashseed", ""))
    return seed if seed.isdigit() else "0"


def _warn(message: str) -> None:
    print(f"threadcheck: warning: {message}", file=sys.stderr)
