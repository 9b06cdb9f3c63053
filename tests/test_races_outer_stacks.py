"""The stack outside an access, kept for the next access from the same call.

A call is known by its caller frame's id, code and instruction, without holding
the frame. A frame's id is reused once the frame is gone: a pool thread's next
job calls the same code, from the same instruction, of a new frame at the old
one's address. Its stack outside reads the same, but its submission is another.
"""

from __future__ import annotations

import sys
import threading

from threadcheck import _threads
from threadcheck._races import _shadow
from threadcheck._races._clocks import ThreadClock


def _access(tc: ThreadClock) -> None:
    _shadow._outer(tc)  # as the helper a rewritten access calls


def test_a_job_from_a_reused_frame_address_names_its_own_submission() -> None:
    tc = ThreadClock(threading.current_thread(), None)
    earlier_job: tuple[object, ...] = ("the earlier job's submission",)
    this_job: tuple[object, ...] = ("this job's submission",)

    def job() -> None:
        caller = sys._getframe(1)  # run_submitted's frame, which keeps this_job
        assert caller.f_code is _threads.run_submitted.__code__
        # What the earlier job left, had its frame been at this one's address.
        tc.frame_key = (id(caller), caller.f_code, caller.f_lasti)
        tc.frame_stack = ("kept",)
        tc.frame_submission, tc.frame_submission_at = earlier_job, 0
        _access(tc)

    _threads.run_submitted(this_job, job)
    assert tc.frame_submission is this_job
    assert tc.frame_stack == ("kept",)  # the same code path: the stack stands


def test_a_call_outside_any_job_keeps_its_stack() -> None:
    tc = ThreadClock(threading.current_thread(), None)

    def call() -> tuple[object, ...]:
        _access(tc)
        first = tc.frame_stack
        _access(tc)  # the same call: nothing captured again
        return first

    first = call()
    assert tc.frame_stack is first
    assert tc.frame_submission is None and tc.frame_submission_at is None
