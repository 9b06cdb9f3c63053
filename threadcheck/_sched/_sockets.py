"""Blocking socket calls in controlled threads: other threads run meanwhile.

A pool job that fetches a URL with ``urllib`` from the program's own
twisted.web server blocks in ``recv`` until the reactor answers; holding the
turn there, it would wait for a reactor that cannot run, until its timeout (a
false failure) or the watchdog (10 s). During a schedule, a controlled
thread's blocking ``recv``/``recv_into``/``recvfrom``/``recvfrom_into``/
``accept``, ``select.select`` and a ``selectors`` selector's ``select`` (a
``socketserver`` server's loop, in a thread beside the reactor) first wait, through
:meth:`Scheduler.wait_for_any`, until the file is ready, letting the others
run; its timeout is counted in virtual
time. Best effort, as all real I/O: its timing is not replayed, and a search
that met it is no proof.

Thread safety: as the scheduler's; the replacements act only in the thread
holding the turn.
"""

from __future__ import annotations

import functools
import select
import selectors
import socket
from collections.abc import Callable
from typing import Any

from threadcheck._sched import _loopback
from threadcheck._sched._core import Scheduler, here

_READS = ("recv", "recv_into", "recvfrom", "recvfrom_into", "accept")


def replacements() -> list[tuple[Any, str, Any]]:
    """(target, name, replacement) for :class:`~threadcheck._sched._patch.Patches`."""
    reads = [
        (socket.socket, name, _waits_to_read(getattr(socket.socket, name))) for name in _READS
    ]
    selectors_ = [(kind, "select", _waiting_selector(kind.select)) for kind in _selector_classes()]
    return [
        *reads,
        (select, "select", _waiting_select(select.select)),
        *selectors_,
        (socket, "socketpair", _recorded_pair(socket.socketpair)),
    ]


def _recorded_pair(real: Callable[..., Any]) -> Callable[..., Any]:
    """``socket.socketpair`` that remembers both ends: waits on them alone may
    let time jump (a selector loop's ``select(timeout=0.5)`` over its wake-up
    pair took half a second of real time, each schedule)."""

    @functools.wraps(real)
    def socketpair(*args: Any, **kwargs: Any) -> Any:
        pair = real(*args, **kwargs)
        _loopback.record_pair(pair)
        return pair

    return socketpair


def _selector_classes() -> list[type[selectors.BaseSelector]]:
    """Each ``selectors`` class with a ``select`` of its own: ``_PollLikeSelector``
    (``PollSelector``'s), ``EpollSelector`` and ``DevpollSelector``, which
    override it (``DefaultSelector`` on Linux is ``EpollSelector``: its loop held
    the turn in a real poll), ``SelectSelector`` (which holds its own
    ``select.select``, untouched by the patch of the module's), ``KqueueSelector``."""
    return [
        kind
        for kind in vars(selectors).values()
        if isinstance(kind, type)
        and issubclass(kind, selectors.BaseSelector)
        and kind is not selectors.BaseSelector
        and "select" in vars(kind)
    ]


def _waiting_selector(real: Callable[..., Any]) -> Callable[..., Any]:
    """A selector's ``select`` that, in a controlled thread, waits letting the
    others run: ``socketserver``'s ``serve_forever`` in a thread beside the
    reactor held the turn in its poll until the watchdog called it blocked."""

    def select_(self: selectors.BaseSelector, timeout: float | None = None) -> Any:
        place = here()
        if place is None or (timeout is not None and timeout <= 0):  # a poll
            return real(self, timeout)

        def files() -> tuple[list[Any], list[Any]]:
            keys = list(self.get_map().values())
            reads = [_loopback.known(k.fileobj) for k in keys if k.events & selectors.EVENT_READ]
            writes = [_loopback.known(k.fileobj) for k in keys if k.events & selectors.EVENT_WRITE]
            return reads, writes

        poll = functools.partial(real, self, 0)
        return _until_ready(place[0], poll, bool, files, "selector (real I/O)", timeout, [])

    select_.__name__ = "select"
    select_.__wrapped__ = real  # type: ignore[attr-defined]
    return select_


def _waiting_select(real: Callable[..., Any]) -> Callable[..., Any]:
    """``select.select`` that, in a controlled thread, waits letting the others
    run (a reader job's ``select([pipe], [], [], 0.5)`` held the turn while the
    job that writes the pipe could not run, and timed out)."""

    def select_(rlist: Any, wlist: Any, xlist: Any, timeout: float | None = None) -> Any:
        place = here()
        if place is None or timeout == 0:  # not controlled, or a poll
            return real(rlist, wlist, xlist, timeout)

        def files() -> tuple[list[Any], list[Any]]:
            return list(rlist), list(wlist)

        poll = functools.partial(real, rlist, wlist, xlist, 0)
        return _until_ready(place[0], poll, any, files, "select (real I/O)", timeout, ([], [], []))

    select_.__name__ = "select"
    select_.__wrapped__ = real  # type: ignore[attr-defined]
    return select_


def _until_ready(
    scheduler: Scheduler,
    poll: Callable[[], Any],
    ready: Callable[[Any], bool],
    files: Callable[[], tuple[list[Any], list[Any]]],
    why: str,
    timeout: float | None,
    nothing: Any,
) -> Any:
    """What ``poll()`` (never blocking) finds once it is ``ready``: between polls
    the thread waits on ``files()`` in the scheduler, the others running, until
    ``timeout`` virtual seconds have passed (then ``nothing``)."""
    deadline = None if timeout is None else scheduler.now + timeout
    found = poll()
    while not ready(found):
        if not scheduler.wait_for_any(*files(), why, deadline):
            return nothing
        found = poll()
    return found


def _waits_to_read(method: Callable[..., Any]) -> Callable[..., Any]:
    name = method.__name__

    def call(sock: socket.socket, *args: Any, **kwargs: Any) -> Any:
        place = here()
        timeout = sock.gettimeout()
        if place is None or timeout == 0.0:  # not controlled, or non-blocking
            return method(sock, *args, **kwargs)
        scheduler, _ = place
        deadline = None if timeout is None else scheduler.now + timeout
        while not _readable(sock):
            why = f"socket.{name} (real I/O)"
            if not scheduler.wait_for_io(sock, True, why, deadline):
                raise TimeoutError("timed out")
        return method(sock, *args, **kwargs)

    call.__name__ = name
    call.__wrapped__ = method  # type: ignore[attr-defined]
    return call


def _readable(sock: socket.socket) -> bool:
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):  # closed: the call itself says so
        return True
