"""DelayedCall whose cancel/reset/delay are checked against its reactor's thread."""

from __future__ import annotations

from threading import get_ident

from twisted.internet import error
from twisted.internet.base import DelayedCall

from threadcheck._affinity import AffinityChecker
from threadcheck_reactor._checked import checked

DELAYED_CALL_APIS = ("DelayedCall.cancel", "DelayedCall.reset", "DelayedCall.delay")

_cancel = DelayedCall.cancel
_init_names = DelayedCall.__init__.__code__.co_names
_reset = DelayedCall.reset
_delay = DelayedCall.delay

# The names Twisted's cancel and reset bodies use: while they are these, the
# bodies below are Twisted's own, written out (see InlinedDelayedCall).
_CANCEL_NAMES = (
    "cancelled", "error", "AlreadyCancelled", "called", "AlreadyCalled",
    "canceller", "debug", "repr", "_repr", "func", "args", "kw",
)  # fmt: skip
_INIT_NAMES = (
    "time", "func", "args", "kw", "resetter", "canceller", "seconds",
    "cancelled", "called", "delayed_time", "debug", "format_stack", "creator",
)  # fmt: skip
_RESET_NAMES = (
    "cancelled", "error", "AlreadyCancelled", "called", "AlreadyCalled",
    "seconds", "time", "delayed_time", "resetter",
)  # fmt: skip


class CheckedDelayedCall(DelayedCall):
    """Set as the class of the calls ``callLater`` returns; adds no state.

    Its checks are the reactor's own (:func:`threadcheck_reactor._checked.checked`:
    the wrapped method's signature, so a timeout's reset and cancel, hot in a
    busy server, pay no argument packing).
    """

    _threadcheck: AffinityChecker

    cancel = checked("DelayedCall.cancel", _cancel)
    reset = checked("DelayedCall.reset", _reset)
    delay = checked("DelayedCall.delay", _delay)


class InlinedDelayedCall(CheckedDelayedCall):
    """CheckedDelayedCall with Twisted's cancel and reset bodies written out after
    the check: the second frame was half of what churn cost (1.08 -> 1.04).
    Used only while Twisted's bodies are the ones copied (checked by the names
    they use); the conformance suites run Twisted's DelayedCall tests on it."""

    def cancel(self) -> None:
        checker = self._threadcheck
        if get_ident() != checker.owner:
            __tracebackhide__ = True  # pytest shows the user's call, not this check
            if checker.violation("DelayedCall.cancel"):
                with checker.exempt():
                    _cancel(self)
                return
        if self.cancelled:
            raise error.AlreadyCancelled
        elif self.called:
            raise error.AlreadyCalled
        self.canceller(self)
        self.cancelled = 1
        if self.debug:
            self._repr = repr(self)
        del self.func, self.args, self.kw

    def reset(self, secondsFromNow: float) -> None:
        checker = self._threadcheck
        if get_ident() != checker.owner:
            __tracebackhide__ = True
            if checker.violation("DelayedCall.reset"):
                with checker.exempt():
                    _reset(self, secondsFromNow)
                return
        if self.cancelled:
            raise error.AlreadyCancelled
        elif self.called:
            raise error.AlreadyCalled
        new_time = self.seconds() + secondsFromNow
        if new_time < self.time:
            self.delayed_time = 0.0
            self.time = new_time
            self.resetter(self)
        else:
            self.delayed_time = new_time - self.time


_BASE: type[CheckedDelayedCall] = (
    InlinedDelayedCall
    if (_cancel.__code__.co_names, _reset.__code__.co_names) == (_CANCEL_NAMES, _RESET_NAMES)
    else CheckedDelayedCall
)


INLINE_INIT = _init_names == _INIT_NAMES
"""Whether ``callLater`` may set up its calls itself: Twisted's ``__init__``
body, written out there, is still the one that sets these names."""

new_delayed_call = object.__new__


def delayed_call_type(checker: AffinityChecker) -> type[CheckedDelayedCall]:
    """A subclass bound to ``checker``, so the check needs no per-call state."""
    return type("CheckedDelayedCall", (_BASE,), {"_threadcheck": checker})
