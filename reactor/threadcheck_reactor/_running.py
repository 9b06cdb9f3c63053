"""The running instrumented reactor, and the Twisted objects checked while one runs.

Deferreds, transports, web requests and ``twisted.internet.task`` objects
belong to the reactor that runs, not to a reactor instance they could name
cheaply. So their checks compare against the thread of the instrumented
reactor that is running now (``enter``/``leave``, from the reactor's
``run()``); while none runs, they report nothing.

The checks are patched into Twisted's classes once, when the first
instrumented reactor is made (and again for modules imported since, such as
twisted.web, when a reactor starts running), and stay: a bound method taken
before ``run()``, ``d.callback`` handed to ``deferToThread`` in a trial test
body say, must be the checked one. A program that makes no instrumented
reactor pays nothing. While no reactor runs, a call from the thread that ran
the last one takes the fast path, and one from any other thread a short
slow path that finds nothing running.

Thread safety: ``enter``/``leave``/``patch`` may be called from any thread (a
lock orders them); the checks read ``STATE.owner`` without a lock, a single
attribute read, as the reactor's own checks read ``checker.owner``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from threading import get_ident
from typing import Any, TypeVar

from threadcheck._affinity import AffinityChecker
from threadcheck_reactor import _signature

_F = TypeVar("_F", bound=Callable[..., Any])

Patch = tuple[Any, str, Any]
"""Set ``owner.name`` (a class's or a module's) to a checked replacement."""


class _State:
    owner = 0
    """The thread running the innermost running instrumented reactor (while none
    does, the last one to run it, or the one that made the first: its calls keep
    the fast path)."""

    checker: AffinityChecker | None = None
    """The running reactor's checker; None while none runs."""

    owners: frozenset[int] = frozenset()
    """Every thread running an instrumented reactor: their own objects are theirs."""


STATE = _State()
_running: list[AffinityChecker] = []
_patchers: list[Callable[[], list[Patch]]] = []
_patched: dict[tuple[int, str], tuple[Any, str, Any]] = {}  # -> (owner, name, original)
_LATE_MODULES = (
    "twisted.web.http",
    "twisted.web.server",
    "twisted.internet._newtls",
    "twisted.protocols.tls",
    "twisted.internet._posixstdio",
    "twisted.internet.unix",
    "twisted.internet.process",
)
"""Modules patched only once imported (importing them for it would cost every program)."""

_modules_seen: tuple[bool, ...] = ()  # which of them were imported when the patchers last ran
_reactors: list[Any] = []
"""The running reactors, told of a late module's import (see :class:`_ImportWatch`)."""
_MISSING = object()
_lock = threading.Lock()


def register(patcher: Callable[[], list[Patch]]) -> None:
    """Add a source of patches (each asked again once more modules are imported)."""
    _patchers.append(patcher)


def patch() -> None:
    """Apply every patch not applied yet; cheap when none of :data:`_LATE_MODULES`
    was imported since (an exploration makes a reactor per schedule)."""
    global _modules_seen
    present = tuple(_imported(name) for name in _LATE_MODULES)
    with _lock:
        if not STATE.owner:
            STATE.owner = get_ident()  # the installing thread: its calls take the fast path
        if present == _modules_seen:
            return
        _modules_seen = present
        for patcher in _patchers:
            for owner, name, replacement in patcher():
                if (id(owner), name) not in _patched:  # classes and modules live for ever
                    _patched[id(owner), name] = (owner, name, vars(owner).get(name, _MISSING))
                    setattr(owner, name, replacement)


def unpatch() -> None:
    """Put Twisted's own methods back (the benchmarks' plain runs); the next
    instrumented reactor made patches again."""
    global _modules_seen
    with _lock:
        for owner, name, original in _patched.values():
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        _patched.clear()
        _modules_seen = ()


def _imported(name: str) -> bool:
    """Whether module ``name`` was imported, to its end (not one another thread
    is still running: its classes may not be there yet)."""
    module = sys.modules.get(name)
    spec = getattr(module, "__spec__", None)
    return module is not None and not getattr(spec, "_initializing", False)


class _ImportWatch:
    """First on ``sys.meta_path``, it finds nothing: it sees a late module's
    import begin while a reactor runs (``from twisted.web import server`` in a
    callback), and has each running reactor patch once it is done. No cost per
    reactor iteration, one set lookup per import."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name in _LATE and _reactors:
            for reactor in list(_reactors):
                reactor.callFromThread(_catch_up, reactor)


_LATE = frozenset(_LATE_MODULES)
_WATCH = _ImportWatch()


def _catch_up(reactor: Any) -> None:
    """In ``reactor``'s thread, at its next iteration: patch what the late module
    brings, once its import (perhaps in another thread) has ended."""
    if any(n in sys.modules and not _imported(n) for n in _LATE_MODULES):
        reactor.callLater(0.01, _catch_up, reactor)
        return
    patch()


def enter(checker: AffinityChecker, reactor: Any) -> None:
    """``checker``'s ``reactor`` starts running in this thread: check objects
    against it; a late module imported from now on is patched."""
    patch()
    with _lock:
        _running.append(checker)
        _reactors.append(reactor)
        if _WATCH not in sys.meta_path:
            sys.meta_path.insert(0, _WATCH)
        _refresh()


def leave(checker: AffinityChecker, reactor: Any) -> None:
    """``checker``'s ``reactor`` has stopped running."""
    with _lock:
        _running.remove(checker)
        _reactors.remove(reactor)
        if not _reactors and _WATCH in sys.meta_path:
            sys.meta_path.remove(_WATCH)
        _refresh()


def _refresh() -> None:
    STATE.checker = _running[-1] if _running else None
    if _running:
        STATE.owner = _running[-1].owner
    STATE.owners = frozenset(checker.owner for checker in _running)


def foreign_checker(api: str) -> AffinityChecker | None:
    """The slow path, in a thread that is not the running reactor's: the checker
    to run the call exempt under when it was reported, else None."""
    __tracebackhide__ = True
    checker = STATE.checker
    if checker is None or get_ident() in STATE.owners:
        return None
    return checker if checker.violation(api) else None


def checked(api: str, original: _F, private: Callable[[Any], bool] | None = None) -> _F:
    """``original`` reporting a call from a thread other than the running reactor's
    (as :func:`threadcheck_reactor._checked.checked`, against the running reactor);
    a method with ``private`` is silent when ``private(self)``: an object the
    running reactor's thread has no part in.

    The wrapper has ``original``'s own signature: packing and unpacking
    ``*args, **kwargs`` would cost more than the check itself, paid on every
    ``transport.write`` and ``request.setHeader`` in the reactor thread.
    """
    return _signature.same_signature(  # type: ignore[return-value]
        original,
        _CHECK_THEN_CALL if private is None else _CHECK_UNLESS_PRIVATE_THEN_CALL,
        api=api,
        private=private,
        STATE=STATE,
        get_ident=get_ident,
        foreign_checker=foreign_checker,
    )


_CHECK_THEN_CALL = """
    if get_ident() != STATE.owner:
        checker = foreign_checker(api)
        if checker is not None:
            with checker.exempt():  # one mistake, one violation
                return original({call})
    return original({call})
"""

_CHECK_UNLESS_PRIVATE_THEN_CALL = """
    if get_ident() != STATE.owner and not private({first}):
        checker = foreign_checker(api)
        if checker is not None:
            with checker.exempt():  # one mistake, one violation
                return original({call})
    return original({call})
"""


def checked_methods(
    cls: type,
    prefix: str,
    names: tuple[str, ...],
    private: Callable[[Any], bool] | None = None,
) -> list[Patch]:
    """Patches checking each of ``names`` that ``cls`` itself defines (a subclass
    inheriting it is covered by the one patch), reported as ``prefix.name``;
    ``private`` as for :func:`checked`."""
    patches: list[Patch] = []
    for name in names:
        original = cls.__dict__.get(name)
        if original is not None:
            patches.append((cls, name, checked(f"{prefix}.{name}", original, private)))
    return patches
