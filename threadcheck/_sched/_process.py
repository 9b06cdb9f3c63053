"""What a whole program changes in the process, put back after each schedule.

Each schedule runs the program as a new process would: what one schedule's
program set (its arguments, ``sys.path``, a flag kept on ``sys``, its working
folder, its environment, its hooks and limits, a module it made by hand) would
otherwise be what the next one starts with, and a failure outlived its
schedule (a plugin host that loads a plugin only once per process failed every
schedule after the first).

Thread safety: entered and left by the exploring thread, between schedules.
"""

from __future__ import annotations

import functools
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from threadcheck import _stacks

_SYS_HOOKS = ("excepthook", "displayhook", "unraisablehook", "breakpointhook")


@contextmanager
def as_in_a_new_process() -> Iterator[None]:
    """Within: the program changes the process; after: as it was before."""
    argv = sys.argv
    path = list(sys.path)
    sys_names = set(vars(sys))
    cwd = os.getcwd()
    environ = dict(os.environ)
    modules = set(sys.modules)
    restores = [_kept(get, set_) for get, set_ in _SETTINGS]
    try:
        yield
    finally:
        sys.argv = argv
        sys.path[:] = path
        for name in set(vars(sys)) - sys_names:  # an error to raise at exit, a flag
            delattr(sys, name)
        os.chdir(cwd)
        if os.environ != environ:
            os.environ.clear()
            os.environ.update(environ)
        for restore in restores:
            restore()
        _forget_made_modules(modules)


def _kept(get: Callable[[], Any], set_: Callable[[Any], Any]) -> Callable[[], None]:
    value = get()
    return lambda: set_(value) if get() is not value else None


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_SETTINGS: list[tuple[Callable[[], Any], Callable[[Any], Any]]] = [
    (sys.getrecursionlimit, sys.setrecursionlimit),
    (sys.getswitchinterval, sys.setswitchinterval),
    (socket.getdefaulttimeout, socket.setdefaulttimeout),
    (_umask, os.umask),
    *(
        (functools.partial(getattr, owner, name), functools.partial(setattr, owner, name))
        for owner, name in [(threading, "excepthook"), *((sys, hook) for hook in _SYS_HOOKS)]
    ),
]
"""What a program sets for its process (a getter and a setter each): its limits,
its socket timeout, its file mode mask, its error hooks (a hook over the last
schedule's state would report this one's errors)."""


def _forget_made_modules(before: set[str]) -> None:
    """Drop the modules the program made by hand (``types.ModuleType``, no file
    and no import spec) in a package of its own or in none: a new process has
    none of them. A library's (``six.moves``) stay with their library."""
    for name in set(sys.modules) - before:
        module = sys.modules[name]
        if getattr(module, "__spec__", None) is not None or hasattr(module, "__file__"):
            continue
        top = sys.modules.get(name.partition(".")[0])
        filename = getattr(top, "__file__", None) if top is not None else None
        if (
            top is None
            or top is module
            or (isinstance(filename, str) and _stacks.is_user_code(filename))
        ):
            del sys.modules[name]
