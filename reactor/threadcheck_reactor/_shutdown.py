"""A thread pool that cannot finish at shutdown: its stuck workers, reported.

Twisted's shutdown joins every pool thread, for ever: one job blocked in a
worker hangs the process, and a report made at exit never appears. When the
pool has not finished ``grace`` seconds into its stop, a timer reports each
worker still running: where it is blocked and who submitted its job, on stderr
at once and in the recorder. Shutdown then goes on waiting, as Twisted's does.

Thread safety: the timer runs in its own daemon thread; it only reads the
pool's thread list and the threads' frames.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from threadcheck._affinity import AffinityChecker
from threadcheck._report import format_report


class StuckPoolWatch:
    def __init__(self, pool: Any, checker: AffinityChecker, grace: float) -> None:
        self._pool = pool
        self._checker = checker
        self._timer = threading.Timer(grace, self._report)
        self._timer.daemon = True
        self._timer.name = "threadcheck-shutdown-watch"

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()
        self._pool = None  # the timer's thread may outlive the pool: not hold it alive

    def _report(self) -> None:
        pool = self._pool
        if pool is None:
            return
        frames = sys._current_frames()
        stuck = [
            self._checker.stuck_at_shutdown(thread, frames[thread.ident])
            for thread in list(pool.threads)
            if thread.is_alive() and thread.ident in frames
        ]
        if stuck:
            try:
                sys.stderr.write(format_report(stuck))
                sys.stderr.flush()
            except (OSError, ValueError):
                pass  # stderr closed under us (the process is ending): the recorder has it
