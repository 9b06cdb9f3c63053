"""Twisted's own reactor test suites, run on every instrumented reactor class.

The instrumented reactors inline two of Twisted's method bodies (callLater and
callFromThread), wrap the rest, and patch Deferreds, transports and ports
while they run; these suites prove they still behave as Twisted's reactors do
(asyncio's included). They run in record mode, so a violation inside
Twisted's own tests cannot change the outcome; none is expected.
"""

from __future__ import annotations

import asyncio
import os
import unittest
from typing import Any

import pytest
from twisted.internet.test.test_core import SystemEventTestsBuilder
from twisted.internet.test.test_process import ProcessTestsBuilder
from twisted.internet.test.test_tcp import (
    TCP4ConnectorTestsBuilder,
    TCPConnectionTestsBuilder,
    TCPPortTestsBuilder,
)
from twisted.internet.test.test_threads import ThreadTestsBuilder
from twisted.internet.test.test_time import TimeTestsBuilder
from twisted.internet.test.test_tls import TLSPortTestsBuilder
from twisted.internet.test.test_udp import UDPServerTestsBuilder
from twisted.internet.test.test_unix import UNIXTestsBuilder
from twisted.trial.unittest import SynchronousTestCase

from threadcheck_reactor import REACTOR_CLASSES, ThreadCheckMixin
from threadcheck_reactor._asyncio import ThreadCheckAsyncioReactor

BUILDERS = [
    SystemEventTestsBuilder,
    TimeTestsBuilder,
    ThreadTestsBuilder,
    TCPConnectionTestsBuilder,
    TCP4ConnectorTestsBuilder,
    TCPPortTestsBuilder,
    # These run the transports, ports and Deferreds checked while the reactor runs.
    TLSPortTestsBuilder,
    UDPServerTestsBuilder,
    UNIXTestsBuilder,
    ProcessTestsBuilder,
]
CLASSES = [*REACTOR_CLASSES, ThreadCheckAsyncioReactor]

built: list[ThreadCheckMixin] = []

# Fails as root on Twisted's own reactors too (it expects setuid to be refused).
_AS_ROOT: dict[str, Any] = {}
if os.getuid() == 0:
    _AS_ROOT["test_changeUID"] = unittest.skip("fails as root on Twisted's default reactor too")(
        lambda self: None
    )


def _recording_factory(reactor_class: type[ThreadCheckMixin]) -> Any:
    def make(self: SynchronousTestCase) -> ThreadCheckMixin:
        if reactor_class is ThreadCheckAsyncioReactor:
            # A loop of its own, closed after the test, as Twisted's builder
            # does: each left open kept 3 descriptors, and past 1,024 in one
            # worker select() failed the select reactor's tests that followed.
            loop = asyncio.new_event_loop()
            self.addCleanup(loop.close)
            reactor = reactor_class("record", eventloop=loop)
        else:
            reactor = reactor_class("record")
        built.append(reactor)
        return reactor

    return make


for _builder in BUILDERS:
    for _reactor_class in CLASSES:
        _name = f"Test{_builder.__name__.removesuffix('Builder')}On{_reactor_class.__name__}"
        globals()[_name] = type(
            _name,
            (_builder, SynchronousTestCase),
            {
                "reactorFactory": _recording_factory(_reactor_class),
                "__module__": __name__,
                **(_AS_ROOT if _builder is ProcessTestsBuilder else {}),
            },
        )
del _builder, _reactor_class


@pytest.fixture(autouse=True, scope="module")
def in_a_temporary_directory(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # Twisted's tests make files relative to the working directory (trial runs
    # them in _trial_temp): keep them out of the checkout.
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("twisted-conformance"))
    yield
    os.chdir(before)


@pytest.fixture(autouse=True, scope="module")
def no_violations_in_twisteds_own_tests() -> Any:
    yield
    found = [v.summary() for reactor in built for v in reactor.threadcheck.recorder.violations()]
    assert built, "no reactor was built"
    assert found == []
