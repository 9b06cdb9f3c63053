"""A failing schedule as the views draw it: one lane per thread, one block per
step, each with its source line; the preemptions and time advances marked."""

from __future__ import annotations

import dataclasses
import linecache
import os
from dataclasses import dataclass
from typing import Any

from threadcheck._sched._core import format_seconds
from threadcheck._sched._report import ExploreResult, ScheduleRun, format_result

CONTEXT_LINES = 2
"""Source lines shown above and below a step's own line."""


@dataclass(frozen=True)
class Lane:
    tid: int
    name: str
    spawned_at: int = 0
    """The step that started it (0: it was running when the schedule began)."""

    @property
    def label(self) -> str:
        return f"T{self.tid} {self.name}"


@dataclass(frozen=True)
class Block:
    """One step of the schedule."""

    index: int
    tid: int
    kind: str
    detail: str
    path: str
    lineno: int
    function: str
    seconds: float
    """Virtual time at the step, from the schedule's start."""
    note: str = ""
    """How the schedule left its default here: a preemption or time passing."""

    @property
    def where(self) -> str:
        if not self.path:
            return "-"
        return f"{os.path.basename(self.path)}:{self.lineno} {self.function}"

    @property
    def source_key(self) -> str:
        return f"{self.path}:{self.lineno}" if self.path else ""

    @property
    def time_passes(self) -> bool:
        return self.note.startswith("time +")


@dataclass(frozen=True)
class Wait:
    """One edge of a deadlock's wait-for graph."""

    tid: int
    what: str
    """What it waits for, and where: ``lock at races.py:107 in in_reactor``."""
    holder: int | None
    """The thread holding it; None when none does (a queue nobody fills)."""


@dataclass(frozen=True)
class ScheduleView:
    headline: str
    report: str
    """The text report, as the terminal shows it."""
    lanes: tuple[Lane, ...]
    blocks: tuple[Block, ...]
    sources: dict[str, list[tuple[int, str]]]
    """``path:line`` -> the lines around it (number, text)."""
    replay_command: str
    failing_thread: str
    details: str
    found: ScheduleView | None = None
    """The schedule as found, when the one shown was shrunk from it."""
    waits: tuple[Wait, ...] = ()
    """A deadlock: who waits for what, held by whom."""
    conflict: tuple[int, int] | None = None
    """A data race: the steps of its earlier and its later access."""
    preemptions: int = 0
    """Its preemptions and time advances, as the report counts them (two at one
    step share that step's note)."""
    left_out: int = 0
    """Steps not drawn (a livelock's hundred thousand): see :data:`DRAWN_STEPS`."""

    @property
    def duration(self) -> str:
        last = self.blocks[-1].seconds if self.blocks else 0.0
        return format_seconds(last) if last else "0 s"


def schedule_view(result: ExploreResult) -> ScheduleView:
    """The view of ``result``'s failing schedule (``result.found`` must be true)."""
    run = result.run
    failure = result.failure
    assert run is not None and failure is not None, "only a failure has a schedule to show"
    found = None
    if result.found_run is not None:
        found = _view_of(result.found_run, result, failure.thread or "")
    return _view_of(run, result, failure.thread or "", found)


def _view_of(
    run: ScheduleRun, result: ExploreResult, failing_thread: str, found: ScheduleView | None = None
) -> ScheduleView:
    failure = result.failure
    assert failure is not None
    conflict = _conflict(run, failure.accesses)
    every = _blocks(run)
    blocks = _drawn(every, {*(conflict or ()), *run.spawned_at})
    return ScheduleView(
        headline=f"{failure.kind}: {failure.message}",
        report=format_result(result),
        lanes=_lanes(run),
        blocks=blocks,
        sources=_sources(blocks),
        replay_command=result.replay_command or "",
        failing_thread=failing_thread,
        details=failure.details,
        found=found,
        waits=tuple(
            Wait(tid, _short_paths(what), holder) for tid, what, holder in failure.waits_for
        ),
        conflict=conflict,
        preemptions=run.preemption_count,
        left_out=len(every) - len(blocks),
    )


DRAWN_STEPS = 5000
"""Steps a view draws at most: the first and the last ones, and those around
each preemption, a data race's accesses and each thread's start."""
_AROUND = 20


def _drawn(blocks: list[Block], wanted: set[int]) -> tuple[Block, ...]:
    if len(blocks) <= DRAWN_STEPS:
        return tuple(blocks)
    keep = set(range(_AROUND * 10)) | set(range(len(blocks) - DRAWN_STEPS // 2, len(blocks)))
    for position, block in enumerate(blocks):
        if block.note or block.index in wanted:
            keep.update(range(max(0, position - _AROUND), position + _AROUND + 1))
    kept = sorted(p for p in keep if p < len(blocks))
    if len(kept) > DRAWN_STEPS:  # preemptions all over: the last ones
        kept = kept[-DRAWN_STEPS:]
    return tuple(blocks[p] for p in kept)


def _conflict(
    run: ScheduleRun, accesses: tuple[tuple[str, str, int], ...]
) -> tuple[int, int] | None:
    """The steps of a data race's two accesses: the later access's last step at its
    line in its thread, and before it, the earlier access's in the other thread."""
    if len(accesses) != 2:
        return None
    (first_thread, first_file, first_line), (later_thread, later_file, later_line) = accesses
    later = _last_step(run, later_thread, later_file, later_line, len(run.trace))
    if later is None:
        return None
    earlier = _last_step(run, first_thread, first_file, first_line, later[0])
    return None if earlier is None else (earlier[1], later[1])


def _last_step(
    run: ScheduleRun, thread: str, path: str, line: int, before: int
) -> tuple[int, int] | None:
    """(position in the trace, step index) of ``thread``'s last step at ``path:line``
    before position ``before``."""
    names = run.thread_names
    for position in range(before - 1, -1, -1):
        step = run.trace[position]
        name = names[step.tid] if step.tid < len(names) else ""
        if name == thread and step.lineno == line and step.filename == path:
            return position, step.index
    return None


def _lanes(run: ScheduleRun) -> tuple[Lane, ...]:
    used = {step.tid for step in run.trace}
    count = max([len(run.thread_names), *(tid + 1 for tid in used)])
    names = [*run.thread_names, *("?" for _ in range(count - len(run.thread_names)))]
    spawned = [*run.spawned_at, *(0 for _ in range(count - len(run.spawned_at)))]
    return tuple(Lane(tid, name, spawned[tid]) for tid, name in enumerate(names))


def _blocks(run: ScheduleRun) -> list[Block]:
    return [
        Block(
            index=step.index,
            tid=step.tid,
            kind=step.kind,
            detail=step.detail or step.kind,
            path=step.filename,
            lineno=step.lineno,
            function=step.function,
            seconds=step.now,
            note=run.preemptions.get(step.index, ""),
        )
        for step in run.trace
    ]


def _sources(blocks: tuple[Block, ...]) -> dict[str, list[tuple[int, str]]]:
    sources: dict[str, list[tuple[int, str]]] = {}
    for block in blocks:
        key = block.source_key
        if key and key not in sources:
            sources[key] = source_lines(block.path, block.lineno)
    return sources


def to_json(view: ScheduleView) -> dict[str, Any]:
    """``view`` as plain JSON, to travel from a pytest-xdist worker to the controller."""
    document = dataclasses.asdict(view)
    document["sources"] = {
        key: [list(line) for line in lines] for key, lines in view.sources.items()
    }
    return document


def from_json(document: dict[str, Any]) -> ScheduleView:
    found = document.get("found")
    return ScheduleView(
        headline=document["headline"],
        report=document["report"],
        lanes=tuple(Lane(**lane) for lane in document["lanes"]),
        blocks=tuple(Block(**block) for block in document["blocks"]),
        sources={
            key: [(int(number), str(text)) for number, text in lines]
            for key, lines in document["sources"].items()
        },
        replay_command=document["replay_command"],
        failing_thread=document["failing_thread"],
        details=document["details"],
        found=None if found is None else from_json(found),
        waits=tuple(Wait(**wait) for wait in document.get("waits", ())),
        conflict=_pair(document.get("conflict")),
        preemptions=int(document.get("preemptions", 0)),
        left_out=int(document.get("left_out", 0)),
    )


def _pair(value: list[int] | None) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


def _short_paths(text: str) -> str:
    """``lock at /a/b/races.py:107 in f`` -> ``lock at races.py:107 in f``."""
    what, at, where = text.rpartition(" at ")
    return f"{what}{at}{os.path.basename(where)}" if at else text


def source_lines(path: str, lineno: int) -> list[tuple[int, str]]:
    """The lines around ``lineno`` of ``path``; empty when the file cannot be read."""
    lines = linecache.getlines(path)
    first = max(1, lineno - CONTEXT_LINES)
    last = min(len(lines), lineno + CONTEXT_LINES)
    return [(number, lines[number - 1].rstrip("\n")) for number in range(first, last + 1)]
