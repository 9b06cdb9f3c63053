"""Small pieces of the text users read."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``1 schedule``, ``2 schedules``: reports never say "1 schedules"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def nothing_found(races: bool) -> str:
    """The headline of a run that found nothing, which says that the check ran
    (``races``: data races were looked for too)."""
    return f"threadcheck: no thread-affinity violations{' or data races' if races else ''}"


def internal_error(error: Exception, token: str | None = None) -> str:
    """The one line for an error of threadcheck's own, naming the token being replayed."""
    replaying = f" (replaying {token})" if token else ""
    if getattr(error, "user_error", False):  # a misuse the error's message explains
        return f"threadcheck: {error}{replaying}"
    what = f"{type(error).__name__}: {error}{replaying}"
    return f"threadcheck: internal error: {what}; please report it"
