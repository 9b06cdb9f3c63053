"""One self-contained HTML file: CSS and JavaScript inline, no network access.

Everything textual is in the HTML itself (the steps, their source lines, the
replay command, the report), so the page reads without JavaScript; the script
only adds the source panel on a click and the copy buttons. The timeline
(:mod:`._timeline`) and a deadlock's wait-for graph (:mod:`._waits`) are inline
SVG. A schedule shrunk from the one found shows that one too, folded below.
"""

from __future__ import annotations

from typing import Any

from threadcheck._view._html import document, e
from threadcheck._view._schedule import Block, ScheduleView
from threadcheck._view._timeline import timeline_svg
from threadcheck._view._waits import wait_for_graph

ALL_ROWS_UP_TO = 200
ROW_CONTEXT = 5
SHOWN, FOUND = "shown", "found"
"""The schedule reported (shrunk), and the one found before shrinking."""


def schedule_page(view: ScheduleView, title: str) -> str:
    """The page of a failing schedule."""
    parts = [_header(view, title), "<main>", _timeline(view, SHOWN)]
    if view.waits:
        parts.append(wait_for_graph(view, _prefix(SHOWN)))
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
    waits = wait_for_graph(view, _prefix(which)) if view.waits else ""
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
    counted = f"{len(found.blocks)} steps, {found.preemptions} preemptions or time advances"
    return (
        f'<section id="found"><details class="found"><summary><h2>As found, before shrinking: '
        f"{counted}</h2></summary>"
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
        f"<span>{len(view.blocks) + view.left_out} steps, {len(view.lanes)} threads, "
        f"virtual time {e(view.duration)}{_left_out(view)}</span></div>"
    )
    empty = '<p class="empty">Click a step to see its source.</p>'
    heading = "<h2>Schedule</h2>" if which == SHOWN else ""
    p = _prefix(which)
    return (
        f'<section id="{p}timeline">{heading}'
        f'{legend}<div class="timeline"><div class="lanes">{timeline_svg(view, which, p)}</div>'
        f'<aside id="{p}source" class="source">{empty}</aside></div></section>'
    )


def _left_out(view: ScheduleView) -> str:
    if not view.left_out:
        return ""
    return (
        f"; {view.left_out} steps not drawn (the first, the last and those around each "
        "preemption are): the replay command reruns them all"
    )


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
