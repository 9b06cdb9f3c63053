"""The views of a failing schedule: the Chrome trace (checked against the Trace
Event format) and the self-contained HTML page (checked as a document). The
page in a real browser: ``test_view_browser.py``."""

from __future__ import annotations

import dataclasses
import html
import itertools
import json
import linecache
import re
import threading
import time
from collections import Counter
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any

import races
from twisted.internet import defer, threads

import threadcheck
from threadcheck import _stacks
from threadcheck._activity import Activity
from threadcheck._sched._core import Failure, Step
from threadcheck._sched._report import ExploreResult, ScheduleRun
from threadcheck._view._chrome import (
    STEP_US,
    activity_trace,
    chrome_trace,
    empty_trace,
    trace_tid,
)
from threadcheck._view._findings import MAX_CARDS, MAX_LINES, findings_page
from threadcheck._view._outputs import write_views
from threadcheck._view._page import schedule_page
from threadcheck._view._schedule import ScheduleView, from_json, schedule_view, to_json
from threadcheck._violation import Kind, PriorAccess, TestContext, ThreadInfo, Violation
from threadcheck_reactor import ThreadCheckMixin, _activity

from support import schedule_run

PHASES_WITH_TS = {"X", "i", "s", "f", "C"}


def validate_chrome_trace(document: dict[str, Any]) -> None:
    """The Trace Event format's rules that Perfetto and chrome://tracing rely on."""
    assert json.loads(json.dumps(document)) == document  # plain JSON
    events = document["traceEvents"]
    assert isinstance(events, list) and events
    named_threads = {e["tid"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    # Perfetto: tid 0 is the idle thread (its slices vanish), tid == pid the main thread.
    assert not named_threads & ({0} | {e["pid"] for e in events}), named_threads
    slices: dict[int, list[tuple[int, int]]] = {}
    flows: dict[int, dict[str, dict[str, Any]]] = {}
    for event in events:
        assert isinstance(event["name"], str) and event["name"], event
        assert event["ph"] in {"M", *PHASES_WITH_TS}, event
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int), event
        if event["ph"] in PHASES_WITH_TS:
            assert isinstance(event["ts"], int) and event["ts"] >= 0, event
        if event["ph"] == "M":
            assert isinstance(event["args"], dict), event
        if event["ph"] == "X":
            assert isinstance(event["dur"], int) and event["dur"] > 0, event
            assert event["tid"] in named_threads, event
            slices.setdefault(event["tid"], []).append((event["ts"], event["ts"] + event["dur"]))
        if event["ph"] == "i":
            assert event["s"] in {"g", "p", "t"}, event
        if event["ph"] == "C":
            assert all(isinstance(v, (int, float)) for v in event["args"].values()), event
        if event["ph"] in {"s", "f"}:
            pair = flows.setdefault(event["id"], {})
            assert event["ph"] not in pair, f"flow id {event['id']} has two {event['ph']} events"
            pair[event["ph"]] = event
    for flow_id, pair in flows.items():
        assert set(pair) == {"s", "f"}, f"flow {flow_id} is not paired"
        start, end = pair["s"], pair["f"]
        assert start["ts"] <= end["ts"] and start["cat"] == end["cat"]
        assert end.get("bp") == "e"
        for event in (start, end):  # bound to the slice that encloses it on its thread
            assert any(a <= event["ts"] < b for a, b in slices[event["tid"]]), event


def lost_update() -> ExploreResult:
    result = threadcheck.explore(races.BUGGY["lost_update"], budget=500)
    assert result.found and result.run is not None
    return result


def late_fetch(reactor: Any) -> defer.Deferred[Any]:
    """Two pool jobs; the code assumes the first submitted finishes first, which
    only a hold (time passing while the first job could run) breaks."""
    order: list[str] = []

    def index() -> None:
        order.append("index")

    def fetch() -> None:
        time.sleep(0.01)
        order.append("fetch")

    pool = reactor.getThreadPool()
    jobs = [threads.deferToThreadPool(reactor, pool, job) for job in (index, fetch)]

    def check(_: object) -> None:
        assert order == ["index", "fetch"], order

    return defer.gatherResults(jobs).addCallback(check)


def test_a_found_schedule_becomes_one_lane_per_thread_and_one_block_per_step(
    found: ExploreResult,
) -> None:
    run = found.run
    assert run is not None
    view = schedule_view(found)
    assert [lane.name for lane in view.lanes] == run.thread_names
    assert [block.index for block in view.blocks] == [step.index for step in run.trace]
    assert {b.index: b.note for b in view.blocks if b.note} == run.preemptions
    store = next(b for b in view.blocks if b.note)
    assert store.detail == "counter.total (store)"
    assert (37, "        counter.total += 10") in view.sources[store.source_key]
    assert view.replay_command == found.replay_command


def test_the_trace_follows_the_trace_event_format(found: ExploreResult) -> None:
    run = found.run
    assert run is not None
    document = chrome_trace(schedule_view(found), "lost update")
    validate_chrome_trace(document)
    events = document["traceEvents"]
    phases = Counter(event["ph"] for event in events)
    assert phases["X"] == len(run.trace)
    assert phases["i"] == len(run.preemptions)
    switches = sum(1 for a, b in itertools.pairwise(run.trace) if a.tid != b.tid)
    assert phases["s"] == phases["f"] == switches > 0
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert names == {f"T{tid} {name}" for tid, name in enumerate(run.thread_names)}
    preemption = next(e for e in events if e["ph"] == "i")
    assert preemption["s"] == "t" and preemption["name"] == "preempted: T1 runs"


def test_time_passing_is_a_global_mark_and_moves_the_virtual_clock(held: ExploreResult) -> None:
    document = chrome_trace(schedule_view(held), "late fetch")
    validate_chrome_trace(document)
    events = document["traceEvents"]
    passing = [e for e in events if e["ph"] == "i" and e["cat"] == "time"]
    assert passing and all(e["s"] == "g" and e["name"].startswith("time +") for e in passing)
    clock = [e["args"]["ms"] for e in events if e["ph"] == "C"]
    assert clock[0] == 0 and clock[-1] >= 10 and clock == sorted(clock)
    step = min(e["ts"] for e in passing) // STEP_US
    later = [e for e in events if e["ph"] == "X" and e["ts"] > step * STEP_US]
    assert later and later[0]["args"]["virtual time (s)"] >= 0.01


class _Page(HTMLParser):
    """What the tests look for in a page: element counts, ids, links, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: Counter[str] = Counter()
        self.ids: set[str] = set()
        self.classes: Counter[str] = Counter()
        self.external: list[str] = []
        self.data_steps: Counter[str] = Counter()
        """The shown schedule's steps (``data-step``) and those of the one as found."""
        self.found_steps: Counter[str] = Counter()
        self.shown_marks: Counter[str] = Counter()
        """The shown schedule's preemption and time marks, by class."""
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"] or "")
        for css in (values.get("class") or "").split():
            self.classes[css] += 1
        for name in ("src", "href"):
            link = values.get(name) or ""
            if link and not link.startswith("#"):
                self.external.append(link)
        if tag == "line" and values.get("data-view") == "shown":
            self.shown_marks[values.get("class") or ""] += 1
        if tag == "rect" and values.get("data-step"):
            found = values.get("data-view") == "found"
            (self.found_steps if found else self.data_steps)[values["data-step"] or ""] += 1
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def script_data(parsed: _Page) -> Any:
    return json.loads(next(s for s in parsed.scripts if s.lstrip().startswith("{")))


def test_the_page_is_self_contained_and_has_every_step(found: ExploreResult) -> None:
    run, as_found = found.run, found.found_run
    assert run is not None and as_found is not None  # shrunk from 4 preemptions to 1
    page = schedule_page(schedule_view(found), "lost update")
    parsed = parse(page)
    assert parsed.external == []  # no network, opens from disk
    assert parsed.tags["style"] == 1 and parsed.tags["svg"] == 2  # shown, and as found
    assert parsed.classes["lane-row"] == len(run.thread_names) + len(as_found.thread_names)
    assert set(parsed.data_steps) == {str(step.index) for step in run.trace}
    assert set(parsed.found_steps) == {str(step.index) for step in as_found.trace}
    assert {f"step-{step.index}" for step in run.trace} <= parsed.ids
    assert {f"found-step-{step.index}" for step in as_found.trace} <= parsed.ids
    assert parsed.classes["mark-preempt"] == len(run.preemptions) + len(as_found.preemptions)
    assert parsed.classes["failed"] == 2
    data = script_data(parsed)
    assert set(data["views"]["shown"]["steps"]) == {str(step.index) for step in run.trace}
    assert set(data["views"]["found"]["steps"]) == {str(step.index) for step in as_found.trace}
    # Without JavaScript: the headline, each step's source line and the replay command.
    assert "exception: AssertionError: total is 10" in page
    assert "counter.total += 10" in page
    assert found.replay_command is not None
    assert found.replay_command.replace("'", "&#x27;") in page


def test_the_schedule_as_found_is_folded_below_the_shrunk_one(found: ExploreResult) -> None:
    assert found.run is not None and found.found_run is not None
    assert found.original_preemptions == found.found_run.preemption_count
    assert found.found_run.preemption_count > found.run.preemption_count
    page = schedule_page(schedule_view(found), "lost update")
    assert page.index('<details class="found">') > page.index('id="steps"')
    steps = len(found.found_run.trace)
    # The count the report's "found ... with N preemptions" says (two at one
    # step share one note: the page said 93 where the report said 105).
    preemptions = found.original_preemptions
    assert f"As found, before shrinking: {steps} steps, {preemptions} preemptions" in page


def test_a_thread_s_lane_starts_where_its_starter_started_it(found: ExploreResult) -> None:
    run = found.run
    assert run is not None
    view = schedule_view(found)
    worker = view.lanes[1]
    start = next(block for block in view.blocks if block.index == worker.spawned_at)
    assert (start.tid, start.detail) == (0, "thread.start")
    assert view.lanes[0].spawned_at == 0  # running when the schedule began
    page = schedule_page(view, "lost update")
    assert "T0 starts T1 at _threadworker.py:78 __init__" in page


def test_time_passing_is_drawn_apart_from_preemptions(held: ExploreResult) -> None:
    run = held.run
    assert run is not None
    parsed = parse(schedule_page(schedule_view(held), "late fetch"))
    timed = sum(1 for note in run.preemptions.values() if note.startswith("time +"))
    assert parsed.shown_marks["mark-time"] == timed > 0
    assert parsed.shown_marks["mark-preempt"] == len(run.preemptions) - timed


def test_text_in_the_program_cannot_break_out_of_the_page() -> None:
    hostile = "</script><script>alert(1)</script><u>"
    run = schedule_run(
        [Step(1, 0, "access", "/x/<u>.py", 3, "f<u>", hostile)], {1: hostile}, [hostile]
    )
    result = result_of(run, Failure("exception", hostile, thread=hostile), hostile)
    page = schedule_page(schedule_view(result), hostile)
    parsed = parse(page)
    assert parsed.tags["script"] == 2 and parsed.tags["u"] == 0
    assert script_data(parsed)["views"]["shown"]["steps"]["1"]["d"] == hostile


def test_a_clean_exploration_writes_its_summary(tmp_path: Any) -> None:
    result = threadcheck.explore(races.FIXED["lost_update"], budget=30)
    assert not result.found
    page, trace = tmp_path / "clean.html", tmp_path / "clean.json"
    assert write_views(result, "clean", html=str(page), trace=str(trace)) == []
    parsed = parse(page.read_text())
    assert parsed.external == [] and parsed.tags["svg"] == 0
    assert result.report().splitlines()[0] in page.read_text()
    document = json.loads(trace.read_text())
    validate_chrome_trace(document)
    assert document == empty_trace(result.report(), "clean")


def test_an_unwritable_path_is_one_line(found: ExploreResult, tmp_path: Any) -> None:
    problems = write_views(found, "t", html=str(tmp_path / "missing" / "p.html"))
    assert len(problems) == 1 and problems[0].startswith("cannot write ")
    assert "No such file or directory" in problems[0]


def big_result(steps: int, threads: int) -> ExploreResult:
    """A long schedule, as a livelock or a long program gives: for the size limits."""
    trace = [
        Step(
            n, n % threads, "access", __file__, 40 + n % 20, "work", f"items[{n}] (load)", n / 1e3
        )
        for n in range(1, steps + 1)
    ]
    run = schedule_run(
        trace,
        {n: f"preempted: T{(n + 1) % threads} runs" for n in range(50, steps, 97)},
        [f"worker-{n}" for n in range(threads)],
    )
    failure = Failure("livelock", "no progress", thread="worker-0")
    return result_of(run, failure, "threadcheck replay tc1.x prog.py")


def result_of(run: ScheduleRun, failure: Failure, replay_command: str) -> ExploreResult:
    """A found result around a made-up schedule."""
    return ExploreResult(
        found=True,
        schedules=1,
        distinct=1,
        strategy="random",
        seed=0,
        target="t",
        failure=failure,
        run=run,
        replay_command=replay_command,
    )


def test_a_5000_step_schedule_stays_under_5_mb_with_long_stretches_folded() -> None:
    view: ScheduleView = schedule_view(big_result(5000, 4))
    page = schedule_page(view, "big")
    assert len(page.encode()) <= 5 * 1024 * 1024
    parsed = parse(page)
    assert set(parsed.data_steps) == {str(n) for n in range(1, 5001)}
    assert parsed.tags["details"] > 0  # stretches with no preemption, folded
    assert {f"step-{n}" for n in range(1, 5001)} <= parsed.ids  # still all in the page
    trace = json.dumps(chrome_trace(view, "big"))
    assert len(trace.encode()) <= 5 * 1024 * 1024


def test_a_livelock_s_200000_steps_are_drawn_5000_and_say_so() -> None:
    # Every step was written: 110 MB of page and 41 MB of trace for a livelock.
    view: ScheduleView = schedule_view(big_result(200_000, 2))
    assert len(view.blocks) <= 5000 and view.left_out == 200_000 - len(view.blocks)
    assert view.blocks[-1].index == 200_000  # the end, where it stopped, is drawn
    page = schedule_page(view, "livelock")
    assert len(page.encode()) <= 5 * 1024 * 1024
    assert f"200000 steps, 2 threads, virtual time 200 s; {view.left_out} steps not drawn" in page
    trace = chrome_trace(view, "livelock")
    assert trace["otherData"]["steps not drawn"] == str(view.left_out)
    assert len(json.dumps(trace).encode()) <= 5 * 1024 * 1024


# -- findings: violations, data races, stalls ------------------------------------------


def frames_here(*functions: str) -> _stacks.Stack:
    """A stack of this file's real lines (user code), with a Twisted frame inside."""
    twisted_file = defer.__file__
    user = [_stacks.Frame(__file__, 40 + n, name) for n, name in enumerate(functions)]
    return (*user, _stacks.Frame(twisted_file, 100, "callLater"))


def finding(
    api: str, kind: Kind = Kind.FOREIGN_THREAD, test: str | None = None, **more: Any
) -> Violation:
    return Violation(
        api=api,
        kind=kind,
        thread=ThreadInfo("worker", 2),
        reactor_thread=ThreadInfo("MainThread", 1),
        stack=frames_here("handle", "reply"),
        spawn_site=frames_here("start"),
        submitted_from=None,
        test=None if test is None else TestContext(test, "call"),
        **more,
    )


def test_findings_are_one_card_each_with_counts_fix_and_folded_library_frames() -> None:
    calls = [finding("reactor.callLater", test="t.py::test_a")] * 3
    calls += [finding("transport.write", test="t.py::test_b")]
    race = finding(
        "Cache.size",
        Kind.DATA_RACE,
        test="t.py::test_b",
        access="write",
        prior=PriorAccess("read", ThreadInfo("MainThread", 1), frames_here("peek"), None, None),
    )
    stall = finding("time.sleep", Kind.STALL, detail="held the reactor thread 250 ms")
    page = findings_page([*calls, race], [stall], "session")
    parsed = parse(page)
    assert parsed.external == []
    assert parsed.classes["card"] == 4
    assert (parsed.classes["card-violation"], parsed.classes["card-race"]) == (2, 1)
    assert parsed.classes["card-stall"] == 1
    assert "threadcheck: 4 thread-affinity violations, 1 data race, 1 reactor stall" in page
    assert '<span class="count-badge">x3</span>' in page
    assert "fix:</b> <code>do it in the reactor thread: reactor.callFromThread(" in page
    assert "wait without blocking: task.deferLater(reactor, seconds, f)" in page
    assert "earlier read in thread &#x27;MainThread&#x27;" in page
    assert parsed.classes["lib"] >= 4  # each stack's Twisted frame, folded
    assert linecache.getline(__file__, 41).strip() in html.unescape(page)  # source context
    # The counts, and a filter for each kind and for each test.
    assert parsed.classes["count"] == 2 and parsed.classes["kind-filter"] == 3
    assert all(f'<option value="t.py::test_{n}">' in page for n in "ab")


def test_a_race_card_shows_where_each_access_s_work_came_from() -> None:
    # Only the two accesses' stacks were drawn: no submission, no spawn site.
    prior = PriorAccess(
        "read", ThreadInfo("MainThread", 1), frames_here("peek"), None, frames_here("batch")
    )
    race = finding("Cache.size", Kind.DATA_RACE, access="write", prior=prior)
    race = dataclasses.replace(race, submitted_from=frames_here("submit"))
    page = findings_page([race], [], "session")
    assert page.count("work submitted to the thread pool at") == 2
    assert page.count("thread started at") == 1  # the later access's: the prior has none
    assert (
        page.index("write in thread") < page.index("work submitted") < page.index("earlier read")
    )


def test_100000_violations_stay_under_5_mb_with_the_rest_one_line_each() -> None:
    distinct = [
        finding("reactor.callLater", test=f"t.py::test_{n % 50}", detail=None) for n in range(5000)
    ]
    distinct = [replace(v, thread=ThreadInfo(f"worker-{n}", n)) for n, v in enumerate(distinct)]
    violations = [distinct[n % 5000] for n in range(100_000)]
    page = findings_page(violations, [], "big session")
    assert len(page.encode()) <= 5 * 1024 * 1024
    parsed = parse(page)
    assert parsed.classes["card"] == MAX_CARDS
    assert parsed.classes["finding"] == 5000 - MAX_CARDS
    assert "threadcheck: 100000 thread-affinity violations" in page


def test_a_stall_beside_more_violations_than_the_page_lists_is_still_shown() -> None:
    # Past 10,200 distinct violations the page dropped the stall, and said
    # "the JSON report has them all", which holds no stalls.
    distinct = [
        replace(finding("reactor.callLater", detail=None), thread=ThreadInfo(f"w-{n}", n))
        for n in range(MAX_CARDS + MAX_LINES + 300)
    ]
    stall = finding("time.sleep", Kind.STALL, detail="callback held the thread 400 ms")
    page = findings_page(distinct, [stall], "big run")
    assert 'data-kind="stall"' in page
    assert "301 more distinct violations and races: the JSON report has them all." in page


def test_a_session_whose_worker_went_down_says_its_findings_are_lost() -> None:
    page = findings_page([finding("reactor.callLater")], [], "session", lost=["gw0"])
    assert "incomplete: gw0 went down without its report; its findings are lost" in page
    assert 'class="clean"' not in page


def test_no_findings_says_so() -> None:
    page = findings_page([], [], "clean session")
    assert "threadcheck: no findings" in page and "Nothing to report." in page
    assert parse(page).classes["card"] == 0


# -- deadlocks: the wait-for graph ---------------------------------------------------


def dining(reactor: Any) -> None:
    """Three threads, three locks, each taking its own then the next: a cycle."""
    locks = [threading.Lock() for _ in range(3)]

    def diner(n: int) -> None:
        with locks[n], locks[(n + 1) % 3]:
            pass

    diners = [threading.Thread(target=diner, args=(n,), name=f"diner-{n}") for n in range(3)]
    for thread in diners:
        thread.start()
    for thread in diners:
        thread.join()


def test_a_lock_cycle_is_drawn_as_a_cycle_of_holders() -> None:
    result = threadcheck.explore(dining, budget=2000)
    assert result.found and result.failure is not None and result.failure.kind == "deadlock"
    waits = {tid: holder for tid, _, holder in result.failure.waits_for}
    diners = {tid for tid in waits if tid != 0}
    assert len(diners) == 3 and waits[0] in diners  # the main thread joins a diner
    assert {waits[tid] for tid in diners} == diners  # each diner waits for the next
    assert all(what.startswith("lock at ") for _, what, _ in result.failure.waits_for[1:])
    assert "held by T" in result.failure.details
    page = schedule_page(schedule_view(result), "dining")
    section = page[page.index('<section id="deadlock">') :]
    parsed = parse(section[: section.index("</section>")])
    assert parsed.classes["wait-node"] == 4 and parsed.classes["wait-edge"] == 4
    assert parsed.classes["open"] == 0  # every wait has a holder


def test_a_wait_nobody_holds_points_to_what_it_waits_for() -> None:
    result = threadcheck.explore(races.BUGGY["abba_deadlock"], budget=500)
    assert result.failure is not None and result.failure.kind == "deadlock"
    (reactor, lock, holder), (worker, queue, nobody) = result.failure.waits_for
    assert (reactor, holder, worker, nobody) == (0, 1, 1, None)
    assert lock.startswith("lock at ") and lock.endswith("races.py:107 in in_reactor")
    assert queue.startswith("queue.get (empty) at ")
    page = schedule_page(schedule_view(result), "abba")
    assert "lock at races.py:107 in in_reactor</code>, held by T1 PoolThread" in page
    section = page[page.index('<section id="deadlock">') :]
    parsed = parse(section[: section.index("</section>")])
    assert parsed.classes["wait-node"] == 2 and parsed.classes["wait-open"] == 1


# -- the pytest session's page: schedules beside findings --------------------------


def test_a_schedule_view_travels_as_json(found: ExploreResult) -> None:
    view = schedule_view(found)
    assert view.found is not None
    document = json.loads(json.dumps(to_json(view)))
    assert from_json(document) == view


def test_failing_explorations_are_cards_with_their_schedules(found: ExploreResult) -> None:
    view = schedule_view(found)
    page = findings_page([], [], "session", [("t.py::test_race", view), ("t.py::test_b", view)])
    parsed = parse(page)
    assert "threadcheck: 2 failing explorations" in page
    assert "of them expected" not in page  # no violation, none expected
    assert "Nothing to report" not in page
    assert parsed.classes["card-schedule"] == 2 and parsed.tags["svg"] == 2
    assert {"x1-step-1", "x2-step-1", "x1-replay", "x2-replay"} <= parsed.ids
    assert sorted(script_data(parsed)["views"]) == ["x1", "x2"]
    assert '<input type="checkbox" class="kind-filter" value="schedule" checked>' in page


# -- data races: the two accesses, linked ---------------------------------------------


def test_a_data_race_s_two_accesses_are_linked_in_the_page_and_the_trace() -> None:
    result = threadcheck.explore(races.BUGGY["lost_update"], budget=500, races=True)
    assert result.failure is not None and result.run is not None
    (earlier_thread, earlier_file, earlier_line), (later_thread, _, later_line) = (
        result.failure.accesses
    )
    assert earlier_file.endswith("races.py") and {earlier_line, later_line} == {34, 37}
    view = schedule_view(result)
    assert view.conflict is not None
    blocks = {block.index: block for block in view.blocks}
    earlier, later = (blocks[index] for index in view.conflict)
    assert earlier.index < later.index and earlier.tid != later.tid
    assert (earlier.lineno, later.lineno) == (earlier_line, later_line)
    assert view.lanes[earlier.tid].name == earlier_thread
    assert view.lanes[later.tid].name == later_thread
    page = schedule_page(view, "race")
    assert f'<path class="conflict" data-steps="{earlier.index} {later.index}"' in page
    assert script_data(parse(page))["views"]["shown"]["first"] == later.index
    document = chrome_trace(view, "race")
    validate_chrome_trace(document)
    race = [e for e in document["traceEvents"] if e.get("cat") == "data race"]
    tids = [trace_tid(earlier.tid), trace_tid(later.tid)]
    assert [(e["ph"], e["tid"]) for e in race] == list(zip("sf", tids, strict=True))
    assert from_json(json.loads(json.dumps(to_json(view)))) == view


def test_no_link_when_the_accesses_are_not_in_the_trace() -> None:
    result = big_result(10, 2)
    assert result.failure is not None
    failure = replace(
        result.failure, accesses=(("worker-0", "/x.py", 1), ("worker-1", "/y.py", 2))
    )
    assert schedule_view(replace(result, failure=failure)).conflict is None


# -- a run's thread activity (threadcheck run --trace) -----------------------------


def test_activity_pairs_each_submission_with_its_run() -> None:
    ticks = iter(range(0, 10_000_000, 1000))
    activity = Activity(clock=lambda: next(ticks))

    def answer() -> int:
        return 42

    traced = activity.submit("callFromThread", answer)
    assert traced.__code__ is answer.__code__  # the reactor's checks still see it
    assert traced() == 42
    submit, ran = activity.events
    assert (submit.kind, ran.kind, submit.flow) == ("submit", "run", ran.flow)
    assert submit.what == ran.what == "callFromThread answer"
    assert ran.thread_name == threading.current_thread().name
    document = activity_trace(activity, "run")
    validate_chrome_trace(document)
    names = [e["name"] for e in document["traceEvents"] if e["ph"] == "X"]
    assert names == [f"-> {submit.what}", submit.what]


def test_activity_past_its_limit_is_counted_and_unpaired_flows_dropped() -> None:
    activity = Activity(limit=3)
    works = [activity.submit("callLater", print) for _ in range(3)]
    works[0]()  # one ran; two still queued at the end
    assert len(activity.events) == 3 and activity.dropped == 1
    document = activity_trace(activity, "run")
    validate_chrome_trace(document)
    assert document["otherData"]["dropped"] == 1
    assert sum(1 for e in document["traceEvents"] if e["ph"] in "sf") == 0  # none paired


def test_the_reactor_s_hand_offs_and_pool_jobs_are_recorded(running_reactor: Any) -> None:
    running = running_reactor()
    reactor = running.reactor
    activity = Activity()
    undo = _activity.install(activity)
    try:
        done = threading.Event()

        def job() -> None:
            reactor.callFromThread(done.set)

        def schedule() -> None:
            reactor.callLater(0, reactor.callInThread, job)

        reactor.callFromThread(schedule)
        assert done.wait(10)
        running.stop()
    finally:
        undo()
    assert vars(ThreadCheckMixin)["callFromThread"].__module__ == "threadcheck_reactor._reactor"
    ran = {event.what: event.thread_name for event in activity.events if event.kind == "run"}
    job_name = "callInThread job"
    assert ran["callFromThread schedule"] == "reactor"
    assert ran[f"callLater {type(reactor).callInThread.__qualname__}"] == "reactor"
    assert ran[job_name].startswith("PoolThread-")
    assert ran["callFromThread Event.set"] == "reactor"
    submitted = {e.what: e.thread_name for e in activity.events if e.kind == "submit"}
    assert (
        submitted[job_name] == "reactor" and submitted["callFromThread Event.set"] == ran[job_name]
    )
    validate_chrome_trace(activity_trace(activity, "run"))


def test_the_found_schedules_count_is_the_reports_not_its_notes(found: ExploreResult) -> None:
    # Two decisions at one step share one note: the page counted notes (93)
    # where the report said "found ... with 105 preemptions".
    view = schedule_view(found)
    assert view.found is not None
    assert view.found.preemptions == found.original_preemptions
    shared = dataclasses.replace(view.found, preemptions=view.found.preemptions + 2)
    page = schedule_page(dataclasses.replace(view, found=shared), "lost update")
    assert f"steps, {shared.preemptions} preemptions or time advances" in page


def test_two_threads_waiting_for_each_other_are_two_arrows_apart() -> None:
    # A two-lock (AB/BA) deadlock drew both edges on one line, their labels
    # one over the other at the same point.
    from threadcheck._view._waits import wait_for_graph

    run = big_result(4, 2).run
    assert run is not None
    waits = (
        (0, "lock at bank.py:16 in transfer", 1),
        (1, "lock at bank.py:19 in transfer", 0),
    )
    failure = Failure("deadlock", "every live thread is blocked", "worker-0", waits_for=waits)
    svg = wait_for_graph(schedule_view(result_of(run, failure, "")), "")
    n = r'"(-?\d+)"'
    lines = re.findall(f'<line class="wait-edge" x1={n} y1={n} x2={n} y2={n}', svg)
    labels = re.findall(r'<text class="wait-label" x="(-?\d+)" y="(-?\d+)"', svg)
    assert len(lines) == 2 and len(labels) == 2
    assert len(set(lines)) == 2 and labels[0] != labels[1]
    assert {tuple(line[:2]) for line in lines}.isdisjoint({tuple(line[2:]) for line in lines})
