"""Helpers shared by the examples."""

from __future__ import annotations

from contextlib import suppress
from typing import Any


def stop_if_running(reactor: Any) -> None:
    """Safety-net stop: examples must end in every mode, even when the bug
    (or threadcheck's raise mode) prevented their normal stop."""
    from twisted.internet.error import ReactorNotRunning

    with suppress(ReactorNotRunning):
        reactor.stop()
