"""threadcheck: thread-safety testing for Twisted programs.

Public API; everything in ``_private`` modules may change without notice.

PYTEST_DONT_REWRITE: the package holds a pytest plugin, and is often imported
before pytest starts (``threadcheck run -m pytest``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from threadcheck._affinity import AffinityChecker
from threadcheck._modes import DEFAULT_MODE, Mode
from threadcheck._recorder import Recorder
from threadcheck._report import SCHEMA_VERSION, format_report, to_json, write_json
from threadcheck._stacks import Frame, Stack
from threadcheck._testrun import (
    MissingViolationError,
    ThreadAffinityViolationsError,
    ThreadCheckFixture,
)
from threadcheck._threads import spawn_site, track_thread_starts
from threadcheck._violation import (
    BlockingCallInReactorThreadError,
    Kind,
    TestContext,
    ThreadAffinityError,
    ThreadAffinityWarning,
    ThreadInfo,
    Violation,
)

if TYPE_CHECKING:
    from threadcheck_reactor import ThreadCheckMixin

__version__ = "0.1.0"


def install(mode: Mode | str = DEFAULT_MODE, recorder: Recorder | None = None) -> ThreadCheckMixin:
    """Install the instrumented reactor as Twisted's global reactor and return it.

    See :func:`threadcheck_reactor.install`. Imports the reactor only when
    called, so importing threadcheck stays cheap.
    """
    import threadcheck_reactor

    return threadcheck_reactor.install(mode, recorder)


__all__ = [
    "SCHEMA_VERSION",
    "AffinityChecker",
    "BlockingCallInReactorThreadError",
    "Frame",
    "Kind",
    "MissingViolationError",
    "Mode",
    "Recorder",
    "Stack",
    "TestContext",
    "ThreadAffinityError",
    "ThreadAffinityViolationsError",
    "ThreadAffinityWarning",
    "ThreadCheckFixture",
    "ThreadInfo",
    "Violation",
    "format_report",
    "install",
    "spawn_site",
    "to_json",
    "track_thread_starts",
    "write_json",
]
