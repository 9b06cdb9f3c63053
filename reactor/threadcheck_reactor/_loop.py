"""The asyncio event loop under Twisted's asyncio reactor, checked like the reactor.

asyncio's loop is no more thread-safe than Twisted's reactor: only
``call_soon_threadsafe`` (and ``run_coroutine_threadsafe``, built on it) may be
called from another thread. asyncio checks ``call_soon`` and ``call_at`` in
debug mode only, and nothing else; a worker that completes a future
(``fut.set_result``) reaches ``loop.call_soon`` through the future's callbacks.

Thread safety: :func:`check_loop` is called by the reactor's constructor, in
the thread making it; the checks then run in any thread.
"""

from __future__ import annotations

from threading import get_ident
from typing import Any

from threadcheck._affinity import AffinityChecker
from threadcheck_reactor._signature import same_signature

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

# As _checked's template, with the checker bound in: the loop is not ours.
_CHECK_THEN_CALL = """
    if get_ident() != checker.owner:
        __tracebackhide__ = True  # pytest shows the user's call, not this wrapper
        if checker.violation(api):
            with checker.exempt():
                return original({call})
    return original({call})
"""


def check_loop(loop: Any, checker: AffinityChecker) -> None:
    """Give ``loop`` (an instance) the affinity check on each of :data:`LOOP_METHODS`.

    A loop whose instances take no attributes (uvloop's, say) stays unchecked."""
    for name in LOOP_METHODS:
        method = getattr(loop, name, None)
        if method is None:
            continue
        wrapper = same_signature(
            method, _CHECK_THEN_CALL, api=f"loop.{name}", checker=checker, get_ident=get_ident
        )
        try:
            setattr(loop, name, wrapper)
        except AttributeError:
            return
