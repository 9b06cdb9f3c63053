"""Twisted's reactor installers, redirected to the instrumented reactors (``threadcheck run``).

A program chooses its reactor by calling an installer before anything imports
``twisted.internet.reactor``: ``asyncioreactor.install()``,
``epollreactor.install()``, scrapy's ``install_reactor(path)`` (the
``install`` beside the class it names), ``twistd --reactor``; importing
``twisted.internet.reactor`` first calls ``twisted.internet.default.install``.
Once :func:`redirect` has run, each of them installs the instrumented version
of the reactor it names, with the one checker the report reads: the program
runs on the reactor it asked for, and a framework that checks the installed
reactor's class accepts it (the instrumented classes compare equal to
Twisted's). A program that never imports the reactor installs none, as under
python.

Thread safety: :func:`redirect` once, before the program runs, in the thread
that runs it; the installers as Twisted's (a program installs one reactor).
"""

from __future__ import annotations

import functools
import importlib
import sys
from asyncio import AbstractEventLoop
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import error
from twisted.internet.main import installReactor

import threadcheck_reactor
from threadcheck import _threads
from threadcheck._affinity import AffinityChecker
from threadcheck._modes import Mode
from threadcheck_reactor import _running
from threadcheck_reactor._reactor import ThreadCheckMixin

INSTALLERS = {
    "default": "twisted.internet.default",
    "select": "twisted.internet.selectreactor",
    "poll": "twisted.internet.pollreactor",
    "epoll": "twisted.internet.epollreactor",
    "asyncio": "twisted.internet.asyncioreactor",
}
"""The module whose ``install()`` installs each kind (:data:`threadcheck_reactor.KINDS`)."""


@dataclass(frozen=True)
class _Redirect:
    checker: AffinityChecker
    stall_threshold: float | None


_redirect: _Redirect | None = None


def redirect(mode: Mode, stall_threshold: float | None) -> AffinityChecker:
    """Make Twisted's installer of every instrumented kind install it, checked by
    the returned checker, with ``stall_threshold`` (seconds; None: not watched)."""
    global _redirect
    _redirect = _Redirect(AffinityChecker(mode), stall_threshold)
    # What making the reactor up front did: where the program's threads start
    # is recorded, and a Deferred method it binds before importing the reactor
    # is the checked one.
    _threads.track_thread_starts()
    _running.patch()
    for kind in threadcheck_reactor.KINDS:
        module = importlib.import_module(INSTALLERS[kind])
        module.install = _installer(kind, module.install)  # type: ignore[attr-defined]
    return _redirect.checker


def redirected() -> bool:
    """Whether :func:`redirect` has run: then its checker is the one to install with."""
    return _redirect is not None


_chosen: list[str] = []
"""The kind ``threadcheck run --reactor`` installed before the program ran."""


class ChosenReactorConflict(error.ReactorAlreadyInstalledError):
    """The program installs a reactor of its own kind where ``--reactor`` chose
    another: a usage error of the command line, not the program's."""


def install(
    kind: str, eventloop: AbstractEventLoop | None = None, chosen: bool = False
) -> ThreadCheckMixin:
    """Install the instrumented ``kind`` reactor with the redirect's checker;
    ``chosen``: on the command line, before the program runs."""
    assert _redirect is not None, "redirect() first"
    if "twisted.internet.reactor" in sys.modules:
        # Before making one: a reactor made for nothing still opens its waker.
        if _chosen and _chosen[0] != kind:
            raise ChosenReactorConflict(
                f"--reactor {_chosen[0]} installed a reactor; the program installs the"
                f" {kind} reactor itself: drop --reactor"
            )
        raise error.ReactorAlreadyInstalledError("reactor already installed")
    if chosen:
        _chosen[:] = [kind]
    extra: dict[str, Any] = {} if eventloop is None else {"eventloop": eventloop}
    reactor = threadcheck_reactor.reactor_class(kind)(checker=_redirect.checker, **extra)
    reactor.stall_threshold = _redirect.stall_threshold
    installReactor(reactor)  # type: ignore[no-untyped-call]
    return reactor


def _installer(kind: str, twisteds: Callable[..., None]) -> Callable[..., None]:
    def install_kind() -> None:
        if not _installed_by_choice(kind):
            install(kind)

    def install_asyncio(eventloop: AbstractEventLoop | None = None) -> None:
        if not _installed_by_choice(kind):
            install(kind, eventloop)

    # With Twisted's name and module: pytest-twisted finds the default
    # reactor's class through the module of twisted.internet.default.install.
    return functools.wraps(twisteds)(install_asyncio if kind == "asyncio" else install_kind)


def _installed_by_choice(kind: str) -> bool:
    """The program installs the reactor ``--reactor`` already installed: it has it."""
    return _chosen == [kind] and "twisted.internet.reactor" in sys.modules
