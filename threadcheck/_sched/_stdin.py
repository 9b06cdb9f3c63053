"""The program's standard input, read once and given to every schedule.

A whole program explored runs once per schedule, in one process: the first run
(the warm-up) read all of a piped stdin, and every schedule after it met its
end (``input()``: ``EOFError``), so ``echo CODE | threadcheck explore receive.py``
failed on every schedule, blamed on the program. What the runs read is kept,
line by line, as they read it; each run reads it again from its start, and the
real stdin only past what an earlier run read. A terminal is left alone (a
person types what the program asks: one run's answers would be another's).
Text reads only: ``sys.stdin.buffer`` is the real one.

Thread safety: reads come from the controlled threads, one at a time.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO


class RecordedInput:
    """What the program read from ``source``, for every run to read again."""

    def __init__(self, source: TextIO) -> None:
        self.source = source
        self.lines: list[str] = []
        self.ended = False

    def line(self, index: int) -> str:
        """Line ``index`` of the input ("" past its end), read from ``source`` if new."""
        while index >= len(self.lines) and not self.ended:
            line = self.source.readline()
            if line:
                self.lines.append(line)
            else:
                self.ended = True
        return self.lines[index] if index < len(self.lines) else ""

    @contextmanager
    def given(self) -> Iterator[None]:
        """``sys.stdin`` reads this input from its start, until the block ends."""
        before = sys.stdin
        sys.stdin = _Reader(self)  # type: ignore[assignment]
        try:
            yield
        finally:
            sys.stdin = before


def recorded_stdin() -> RecordedInput | None:
    """The process's stdin to record, unless it is a terminal (or there is none)."""
    stdin = sys.stdin
    try:
        if stdin is None or stdin.isatty():
            return None
    except (AttributeError, ValueError):  # closed, or no file
        return None
    return RecordedInput(stdin)


class _Reader(io.TextIOBase):
    """One run's reading of a :class:`RecordedInput`."""

    def __init__(self, recorded: RecordedInput) -> None:
        super().__init__()
        self._recorded = recorded
        self._index = 0
        self._offset = 0

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return str(getattr(self._recorded.source, "encoding", "utf-8"))

    @property
    def buffer(self) -> Any:
        return self._recorded.source.buffer

    def fileno(self) -> int:
        return self._recorded.source.fileno()

    def readable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        line = self._recorded.line(self._index)[self._offset :]
        if size is not None and 0 <= size < len(line):
            self._offset += size
            return line[:size]
        if line:
            self._index += 1
            self._offset = 0
        return line

    def read(self, size: int | None = -1) -> str:
        parts: list[str] = []
        left = -1 if size is None else size
        while left != 0:
            part = self.readline(left)
            if not part:
                break
            parts.append(part)
            left = left - len(part) if left > 0 else left
        return "".join(parts)
