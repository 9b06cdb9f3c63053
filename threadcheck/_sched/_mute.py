"""The program's output, muted while a schedule is torn down.

The :class:`~threadcheck._sched._core.Abort` that unwinds the program's
threads reaches its own error handlers: Twisted's Deferreds catch it, trial
reports it as a test's error, a logging handler prints it. Replacing
``sys.stdout`` and ``sys.stderr`` mutes what is written through them; a
stream the program took before (trial's reporter, a ``StreamHandler``, a
Twisted log observer) writes to the file descriptor itself, so 1 and 2 go to
``os.devnull`` too, until the teardown is over.

Thread safety: called by the scheduler's running thread only.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Any


class Muted:
    def __init__(self) -> None:
        self._streams: tuple[Any, Any] | None = None
        self._descriptors: list[tuple[int, int]] = []

    def start(self) -> None:
        if self._streams is not None:
            return
        _flush()
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = _Discarded()
        with contextlib.suppress(OSError):  # no such descriptor (a daemon closed it)
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                for fd in (1, 2):
                    self._descriptors.append((fd, os.dup(fd)))
                    os.dup2(devnull, fd)
            finally:
                os.close(devnull)

    def stop(self) -> None:
        if self._streams is None:
            return
        sys.stdout, sys.stderr = self._streams
        self._streams = None
        _flush()  # what the teardown left in their buffers goes to os.devnull
        for fd, saved in reversed(self._descriptors):
            with contextlib.suppress(OSError):
                os.dup2(saved, fd)
            os.close(saved)
        self._descriptors.clear()


def _flush() -> None:
    streams: list[Any] = [sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__]
    for stream in {id(stream): stream for stream in streams if stream is not None}.values():
        with contextlib.suppress(Exception):  # closed, or the program's odd stream
            stream.flush()


class _Discarded(io.TextIOBase):
    """A text stream that keeps nothing written to it."""

    def write(self, text: str) -> int:
        return len(text)
