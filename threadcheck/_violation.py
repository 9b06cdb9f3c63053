"""The violation model: what was called, from where, and how that thread came to be."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from threadcheck._stacks import Stack, innermost_user_frame


class Kind(enum.Enum):
    """Why a call was judged a violation."""

    FOREIGN_THREAD = "foreign-thread"
    """A non-thread-safe API was called from a thread that does not run the reactor."""

    BEFORE_RUN = "before-run"
    """Called before ``run()`` from a thread that neither created nor ran the reactor."""

    BLOCKING_CALL_IN_REACTOR = "blocking-call-in-reactor"
    """``blockingCallFromThread`` was called in the reactor thread: it would never return."""


@dataclass(frozen=True, slots=True)
class ThreadInfo:
    name: str
    ident: int

    def describe(self) -> str:
        return f"{self.name!r} (ident {self.ident})"


@dataclass(frozen=True, slots=True)
class Violation:
    """One non-thread-safe call made from the wrong thread.

    ``stack`` is the offending call's stack, outermost frame first, without
    threadcheck's own frames. ``spawn_site`` is where the offending thread was
    started (None when unknown: the main thread, or threads started before
    tracking began). ``submitted_from`` is the stack that handed the running
    work to a thread pool (``callInThread``/``deferToThread``), if any.
    """

    api: str
    """Qualified name of the call, e.g. ``reactor.callLater`` or ``DelayedCall.cancel``."""
    kind: Kind
    thread: ThreadInfo
    reactor_thread: ThreadInfo
    stack: Stack
    spawn_site: Stack | None
    submitted_from: Stack | None

    def summary(self) -> str:
        where = innermost_user_frame(self.stack)
        at = f" at {where.location()}" if where is not None else ""
        return f"{self.headline()}{at}"

    def headline(self) -> str:
        if self.kind is Kind.BLOCKING_CALL_IN_REACTOR:
            return (
                f"blockingCallFromThread called in the reactor thread "
                f"{self.thread.describe()}: it would deadlock"
            )
        if self.kind is Kind.BEFORE_RUN:
            return (
                f"{self.api} called before run() from thread "
                f"{self.thread.describe()}; the reactor belongs to "
                f"{self.reactor_thread.describe()}"
            )
        return (
            f"{self.api} called from thread {self.thread.describe()}; "
            f"the reactor runs in {self.reactor_thread.describe()}"
        )


class ThreadAffinityError(RuntimeError):
    """Raised in the offending call in ``raise`` mode."""

    def __init__(self, violation: Violation) -> None:
        super().__init__(violation.summary())
        self.violation = violation


class BlockingCallInReactorThreadError(ThreadAffinityError):
    """``blockingCallFromThread`` in the reactor thread; raised in every mode.

    Letting the call go on would block the reactor thread forever, waiting for
    the reactor thread to run the function.
    """


class ThreadAffinityWarning(RuntimeWarning):
    """Emitted in ``warn`` mode."""
