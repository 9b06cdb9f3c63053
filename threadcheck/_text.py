"""Small pieces of the text users read."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 schedule``, ``2 schedules``: reports never say "1 schedules"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
