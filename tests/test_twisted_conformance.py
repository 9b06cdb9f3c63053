"""Twisted's own reactor test suites, run on every instrumented reactor class.

The instrumented reactors inline two of Twisted's method bodies (callLater and
callFromThread) and wrap the rest; these suites prove they still behave as
Twisted's reactors do. They run in record mode, so a violation inside
Twisted's own tests cannot change the outcome; none is expected.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.test.test_core import SystemEventTestsBuilder
from twisted.internet.test.test_tcp import (
    TCP4ConnectorTestsBuilder,
    TCPConnectionTestsBuilder,
    TCPPortTestsBuilder,
)
from twisted.internet.test.test_threads import ThreadTestsBuilder
from twisted.internet.test.test_time import TimeTestsBuilder
from twisted.trial.unittest import SynchronousTestCase

from threadcheck_reactor import REACTOR_CLASSES, ThreadCheckMixin

BUILDERS = [
    SystemEventTestsBuilder,
    TimeTestsBuilder,
    ThreadTestsBuilder,
    TCPConnectionTestsBuilder,
    TCP4ConnectorTestsBuilder,
    TCPPortTestsBuilder,
]

built: list[ThreadCheckMixin] = []


def _recording_factory(reactor_class: type[ThreadCheckMixin]) -> Any:
    def make(self: object) -> ThreadCheckMixin:
        reactor = reactor_class("record")
        built.append(reactor)
        return reactor

    return make


for _builder in BUILDERS:
    for _reactor_class in REACTOR_CLASSES:
        _name = f"Test{_builder.__name__.removesuffix('Builder')}On{_reactor_class.__name__}"
        globals()[_name] = type(
            _name,
            (_builder, SynchronousTestCase),
            {"reactorFactory": _recording_factory(_reactor_class), "__module__": __name__},
        )
del _builder, _reactor_class


@pytest.fixture(autouse=True, scope="module")
def no_violations_in_twisteds_own_tests() -> Any:
    yield
    found = [v.summary() for reactor in built for v in reactor.threadcheck.recorder.violations()]
    assert built, "no reactor was built"
    assert found == []
