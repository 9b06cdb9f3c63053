"""Switching race detection on and off for a run.

Thread safety: :func:`start` and :func:`stop` are called by one thread (the
command's or pytest's main thread), before the program's threads start and
after they end.
"""

from __future__ import annotations

from collections.abc import Callable

from threadcheck import _stacks, _threads
from threadcheck._races import _access, _clocks, _edges, _hook, _shadow
from threadcheck._races._found import RaceReporter
from threadcheck._recorder import Recorder


def start(
    recorder: Recorder | None, is_user_file: Callable[[str], bool] = _stacks.is_user_code
) -> None:
    """Record races in user modules imported from now on, into ``recorder``
    (None: into the one each schedule gives :func:`begin`)."""
    _threads.track_thread_starts()
    _edges.install()
    _hook.install(is_user_file)
    if recorder is not None:
        _shadow.set_handler(RaceReporter(recorder).found)
    _clocks.tracking = _access.enabled = True


def begin(recorder: Recorder) -> None:
    """A new run of the program (a schedule): nothing before it ordered or
    recorded, its races into ``recorder``."""
    _shadow.reset()
    _clocks.reset()
    _shadow.set_handler(RaceReporter(recorder).found)


def stop() -> None:
    _clocks.tracking = _access.enabled = False
    _shadow.set_handler(None)
    _hook.uninstall()
    _edges.uninstall()
    _shadow.reset()
    _clocks.reset()


def active() -> bool:
    return _access.enabled
