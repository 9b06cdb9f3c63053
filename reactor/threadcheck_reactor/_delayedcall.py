"""DelayedCall whose cancel/reset/delay are checked against its reactor's thread."""

from __future__ import annotations

from twisted.internet.base import DelayedCall

from threadcheck._affinity import AffinityChecker
from threadcheck_reactor._checked import checked

DELAYED_CALL_APIS = ("DelayedCall.cancel", "DelayedCall.reset", "DelayedCall.delay")


class CheckedDelayedCall(DelayedCall):
    """Set as the class of the calls ``callLater`` returns; adds no state."""

    _threadcheck: AffinityChecker

    cancel = checked("DelayedCall.cancel", DelayedCall.cancel)
    reset = checked("DelayedCall.reset", DelayedCall.reset)
    delay = checked("DelayedCall.delay", DelayedCall.delay)


def delayed_call_type(checker: AffinityChecker) -> type[CheckedDelayedCall]:
    """A subclass bound to ``checker``, so the check needs no per-call state."""
    return type("CheckedDelayedCall", (CheckedDelayedCall,), {"_threadcheck": checker})
