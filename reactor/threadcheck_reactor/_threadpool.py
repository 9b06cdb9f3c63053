"""The reactor's thread pool, remembering which stack submitted each piece of work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.python.threadpool import ThreadPool

from threadcheck import _stacks, _threads


class SubmissionTrackingThreadPool(ThreadPool):
    """Twisted's ThreadPool; work runs with its submitting stack attached.

    Thread safety: as ThreadPool's (``callInThreadWithCallback`` may be called
    from any thread).
    """

    def callInThreadWithCallback(
        self,
        onResult: Callable[[bool, Any], object] | None,
        func: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        submission = _stacks.capture_raw(skip=1, limit=_stacks.SUBMISSION_DEPTH)
        super().callInThreadWithCallback(
            onResult, _threads.run_submitted, submission, func, *args, **kw
        )
