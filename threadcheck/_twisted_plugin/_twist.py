"""Under ``twist`` (Twisted's runner of services): violations fail the exit
status, and a run stopped by a signal reports before it ends.

``twist`` never daemonizes: the report goes to stderr at exit, as under
``threadcheck run``. Its ``Twist.run`` returns once the reactor stopped;
stopped by a signal (SIGTERM), it ends itself with that signal, and no exit
handler runs: the reports are written before, as under twistd.
"""

from __future__ import annotations

import sys
from typing import Any

from threadcheck._processes import ProcessReport
from threadcheck._twisted_plugin._twistd import VIOLATIONS_FOUND


def hook(report: ProcessReport) -> None:
    from twisted.application.twist import _twist

    twist: Any = _twist  # its names, private ones included, are replaced here
    original_run = twist.Twist.run
    exit_with_signal = twist._exitWithSignal

    def run(twist_options: Any) -> None:
        original_run(twist_options)
        if report.violations() and not report.report_only:
            sys.exit(VIOLATIONS_FOUND)

    def ending_with_signal(signal_number: int) -> None:
        report.finish(sys.__stderr__ or sys.stderr)
        exit_with_signal(signal_number)

    twist.Twist.run = staticmethod(run)
    twist._exitWithSignal = ending_with_signal
