"""A schedule as Chrome Trace Event JSON, which Perfetto and ``chrome://tracing`` open.

The time axis counts steps (one step is :data:`STEP_US` microseconds, shown
as 1 ms): a schedule's steps take no real time, and its virtual time only
moves when time passes, which a counter track shows. Each step is a slice on
its thread's track; a switch from one thread to another is a flow arrow;
preemptions are thread-scoped instant events, time advances global ones.
"""

from __future__ import annotations

import itertools
from typing import Any

from threadcheck import __version__
from threadcheck._activity import Activity
from threadcheck._view._schedule import Block, ScheduleView

STEP_US = 1000
PID = 1
TID_BASE = 10
"""Trace tids are thread numbers plus this: Perfetto takes tid 0 for the idle
thread (its slices vanish) and the tid equal to the pid for the main thread."""


def trace_tid(tid: int) -> int:
    """The trace's tid of schedule thread ``tid`` (T0, T1, ...)."""
    return TID_BASE + tid


RACE_FLOW_ID = 1 << 30
"""Above any switch's flow id (they count from 1)."""


def chrome_trace(view: ScheduleView, title: str) -> dict[str, Any]:
    """The Trace Event JSON object of ``view``."""
    events: list[dict[str, Any]] = [_meta("process_name", PID, {"name": title})]
    for lane in view.lanes:
        events.append(_meta("thread_name", trace_tid(lane.tid), {"name": lane.label}))
        events.append(_meta("thread_sort_index", trace_tid(lane.tid), {"sort_index": lane.tid}))
    events += [_slice(block) for block in view.blocks]
    events += _marks(view.blocks)
    events += _hand_offs(view.blocks)
    events += _conflict(view)
    events += _virtual_time(view.blocks)
    other = {
        "tool": f"threadcheck {__version__}",
        "failure": view.headline,
        "replay": view.replay_command,
        "time axis": f"1 step = {STEP_US} us; virtual time is in each step's args",
    }
    if view.left_out:
        other["steps not drawn"] = str(view.left_out)
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": other}


def empty_trace(summary: str, title: str) -> dict[str, Any]:
    """The trace of an exploration with no failing schedule: what ran, nothing to draw."""
    return {
        "traceEvents": [_meta("process_name", PID, {"name": title})],
        "displayTimeUnit": "ms",
        "otherData": {"tool": f"threadcheck {__version__}", "outcome": summary.strip()},
    }


def _meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": PID, "tid": tid, "args": args}


def _slice(block: Block) -> dict[str, Any]:
    return {
        "name": block.detail,
        "cat": block.kind,
        "ph": "X",
        "ts": block.index * STEP_US,
        "dur": STEP_US,
        "pid": PID,
        "tid": trace_tid(block.tid),
        "args": {
            "step": block.index,
            "where": block.where,
            "file": block.path,
            "line": block.lineno,
            "virtual time (s)": round(block.seconds, 6),
        },
    }


def _marks(blocks: tuple[Block, ...]) -> list[dict[str, Any]]:
    marks = []
    for block in blocks:
        if not block.note:
            continue
        mark: dict[str, Any] = {
            "name": block.note,
            "cat": "time" if block.time_passes else "preemption",
            "ph": "i",
            "ts": (block.index + 1) * STEP_US - 1,
            "pid": PID,
            "tid": trace_tid(block.tid),
            "s": "g" if block.time_passes else "t",
        }
        marks.append(mark)
    return marks


def _hand_offs(blocks: tuple[Block, ...]) -> list[dict[str, Any]]:
    """A flow arrow from each thread's last step before a switch to the next step."""
    flows: list[dict[str, Any]] = []
    for previous, block in itertools.pairwise(blocks):
        if previous.tid == block.tid:
            continue
        flow = {"name": "switch", "cat": "switch", "id": len(flows) // 2 + 1, "pid": PID}
        start = {**flow, "ph": "s", "ts": previous.index * STEP_US + STEP_US // 2}
        end = {**flow, "ph": "f", "bp": "e", "ts": block.index * STEP_US}
        flows += [{**start, "tid": trace_tid(previous.tid)}, {**end, "tid": trace_tid(block.tid)}]
    return flows


def _conflict(view: ScheduleView) -> list[dict[str, Any]]:
    """A data race: a flow arrow from its earlier access's step to its later one's."""
    if view.conflict is None:
        return []
    tids = {block.index: trace_tid(block.tid) for block in view.blocks}
    earlier, later = view.conflict
    if earlier not in tids or later not in tids:
        return []
    flow = {"name": "data race", "cat": "data race", "id": RACE_FLOW_ID, "pid": PID}
    return [
        {**flow, "ph": "s", "ts": earlier * STEP_US + STEP_US // 2, "tid": tids[earlier]},
        {**flow, "ph": "f", "bp": "e", "ts": later * STEP_US, "tid": tids[later]},
    ]


def activity_trace(activity: Activity, title: str) -> dict[str, Any]:
    """A run's thread activity: a track per thread, a slice per callback or job
    run, and a flow from where each was handed on (a 1 us slice, which the flow
    starts from) to where it ran. Real time, in microseconds from the start."""
    tids: dict[tuple[int, str], int] = {}
    events: list[dict[str, Any]] = [_meta("process_name", PID, {"name": title})]
    slices: list[dict[str, Any]] = []
    for event in activity.events:
        key = (event.thread, event.thread_name)
        if key not in tids:
            tids[key] = trace_tid(len(tids))
            events.append(_meta("thread_name", tids[key], {"name": event.thread_name}))
        ts = (event.start_ns - activity.started_ns) // 1000
        common = {"pid": PID, "tid": tids[key], "cat": event.kind}
        flow = {"name": "hand-off", "cat": "hand-off", "id": event.flow, "pid": PID}
        if event.kind == "submit":
            slices.append({**common, "name": f"-> {event.what}", "ph": "X", "ts": ts, "dur": 1})
            slices.append({**flow, "ph": "s", "ts": ts, "tid": tids[key]})
        else:
            # Floor at the start, ceiling at the end: what it submitted nests inside.
            dur = -(-event.duration_ns // 1000) + 1
            slices.append({**common, "name": event.what, "ph": "X", "ts": ts, "dur": dur})
            slices.append({**flow, "ph": "f", "bp": "e", "ts": ts, "tid": tids[key]})
    return {
        "traceEvents": events + _paired(slices),
        "displayTimeUnit": "ms",
        "otherData": {
            "tool": f"threadcheck {__version__}",
            "time axis": "real time, microseconds from the start of the run",
            "dropped": activity.dropped,
        },
    }


def _paired(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Without the flow ends that never ran (work still queued at the end) or were
    never submitted (dropped past the limit): a flow needs both."""
    phases: dict[int, set[str]] = {}
    for event in events:
        if event["ph"] in ("s", "f"):
            phases.setdefault(event["id"], set()).add(event["ph"])
    return [
        event
        for event in events
        if event["ph"] not in ("s", "f") or phases[event["id"]] == {"s", "f"}
    ]


def _virtual_time(blocks: tuple[Block, ...]) -> list[dict[str, Any]]:
    counters: list[dict[str, Any]] = []
    last: float | None = None
    for block in blocks:
        if block.seconds == last:
            continue
        last = block.seconds
        counters.append(
            {
                "name": "virtual time (ms)",
                "ph": "C",
                "ts": block.index * STEP_US,
                "pid": PID,
                "tid": PID,
                "args": {"ms": round(block.seconds * 1e3, 3)},
            }
        )
    return counters
