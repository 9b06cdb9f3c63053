"""Human-readable and JSON reports.

Identical violations (same API, kind, thread and stacks) are grouped with a
count, so thousands of repeats stay readable; the counts always add up to the
exact number recorded. The JSON layout is described by ``report-schema.json``
in this package and versioned by ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from threadcheck import _stacks
from threadcheck._affinity import AffinityChecker
from threadcheck._violation import Kind, Violation

SCHEMA_ID = "threadcheck-report"
SCHEMA_VERSION = 1
SCHEMA_PATH = Path(__file__).with_name("report-schema.json")

# The human report shows this many groups; the JSON report has them all.
MAX_GROUPS_SHOWN = 20


@dataclass(frozen=True)
class Group:
    violation: Violation
    """The first occurrence."""
    count: int
    first_index: int


def group(violations: Iterable[Violation]) -> list[Group]:
    """Identical violations merged, in order of first occurrence."""
    counts: Counter[tuple[Any, ...]] = Counter()
    first: dict[tuple[Any, ...], tuple[int, Violation]] = {}
    for index, violation in enumerate(violations):
        key = (
            violation.api,
            violation.kind,
            violation.thread,
            violation.stack,
            violation.spawn_site,
            violation.submitted_from,
        )
        counts[key] += 1
        first.setdefault(key, (index, violation))
    return [Group(v, counts[key], index) for key, (index, v) in first.items()]


def _hint(violation: Violation) -> str:
    if violation.kind is Kind.BLOCKING_CALL_IN_REACTOR:
        return (
            "blockingCallFromThread is for threads other than the reactor's; in the "
            "reactor thread call the function directly and use its Deferred"
        )
    if violation.api.startswith("DelayedCall."):
        method = violation.api.split(".", 1)[1]
        return f"do it in the reactor thread: reactor.callFromThread(call.{method}, ...)"
    entry = _entry_into_library(violation.stack)
    api = violation.api.removeprefix("reactor.")
    if entry is not None and entry.library == "twisted" and entry.function != api:
        # e.g. transport.write reaching reactor.addWriter: the user's call is what moves.
        return (
            f"call {entry.function}() in the reactor thread: "
            f"reactor.callFromThread(obj.{entry.function}, ...)"
        )
    return f"do it in the reactor thread: reactor.callFromThread(reactor.{api}, ...)"


def _entry_into_library(stack: _stacks.Stack) -> _stacks.Frame | None:
    """The library frame the innermost user frame called, e.g. transport.write."""
    for outer, inner in zip(reversed(stack[:-1]), reversed(stack[1:]), strict=True):
        if outer.library is None:
            return inner if inner.library is not None else None
    return None


def _format_group(number: int, g: Group) -> Iterator[str]:
    v = g.violation
    times = f"  [x{g.count}]" if g.count > 1 else ""
    yield f"[{number}] {v.headline()}{times}"
    where = _stacks.innermost_user_frame(v.stack)
    if where is not None:
        yield f"    offending call: {where.location()}"
        if where.source:
            yield f"        {where.source}"
    entry = _entry_into_library(v.stack)
    if entry is not None:
        yield f"    through {entry.library}: {entry.location()}"
    yield "    stack (most recent call last):"
    yield from _stacks.format_stack(v.stack, indent="      ")
    if v.submitted_from is not None:
        yield "    work submitted to the thread pool at (most recent call last):"
        yield from _stacks.format_stack(v.submitted_from, indent="      ")
    if v.spawn_site is not None:
        yield "    thread started at (most recent call last):"
        yield from _stacks.format_stack(v.spawn_site, indent="      ")
    else:
        yield "    thread started at: unknown (main thread, or started before threadcheck)"
    yield f"    fix: {_hint(v)}"


def format_report(violations: list[Violation]) -> str:
    """The human-readable report block; empty string when there is nothing to say."""
    if not violations:
        return ""
    groups = group(violations)
    by_api = Counter(v.api for v in violations)
    noun = "violation" if len(violations) == 1 else "violations"
    lines = [
        f"threadcheck: {len(violations)} thread-affinity {noun} ({len(groups)} distinct)",
        "  " + ", ".join(f"{api}: {n}" for api, n in by_api.most_common()),
        "",
    ]
    for number, g in enumerate(groups[:MAX_GROUPS_SHOWN], start=1):
        lines.extend(_format_group(number, g))
        lines.append("")
    if len(groups) > MAX_GROUPS_SHOWN:
        lines.append(
            f"... {len(groups) - MAX_GROUPS_SHOWN} more distinct violations; "
            "the JSON report (--json) has them all"
        )
    return "\n".join(lines).rstrip() + "\n"


def _thread_json(thread: Any) -> dict[str, object]:
    return {"name": thread.name, "ident": thread.ident}


def to_json(violations: list[Violation], mode: str) -> dict[str, object]:
    groups = group(violations)
    return {
        "schema": SCHEMA_ID,
        "version": SCHEMA_VERSION,
        "mode": mode,
        "total": len(violations),
        "counts_by_api": dict(Counter(v.api for v in violations)),
        "violations": [
            {
                "api": g.violation.api,
                "kind": g.violation.kind.value,
                "count": g.count,
                "first_index": g.first_index,
                "summary": g.violation.summary(),
                "thread": _thread_json(g.violation.thread),
                "reactor_thread": _thread_json(g.violation.reactor_thread),
                "stack": _stacks.to_json(g.violation.stack),
                "spawn_site": _stacks.to_json(g.violation.spawn_site),
                "submitted_from": _stacks.to_json(g.violation.submitted_from),
            }
            for g in groups
        ],
    }


def write_json(violations: list[Violation], mode: str, path: str | Path) -> None:
    document = to_json(violations, mode)
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def finish(checker: AffinityChecker, json_path: str | Path | None, stream: IO[str]) -> int:
    """Judge pending calls, write the reports; return the number of violations."""
    checker.flush_pending()
    violations = checker.recorder.violations()
    if json_path is not None:
        write_json(violations, checker.mode.value, json_path)
    if violations:
        stream.write(format_report(violations))
        stream.flush()
    return len(violations)
