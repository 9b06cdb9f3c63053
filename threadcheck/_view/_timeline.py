"""A schedule's timeline as inline SVG: one lane per thread, one block per step
(a link to its row), a line across the lanes where the schedule was preempted
(red) or time passed (violet, dashed), a dotted line from the step that
started a thread to its lane, an arc between a data race's two accesses, and
a dot where the failing thread failed."""

from __future__ import annotations

from threadcheck._view._html import clip, e
from threadcheck._view._schedule import Block, ScheduleView

LABEL_WIDTH = 240
LANE_HEIGHT = 30
AXIS_HEIGHT = 22
WIDEST_STEP = 18
NARROWEST_STEP = 3
TIMELINE_WIDTH = 1400
"""Pixels the steps share before the timeline scrolls sideways."""
SWITCH_LINES_UP_TO = 3000
"""Steps beyond which the thin lines joining a switch's two steps are left out."""
KINDS = {"access": "k-access", "sync": "k-sync"}


def timeline_svg(view: ScheduleView, which: str, p: str) -> str:
    """``which``: the schedule's name in the page's script; ``p`` prefixes its ids."""
    blocks = view.blocks
    step = max(NARROWEST_STEP, min(WIDEST_STEP, TIMELINE_WIDTH // max(1, len(blocks))))
    width = LABEL_WIDTH + step * len(blocks) + 24
    height = AXIS_HEIGHT + LANE_HEIGHT * len(view.lanes)
    row = {lane.tid: n for n, lane in enumerate(view.lanes)}
    position_of = {block.index: n for n, block in enumerate(blocks)}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="schedule timeline">'
    ]
    for n, lane in enumerate(view.lanes):
        y = AXIS_HEIGHT + n * LANE_HEIGHT
        started = f" (started at step {lane.spawned_at})" if lane.spawned_at else ""
        parts.append(
            f'<g class="lane-row" data-tid="{lane.tid}"><rect class="lane" x="0" y="{y + 1}" '
            f'width="{width}" height="{LANE_HEIGHT - 2}"/><text x="6" y="{y + 19}">'
            f"{e(clip(lane.label, 30))}<title>{e(lane.label + started)}</title></text></g>"
        )
    parts += _axis(blocks, step)
    if len(blocks) <= SWITCH_LINES_UP_TO:
        parts += _switch_lines(blocks, step, row)
    parts += _spawn_lines(view, step, row, position_of)
    for position, block in enumerate(blocks):
        x = LABEL_WIDTH + position * step
        y = AXIS_HEIGHT + row.get(block.tid, 0) * LANE_HEIGHT + 5
        kind = KINDS.get(block.kind, "k-other")
        tip = f"step {block.index} T{block.tid}: {block.detail} at {block.where}"
        parts.append(
            f'<a href="#{p}step-{block.index}" data-step="{block.index}" data-view="{which}">'
            f'<rect class="{kind}" data-step="{block.index}" data-view="{which}" x="{x}" '
            f'y="{y}" width="{max(1, step - 1)}" height="{LANE_HEIGHT - 10}">'
            f"<title>{e(tip)}</title></rect></a>"
        )
    parts += _marks(blocks, step, height, which)
    parts += _conflict_arrow(view, step, row, position_of, p)
    parts += _failure_mark(view, step, row)
    parts.append("</svg>")
    return "".join(parts)


def _axis(blocks: tuple[Block, ...], step: int) -> list[str]:
    every = max(1, 60 // step)
    return [
        f'<text x="{LABEL_WIDTH + position * step}" y="15">{block.index}</text>'
        for position, block in enumerate(blocks)
        if position % every == 0
    ]


def _switch_lines(blocks: tuple[Block, ...], step: int, row: dict[int, int]) -> list[str]:
    lines = []
    for position in range(1, len(blocks)):
        before, after = blocks[position - 1], blocks[position]
        if before.tid == after.tid:
            continue
        x = LABEL_WIDTH + position * step
        y1 = AXIS_HEIGHT + row.get(before.tid, 0) * LANE_HEIGHT + LANE_HEIGHT // 2
        y2 = AXIS_HEIGHT + row.get(after.tid, 0) * LANE_HEIGHT + LANE_HEIGHT // 2
        lines.append(f'<line class="switch" x1="{x}" y1="{y1}" x2="{x}" y2="{y2}"/>')
    return lines


def _spawn_lines(
    view: ScheduleView, step: int, row: dict[int, int], position_of: dict[int, int]
) -> list[str]:
    """From the step that started a thread down (or up) to the started thread's lane."""
    lines = []
    by_index = {block.index: block for block in view.blocks}
    for lane in view.lanes:
        parent = by_index.get(lane.spawned_at)
        if parent is None:
            continue
        x = LABEL_WIDTH + position_of[parent.index] * step + step // 2
        y1 = AXIS_HEIGHT + row.get(parent.tid, 0) * LANE_HEIGHT + LANE_HEIGHT // 2
        y2 = AXIS_HEIGHT + row[lane.tid] * LANE_HEIGHT + LANE_HEIGHT // 2
        tip = f"T{parent.tid} starts T{lane.tid} at {parent.where}"
        lines.append(
            f'<line class="spawn" x1="{x}" y1="{y1}" x2="{x}" y2="{y2}">'
            f"<title>{e(tip)}</title></line>"
        )
    return lines


def _marks(blocks: tuple[Block, ...], step: int, height: int, which: str) -> list[str]:
    marks = []
    for position, block in enumerate(blocks):
        if not block.note:
            continue
        x = LABEL_WIDTH + (position + 1) * step
        kind = "mark-time" if block.time_passes else "mark-preempt"
        marks.append(
            f'<line class="{kind}" data-step="{block.index}" data-view="{which}" x1="{x}" '
            f'y1="{AXIS_HEIGHT}" '
            f'x2="{x}" y2="{height}"><title>{e(f"after step {block.index}: {block.note}")}'
            "</title></line>"
        )
    return marks


def _conflict_arrow(
    view: ScheduleView, step: int, row: dict[int, int], position_of: dict[int, int], p: str
) -> list[str]:
    """A data race: an arc from the earlier access's block to the later one's."""
    if view.conflict is None:
        return []
    by_index = {block.index: block for block in view.blocks}
    earlier, later = (by_index.get(index) for index in view.conflict)
    if earlier is None or later is None:
        return []
    x1 = LABEL_WIDTH + position_of[earlier.index] * step + step // 2
    x2 = LABEL_WIDTH + position_of[later.index] * step + step // 2
    y1 = AXIS_HEIGHT + row.get(earlier.tid, 0) * LANE_HEIGHT + 5
    y2 = AXIS_HEIGHT + row.get(later.tid, 0) * LANE_HEIGHT + 5
    lift = AXIS_HEIGHT - 4  # over the lanes, under the axis numbers
    tip = (
        f"data race: step {earlier.index} ({earlier.detail}) and "
        f"step {later.index} ({later.detail})"
    )
    return [
        f'<defs><marker id="{p}race-head" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" class="race-head"/></marker></defs>'
        f'<path class="conflict" data-steps="{earlier.index} {later.index}" '
        f'd="M {x1} {y1} C {x1} {lift}, {x2} {lift}, {x2} {y2}" '
        f'marker-end="url(#{p}race-head)"><title>{e(tip)}</title></path>'
    ]


def _failure_mark(view: ScheduleView, step: int, row: dict[int, int]) -> list[str]:
    lane = next((lane for lane in view.lanes if lane.name == view.failing_thread), None)
    if lane is None:
        return []
    x = LABEL_WIDTH + len(view.blocks) * step + 10
    y = AXIS_HEIGHT + row[lane.tid] * LANE_HEIGHT + LANE_HEIGHT // 2
    return [
        f'<circle class="failed" cx="{x}" cy="{y}" r="7"><title>{e(view.headline)}</title>'
        "</circle>"
    ]
