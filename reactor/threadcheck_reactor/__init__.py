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
    ThreadCheckMixin,
    ThreadCheckReactor,
    allowed_apis,
)


class ReactorAlreadyInstalledError(RuntimeError):
    """Another reactor was installed before threadcheck could install its own."""


KINDS = ("default", "asyncio")
"""The Twisted reactors threadcheck instruments: this platform's default, and asyncio's."""


def install(
    mode: Mode | str = DEFAULT_MODE, recorder: Recorder | None = None, *, kind: str = "default"
) -> ThreadCheckMixin:
    """Install the instrumented reactor as ``twisted.internet.reactor`` and return it.

    Call it before anything imports ``twisted.internet.reactor``. If the
    instrumented reactor is already installed (say the program calls this and
    also runs under ``threadcheck run``), that reactor is returned and keeps
    the mode it was installed with: the outer choice wins.
    """
    mode = Mode.parse(mode)
    existing = sys.modules.get("twisted.internet.reactor")
    if isinstance(existing, ThreadCheckMixin):
        return existing
    if existing is not None:
        raise ReactorAlreadyInstalledError(
            f"a {type(existing).__module__}.{type(existing).__qualname__} is already the "
            "global reactor: call threadcheck.install() before anything imports "
            "twisted.internet.reactor (or use `threadcheck run`)"
        )
    from twisted.internet.main import installReactor

    reactor = _reactor_class(kind)(mode, recorder)
    installReactor(reactor)  # type: ignore[no-untyped-call]
    return reactor


def _reactor_class(kind: str) -> type[ThreadCheckMixin]:
    if kind == "asyncio":
        from threadcheck_reactor._asyncio import ThreadCheckAsyncioReactor

        return ThreadCheckAsyncioReactor
    if kind != "default":
        raise ValueError(f"no instrumented {kind!r} reactor; choose from {', '.join(KINDS)}")
    return ThreadCheckReactor


__all__ = [
    "CHECKED_APIS",
    "KINDS",
    "NOT_THREAD_SAFE",
    "REACTOR_CLASSES",
    "ReactorAlreadyInstalledError",
    "ThreadCheckMixin",
    "ThreadCheckReactor",
    "allowed_apis",
    "install",
]
