"""A thread-safe collection of violations."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from threadcheck._violation import TestContext, Violation


class Recorder:
    """Collects violations from any number of threads; none is ever dropped.

    Thread safety: every method may be called from any thread. ``context`` is
    set by one thread (the test runner's) and read by any: a single attribute
    read or write. ``lock_factory`` is injectable so tests can observe locking.
    """

    context: TestContext | None
    """The test running now; violations captured meanwhile are charged to it."""

    def __init__(
        self, lock_factory: Callable[[], AbstractContextManager[object]] = threading.Lock
    ) -> None:
        self._lock = lock_factory()
        self._violations: list[Violation] = []
        self._stalls: list[Violation] = []
        self.context = None

    def record(self, violation: Violation) -> None:
        with self._lock:
            self._violations.append(violation)

    def record_stall(self, stall: Violation) -> None:
        """Stalls are kept apart: they are findings, not violations, and fail nothing."""
        with self._lock:
            self._stalls.append(stall)

    def stalls(self) -> list[Violation]:
        with self._lock:
            return list(self._stalls)

    def violations(self) -> list[Violation]:
        """A snapshot, in the order the violations were recorded."""
        with self._lock:
            return list(self._violations)

    def since(self, index: int) -> list[Violation]:
        """The violations recorded after the first ``index``, in order."""
        with self._lock:
            return self._violations[index:]

    def clear(self) -> list[Violation]:
        """Empty the recorder and return what it held."""
        with self._lock:
            taken, self._violations = self._violations, []
        return taken

    def __len__(self) -> int:
        with self._lock:
            return len(self._violations)
