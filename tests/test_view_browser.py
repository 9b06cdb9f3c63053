"""The HTML page in a real browser: headless Chromium (Debian's ``chromium``,
which ``.ci/run`` installs) over the DevTools protocol. Each kind of page loads
with no console error, has its lanes and steps in the DOM, shows a step's source
on a click, and its screenshot has the size and colours of the timeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import browser
import pytest
import races
from test_view import PriorAccess, ThreadInfo, big_result, finding, late_fetch, lost_update

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
def found() -> ExploreResult:
    return lost_update()


@pytest.fixture(scope="module")
def held() -> ExploreResult:
    result = threadcheck.explore(late_fetch, budget=2000)
    assert result.found
    return result


@pytest.fixture(scope="module")
def chromium() -> Iterator[browser.Browser]:
    assert CHROMIUM is not None
    session = browser.Browser(CHROMIUM)
    try:
        yield session
    finally:
        session.close()


def near(pixel: tuple[int, int, int], colour: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 6 for a, b in zip(pixel, colour, strict=True))


def colour_counts(png: bytes, *colours: tuple[int, int, int]) -> list[int]:
    width, height, pixels = browser.png_pixels(png)
    assert (width, height) == (1400, 900)
    return [sum(1 for p in pixels if near(p, colour)) for colour in colours]


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
    chromium.evaluate(
        f"document.querySelector('a[data-step=\"{other.index}\"]').dispatchEvent("
        "new MouseEvent('click', {bubbles: true, cancelable: true}))"
    )
    panel = chromium.evaluate("document.getElementById('source').textContent")
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
    chromium.evaluate(
        f"document.querySelector('a[data-view=found][data-step=\"{last}\"]').dispatchEvent("
        "new MouseEvent('click', {bubbles: true, cancelable: true}))"
    )
    assert f"Step {last} · " in chromium.evaluate(
        "document.getElementById('found-source').textContent"
    )
    assert chromium.evaluate("location.hash") == f"#found-step-{last}"
    assert f"Step {other.index} · " in chromium.evaluate(
        "document.getElementById('source').textContent"
    )
    chromium.evaluate("document.querySelector('details.found').open = false")
    chromium.evaluate("document.querySelector('button.copy').click()")
    assert chromium.evaluate("window.getSelection().toString()") == found.replay_command
    access, sync, preempt = colour_counts(chromium.screenshot(), ACCESS, SYNC, PREEMPT)
    assert access > 1000 and sync > 1000 and preempt > 40
    assert chromium.errors() == []


def test_time_passing_is_drawn_in_its_own_colour(
    chromium: browser.Browser, held: ExploreResult, tmp_path: Path
) -> None:
    open_page(chromium, tmp_path / "held.html", schedule_page(schedule_view(held), "held"))
    assert chromium.evaluate("document.querySelectorAll('line.mark-time').length") >= 1
    (time_marks,) = colour_counts(chromium.screenshot(), TIME)
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
    chromium.evaluate(
        "document.querySelector('a[data-step=\"4321\"]').dispatchEvent("
        "new MouseEvent('click', {bubbles: true, cancelable: true}))"
    )
    assert "Step 4321" in chromium.evaluate("document.getElementById('source').textContent")


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
    chromium.evaluate(
        "const box = document.querySelector('input.kind-filter[value=race]');"
        "box.checked = false; box.dispatchEvent(new Event('change', {bubbles: true}))"
    )
    assert chromium.evaluate(shown) == 2
    chromium.evaluate(
        "const s = document.getElementById('test-filter'); s.value = 't.py::test_a';"
        "s.dispatchEvent(new Event('change', {bubbles: true}))"
    )
    assert chromium.evaluate(shown) == 2  # test_a's violation and stall
    chromium.evaluate(
        "const t = document.querySelector('input.kind-filter[value=stall]');"
        "t.checked = false; t.dispatchEvent(new Event('change', {bubbles: true}))"
    )
    assert chromium.evaluate(shown) == 1
    (red,) = colour_counts(chromium.screenshot(), PREEMPT)  # the cards' red edge
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
    chromium.evaluate(
        f"document.querySelector('a[data-view=x1][data-step=\"{step}\"]').dispatchEvent("
        "new MouseEvent('click', {bubbles: true, cancelable: true}))"
    )
    assert f"Step {step} · " in chromium.evaluate(
        "document.getElementById('x1-source').textContent"
    )
    assert chromium.evaluate("location.hash") == f"#x1-step-{step}"
    shown = "[...document.querySelectorAll('article.card')].filter(c => !c.hidden).length"
    assert chromium.evaluate(shown) == 2
    chromium.evaluate(
        "const box = document.querySelector('input.kind-filter[value=schedule]');"
        "box.checked = false; box.dispatchEvent(new Event('change', {bubbles: true}))"
    )
    assert chromium.evaluate(shown) == 1
    assert chromium.errors() == []
