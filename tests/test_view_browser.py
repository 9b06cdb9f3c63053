"""The HTML page in a real browser: headless Chromium (Debian's ``chromium``,
which ``.ci/run`` installs) over the DevTools protocol. Each kind of page loads
with no console error, has its lanes and steps in the DOM, shows a step's source
on a click, and its screenshot has the size and colours of the timeline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import browser
import pytest
import races
from test_view import PriorAccess, ThreadInfo, big_result, finding

import threadcheck
from threadcheck._sched._report import ExploreResult
from threadcheck._view._findings import findings_page
from threadcheck._view._outputs import write_views
from threadcheck._view._page import schedule_page
from threadcheck._view._schedule import schedule_view
from threadcheck._violation import Kind

CHROMIUM = browser.find_chromium()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"
    ),
]

ACCESS = (0x4A, 0x7F, 0xD4)
SYNC = (0x2F, 0x9E, 0x6B)
PREEMPT = (0xD3, 0x3A, 0x2C)
TIME = (0x7A, 0x4F, 0xD0)


@pytest.fixture(scope="module")
def chromium() -> Iterator[browser.Browser]:
    assert CHROMIUM is not None
    session = browser.Browser(CHROMIUM)
    try:
        yield session
    finally:
        session.close()


def colour_counts(chromium: browser.Browser, *colours: tuple[int, int, int]) -> list[int]:
    """Per colour, the pixels of a screenshot of the page within 6 of it in each channel."""
    width, height, counts = chromium.colour_counts(list(colours))
    assert (width, height) == (1400, 900)
    return counts


def click(chromium: browser.Browser, selector: str) -> None:
    """A real click's event (cancelable, so the page's handler can keep the page still)."""
    chromium.evaluate(
        f"document.querySelector({json.dumps(selector)}).dispatchEvent("
        "new MouseEvent('click', {bubbles: true, cancelable: true}))"
    )


def panel_text(chromium: browser.Browser, panel: str) -> str:
    return str(chromium.evaluate(f"document.getElementById({json.dumps(panel)}).textContent"))


def uncheck(chromium: browser.Browser, kind: str) -> None:
    """Untick a kind in the findings' filter bar, as a click would."""
    chromium.evaluate(
        f"{{ const box = document.querySelector('input.kind-filter[value={kind}]');"
        "box.checked = false; box.dispatchEvent(new Event('change', {bubbles: true})) }"
    )


def choose_test(chromium: browser.Browser, test: str) -> None:
    chromium.evaluate(
        f"{{ const s = document.getElementById('test-filter'); s.value = {json.dumps(test)};"
        "s.dispatchEvent(new Event('change', {bubbles: true})) }"
    )


def open_page(chromium: browser.Browser, path: Path, page: str) -> None:
    path.write_text(page, encoding="utf-8")
    chromium.open(path.as_uri())
    assert chromium.errors() == []


def test_a_failing_schedule_shows_its_lanes_and_a_clicked_step_s_source(
    chromium: browser.Browser, found: ExploreResult, tmp_path: Path
) -> None:
    run = found.run
    assert run is not None
    open_page(chromium, tmp_path / "found.html", schedule_page(schedule_view(found), "found"))
    assert chromium.evaluate("document.querySelectorAll('#timeline g.lane-row').length") == 2
    rects = "document.querySelectorAll('#timeline rect[data-step]').length"
    assert chromium.evaluate(rects) == len(run.trace)
    # On load the panel shows the first preemption; a click on another step shows its own.
    assert "counter.total += 10" in chromium.evaluate(
        "document.querySelector('.here').textContent"
    )
    other = next(
        step for step in run.trace if step.tid == 1 and step.detail == "counter.total (load)"
    )
    click(chromium, f'a[data-step="{other.index}"]')
    panel = panel_text(chromium, "source")
    assert f"Step {other.index} · T1 " in panel
    assert (
        chromium.evaluate("document.querySelector('.here').textContent")
        .strip()
        .endswith("counter.total += 1")
    )
    assert chromium.evaluate("location.hash") == f"#step-{other.index}"
    assert chromium.evaluate("window.scrollY") == 0  # the panel shows it: the page stays
    assert chromium.evaluate("document.querySelector('rect.picked').dataset.step") == str(
        other.index
    )
    # The schedule as found, before shrinking: its own lanes and panel.
    assert found.found_run is not None
    last = found.found_run.trace[-1].index
    chromium.evaluate("document.querySelector('details.found').open = true")
    click(chromium, f'a[data-view=found][data-step="{last}"]')
    assert f"Step {last} · " in panel_text(chromium, "found-source")
    assert chromium.evaluate("location.hash") == f"#found-step-{last}"
    assert f"Step {other.index} · " in panel_text(chromium, "source")
    chromium.evaluate("document.querySelector('details.found').open = false")
    chromium.evaluate("document.querySelector('button.copy').click()")
    assert chromium.evaluate("window.getSelection().toString()") == found.replay_command
    access, sync, preempt = colour_counts(chromium, ACCESS, SYNC, PREEMPT)
    assert access > 1000 and sync > 1000 and preempt > 40
    assert chromium.errors() == []


def test_time_passing_is_drawn_in_its_own_colour(
    chromium: browser.Browser, held: ExploreResult, tmp_path: Path
) -> None:
    open_page(chromium, tmp_path / "held.html", schedule_page(schedule_view(held), "held"))
    assert chromium.evaluate("document.querySelectorAll('line.mark-time').length") >= 1
    (time_marks,) = colour_counts(chromium, TIME)
    assert time_marks > 20


def test_a_clean_exploration_s_page_loads_without_errors(
    chromium: browser.Browser, tmp_path: Path
) -> None:
    result = threadcheck.explore(races.FIXED["lost_update"], budget=20)
    page = tmp_path / "clean.html"
    assert write_views(result, "clean", html=str(page)) == []
    chromium.open(page.as_uri())
    assert chromium.errors() == []
    assert "no failure" in chromium.evaluate("document.querySelector('h1').textContent")


def test_a_5000_step_schedule_loads_whole(chromium: browser.Browser, tmp_path: Path) -> None:
    open_page(
        chromium, tmp_path / "big.html", schedule_page(schedule_view(big_result(5000, 4)), "big")
    )
    assert chromium.evaluate("document.querySelectorAll('svg rect[data-step]').length") == 5000
    assert chromium.evaluate("document.querySelectorAll('details.fold').length") > 0
    click(chromium, 'a[data-step="4321"]')
    assert "Step 4321" in panel_text(chromium, "source")


def test_the_findings_filter_by_kind_and_by_test(
    chromium: browser.Browser, tmp_path: Path
) -> None:
    race = finding(
        "Cache.size",
        Kind.DATA_RACE,
        test="t.py::test_b",
        access="write",
        prior=PriorAccess("read", ThreadInfo("MainThread", 1), (), None, None),
    )
    violations = [finding("reactor.callLater", test="t.py::test_a"), race]
    stall = finding("time.sleep", Kind.STALL, test="t.py::test_a", detail="250 ms")
    open_page(chromium, tmp_path / "findings.html", findings_page(violations, [stall], "s"))
    shown = "[...document.querySelectorAll('article.card')].filter(c => !c.hidden).length"
    assert chromium.evaluate(shown) == 3
    assert chromium.evaluate("document.getElementById('filters').hidden") is False
    uncheck(chromium, "race")
    assert chromium.evaluate(shown) == 2
    choose_test(chromium, "t.py::test_a")
    assert chromium.evaluate(shown) == 2  # test_a's violation and stall
    uncheck(chromium, "stall")
    assert chromium.evaluate(shown) == 1
    (red,) = colour_counts(chromium, PREEMPT)  # the cards' red edge
    assert red > 200
    assert chromium.errors() == []


def test_a_session_page_s_schedules_open_and_show_their_steps(
    chromium: browser.Browser, found: ExploreResult, tmp_path: Path
) -> None:
    view = schedule_view(found)
    page = findings_page(
        [finding("reactor.callLater", test="t.py::test_a")], [], "s", [("t.py::test_b", view)]
    )
    open_page(chromium, tmp_path / "session.html", page)
    chromium.evaluate("document.querySelector('#x1 details.schedule').open = true")
    step = view.blocks[0].index
    click(chromium, f'a[data-view=x1][data-step="{step}"]')
    assert f"Step {step} · " in panel_text(chromium, "x1-source")
    assert chromium.evaluate("location.hash") == f"#x1-step-{step}"
    shown = "[...document.querySelectorAll('article.card')].filter(c => !c.hidden).length"
    assert chromium.evaluate(shown) == 2
    uncheck(chromium, "schedule")
    assert chromium.evaluate(shown) == 1
    assert chromium.errors() == []


def test_a_deadlock_s_wait_for_graph_draws(chromium: browser.Browser, tmp_path: Path) -> None:
    result = threadcheck.explore(races.BUGGY["abba_deadlock"], budget=500)
    open_page(chromium, tmp_path / "deadlock.html", schedule_page(schedule_view(result), "abba"))
    assert chromium.evaluate("document.querySelectorAll('#deadlock g.wait-node').length") == 2
    edge = "document.querySelector('#deadlock line.wait-edge:not(.open)').getBBox().width"
    assert chromium.evaluate(edge) > 100  # the two threads side by side, joined
    (red,) = colour_counts(chromium, PREEMPT)
    assert red > 100


def test_without_javascript_the_text_is_all_there(
    chromium: browser.Browser, found: ExploreResult, tmp_path: Path
) -> None:
    run = found.run
    assert run is not None
    chromium.scripts(enabled=False)
    try:
        open_page(chromium, tmp_path / "nojs.html", schedule_page(schedule_view(found), "found"))
        rows = "document.querySelectorAll('#steps tr[id^=step-]').length"
        assert chromium.evaluate(rows) == len(run.trace)
        assert "Click a step" in panel_text(chromium, "source")  # the panel needs the script
        page = findings_page([finding("reactor.callLater", test="t.py::test_a")], [], "s")
        open_page(chromium, tmp_path / "nojs-findings.html", page)
        assert chromium.evaluate("document.getElementById('filters').hidden") is True
        assert chromium.evaluate("document.querySelectorAll('article.card').length") == 1
    finally:
        chromium.scripts(enabled=True)
