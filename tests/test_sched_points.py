"""Where the scheduler puts its points, and how the step table names them: the
same on every supported Python, whatever its bytecode."""

from __future__ import annotations

from typing import Any

from threadcheck._sched._points import access_points, is_loop_step


def service(counter: Any, n: int, d: dict[str, int], k: str, self: Any, gather: Any) -> Any:
    counter.total += n
    self.x = n
    self.transport.write(b"x")
    d[k] += 1
    self.items[k] = 2
    del d[k]
    value = self.a.b.c
    return gather(value).addBoth(print)  # a call's result: not a named object


def test_each_access_is_named_by_what_it_reads_or_writes() -> None:
    assert sorted(access_points(service.__code__).values()) == [
        "counter.total (load)",
        "counter.total (store)",  # not `n.total`: the value added is not the owner
        "d[...] (delete)",
        "d[...] (load)",
        "d[...] (store)",
        "self.a (load)",
        "self.a.b (load)",
        "self.a.b.c (load)",
        "self.items (load)",
        "self.items[...] (store)",
        "self.transport (load)",  # `.write` is a method load: no point, on any Python
        "self.x (store)",
    ]


SHARED_FLAG = False


def loops(table: dict[str, int], box: Any) -> int:
    total = 0
    for key in table:  # a point at each step: the dict may change meanwhile
        total += len(key)
    for step in range(3):  # counting: no point
        total += step
    while not SHARED_FLAG:  # a spin on a global: a point at the back-edge
        box.spins += 1
    return total


def names_a_loop(loop: Any, loops_done: int) -> None:
    loop.running = True  # a LoopingCall named `loop`: an access, not a loop step
    global loopcount
    loopcount = loops_done


def test_only_loops_are_loop_steps_whatever_their_names() -> None:
    steps = [d for d in access_points(loops.__code__).values() if is_loop_step(d)]
    assert sorted(steps) == ["iteration of table", "loop"]
    assert not any(is_loop_step(d) for d in access_points(names_a_loop.__code__).values())


def test_loop_steps_are_points_except_counting_ones() -> None:
    details = sorted(access_points(loops.__code__).values())
    assert details == [
        "box.spins (load)",
        "box.spins (store)",
        "iteration of table",
        "loop",
    ]


def test_points_of_the_exploring_thread_survive_a_schedule_torn_down_at_one() -> None:
    # settrace (3.10, 3.11) drops a thread's trace function when it raises, as
    # Abort does at a point: the next schedule must still see T0's points.
    import threading

    from threadcheck._sched._runner import Explorer, run_plan
    from threadcheck._sched._targets import ScenarioTarget

    class Box:
        value = 0

    def scenario(reactor: Any) -> None:
        def boom() -> None:
            raise ValueError("worker failed")

        threading.Thread(target=boom).start()  # fails the schedule when it runs
        box = Box()
        for n in range(3):
            box.value = n  # T0's points

    with Explorer(ScenarioTarget(scenario)) as explorer:
        first, _ = run_plan(explorer, [])
        torn_down = [
            (decision, tid)
            for decision, (_, default, runnable) in enumerate(first.choices)
            for tid in runnable
            if tid != default
        ][:1]
        run_plan(explorer, torn_down)  # the thread fails while T0 waits at a point
        again, _ = run_plan(explorer, [])
    assert [s.detail for s in again.trace if s.detail.startswith("box.value")] == [
        "box.value (store)"
    ] * 3
    assert again.digest == first.digest
