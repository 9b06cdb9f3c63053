"""Writing the views an explore or replay command asked for (``--html``, ``--trace``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from threadcheck._activity import Activity
from threadcheck._sched._report import ExploreResult
from threadcheck._view._chrome import activity_trace, chrome_trace, empty_trace
from threadcheck._view._findings import findings_page
from threadcheck._view._page import schedule_page, summary_page
from threadcheck._view._schedule import ScheduleView, schedule_view
from threadcheck._violation import Violation


def write_views(
    result: ExploreResult, title: str, html: str | None = None, trace: str | None = None
) -> list[str]:
    """Write the page and/or the trace of ``result``; what could not be written, one
    line each. A clean result has no schedule to draw: the page says what ran,
    the trace holds only that."""
    problems = []
    view = schedule_view(result) if result.found and result.run is not None else None
    if html is not None:
        page = schedule_page(view, title) if view else summary_page(result.report(), title)
        problems += _write(html, page)
    if trace is not None:
        document = chrome_trace(view, title) if view else empty_trace(result.report(), title)
        problems += _write(trace, json.dumps(document, separators=(",", ":")) + "\n")
    return problems


def write_findings(
    path: str,
    violations: Sequence[Violation],
    stalls: Sequence[Violation],
    title: str,
    schedules: Sequence[tuple[str, ScheduleView]] = (),
    lost: Sequence[str] = (),
) -> list[str]:
    """The findings page (``run --html``, ``--threadcheck-html``); what could not be written."""
    return _write(path, findings_page(violations, stalls, title, schedules, lost))


def write_activity(path: str, activity: Activity, title: str) -> list[str]:
    """A run's thread activity as a trace (``run --trace``); what could not be written."""
    return _write(path, json.dumps(activity_trace(activity, title), separators=(",", ":")) + "\n")


def _write(path: str, text: str) -> list[str]:
    try:
        with open(path, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        return [f"cannot write {path}: {error.strerror or error}"]
    return []
