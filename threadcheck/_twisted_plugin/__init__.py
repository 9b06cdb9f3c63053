"""What ``--reactor=threadcheck`` runs: configured by the environment, reports at exit.

``THREADCHECK_MODE`` picks the mode (raise, record, warn; default record),
``THREADCHECK_STALL_MS`` the stall threshold,
``THREADCHECK_JSON`` names a file for the JSON report,
``THREADCHECK_REPORT_ONLY=1`` reports violations without failing anything,
``THREADCHECK_RACES=1`` also reports data races in user code imported from
then on (test modules included), and ``THREADCHECK_RACES_INCLUDE`` names
library folders, files or modules to watch too (separated by ``os.pathsep``).

Under trial, each test that makes a violation fails (in every mode) and
violations made outside any test fail the run; under twistd, the report also
goes to the twistd log and a violation makes the exit status 1. ``trial -j``
workers and child processes that install the reactor again (Twisted's
``reactor.__module__`` convention) hand their violations to the first process,
which prints the one human-readable report on stderr at exit.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn

import threadcheck_reactor
from threadcheck import _stacks
from threadcheck._modes import Mode
from threadcheck._processes import ProcessReport, Spool
from threadcheck._report import json_path_problem
from threadcheck_reactor._stalls import threshold_from_environment

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def install(kind: str = "default") -> None:
    """Install the ``kind`` instrumented reactor (one of ``KINDS``), reporting at exit."""
    if os.path.basename(sys.argv[0]) in ("trial", "twistd"):
        # Their console-script wrapper starts the program; it is not part of it
        # (run as `../venv/bin/trial`, it was shown as the user's line).
        _stacks.register_script(sys.argv[0], "twisted")
    from threadcheck_reactor import _installers

    if _installers.redirected():
        # `threadcheck run twistd --reactor=threadcheck`: run's checker and run's
        # report (a second one, and its exit status 3, read as the program's own).
        threadcheck_reactor.install(kind=kind)
        return
    report_only = _flag("THREADCHECK_REPORT_ONLY")
    mode = os.environ.get("THREADCHECK_MODE", "record")
    try:
        Mode.parse(mode)
    except ValueError as error:
        _usage_error(f"THREADCHECK_MODE: {error}")
    try:
        threshold_from_environment()  # read again by the reactor: checked before it is made
    except ValueError as error:
        _usage_error(str(error))
    json_path = os.environ.get("THREADCHECK_JSON") or None
    problem = None if json_path is None else json_path_problem(json_path, "THREADCHECK_JSON")
    if problem is not None:
        _usage_error(problem)
    include = _race_include()
    reactor = threadcheck_reactor.install(mode, kind=kind)
    if include is not None:
        from threadcheck._races import _detector
        from threadcheck_reactor import _race_edges

        is_user_file = _stacks.user_code(include)
        _detector.start(
            reactor.threadcheck.recorder,
            is_user_file,
            include=include,
            edges=_race_edges.edges(is_user_file),
        )
    report = ProcessReport(
        reactor.threadcheck,
        Spool.join_or_create(),
        json_path=json_path,
        report_only=report_only,
        races=include is not None,
    )
    atexit.register(report.finish, sys.stderr)
    if "twisted.trial" in sys.modules:
        from threadcheck._twisted_plugin import _trial

        _trial.hook(report)
        if include is not None:
            _trial.rewrite_test_files(_stacks.user_code(include))
    if "twisted.scripts.twistd" in sys.modules:
        from threadcheck._twisted_plugin import _twistd

        _twistd.hook(report, reactor)
    elif "twisted.application.twist._twist" in sys.modules:
        from threadcheck._twisted_plugin import _twist

        _twist.hook(report)


def _usage_error(problem: str) -> NoReturn:
    """Before the program runs, as a usage error: one line, exit 2. (An exception
    would reach trial's "reactor cannot be used" wrapper, or twistd's usage.)"""
    print(f"threadcheck: error: {problem}", file=sys.stderr)
    raise SystemExit(2)


def _race_include() -> tuple[str, ...] | None:
    """What ``THREADCHECK_RACES_INCLUDE`` names; None without ``THREADCHECK_RACES``."""
    if not _flag("THREADCHECK_RACES"):
        return None
    names = [n for n in os.environ.get("THREADCHECK_RACES_INCLUDE", "").split(os.pathsep) if n]
    try:
        return _stacks.include_paths(names)
    except ValueError as error:
        _usage_error(f"THREADCHECK_RACES_INCLUDE: {error}")


def _flag(name: str) -> bool:
    """The environment's 1 or 0 for ``name``; anything else is a usage error."""
    value = os.environ.get(name, "").strip().lower()
    if value not in _TRUE + _FALSE:
        _usage_error(f"{name}={value!r}: use 1 or 0")
    return value in _TRUE
