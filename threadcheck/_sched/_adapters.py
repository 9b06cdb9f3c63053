"""Twisted's global adapter registry across a whole program's schedules.

Each schedule imports the program's own modules afresh, as a new process
would; a module that registers an adapter as it is imported
(``registerAdapter(Default, object, IConfigured)``, a common Twisted idiom)
then met its own registration from the schedule before: "an adapter ... was
already registered", on every schedule of a correct program. The adapters
whose factories the program's modules define are unregistered when the
schedule ends; a library's stay, as the library is not imported again.

Thread safety: called by the exploring thread around one schedule; the
registration wrapper runs in whichever controlled thread imports the module,
one at a time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def forgotten_after(is_user_code: Callable[[str], bool]) -> Iterator[None]:
    """While the block runs, adapters registered with factories defined in user
    code are recorded; they are unregistered when it ends."""
    components = sys.modules.get("twisted.python.components")
    if components is None:  # no Twisted: no registry
        yield
        return
    registry: Any = components.globalRegistry
    register = registry.register
    made: list[tuple[Any, Any, str, Any]] = []

    def recording(required: Any, provided: Any, name: str, value: Any) -> None:
        register(required, provided, name, value)
        if _defined_in_user_code(value, is_user_code):
            made.append((required, provided, name, value))

    registry.register = recording
    try:
        yield
    finally:
        del registry.register  # the class's own again
        for required, provided, name, value in reversed(made):
            registry.unregister(required, provided, name, value)


def _defined_in_user_code(factory: Any, is_user_code: Callable[[str], bool]) -> bool:
    module = sys.modules.get(getattr(factory, "__module__", None) or "")
    filename = getattr(module, "__file__", None)
    return isinstance(filename, str) and is_user_code(filename)
