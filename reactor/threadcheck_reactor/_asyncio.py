"""Twisted's asyncio reactor with thread-affinity checks (pytest-twisted ``--reactor=asyncio``).

Thread safety: as :class:`~threadcheck_reactor._reactor.ThreadCheckMixin`.
"""

from __future__ import annotations

import asyncio.events
from collections.abc import Callable
from threading import get_ident
from types import CodeType
from typing import Any

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.base import DelayedCall

from threadcheck_reactor._loop import check_loop
from threadcheck_reactor._reactor import ThreadCheckMixin, instrumented
from threadcheck_reactor._stalls import code_of

# asyncio runs each of its callbacks here (the reactor's timer, I/O and
# callFromThread hand-overs among them).
_HANDLE_RUN = code_of(asyncio.events.Handle._run)


@instrumented
class ThreadCheckAsyncioReactor(
    ThreadCheckMixin, AsyncioSelectorReactor, instruments=AsyncioSelectorReactor
):
    """Twisted's ``AsyncioSelectorReactor``, with thread-affinity checks.

    Its ``callLater`` and ``callFromThread`` are asyncio's: the checked
    ``callLater`` then asyncio's timer rescheduling (as
    ``AsyncioSelectorReactor.callLater`` does after Twisted's own), and the
    checks on ``callFromThread`` before asyncio's ``call_soon_threadsafe``.
    The loop's own non-thread-safe methods (``call_soon``, ``create_task``...:
    :data:`~threadcheck_reactor._loop.LOOP_METHODS`) are checked as the reactor's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_loop(self._asyncioEventloop, self._threadcheck)

    def callLater(
        self, delay: float, callable: Callable[..., Any], *args: object, **kw: object
    ) -> DelayedCall:
        call = ThreadCheckMixin.callLater(self, delay, callable, *args, **kw)
        if get_ident() == self._threadcheck.owner:
            self._reschedule_sooner()
        else:
            with self._threadcheck.exempt():  # reported above: the loop's call_at is part of it
                self._reschedule_sooner()
        return call

    def _reschedule_sooner(self) -> None:
        # AsyncioSelectorReactor.callLater's own lines after Twisted's callLater.
        at = self._asyncioEventloop.time() + self.timeout()  # type: ignore[operator]
        if self._scheduledAt is None or at < self._scheduledAt:
            self._reschedule()  # type: ignore[no-untyped-call]

    # Twisted types ReactorBase's and asyncio's signatures differently.
    def callFromThread(  # type: ignore[override]
        self, f: Callable[..., Any], *args: object, **kwargs: object
    ) -> None:
        if self._stopped and self._startedBefore:
            self._check_call_while_stopping(f)
        elif get_ident() == self._threadcheck.owner:
            self._check_call_from_reactor_thread(f)
        AsyncioSelectorReactor.callFromThread(self, f, *args, **kwargs)  # type: ignore[no-untyped-call]

    def _dispatch_codes(self) -> frozenset[CodeType]:
        codes = super()._dispatch_codes()
        return codes if _HANDLE_RUN is None else codes | {_HANDLE_RUN}


def install() -> None:
    """Install it the way ``--reactor=threadcheck-asyncio`` does (Twisted's
    ``reactor.__module__`` convention, as :func:`threadcheck_reactor._reactor.install`)."""
    from twisted.application.reactors import installReactor

    installReactor("threadcheck-asyncio")  # type: ignore[no-untyped-call]
