"""Switching race detection on and off for a run.

Thread safety: :func:`start` and :func:`stop` are called by one thread (the
command's or pytest's main thread), before the program's threads start and
after they end.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence

from threadcheck import _stacks, _threads
from threadcheck._races import _access, _clocks, _edges, _hook, _shadow
from threadcheck._races._found import RaceReporter
from threadcheck._races._inplace import is_test, rewrite_loaded
from threadcheck._recorder import Recorder

_undo: list[Callable[[], None]] = []


def start(
    recorder: Recorder | None,
    is_user_file: Callable[[str], bool] = _stacks.is_user_code,
    *,
    include: Sequence[str] = (),
    edges: Sequence[Callable[[], Callable[[], None]]] = (),
    detect: bool = True,
) -> None:
    """Record races in user modules imported from now on, into ``recorder``
    (None: into the one each schedule gives :func:`begin`).

    Modules under ``include`` already imported (a library the runner itself
    imported) are rewritten in place. ``edges`` are more hand-offs to carry
    happens-before (the reactor package's): each installs, and returns its undo.
    ``detect=False``: user modules are only rewritten, for the footprints of
    :mod:`._footprint`; no race is looked for.
    """
    if not detect:
        _hook.install(is_user_file)
        _rewrite_imported(include)
        _rewrite_user_modules(is_user_file)
        return
    _threads.track_thread_starts()
    # A race in an included library is reported at its lines, not folded away.
    _stacks.register_user_paths([os.path.abspath(path) for path in include])
    _edges.install()
    _undo.extend(install() for install in edges)
    _hook.install(is_user_file)
    _rewrite_imported(include)
    if recorder is not None:
        _shadow.set_handler(RaceReporter(recorder).found, recorder)
    if _shadow.sweep_on_collection not in gc.callbacks:
        gc.callbacks.append(_shadow.sweep_on_collection)
    _undo.append(_recursion_headroom())
    _clocks.tracking = _access.enabled = True


RECURSION_HEADROOM = 50
"""Frames the detector's helpers may add under the deepest call of the program:
a walk that recursed 985 deep under python hit RecursionError inside them."""


def _recursion_headroom() -> Callable[[], None]:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + RECURSION_HEADROOM)

    def undo() -> None:
        if sys.getrecursionlimit() == limit + RECURSION_HEADROOM:  # not the program's own
            sys.setrecursionlimit(limit)

    return undo


def begin(recorder: Recorder) -> None:
    """A new run of the program (a schedule): nothing before it ordered or
    recorded, its races into ``recorder``."""
    _shadow.reset()
    _clocks.reset()
    _shadow.set_handler(RaceReporter(recorder).found, recorder)


def stop() -> None:
    _clocks.tracking = _access.enabled = False
    if _shadow.sweep_on_collection in gc.callbacks:
        gc.callbacks.remove(_shadow.sweep_on_collection)
    _shadow.set_handler(None)
    _hook.uninstall()
    while _undo:
        _undo.pop()()
    _edges.uninstall()
    _shadow.reset()
    _clocks.reset()


def _rewrite_imported(include: Sequence[str]) -> None:
    if not include:
        return
    prefixes = tuple(os.path.abspath(path) for path in include)
    for module in list(sys.modules.values()):
        filename = getattr(module, "__file__", None)
        # Not threadcheck's own, in a folder that holds it (a checkout, site-packages).
        if (
            isinstance(filename, str)
            and filename.startswith(prefixes)
            and not _stacks.is_own(filename)
        ):
            rewrite_loaded(module)


def _rewrite_user_modules(is_user_file: Callable[[str], bool]) -> None:
    """Every user module already imported, rewritten in place (not its tests):
    a step through code that was not would touch what nobody knows."""
    for module in _stacks.user_modules(is_user_file):
        filename = getattr(module, "__file__", None)
        if isinstance(filename, str) and filename.endswith(".py"):
            rewrite_loaded(module, keep=is_test)


def active() -> bool:
    return _access.enabled


def lend() -> Callable[[], None]:
    """The detector running now (``threadcheck run --races``, pytest's
    ``--threadcheck-races``) is lent to an exploration, which gives each
    schedule a fresh state and maybe its own recorder: what to call after it,
    to give it back fresh, reporting where it did."""
    handlers = list(_shadow.handlers())
    tests = _shadow.tests()

    def give_back() -> None:
        _shadow.reset()
        _clocks.reset()
        _shadow.set_handler(handlers[0] if handlers else None, tests)

    return give_back


def rewriting() -> bool:
    """Whether user modules are rewritten (races detected, or footprints gathered)."""
    return _hook.installed()
