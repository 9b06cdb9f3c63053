"""The reactor's thread pool, remembering which stack submitted each piece of work."""

from __future__ import annotations

import functools
from collections.abc import Callable
from sys import _getframe
from types import CodeType
from typing import Any

from twisted.internet import threads
from twisted.python.threadpool import ThreadPool

from threadcheck import _stacks, _threads

_call_in_thread_with_callback = ThreadPool.callInThreadWithCallback  # super() costs a lookup

_DEFERRED_RESULT = next(
    (
        c
        for c in threads.deferToThreadPool.__code__.co_consts
        if getattr(c, "co_name", "") == "onResult"
    ),
    None,
)
"""deferToThread's onResult: it only hands the result to the reactor (no wrapping: it is hot)."""


passed_through: CodeType | None = None
"""The code of a wrapper of ours around ``callInThreadWithCallback``
(``--trace``'s): not the submitter's frame, nor one of the few kept."""


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
        # capture_raw(skip=1, limit=SUBMISSION_DEPTH), written out: this runs
        # for every deferToThread, and the call and loop cost half as much again.
        caller = _getframe(1)
        if caller.f_code is passed_through and caller.f_back is not None:
            caller = caller.f_back  # --trace's wrapper: the submitter is past it
        back = caller.f_back
        outer = back.f_back if back is not None else None
        if outer is None:
            submission = _stacks.capture_raw(skip=1, limit=_stacks.SUBMISSION_DEPTH)
        else:
            submission = (
                caller.f_code,
                caller.f_lasti,
                back.f_code,  # type: ignore[union-attr]
                back.f_lasti,  # type: ignore[union-attr]
                outer.f_code,
                outer.f_lasti,
            )
        on_result = onResult
        if on_result is not None and getattr(on_result, "__code__", None) is not _DEFERRED_RESULT:
            # The caller's own onResult runs in the pool thread, after the job: as
            # part of the same submitted work (deferToThread's only hands over).
            on_result = functools.partial(_threads.run_submitted, submission, on_result)
        _call_in_thread_with_callback(
            self, on_result, _threads.run_submitted, submission, func, *args, **kw
        )
