"""A deadlock's wait-for graph, drawn: the blocked threads on an ellipse, an arrow
from each to the thread holding what it waits for, a dashed box for a wait no
thread holds."""

from __future__ import annotations

import math

from threadcheck._view._html import clip, e
from threadcheck._view._schedule import ScheduleView, Wait

NODE_WIDTH = 230
NODE_HEIGHT = 34
GRAPH_RADIUS = 150
OPEN_DISTANCE = 80
"""How far from a waiter the box of a wait nobody holds is drawn."""


def wait_for_graph(view: ScheduleView, p: str) -> str:
    """The section of ``view``'s deadlock; ``p`` prefixes its ids (a page may hold
    several schedules)."""
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
    edges = {(w.tid, w.holder) for w in view.waits}
    for wait in view.waits:
        paired = (wait.holder, wait.tid) in edges  # A waits for B, B for A: apart
        parts.append(_wait_edge(wait, at, cy, p, paired))
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


PAIRED_APART = 9
"""How far each of two opposite edges between two threads is drawn off their line."""


def _wait_edge(
    wait: Wait, at: dict[int, tuple[float, float]], cy: float, p: str, paired: bool = False
) -> str:
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
    if paired:  # each on its own side of the line, its label further out
        length = math.hypot(ex - sx, ey - sy) or 1.0
        nx, ny = (sy - ey) / length, (ex - sx) / length
        sx, sy, ex, ey = (sx + nx * PAIRED_APART, sy + ny * PAIRED_APART,
                          ex + nx * PAIRED_APART, ey + ny * PAIRED_APART)  # fmt: skip
        lx, ly = mid_x + nx * PAIRED_APART * 2.5, mid_y + ny * PAIRED_APART * 2.5 + 4
        anchor = "middle"
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
