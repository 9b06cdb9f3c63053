"""What happens when a violation is found."""

from __future__ import annotations

import enum


class Mode(enum.Enum):
    RAISE = "raise"
    """Raise :class:`ThreadAffinityError` in the offending call (and record it)."""

    RECORD = "record"
    """Record it for the report at the end; the call goes on. The default."""

    WARN = "warn"
    """Emit a :class:`ThreadAffinityWarning` (and record it); the call goes on."""

    @classmethod
    def parse(cls, value: Mode | str) -> Mode:
        if isinstance(value, Mode):
            return value
        try:
            return cls(value)
        except ValueError:
            choices = ", ".join(repr(m.value) for m in cls)
            raise ValueError(f"unknown mode {value!r}: choose one of {choices}") from None


DEFAULT_MODE = Mode.RECORD
