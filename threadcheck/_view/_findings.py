"""Violations, data races and stalls as cards on one page (``run --html``, and
the pytest session's ``--threadcheck-html``).

One card per distinct finding (identical ones counted, as the text report
groups them): its headline, its test, the fix, and each stack with a few lines
of source around your frames, library frames folded. Above them, the counts
per API and per test, and filters by kind and test (the script's; without it
every card shows). A session with more distinct findings than a page can hold
shows the first :data:`MAX_CARDS` as cards and the next ones as one line each.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

from threadcheck import _stacks
from threadcheck._report import Group, fix_for, group
from threadcheck._text import plural
from threadcheck._view._html import clip, document, e
from threadcheck._view._page import schedule_section, view_data
from threadcheck._view._schedule import ScheduleView, source_lines
from threadcheck._violation import Kind, Violation

MAX_CARDS = 200
MAX_LINES = 10_000
"""Distinct findings listed one line each after the cards; the JSON report has the rest."""
MAX_COUNTED = 50
"""APIs (tests) shown in the counts; the rest is one line."""
KINDS = {
    "violation": "thread-affinity violation",
    "race": "data race",
    "stall": "reactor stall",
    "schedule": "failing exploration",
}


def findings_page(
    violations: Sequence[Violation],
    stalls: Sequence[Violation],
    title: str,
    schedules: Sequence[tuple[str, ScheduleView]] = (),
    lost: Sequence[str] = (),
) -> str:
    """``schedules``: the failing explorations of a pytest session, (test, schedule);
    ``lost``: whose findings never came (a pytest-xdist worker that went down)."""
    # Stalls first: the JSON report, which has every violation past the page's
    # cap, has no stalls (a page of 10,000 violations dropped its stall).
    groups = [("stall", g) for g in group(stalls)]
    groups += [(_kind(g.violation), g) for g in group(violations)]
    body = "\n".join(
        [
            _header(violations, stalls, schedules, title, lost),
            "<main>",
            _counts(violations, stalls),
            _filters(groups, schedules),
            _explorations(schedules),
            _cards(groups, bool(schedules)),
            "</main>",
        ]
    )
    views = {f"x{n}": view_data(view) for n, (_, view) in enumerate(schedules, start=1)}
    sources = {key: lines for _, view in schedules for key, lines in view.sources.items()}
    return document(title, body, {"views": views, "sources": sources})


def _kind(violation: Violation) -> str:
    return "race" if violation.kind is Kind.DATA_RACE else "violation"


def _header(
    violations: Sequence[Violation],
    stalls: Sequence[Violation],
    schedules: Sequence[tuple[str, ScheduleView]],
    title: str,
    lost: Sequence[str] = (),
) -> str:
    races = sum(1 for v in violations if v.kind is Kind.DATA_RACE)
    calls = len(violations) - races
    unexpected = sum(1 for v in violations if v.expected is None)
    parts = [
        plural(len(schedules), "failing exploration") if schedules else "",
        plural(calls, "thread-affinity violation") if calls else "",
        plural(races, "data race") if races else "",
        plural(len(stalls), "reactor stall") + " (reported, not failures)" if stalls else "",
    ]
    headline = ", ".join(part for part in parts if part) or "no findings"
    expected = len(violations) - unexpected
    sub = f"{expected} of them expected (a marker or fixture accepts them)" if expected else ""
    css = "clean" if not (unexpected or schedules or lost) else ""
    gone = (
        f"incomplete: {', '.join(lost)} went down without its report; its findings are lost"
        if lost
        else ""
    )
    return (
        f'<header><p class="sub">{e(title)}</p><h1 class="{css}">threadcheck: {e(headline)}</h1>'
        + (f'<p class="sub">{e(sub)}</p>' if sub else "")
        + (f'<p class="lost">{e(gone)}</p>' if gone else "")
        + "</header>"
    )


def _counts(violations: Sequence[Violation], stalls: Sequence[Violation]) -> str:
    everything = [*violations, *stalls]
    if not everything:
        return ""
    by_api = Counter(v.api for v in everything)
    by_test = Counter(v.test.nodeid if v.test else "(outside tests)" for v in everything)
    in_tests = any(v.test is not None for v in everything)
    return (
        '<section id="counts"><div class="counts">'
        + _count_table("API", by_api)
        + (_count_table("test", by_test) if in_tests else "")
        + "</div></section>"
    )


def _count_table(what: str, counts: Counter[str]) -> str:
    rows = "".join(
        f'<tr><td class="mono">{e(name)}</td><td class="num">{n}</td></tr>'
        for name, n in counts.most_common(MAX_COUNTED)
    )
    more = (
        f'<tr><td class="sub">{len(counts) - MAX_COUNTED} more</td><td></td></tr>'
        if len(counts) > MAX_COUNTED
        else ""
    )
    return f'<table class="count"><tr><th>{what}</th><th>count</th></tr>{rows}{more}</table>'


def _filters(
    groups: list[tuple[str, Group]], schedules: Sequence[tuple[str, ScheduleView]]
) -> str:
    if not groups and not schedules:
        return ""
    kinds = Counter(kind for kind, _ in groups)
    kinds["schedule"] = len(schedules)
    boxes = "".join(
        f'<label><input type="checkbox" class="kind-filter" value="{kind}" checked> '
        f"{e(KINDS[kind])}s ({kinds[kind]})</label>"
        for kind in KINDS
        if kinds[kind]
    )
    tests = sorted({_test(g) for _, g in groups} | {test for test, _ in schedules})
    options = "".join(f'<option value="{e(t)}">{e(clip(t, 90))}</option>' for t in tests)
    select = (
        f'<label>test <select id="test-filter"><option value="">every test</option>{options}'
        "</select></label>"
        if len(tests) > 1
        else ""
    )
    return f'<section id="filters" class="filters" hidden>{boxes}{select}</section>'


def _test(g: Group) -> str:
    return g.violation.test.nodeid if g.violation.test else ""


def _explorations(schedules: Sequence[tuple[str, ScheduleView]]) -> str:
    """Each failing exploration of the session: its test, the failure, the schedule."""
    if not schedules:
        return ""
    cards = []
    for n, (test, view) in enumerate(schedules, start=1):
        which = f"x{n}"
        replay = (
            f'<div class="replay"><code id="{which}-replay">{e(view.replay_command)}</code>'
            f'<button class="copy" data-copy="{which}-replay" type="button">Copy</button></div>'
            if view.replay_command
            else ""
        )
        cards.append(
            f'<article class="card card-schedule" id="{which}" data-kind="schedule" '
            f'data-test="{e(test)}"><h2><span class="tag">{e(KINDS["schedule"])}</span> '
            f"{e(test)}: {e(view.headline)}</h2>{replay}"
            f'<details class="schedule"><summary>the schedule ({len(view.blocks)} steps)'
            f"</summary>{schedule_section(view, which)}</details></article>"
        )
    return f'<section id="explorations">{"".join(cards)}</section>'


def _cards(groups: list[tuple[str, Group]], explorations: bool = False) -> str:
    if not groups:
        if explorations:
            return ""
        return '<section id="cards"><p>Nothing to report.</p></section>'
    cards = [_card(n, kind, g) for n, (kind, g) in enumerate(groups[:MAX_CARDS], start=1)]
    rest = groups[MAX_CARDS:]
    lines = ""
    if rest:
        listed = rest[:MAX_LINES]
        rows = "".join(
            f'<tr class="finding" data-kind="{kind}" data-test="{e(_test(g))}">'
            f'<td class="num">{n}</td><td>{e(g.summary())}</td>'
            f'<td class="num">{g.count}</td></tr>'
            for n, (kind, g) in enumerate(listed, start=MAX_CARDS + 1)
        )
        unlisted = len(rest) - len(listed)
        tail = (
            f"<p>{unlisted} more distinct violations and races: the JSON report has them all.</p>"
            if unlisted
            else ""
        )
        lines = (
            f'<details class="fold"><summary>{len(listed)} more distinct findings, one line '
            f'each</summary><table class="steps">{rows}</table></details>{tail}'
        )
    return f'<section id="cards">{"".join(cards)}{lines}</section>'


def _card(number: int, kind: str, g: Group) -> str:
    v = g.violation
    count = f'<span class="count-badge">{e(g.times())}</span>' if g.count > 1 else ""
    test = f'<p class="sub">during test: {e(v.test.describe())}</p>' if v.test else ""
    expected = f'<p class="sub">expected: {e(v.expected)}</p>' if v.expected else ""
    said = v.detail and kind == "stall" and v.detail not in v.headline()
    detail = f'<p class="sub">{e(v.detail or "")}</p>' if said else ""
    return (
        f'<article class="card card-{kind}" id="finding-{number}" data-kind="{kind}" '
        f'data-test="{e(_test(g))}"><h2><span class="tag">{e(KINDS[kind])}</span> '
        f"[{number}] {e(g.headline())}{count}</h2>{test}{expected}{detail}"
        f'<p class="fix"><b>fix:</b> <code>{e(fix_for(v))}</code></p>'
        + "".join(_stacks_of(kind, v))
        + "</article>"
    )


def _stacks_of(kind: str, v: Violation) -> Iterator[str]:
    if kind == "race" and v.prior is not None:
        # Each access with how its thread got its work, as the text report shows.
        prior = v.prior
        yield _stack(f"{v.access or 'access'} in thread {v.thread.describe()}", v.stack)
        yield from _origins(v.submitted_from, v.spawn_site)
        yield _stack(f"earlier {prior.what} in thread {prior.thread.describe()}", prior.stack)
        yield from _origins(prior.submitted_from, prior.spawn_site)
        return
    title = "blocked at" if kind == "stall" else f"the call, in thread {v.thread.describe()}"
    yield _stack(title, v.stack)
    yield from _origins(v.submitted_from, v.spawn_site)


def _origins(
    submitted_from: _stacks.Stack | None, spawn_site: _stacks.Stack | None
) -> Iterator[str]:
    """Where a thread's work was submitted, and where the thread was started."""
    if submitted_from is not None:
        yield _stack("work submitted to the thread pool at", submitted_from)
    if spawn_site is not None:
        yield _stack("thread started at", spawn_site, open_=False)


def _stack(title: str, stack: _stacks.Stack, open_: bool = True) -> str:
    return (
        f'<details class="stack"{" open" if open_ else ""}><summary>{e(title)} '
        '<span class="sub">(most recent call last)</span></summary>'
        + "".join(_frames(stack))
        + "</details>"
    )


def _frames(stack: Iterable[_stacks.Frame]) -> Iterator[str]:
    for is_library, run in _stacks.library_runs(stack):
        if is_library:
            names = ", ".join(dict.fromkeys(frame.library or "" for frame in run))
            inner = "".join(
                f'<div class="frame lib mono">{e(frame.location())}</div>' for frame in run
            )
            yield (
                f'<details class="lib"><summary class="mono">… {plural(len(run), "frame")} '
                f"in {e(names)} …</summary>{inner}</details>"
            )
            continue
        for frame in run:
            yield f'<div class="frame mono">{e(frame.location())}</div>{_context(frame)}'


def _context(frame: _stacks.Frame) -> str:
    lines = source_lines(frame.filename, frame.lineno)
    if not lines:
        return ""
    rows = "".join(
        f'<span class="{"here" if number == frame.lineno else ""}">{number:>5}  {e(text)}\n</span>'
        for number, text in lines
    )
    return f'<pre class="src">{rows}</pre>'
