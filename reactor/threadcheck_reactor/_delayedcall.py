"""DelayedCall whose cancel/reset/delay are checked against its reactor's thread."""

from __future__ import annotations

from threading import get_ident

from twisted.internet.base import DelayedCall

from threadcheck._affinity import AffinityChecker

DELAYED_CALL_APIS = ("DelayedCall.cancel", "DelayedCall.reset", "DelayedCall.delay")

_cancel = DelayedCall.cancel
_reset = DelayedCall.reset
_delay = DelayedCall.delay


class CheckedDelayedCall(DelayedCall):
    """Set as the class of the calls ``callLater`` returns; adds no state.

    Written out, not made by the generic ``checked`` wrapper: a timeout's
    reset and cancel are hot (one per request in a busy server), and a fixed
    signature saves the wrapper's argument packing (reset+cancel churn 1.21 ->
    1.08 in tests/benchmarks/overhead.py; inlining Twisted's bodies as well
    gained only 0.01: what is left is the ident comparison itself).
    """

    _threadcheck: AffinityChecker

    def cancel(self) -> None:
        checker = self._threadcheck
        if get_ident() != checker.owner and checker.violation("DelayedCall.cancel"):
            with checker.exempt():
                _cancel(self)
            return
        _cancel(self)

    def reset(self, secondsFromNow: float) -> None:
        checker = self._threadcheck
        if get_ident() != checker.owner and checker.violation("DelayedCall.reset"):
            with checker.exempt():
                _reset(self, secondsFromNow)
            return
        _reset(self, secondsFromNow)

    def delay(self, secondsLater: float) -> None:
        checker = self._threadcheck
        if get_ident() != checker.owner and checker.violation("DelayedCall.delay"):
            with checker.exempt():
                _delay(self, secondsLater)
            return
        _delay(self, secondsLater)


def delayed_call_type(checker: AffinityChecker) -> type[CheckedDelayedCall]:
    """A subclass bound to ``checker``, so the check needs no per-call state."""
    return type("CheckedDelayedCall", (CheckedDelayedCall,), {"_threadcheck": checker})
