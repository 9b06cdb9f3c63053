"""Small pieces of the text users read."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 schedule``, ``2 schedules``: reports never say "1 schedules"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def internal_error(error: Exception, token: str | None = None) -> str:
    """The one line for an error of threadcheck's own, naming the token being replayed."""
    replaying = f" (replaying {token})" if token else ""
    if getattr(error, "user_error", False):  # a misuse the error's message explains
        return f"threadcheck: {error}{replaying}"
    what = f"{type(error).__name__}: {error}{replaying}"
    return f"threadcheck: internal error: {what}; please report it"
