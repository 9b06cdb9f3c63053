"""What forked children found: in the parent's report (``threadcheck run``, pytest).

A program that forks (a pre-fork server, a worker made with ``os.fork``, a
``multiprocessing`` pool started by fork, a test that forks) goes on in the
child with threadcheck's hooks in place. Left alone, a ``threadcheck run``
child printed its own report and the parent, which found nothing itself, said
"no thread-affinity violations found" and exited 0; a pytest child that ended
with ``os._exit`` reported nothing, and its test passed. Instead, the child
leaves its findings in a spool the parent made before its first fork, and the
parent records them as its own (pytest: after each test, charged to the test
the child was forked in). A child that ends after the parent has reported (a
daemon that outlived it) finds the spool closed and reports them itself.

Thread safety: the fork hooks run in the forking thread, and in the child in its
only thread; the rest runs in the thread that ends the run.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from threadcheck import _report
from threadcheck._affinity import AffinityChecker
from threadcheck._processes import STALLS_SUFFIX, Spool


class Forks:
    """This run's forked children and their findings, for one checker."""

    def __init__(self, checker: AffinityChecker) -> None:
        self.checker = checker
        self.spool: Spool | None = None
        self.in_child = False
        self._counts_at_fork = (0, 0)
        self._since = (0, 0)
        """In a child: the violations and stalls its parent had when it forked."""
        self._left: int | None = None

    def before_fork(self) -> None:
        if self.spool is None:  # a child's children use its parent's spool
            folder = Path(tempfile.mkdtemp(prefix="threadcheck-forks-"))
            self.spool = Spool(folder, owner=True)
        recorder = self.checker.recorder
        self._counts_at_fork = (len(recorder), len(recorder.stalls()))

    def after_fork_in_child(self) -> None:
        self.in_child = True
        self._since = self._counts_at_fork
        self._left = None
        _end_with_a_deposit(self._leave_or_report)

    def leave(self) -> int | None:
        """In a child: leave what it found for the parent; how many violations.
        None when the parent has reported already: the child reports itself."""
        if self._left is not None:  # once: its os._exit may come after its report
            return self._left
        assert self.spool is not None, "a child without its parent's spool"
        self.checker.flush_pending()
        violations, stalls = self._since
        mode = self.checker.mode.value
        found = self.checker.recorder.since(violations)
        try:
            if found:
                self.spool.deposit(found, mode)
            if found_stalls := self.checker.recorder.stalls()[stalls:]:
                self.spool.deposit(found_stalls, mode, STALLS_SUFFIX)
        except OSError:  # the folder is gone, or closed under the deposit
            return None
        self._left = len(found)
        return self._left

    def _leave_or_report(self) -> None:
        if self.leave() is None:
            found = self.checker.recorder.since(self._since[0])
            if found:
                print(_report.format_report(found), end="", file=sys.stderr, flush=True)

    def gather(self) -> int:
        """In the parent, between tests: what its children left so far, recorded
        as its own; the spool stays open. Returns how many violations."""
        if self.spool is None or self.in_child:
            return 0
        return self._record(self.spool)

    def take_children_findings(self) -> int:
        """In the parent, before it reports: its children's findings, recorded
        as its own. The spool is closed first: a later child reports itself.
        Returns how many violations the children found."""
        if self.spool is None or self.in_child:
            return 0
        closed = self.spool.folder.with_name(f"{self.spool.folder.name}-closed")
        try:
            self.spool.folder.rename(closed)
        except OSError:
            return 0
        spool = Spool(closed, owner=True)
        try:
            return self._record(spool)
        finally:
            spool.remove()

    def _record(self, spool: Spool) -> int:
        violations, stalls = spool.collect(), spool.collect(STALLS_SUFFIX)
        recorder = self.checker.recorder
        for violation in violations:
            recorder.record(violation)
        for stall in stalls:
            recorder.record_stall(stall)
        return len(violations)


_watched: list[Forks] = []


def watch(forks: Forks) -> None:
    """Follow this process's forks for ``forks`` (the latest run's, in one process)."""
    if not _watched:  # fork hooks cannot be removed: registered once
        os.register_at_fork(before=_before, after_in_child=_after_in_child)
    _watched[:] = [forks]


def _before() -> None:
    if _watched:
        _watched[0].before_fork()


def _after_in_child() -> None:
    if _watched:
        _watched[0].after_fork_in_child()


def _end_with_a_deposit(leave: Callable[[], None]) -> None:
    """A forked child usually ends with ``os._exit`` (multiprocessing's always
    does), past ``threadcheck run``'s report: its findings are left first."""
    real_exit = os._exit

    def _exit(status: int) -> NoReturn:
        try:
            leave()
        finally:
            real_exit(status)

    os._exit = _exit
