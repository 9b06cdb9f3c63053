"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from threadcheck import Mode

from support import RunningReactor

pytest_plugins = ("pytester",)


@pytest.fixture
def running_reactor() -> Iterator[Callable[[Mode | str], RunningReactor]]:
    """Factory: ``running_reactor(mode)`` starts one; all are stopped afterwards."""
    made: list[RunningReactor] = []

    def make(mode: Mode | str = Mode.RECORD) -> RunningReactor:
        running = RunningReactor(mode)
        made.append(running)
        return running

    yield make
    for running in made:
        running.stop()
