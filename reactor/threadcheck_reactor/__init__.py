"""An instrumented real Twisted reactor that reports non-thread-safe calls.

``install()`` makes it the global reactor; ``trial --reactor=threadcheck`` and
``twistd --reactor=threadcheck`` do the same through the Twisted plugin.

PYTEST_DONT_REWRITE: shipped beside threadcheck's pytest plugin, and often
imported before pytest starts (``threadcheck run -m pytest``).
"""

from __future__ import annotations

import sys

from threadcheck import _stacks
from threadcheck._modes import DEFAULT_MODE, Mode
from threadcheck._recorder import Recorder

# The reactor's own frames are the check, not the bug: fold them like ours.
_stacks.register_library(__file__, "threadcheck")

from threadcheck_reactor._reactor import (  # noqa: E402
    CHECKED_APIS,
    NOT_THREAD_SAFE,
    REACTOR_CLASSES,
    REACTOR_KINDS,
    ThreadCheckMixin,
    ThreadCheckReactor,
    allowed_apis,
)


class ReactorAlreadyInstalledError(RuntimeError):
    """Another reactor was installed before threadcheck could install its own."""


KINDS: tuple[str, ...] = ("default", *REACTOR_KINDS, "asyncio")
"""The Twisted reactors threadcheck instruments on this platform: its default,
each of select, poll and epoll it has, and asyncio's."""


def install(
    mode: Mode | str = DEFAULT_MODE, recorder: Recorder | None = None, *, kind: str = "default"
) -> ThreadCheckMixin:
    """Install the instrumented ``kind`` reactor (one of :data:`KINDS`) as
    ``twisted.internet.reactor`` and return it.

    Call it before anything imports ``twisted.internet.reactor``. If the
    instrumented reactor is already installed (say the program calls this and
    also runs under ``threadcheck run``), that reactor is returned and keeps
    the mode it was installed with: the outer choice wins. Under ``threadcheck
    run`` with no reactor installed yet, ``kind`` is installed with the
    runner's mode and recorder.
    """
    mode = Mode.parse(mode)
    existing = sys.modules.get("twisted.internet.reactor")
    if isinstance(existing, ThreadCheckMixin):
        return existing
    unchecked = unchecked_reactor()
    if unchecked is not None:
        raise ReactorAlreadyInstalledError(
            f"a {unchecked} is already the global reactor: call threadcheck.install() "
            "before anything imports twisted.internet.reactor (or use `threadcheck run`)"
        )
    from threadcheck_reactor import _installers

    if _installers.redirected():
        return _installers.install(kind)
    from twisted.internet.main import installReactor

    reactor = reactor_class(kind)(mode, recorder)
    installReactor(reactor)  # type: ignore[no-untyped-call]
    return reactor


def unchecked_reactor() -> str | None:
    """The installed global reactor's class (``module.Name``), if it is not one of
    the instrumented reactors; None when none is installed or it is checked."""
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or isinstance(reactor, ThreadCheckMixin):
        return None
    return f"{type(reactor).__module__}.{type(reactor).__qualname__}"


def reactor_class(kind: str) -> type[ThreadCheckMixin]:
    """The instrumented reactor class of ``kind``; ValueError in one line naming
    :data:`KINDS` if this platform has none."""
    if kind == "asyncio":
        from threadcheck_reactor._asyncio import ThreadCheckAsyncioReactor

        return ThreadCheckAsyncioReactor
    if kind == "default":
        return ThreadCheckReactor
    if kind not in REACTOR_KINDS:
        where = " on this platform" if kind in ("select", "poll", "epoll") else ""
        raise ValueError(
            f"no instrumented {kind!r} reactor{where}; choose from {', '.join(KINDS)}"
        )
    return REACTOR_KINDS[kind]


__all__ = [
    "CHECKED_APIS",
    "KINDS",
    "NOT_THREAD_SAFE",
    "REACTOR_CLASSES",
    "REACTOR_KINDS",
    "ReactorAlreadyInstalledError",
    "ThreadCheckMixin",
    "ThreadCheckReactor",
    "allowed_apis",
    "install",
    "reactor_class",
    "unchecked_reactor",
]
