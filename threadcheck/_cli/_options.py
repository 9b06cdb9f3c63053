"""What the commands share: exit statuses, option parsing, and the checks made
on a command line before any program runs.

A command that runs a program owns only the options before the script or
``-m module``: the rest is the program's, so argparse sees the first part only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from threadcheck import __version__

UNCAUGHT_EXCEPTION = 1  # as python exits on one
SCHEDULE_FAILED = 1  # explore and replay: a schedule failed
USAGE_ERROR = 2
VIOLATIONS_FOUND = 3
INTERRUPTED = 130  # 128 + SIGINT, as shells report a Ctrl-C


class UsageError(Exception):
    pass


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


@dataclass(frozen=True)
class Command:
    """One ``threadcheck`` command."""

    name: str
    add: Callable[[Any], None]
    """Adds its parser to the subparsers object."""
    run: Callable[[argparse.Namespace], int]
    """Runs it; returns the exit status."""
    value_options: frozenset[str]
    """Its options that take a separate value: the first other non-option starts
    the program's command line."""
    takes_token: bool = False
    """A token comes before the program (``replay``)."""


def parse(argv: list[str], commands: Sequence[Command]) -> argparse.Namespace:
    """Parse threadcheck's arguments, leaving the program's command line alone."""
    command_at = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
    name = argv[command_at] if command_at < len(argv) else None
    command = next((command for command in commands if command.name == name), None)
    if command is None:
        return _parser(commands).parse_args(argv)  # --help, --version or a usage error
    rest = argv[command_at + 1 :]
    if command.takes_token:
        options, module, target = _split_token(rest, command.value_options)
    else:
        options, module, target = _split_program(rest, command.value_options)
    parser = _parser(commands)
    args = parser.parse_args([*argv[: command_at + 1], *options])
    args.module, args.target = module, target
    separated = "--" in rest[: len(rest) - len(target)]  # `explore -- prog.py --json x`
    program = [] if separated else target[1:] if module is None else target
    args.misplaced = _misplaced_options(parser, command.name, program)
    return args


def warn_of_misplaced_options(args: argparse.Namespace) -> None:
    """Once, in the process that runs the command (not before a re-execution)."""
    if args.misplaced:
        print(
            f"threadcheck: warning: {' '.join(args.misplaced)} after the program is the"
            f" program's argument; threadcheck {args.command}'s options go before the script"
            " or -m module (or write -- before the script: the arguments are the program's)",
            file=sys.stderr,
        )


def _misplaced_options(
    parser: argparse.ArgumentParser, name: str, program: list[str]
) -> list[str]:
    """The program's arguments that are this command's own options (``explore
    prog.py --time 60``): they are the program's, which users rarely mean. Not
    those after a ``--`` of the program's (``prog.py -- --json out.json``)."""
    if name == "run":  # its programs (twistd, trial) take --reactor, --help of their own
        return []
    if "--" in program:
        program = program[: program.index("--")]
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    own = set(subparsers.choices[name]._option_string_actions) - {"-h", "--help", "-m"}
    return [arg for arg in program if arg.partition("=")[0] in own]


def _parser(commands: Sequence[Command]) -> argparse.ArgumentParser:
    parser = Parser(prog="threadcheck", description="Thread-safety checking for Twisted programs.")
    parser.add_argument("--version", action="version", version=f"threadcheck {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in commands:
        command.add(subparsers)
    return parser


def program_command(
    subparsers: Any, name: str, help: str, description: str, usage: str, epilog: str
) -> argparse.ArgumentParser:
    """A command that runs a program: its parser, with the program's arguments for --help."""
    command: argparse.ArgumentParser = subparsers.add_parser(
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


def add_program_arguments(command: argparse.ArgumentParser) -> None:
    # For --help only: _split_program takes these off before argparse sees them.
    command.add_argument(
        "-m", dest="module", metavar="module", help="run a module, like python -m"
    )
    command.add_argument("target", nargs="*", metavar="script.py", help="script and its arguments")


def positive(kind: Callable[[str], float]) -> Callable[[str], float]:
    """An argparse type: ``kind``, above 0, and finite."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not 0 < value < float("inf"):  # not `<= 0`: also refuses nan
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
        return value

    return parse


def non_negative(text: str) -> float:
    """An argparse type: a finite number of seconds, 0 or more."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected 0 or a positive number, got {text!r}")
    return value


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


def _split_token(
    args: list[str], value_options: frozenset[str]
) -> tuple[list[str], str | None, list[str]]:
    """The options and token (for argparse), then the program as for ``run``."""
    options, module, rest = _split_program(args, value_options)
    if module is None and not rest and {"-h", "--help"} & set(options):
        return options, None, []  # argparse prints the help
    if module is not None or not rest:
        raise UsageError("replay: expected a token, then a script or -m module")
    more_options, module, target = _split_program(rest[1:], value_options)
    return [*options, rest[0], *more_options], module, target


def _module_argument(arg: str, rest: list[str]) -> tuple[str, list[str]]:
    if arg != "-m":
        return arg[2:], rest  # -mmodule, as python accepts
    if not rest:
        raise UsageError("argument -m: expected one argument")
    return rest[0], rest[1:]


def program_words(module: str | None, target: list[str]) -> list[str]:
    """The program as it was named on the command line: ``-m module args`` or ``script args``."""
    return ["-m", module, *target] if module is not None else target


def command_line(args: argparse.Namespace) -> str:
    """The command that ran, ``threadcheck run -m app``: the title of its views."""
    return shlex.join(["threadcheck", args.command, *program_words(args.module, args.target)])


_OUTPUTS = ("json", "html", "trace")


def check_output_paths(args: argparse.Namespace) -> None:
    """``--json``, ``--html`` and ``--trace`` can take their files (checked
    before the program runs), made absolute: the program may change directory.
    None is a Python file (``--json app.py app.py``: the report's name left out)."""
    script = getattr(args, "target", None) or [None]
    for option in _OUTPUTS:
        path = getattr(args, option, None)
        if path is None:
            continue
        if path.endswith((".py", ".pyw")) and (
            os.path.exists(path) or _same_file(path, script[0])
        ):
            raise UsageError(
                f"--{option}: {path} is a Python file, not a report's: give the report its name"
            )
        check_writable(path, f"--{option}")
        setattr(args, option, os.path.abspath(path))


def _same_file(path: str, other: str | None) -> bool:
    return other is not None and os.path.abspath(path) == os.path.abspath(other)


def clear_stale_reports(args: argparse.Namespace) -> None:
    """Once the input is checked and the program about to run: the files an
    earlier run left at the report paths go, since a run that ends with
    nothing to write (interrupted, say) must not leave them standing."""
    for option in _OUTPUTS:
        path = getattr(args, option, None)
        if path is not None and os.path.isfile(path):
            os.remove(path)


def said(problems: list[str]) -> bool:
    """Each problem (a report that could not be written) as one line on stderr;
    True when there were none."""
    for problem in problems:
        print(f"threadcheck: error: {problem}", file=sys.stderr)
    return not problems


def check_writable(path: str, option: str = "--json") -> None:
    """``path`` can take a report: checked before the program runs, not after."""
    from threadcheck._report import json_path_problem

    problem = json_path_problem(path, option)
    if problem is not None:
        raise UsageError(problem)


def program_is_user_code(module: str | None, target: list[str]) -> None:
    """The program's own files are the user's code, wherever it is installed
    (``-m myapp`` from site-packages: its frames lead the reports, and are the
    ones explored). Its top-level package is found without importing it."""
    import importlib.util

    from threadcheck import _stacks

    paths = [os.path.abspath(target[0])] if module is None else []
    if module is not None:
        try:
            spec = importlib.util.find_spec(module.partition(".")[0])
        except (ImportError, ValueError):
            spec = None  # said as a usage error when the program runs
        if spec is not None and spec.submodule_search_locations:  # a package: its folders
            paths = [os.path.join(p, "") for p in spec.submodule_search_locations]
        elif spec is not None and spec.origin:  # a module: its file
            paths = [spec.origin]
    # Only what would pass for an installed library: a script's folder may hold
    # the virtualenv (Twisted itself), which must stay a library.
    installed = [p for p in paths if _stacks.installed_package_of(p) is not None]
    if installed:
        _stacks.register_user_paths(installed)


def _names_a_function(script: str) -> bool:
    """``file.py:function`` or ``module:function`` of an existing file."""
    path, colon, function = script.rpartition(":")
    return bool(colon and function.isidentifier()) and (
        os.path.isfile(path) or os.path.isfile(path.replace(".", os.sep) + ".py")
    )


def check_script(script: str, subcommand: str = "run") -> None:
    """``script`` is a Python script threadcheck ``subcommand`` can run (its
    first argument: a command on PATH is pointed to by its path)."""
    if not os.path.exists(script):
        command = shutil.which(script) if os.sep not in script else None
        before = " TOKEN" if subcommand == "replay" else ""
        hint = ""
        if command is not None:
            hint = f" (the command's script: threadcheck {subcommand}{before} {command} ...)"
        elif _names_a_function(script):
            hint = (
                f" (threadcheck {subcommand} runs a program; explore a scenario function"
                " from Python: threadcheck.explore(module.function), see docs/explore.md)"
            )
        raise UsageError(f"no such file: {script}{hint}")
    if os.path.isdir(script) and not os.path.exists(os.path.join(script, "__main__.py")):
        raise UsageError(f"not a script, and has no __main__.py: {script}")
    if os.path.isfile(script):
        with open(script, "rb") as source:
            if b"\0" in source.read():  # 3.10 compiles it to a ValueError, not a SyntaxError
                raise UsageError(f"not a Python script (it holds null bytes): {script}")
