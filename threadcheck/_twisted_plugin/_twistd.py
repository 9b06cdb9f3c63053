"""Under twistd: the report goes to the twistd log, and violations fail the exit status.

A daemonized twistd has no stderr to print to, so the human-readable report
(and the stalls') is logged as the reactor shuts down; the application runner then exits with
:data:`VIOLATIONS_FOUND` (the same status as ``threadcheck run``). Stopped by a
signal (SIGTERM), twistd ends itself with it and no exit handler runs: the
reports (stderr, ``THREADCHECK_JSON``) are written before.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from twisted.application import app
from twisted.logger import Logger

from threadcheck._processes import ProcessReport
from threadcheck._report import format_report, format_stalls

VIOLATIONS_FOUND = 3

_log = Logger(namespace="threadcheck")


def hook(report: ProcessReport, reactor: Any) -> None:
    reactor.addSystemEventTrigger("after", "shutdown", _log_report, report)
    original = app.ApplicationRunner.run

    @functools.wraps(original)
    def run(self: app.ApplicationRunner) -> None:
        original(self)  # type: ignore[no-untyped-call]
        if getattr(self, "_exitSignal", None) is not None:
            # twistd ends itself with the signal next (SIGTERM: status 143), and
            # exit handlers do not run then: the reports are written now, on the
            # process's own stderr (sys.stderr is still twistd's log here).
            report.finish(sys.__stderr__ or sys.stderr)
        elif report.violations() and not report.report_only:
            sys.exit(VIOLATIONS_FOUND)

    app.ApplicationRunner.run = run  # type: ignore[method-assign]


def _log_report(report: ProcessReport) -> None:
    violations = report.violations()
    if violations:
        _log.error("{report}", report=format_report(violations).rstrip())
    else:
        _log.info("{report}", report=report.clean_line().rstrip())
    stalls = report.checker.recorder.stalls()
    if stalls:  # they fail nothing: a warning
        _log.warn("{report}", report=format_stalls(stalls).rstrip())
