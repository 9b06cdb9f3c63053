"""One report for a tree of processes (``trial -j``, child processes).

The first process that installs the instrumented reactor through the Twisted
plugin owns a *spool*: a temporary folder named in the environment, which its
child processes inherit. A child that installs the reactor the same way (a
``trial -j`` worker, a test's child process) deposits its violations there as
a JSON report when it exits, and prints nothing. The owner merges the
deposits into its own report, so nothing is lost and nothing is counted twice;
its stalls too (they fail nothing).

Thread safety: :class:`ProcessReport` is used by the thread that runs the
test runner or service and by the exit handler; the recorder underneath is
written by any thread.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import IO

from threadcheck import _report
from threadcheck._affinity import AffinityChecker
from threadcheck._testrun import TestRun
from threadcheck._text import nothing_found
from threadcheck._violation import Violation

SPOOL_ENV = "THREADCHECK_SPOOL"
OWNER_ENV = "THREADCHECK_SPOOL_OWNER"
STALLS_SUFFIX = ".stalls"


class Spool:
    """The folder where child processes leave their violations."""

    def __init__(self, folder: Path, owner: bool) -> None:
        self.folder = folder
        self.owner = owner

    @classmethod
    def join_or_create(cls, environ: MutableMapping[str, str] | None = None) -> Spool:
        """The spool a parent process made, or a new one this process owns."""
        env = os.environ if environ is None else environ
        folder, owner_pid = env.get(SPOOL_ENV), env.get(OWNER_ENV)
        if folder and owner_pid != str(os.getpid()) and os.path.isdir(folder):
            return cls(Path(folder), owner=False)
        created = Path(tempfile.mkdtemp(prefix="threadcheck-spool-"))
        env[SPOOL_ENV] = str(created)
        env[OWNER_ENV] = str(os.getpid())
        return cls(created, owner=True)

    def deposit(self, violations: list[Violation], mode: str, suffix: str = ".json") -> None:
        """Leave ``violations`` for the owner (written whole, then renamed into
        place); stalls under the suffix ``.stalls``."""
        document = json.dumps(_report.to_json(violations, mode))
        handle, temporary = tempfile.mkstemp(dir=self.folder, suffix=".partial")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(document)
        os.replace(temporary, self.folder / f"{os.getpid()}-{Path(temporary).stem}{suffix}")

    def collect(self, suffix: str = ".json") -> list[Violation]:
        """Every deposit so far, removed from the spool once read."""
        violations: list[Violation] = []
        for path in sorted(self.folder.glob(f"*{suffix}")):
            violations.extend(_report.from_json(json.loads(path.read_text(encoding="utf-8"))))
            path.unlink()
        return violations

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class ProcessReport:
    """This process's violations, charged to tests when a test runner says so,
    and merged with its children's when it owns the spool."""

    def __init__(
        self,
        checker: AffinityChecker,
        spool: Spool,
        *,
        json_path: str | None = None,
        report_only: bool = False,
        races: bool = False,
    ) -> None:
        self.checker = checker
        self.races = races
        """Data races are looked for too (said in the clean line)."""
        self.tests = TestRun(checker)
        self.spool = spool
        self.json_path = json_path
        self.report_only = report_only
        self._from_children: list[Violation] = []
        self._finished: int | None = None

    def clean_line(self) -> str:
        """What a run that found nothing says (that the check ran: Z48's trial and
        twistd runs said nothing at all)."""
        return f"{nothing_found(self.races)} found\n"

    def violations(self) -> list[Violation]:
        """Everything so far: this process's, then its children's (collected now)."""
        if self.spool.owner:
            self._from_children.extend(self.spool.collect())
        return self.tests.finish() + self._from_children

    def failing_outside_tests(self) -> list[Violation]:
        """Violations that no test was failed for (and that are not expected)."""
        return [v for v in self.violations() if v.test is None and v.expected is None]

    def finish(self, stream: IO[str]) -> int:
        """At exit: a child deposits; the owner writes the reports. Returns the
        count. Once: a process that ends by a signal finishes before it (twistd)."""
        if self._finished is not None:
            return self._finished
        violations = self.violations()
        self._finished = len(violations)
        mode = self.checker.mode.value
        stalls = self.checker.recorder.stalls()
        if not self.spool.owner:
            if violations:
                self.spool.deposit(violations, mode)
            if stalls:  # a trial -j worker's stderr is a file nobody reads
                self.spool.deposit(stalls, mode, STALLS_SUFFIX)
            return len(violations)
        stalls += self.spool.collect(STALLS_SUFFIX)
        self.spool.remove()
        stream.write(_report.format_report(violations) if violations else self.clean_line())
        stream.write(_report.format_stalls(stalls))
        if self.json_path is not None:
            _report.save_json(violations, mode, self.json_path, stream)
        stream.flush()
        return len(violations)
