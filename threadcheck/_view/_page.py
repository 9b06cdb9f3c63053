"""One self-contained HTML file: CSS and JavaScript inline, no network access.

Everything textual is in the HTML itself (the steps, their source lines, the
replay command, the report), so the page reads without JavaScript; the script
only adds the source panel on a click and the copy buttons. The timeline is
inline SVG: one lane per thread, one block per step, a line across the lanes
where the schedule was preempted (red) or time passed (violet, dashed), a
dotted line from the step that started a thread to its lane. A schedule shrunk
from the one found shows that one too, folded below.
"""

from __future__ import annotations

import math
from typing import Any

from threadcheck._view._html import clip, document, e
from threadcheck._view._schedule import Block, ScheduleView, Wait

LABEL_WIDTH = 240
LANE_HEIGHT = 30
AXIS_HEIGHT = 22
WIDEST_STEP = 18
NARROWEST_STEP = 3
TIMELINE_WIDTH = 1400
"""Pixels the steps share before the timeline scrolls sideways."""
SWITCH_LINES_UP_TO = 3000
"""Steps beyond which the thin lines joining a switch's two steps are left out."""
ALL_ROWS_UP_TO = 200
ROW_CONTEXT = 5
KINDS = {"access": "k-access", "sync": "k-sync"}
SHOWN, FOUND = "shown", "found"
"""The schedule reported (shrunk), and the one found before shrinking."""


def schedule_page(view: ScheduleView, title: str) -> str:
    """The page of a failing schedule."""
    parts = [_header(view, title), "<main>", _timeline(view, SHOWN)]
    if view.waits:
        parts.append(_deadlock(view, SHOWN))
    parts.append(_step_tables(view, SHOWN))
    if view.found is not None:
        parts.append(_as_found(view.found))
    parts += [_report(view), "</main>"]
    return document(title, "\n".join(parts), _data(view))


def summary_page(report: str, title: str) -> str:
    """The page of an exploration with no failing schedule: its summary."""
    headline = report.strip().partition("\n")[0]
    body = (
        f'<header><p class="sub">{e(title)}</p><h1 class="clean">{e(headline)}</h1></header>'
        f'<main><section id="report"><pre class="report">{e(report)}</pre></section></main>'
    )
    return document(title, body, {})


def schedule_section(view: ScheduleView, which: str) -> str:
    """One schedule's timeline and steps, for a page holding several (the session's)."""
    waits = _deadlock(view, which) if view.waits else ""
    return _timeline(view, which) + waits + _step_tables(view, which)


def _prefix(which: str) -> str:
    """Of the ids of one schedule's elements: a page may hold two schedules."""
    return "" if which == SHOWN else f"{which}-"


# -- the document --------------------------------------------------------------


def _header(view: ScheduleView, title: str) -> str:
    lines = view.report.splitlines()
    subs = "".join(f'<p class="sub">{e(line.strip())}</p>' for line in lines[1:3] if line)
    replay = ""
    if view.replay_command:
        replay = (
            '<div class="replay"><code id="replay">'
            f"{e(view.replay_command)}</code>"
            '<button class="copy" data-copy="replay" type="button">Copy</button></div>'
        )
    return (
        f'<header><p class="sub">{e(title)}</p><h1>{e(view.headline)}</h1>{subs}{replay}</header>'
    )


def _as_found(found: ScheduleView) -> str:
    preemptions = sum(1 for block in found.blocks if block.note)
    return (
        f'<section id="found"><details class="found"><summary><h2>As found, before shrinking: '
        f"{len(found.blocks)} steps, {preemptions} preemptions or time advances</h2></summary>"
        f"{_timeline(found, FOUND)}{_step_tables(found, FOUND)}</details></section>"
    )


# -- the timeline ----------------------------------------------------------------


def _timeline(view: ScheduleView, which: str) -> str:
    legend = (
        '<div class="legend"><span><i style="background:var(--access)"></i>access</span>'
        '<span><i style="background:var(--sync)"></i>synchronisation</span>'
        '<span><i style="background:var(--other)"></i>other point</span>'
        '<span><i style="background:var(--preempt)"></i>preemption</span>'
        '<span><i style="background:var(--time)"></i>time passes</span>'
        f"<span>{len(view.blocks)} steps, {len(view.lanes)} threads, "
        f"virtual time {e(view.duration)}</span></div>"
    )
    empty = '<p class="empty">Click a step to see its source.</p>'
    heading = "<h2>Schedule</h2>" if which == SHOWN else ""
    p = _prefix(which)
    return (
        f'<section id="{p}timeline">{heading}'
        f'{legend}<div class="timeline"><div class="lanes">{_svg(view, which)}</div>'
        f'<aside id="{p}source" class="source">{empty}</aside></div></section>'
    )


def _svg(view: ScheduleView, which: str) -> str:
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
    p = _prefix(which)
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
    parts += _conflict_arrow(view, step, row, position_of, which)
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
    view: ScheduleView, step: int, row: dict[int, int], position_of: dict[int, int], which: str
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
    p = _prefix(which)
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


# -- a deadlock's wait-for graph ------------------------------------------------

NODE_WIDTH = 230
NODE_HEIGHT = 34
GRAPH_RADIUS = 150
OPEN_DISTANCE = 80
"""How far from a waiter the box of a wait nobody holds is drawn."""


def _deadlock(view: ScheduleView, which: str) -> str:
    """The threads on a circle, an arrow from each to the thread holding what it
    waits for; a wait nobody holds points to a dashed box naming it."""
    p = _prefix(which)
    labels = {lane.tid: lane.label for lane in view.lanes}
    waiting = [wait.tid for wait in view.waits]
    held = [w.holder for w in view.waits if w.holder is not None and w.holder not in waiting]
    nodes = [*waiting, *held]
    # On an ellipse, the first thread on the left: two threads face each other.
    rx, ry = (GRAPH_RADIUS * 1.6, GRAPH_RADIUS * 0.7) if len(nodes) > 1 else (0.0, 0.0)
    width = 2 * rx + NODE_WIDTH + 40
    cx, cy = width / 2, 0.0
    at = {
        tid: (
            cx - rx * math.cos(2 * math.pi * n / len(nodes)),
            cy - ry * math.sin(2 * math.pi * n / len(nodes)),
        )
        for n, tid in enumerate(nodes)
    }
    # The drawing's extent: the nodes, and the boxes of waits nobody holds.
    ys = [y for _, y in at.values()]
    ys += [_open_box_y(at[w.tid][1], cy) for w in view.waits if w.holder not in at]
    top = min(ys) - NODE_HEIGHT
    height = max(ys) + NODE_HEIGHT - top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 {top:.0f} {width:.0f} {height:.0f}" role="img" '
        f'aria-label="wait-for graph"><defs><marker id="{p}arrow" viewBox="0 0 10 10" '
        'refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" class="arrow-head"/></marker></defs>'
    ]
    for wait in view.waits:
        parts.append(_wait_edge(wait, at, cy, p))
    for tid, (x, y) in at.items():
        parts.append(
            f'<g class="wait-node" data-tid="{tid}"><rect x="{x - NODE_WIDTH / 2:.0f}" '
            f'y="{y - NODE_HEIGHT / 2:.0f}" width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="6"/>'
            f'<text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle">'
            f"{e(clip(labels.get(tid, f'T{tid}'), 32))}</text></g>"
        )
    parts.append("</svg>")
    rows = "".join(
        f"<li>{e(labels.get(w.tid, f'T{w.tid}'))} waits for <code>{e(w.what)}</code>"
        + (
            f", held by {e(labels.get(w.holder, f'T{w.holder}'))}"
            if w.holder is not None and not w.what.startswith("join")
            else ""
        )
        + "</li>"
        for w in view.waits
    )
    return (
        f'<section id="{p}deadlock"><h2>Deadlock: who waits for whom</h2>'
        f'<div class="graph">{"".join(parts)}</div><ul class="waits">{rows}</ul></section>'
    )


def _wait_edge(wait: Wait, at: dict[int, tuple[float, float]], cy: float, p: str) -> str:
    x1, y1 = at[wait.tid]
    if wait.holder is not None and wait.holder in at:
        x2, y2 = at[wait.holder]
        css, label = "wait-edge", wait.what
        ends = _clip_to_boxes(x1, y1, x2, y2)
        box = ""
    else:  # nobody holds it: a dashed box beside the waiter, away from the centre
        below = y1 >= cy
        x2, y2 = x1, _open_box_y(y1, cy)
        css = "wait-edge open"
        edge = NODE_HEIGHT / 2 if below else -NODE_HEIGHT / 2
        ends = (x1, y1 + edge, x2, y2 - 12 if below else y2 + 12)
        box = (
            f'<g class="wait-open"><rect x="{x2 - NODE_WIDTH / 2:.0f}" y="{y2 - 12:.0f}" '
            f'width="{NODE_WIDTH}" height="24" rx="4"/><text x="{x2:.0f}" y="{y2 + 4:.0f}" '
            f'text-anchor="middle">{e(clip(wait.what, 34))}</text></g>'
        )
        label = "nobody holds it"
    sx, sy, ex, ey = ends
    mid_x, mid_y = (sx + ex) / 2, (sy + ey) / 2
    # Beside a vertical edge, above a slanted one.
    lx, ly, anchor = (mid_x + 8, mid_y + 4, "start") if sx == ex else (mid_x, mid_y - 6, "middle")
    return (
        f'<line class="{css}" x1="{sx:.0f}" y1="{sy:.0f}" x2="{ex:.0f}" y2="{ey:.0f}" '
        f'marker-end="url(#{p}arrow)"><title>{e(wait.what)}</title></line>'
        f'<text class="wait-label" x="{lx:.0f}" y="{ly:.0f}" text-anchor="{anchor}">'
        f"{e(clip(label, 40))}</text>{box}"
    )


def _open_box_y(y: float, cy: float) -> float:
    """Where the box of a wait nobody holds goes: beyond its waiter, away from the centre."""
    return y + OPEN_DISTANCE if y >= cy else y - OPEN_DISTANCE


def _clip_to_boxes(
    x1: float, y1: float, x2: float, y2: float
) -> tuple[float, float, float, float]:
    """The segment between two node centres, from one box's edge to the other's."""
    dx, dy = x2 - x1, y2 - y1
    scale = max(abs(dx) / (NODE_WIDTH / 2), abs(dy) / (NODE_HEIGHT / 2), 1e-9)
    ox, oy = dx / scale, dy / scale
    return x1 + ox, y1 + oy, x2 - ox, y2 - oy


# -- the steps as text --------------------------------------------------------


def _step_tables(view: ScheduleView, which: str) -> str:
    blocks = view.blocks
    shown = _shown_rows(blocks)
    heading = "<h2>Steps</h2>" if which == SHOWN else ""
    parts = [f'<section id="{_prefix(which)}steps">{heading}']
    run: list[Block] = []
    folded: list[Block] = []
    for position, block in enumerate(blocks):
        if position in shown:
            if folded:
                parts.append(_fold(view, which, run, folded))
                run, folded = [], []
            run.append(block)
        else:
            folded.append(block)
    parts.append(_fold(view, which, run, folded))
    parts.append("</section>")
    return "".join(parts)


def _shown_rows(blocks: tuple[Block, ...]) -> set[int]:
    if len(blocks) <= ALL_ROWS_UP_TO:
        return set(range(len(blocks)))
    shown = set(range(ROW_CONTEXT * 4)) | set(range(len(blocks) - ROW_CONTEXT * 4, len(blocks)))
    for position, block in enumerate(blocks):
        if block.note:
            shown.update(range(max(0, position - ROW_CONTEXT), position + ROW_CONTEXT + 1))
    return shown


def _fold(view: ScheduleView, which: str, run: list[Block], folded: list[Block]) -> str:
    text = _table(view, which, run, header=True) if run else ""
    if folded:
        span = f"{folded[0].index} to {folded[-1].index}"
        text += (
            f'<details class="fold"><summary>{len(folded)} steps without preemption '
            f"({span})</summary>{_table(view, which, folded, header=False)}</details>"
        )
    return text


def _table(view: ScheduleView, which: str, blocks: list[Block], header: bool) -> str:
    head = (
        "<tr><th>step</th><th>thread</th><th>where</th><th>point</th><th>source</th><th></th></tr>"
        if header
        else ""
    )
    labels = {lane.tid: lane.label for lane in view.lanes}
    p = _prefix(which)
    rows = []
    for block in blocks:
        css = ' class="time"' if block.time_passes else ' class="marked"' if block.note else ""
        line = dict(view.sources.get(block.source_key, [])).get(block.lineno, "")
        rows.append(
            f'<tr id="{p}step-{block.index}"{css}><td class="num">{block.index}</td>'
            f'<td>{e(labels.get(block.tid, "?"))}</td><td class="mono">{e(block.where)}</td>'
            f'<td class="mono">{e(block.detail)}</td><td class="mono">{e(line.strip())}</td>'
            f'<td class="note">{e(block.note)}</td></tr>'
        )
    return f'<table class="steps">{head}{"".join(rows)}</table>'


def _report(view: ScheduleView) -> str:
    return (
        '<section id="report"><h2>The text report</h2>'
        f'<pre class="report">{e(view.report)}</pre></section>'
    )


# -- data for the script -------------------------------------------------------


def _data(view: ScheduleView) -> dict[str, Any]:
    views = {SHOWN: view_data(view)}
    sources = dict(view.sources)
    if view.found is not None:
        views[FOUND] = view_data(view.found)
        sources.update(view.found.sources)
    return {"views": views, "sources": sources}


def view_data(view: ScheduleView) -> dict[str, Any]:
    steps = {
        str(block.index): {
            "t": block.tid,
            "d": block.detail,
            "w": block.where,
            "s": block.source_key,
            "l": block.lineno,
            "n": block.note,
            "v": f"{block.seconds * 1e3:g} ms",
        }
        for block in view.blocks
    }
    marked = [block.index for block in view.blocks if block.note]
    first = marked[0] if marked else view.blocks[-1].index if view.blocks else 0
    if view.conflict is not None:  # a data race: its later access
        first = view.conflict[1]
    return {
        "lanes": {str(lane.tid): lane.label for lane in view.lanes},
        "steps": steps,
        "first": first,
    }
