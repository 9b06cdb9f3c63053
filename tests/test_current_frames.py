"""Other threads' frames are taken with the garbage collector off.

``sys._current_frames()`` holds the interpreter's thread-list lock while it
allocates; a collection started there that frees a ``threading.local`` takes
that lock again: the process deadlocks (CPython gh-106883, before 3.11.9 and
3.12.3). A test suite hung on it, in the shutdown watch's report.
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Iterator

import pytest

from threadcheck import _stacks


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    enabled: list[bool] = []
    real = sys._current_frames

    def current_frames() -> dict[int, object]:
        enabled.append(gc.isenabled())
        return real()

    monkeypatch.setattr(sys, "_current_frames", current_frames)
    was = gc.isenabled()
    yield enabled
    (gc.enable if was else gc.disable)()


def test_the_collector_is_off_while_the_frames_are_taken(seen: list[bool]) -> None:
    gc.enable()
    frames = _stacks.current_frames()
    assert seen == [False]
    assert gc.isenabled()
    assert threading.get_ident() in frames


def test_a_collector_the_program_turned_off_stays_off(seen: list[bool]) -> None:
    gc.disable()
    _stacks.current_frames()
    assert seen == [False]
    assert not gc.isenabled()
