"""A thread pool that cannot finish at shutdown: its stuck workers, reported.

Twisted's shutdown joins every pool thread, for ever: one job blocked in a
worker hangs the process, and a report made at exit never appears. When the
pool has not finished ``grace`` seconds into its stop (or into the shutdown's
'before' phase, for a worker running a job it waits on), a timer reports each
worker still running: where it is blocked and who submitted its job, on stderr
at once (from the core's pieces: the reactor does not import the reports) and
in the recorder. Shutdown then goes on waiting, as Twisted's does.

Thread safety: the timer runs in its own daemon thread; it only reads the
pool's thread list and the threads' frames.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from threadcheck import _fixes, _hidden, _stacks
from threadcheck._affinity import AffinityChecker
from threadcheck._threads import submission_on
from threadcheck._violation import Violation


class StuckPoolWatch:
    """``busy_only``: watching from the start of shutdown (its 'before' triggers
    may wait on a job's Deferred, as ``TimerService.stopService`` does), when
    idle workers are still alive: only those running a job are stuck.
    ``reported``: the threads reported already, by this reactor's other watch."""

    def __init__(
        self,
        pool: Any,
        checker: AffinityChecker,
        grace: float,
        busy_only: bool = False,
        reported: set[int] | None = None,
    ) -> None:
        self._pool = pool
        self._checker = checker
        self._busy_only = busy_only
        self._reported = reported if reported is not None else set()
        self._timer = threading.Timer(grace, self._report)
        self._timer.daemon = True
        self._timer.name = "threadcheck-shutdown-watch"
        # Ours: what the collector runs in it (a program's __del__) is not the
        # program's call, and its leaked-thread check does not see it.
        _hidden.hide(self._timer)

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()
        self._pool = None  # the timer's thread may outlive the pool: not hold it alive

    def _report(self) -> None:
        pool = self._pool
        if pool is None:
            return
        frames = _stacks.current_frames()
        threads = [
            thread
            for thread in list(pool.threads)
            if thread.is_alive()
            and thread.ident in frames
            and thread.ident not in self._reported
            and (not self._busy_only or submission_on(frames[thread.ident]) is not None)
        ]
        self._reported.update(thread.ident for thread in threads if thread.ident is not None)
        stuck = [self._checker.stuck_at_shutdown(t, frames[t.ident]) for t in threads]
        if stuck:
            try:
                sys.stderr.write("".join(_at_once(violation) for violation in stuck))
                sys.stderr.flush()
            except (OSError, ValueError):
                pass  # stderr closed under us (the process is ending): the recorder has it


def _at_once(violation: Violation) -> str:
    """A stuck worker, told while the process may hang for ever: its headline,
    stacks and fix (the report at exit, if the process gets there, groups them)."""
    lines = [f"threadcheck: {violation.headline()}", "  blocked at:"]
    lines.extend(_stacks.format_stack(violation.stack))
    if violation.submitted_from:
        lines.append("  its job was submitted from:")
        lines.extend(_stacks.format_stack(violation.submitted_from))
    lines.append(f"  fix: {_fixes.STUCK_AT_SHUTDOWN}")
    return "\n".join(lines) + "\n"
