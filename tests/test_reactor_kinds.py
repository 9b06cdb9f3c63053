"""Each instrumented reactor stands in for the Twisted reactor it instruments.

Frameworks check the installed reactor's class (scrapy: ``type(reactor) ==``
the class its ``TWISTED_REACTOR`` names): the instrumented class compares
equal to Twisted's, and stays its own class everywhere else.
"""

from __future__ import annotations

import pytest
from twisted.internet.posixbase import PosixReactorBase
from twisted.python.reflect import namedAny

import threadcheck_reactor
from threadcheck_reactor import KINDS, REACTOR_KINDS, ThreadCheckMixin, reactor_class

from support import TWISTED_CLASSES, twisted_default_kind

NAMED = [kind for kind in KINDS if kind != "default"]


@pytest.mark.parametrize("kind", NAMED)
def test_each_kind_equals_the_twisted_class_it_instruments(kind: str) -> None:
    instrumented, twisted = reactor_class(kind), namedAny(TWISTED_CLASSES[kind])
    assert instrumented == twisted
    assert twisted == instrumented
    assert not (instrumented != twisted or twisted != instrumented)
    assert hash(instrumented) == hash(twisted)
    assert {twisted: kind}[instrumented] == kind


@pytest.mark.parametrize("kind", NAMED)
def test_each_kind_stays_its_own_class(kind: str) -> None:
    instrumented, twisted = reactor_class(kind), namedAny(TWISTED_CLASSES[kind])
    assert instrumented is not twisted
    assert issubclass(instrumented, ThreadCheckMixin) and issubclass(instrumented, twisted)
    # A child process re-creates its parent's reactor from type(reactor).__module__.
    assert instrumented.__module__.startswith("threadcheck_reactor.")
    others = [namedAny(TWISTED_CLASSES[other]) for other in NAMED if other != kind]
    assert all(instrumented != other for other in others)


def test_each_scheduled_class_equals_twisteds_too() -> None:
    # explore's reactor: scrapy's TWISTED_REACTOR check failed every schedule.
    from threadcheck_reactor._scheduled import SCHEDULED_CLASSES

    for scheduled in SCHEDULED_CLASSES:
        [instrumented] = [
            base for base in scheduled.__mro__ if any(base is c for c in REACTOR_KINDS.values())
        ]
        twisted = vars(instrumented)["_threadcheck_instruments"]
        assert scheduled == twisted and twisted == scheduled
        assert hash(scheduled) == hash(twisted)
        assert scheduled is not twisted and scheduled.__name__.startswith("Scheduled")


def test_only_the_instrumented_class_itself_equals_twisteds() -> None:
    subclass = type("Subclass", (reactor_class("select"),), {})
    assert subclass != namedAny(TWISTED_CLASSES["select"])
    assert subclass == subclass
    assert ThreadCheckMixin != PosixReactorBase


def test_default_kind_is_twisteds_default_on_this_platform() -> None:
    assert reactor_class("default") is reactor_class(twisted_default_kind())


def test_an_unknown_kind_is_refused_naming_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"^no instrumented 'kqueue' reactor; choose from "
    ) as info:
        reactor_class("kqueue")
    assert str(info.value).endswith(", ".join(KINDS))


def test_a_kind_this_platform_lacks_is_refused_as_such(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on macOS, which has neither poll nor epoll.
    for kind in ("poll", "epoll"):
        monkeypatch.delitem(REACTOR_KINDS, kind, raising=False)
    monkeypatch.setattr(threadcheck_reactor, "KINDS", ("default", "select", "asyncio"))
    with pytest.raises(ValueError) as info:
        reactor_class("epoll")
    assert str(info.value) == (
        "no instrumented 'epoll' reactor on this platform; choose from default, select, asyncio"
    )
