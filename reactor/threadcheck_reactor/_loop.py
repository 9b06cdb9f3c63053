"""The asyncio event loop under Twisted's asyncio reactor, checked like the reactor.

asyncio's loop is no more thread-safe than Twisted's reactor: only
``call_soon_threadsafe`` (and ``run_coroutine_threadsafe``, built on it) may be
called from another thread. asyncio checks ``call_soon`` and ``call_at`` in
debug mode only, and nothing else; a worker that completes a future
(``fut.set_result``) reaches ``loop.call_soon`` through the future's callbacks.
The loop's transports are its too: a worker's ``writer.write(data)`` sends
what it can at once and leaves the rest to the loop's buffer, unlocked
(``asyncio.transport.write``).

Thread safety: :func:`check_loop` is called by the reactor's constructor, in
the thread making it; the checks then run in any thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from threading import get_ident
from typing import Any

from threadcheck._affinity import AffinityChecker
from threadcheck_reactor._checked import checked, checked_by

LOOP_METHODS: tuple[str, ...] = (
    "call_soon",
    "call_later",
    "call_at",
    "create_task",
    "add_reader",
    "add_writer",
    "remove_reader",
    "remove_writer",
    "stop",
)
"""The loop's methods that must be called in the reactor's (the loop's) thread."""

LOOP_APIS: tuple[str, ...] = tuple(f"loop.{name}" for name in LOOP_METHODS)

TRANSPORT_METHODS: tuple[str, ...] = (
    "write",
    "writelines",
    "write_eof",
    "sendto",
    "close",
    "abort",
    "pause_reading",
    "resume_reading",
    "set_write_buffer_limits",
)
"""The methods of the loop's transports that must be called in its thread."""

TRANSPORT_APIS: tuple[str, ...] = tuple(f"asyncio.transport.{name}" for name in TRANSPORT_METHODS)

_TRANSPORT_MAKERS = (
    "_make_socket_transport",
    "_make_ssl_transport",
    "_make_datagram_transport",
    "_make_read_pipe_transport",
    "_make_write_pipe_transport",
)
"""The loop's factories of the transports it gives protocols and streams."""

_checked_classes: dict[type, type] = {}


def check_loop(loop: Any, checker: AffinityChecker) -> None:
    """Give ``loop`` (an instance) the affinity check on each of :data:`LOOP_METHODS`.

    A loop class whose instances take no attributes stays unchecked (uvloop's
    take them: checked through the generic wrapper)."""
    for name in LOOP_METHODS:
        method = getattr(loop, name, None)
        if method is None:
            continue
        if name == "call_soon" and _inlinable(loop):
            wrapper = _checked_call_soon(loop, checker)
        else:
            wrapper = checked_by(checker, f"loop.{name}", method)
        try:
            setattr(loop, name, wrapper)
        except AttributeError:
            return
    for name in _TRANSPORT_MAKERS:
        make = getattr(loop, name, None)
        if make is not None:
            setattr(loop, name, _making_checked_transports(make, checker))


def _making_checked_transports(
    make: Callable[..., Any], checker: AffinityChecker
) -> Callable[..., Any]:
    def make_checked(*args: Any, **kwargs: Any) -> Any:
        transport = make(*args, **kwargs)
        # Its own: a closed transport forgets its loop, and close() may come again.
        with contextlib.suppress(AttributeError, TypeError):  # one that takes neither
            transport._threadcheck = checker
            transport.__class__ = _checked_class(type(transport))
        return transport

    return make_checked


def _checked_class(cls: type) -> type:
    """``cls`` with :data:`TRANSPORT_METHODS` checked by the checker each of its
    transports carries (``_threadcheck``): made once per transport class (a
    wrapper per transport would compile nine functions a connection); the same
    name, so reprs and reports read as asyncio's."""
    made = _checked_classes.get(cls)
    if made is None:
        methods = {
            name: checked(f"asyncio.transport.{name}", getattr(cls, name))
            for name in TRANSPORT_METHODS
            if callable(getattr(cls, name, None))
        }
        made = type(cls.__name__, (cls,), {**methods, "__qualname__": cls.__qualname__})
        made.__module__ = cls.__module__
        _checked_classes[cls] = made
    return made


def _checked_call_soon(loop: Any, checker: AffinityChecker) -> Callable[..., Any]:
    """``loop.call_soon`` with the check in front of BaseEventLoop's own code.

    It runs for every task step and every future's callback: a wrapper (a
    second frame, ``*args`` packed twice) cost 0.4 of an asyncio workload, so
    this is ``call_soon`` with the ``_check_closed`` and ``_call_soon`` it
    calls written out (the same in Python 3.10 to 3.13;
    tests/test_asyncio_loop.py checks them). ``loop`` is a closure's cell, as
    fast as ``self``."""
    from asyncio.events import Handle

    original = loop.call_soon
    ready = loop._ready

    def call_soon(callback: Any, *args: Any, context: Any = None) -> Any:
        if get_ident() != checker.owner:
            __tracebackhide__ = True  # pytest shows the user's call, not this wrapper
            try:
                goes_on = checker.violation("loop.call_soon")
            except BaseException:
                _hand_over(loop, callback, args, context)
                raise
            if goes_on:
                with checker.exempt():
                    return original(callback, *args, context=context)
        if loop._closed:
            raise RuntimeError("Event loop is closed")
        if loop._debug:
            loop._check_thread()
            loop._check_callback(callback, "call_soon")
        handle: Any = Handle(callback, args, loop, context)
        if handle._source_traceback:
            del handle._source_traceback[-1]  # this frame: the caller's is the source
        ready.append(handle)
        return handle

    return call_soon


def _hand_over(loop: Any, callback: Any, args: tuple[Any, ...], context: Any) -> None:
    """A refused ``call_soon`` (raise mode) may come from inside a future's
    ``set_result``, which marked it done already: its callbacks still go to the
    loop's thread, the thread-safe way, or what awaits it would wait for ever."""
    with contextlib.suppress(RuntimeError):  # the loop is closed
        loop.call_soon_threadsafe(callback, *args, context=context)


def _inlinable(loop: Any) -> bool:
    from asyncio import BaseEventLoop

    return all(
        getattr(type(loop), name, None) is getattr(BaseEventLoop, name)
        for name in ("call_soon", "_call_soon", "_check_closed")
    )
