"""Where the scheduler puts its points, and how the step table names them: the
same on every supported Python, whatever its bytecode."""

from __future__ import annotations

import collections
import contextlib
import dis
import operator
import py_compile
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

import threadcheck
from threadcheck._sched._points import access_points, is_loop_step
from threadcheck._sched._runner import Explorer, Settings
from threadcheck._sched._targets import ProgramTarget
from threadcheck._sched.strategies import parse


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


def take(items: list[int], pending: dict[str, int], key: str, box: Any) -> None:
    if items:
        items.pop()  # a point between the look and the call: another thread may take it
    if key in pending:
        pending.pop(key)
    box.items.append(1)  # the point of `box.items`'s load comes just before
    items.index(1)  # it changes nothing


def test_a_plain_names_mutating_method_call_is_a_point() -> None:
    assert sorted(access_points(take.__code__).values()) == [
        "box.items (load)",
        "items.pop() (call)",
        "pending.pop() (call)",
    ]


def add_to_batch(batches: dict[str, list[int]], key: str) -> None:
    batches[key].append(1)  # the batch may be swapped out between look-up and append


def test_an_items_mutating_method_call_is_a_point_after_its_look_up() -> None:
    assert sorted(access_points(add_to_batch.__code__).values()) == [
        "batches[...] (load)",
        "batches[...].append() (call)",
    ]


def bump_by_name(metrics: Any, name: str) -> bool:
    setattr(metrics, name, getattr(metrics, name) + 1)
    delattr(metrics, "stale")
    return hasattr(metrics, "requests")


def test_an_attribute_accessed_by_name_is_a_point_at_the_builtins_call() -> None:
    # The access is the call's: between getattr's read and setattr's write
    # another thread may bump the same counter (once no point at all came between).
    assert sorted(access_points(bump_by_name.__code__).values()) == [
        "getattr(metrics, name) (load)",
        "metrics.requests (load)",
        "metrics.stale (delete)",
        "setattr(metrics, name) (store)",
    ]


def test_helpers_name_mutating_calls_as_the_instruction_table_does() -> None:
    box = type("Box", (), {"items": []})()
    _, details = _helper_details(take, [1, 2], {"k": 1}, "k", box)
    assert sorted(details) == sorted(access_points(take.__code__).values())


def rotate(backends: list[str], box: Any) -> None:
    backends.append(backends.pop(0))  # popped, then appended: a point between
    box.items.append(box.items.pop(0))


def test_a_mutating_call_handed_a_call_has_its_point_after_the_arguments() -> None:
    plain = _rewritten(rotate, rewrite=False)  # this module may have been rewritten
    points = access_points(plain.__code__)
    assert sorted(points.values()) == [
        "backends.append() (call)",
        "backends.pop() (call)",
        "box.items (load)",
        "box.items (load)",
        "box.items.append() (call)",
    ]
    calls = {i.offset for i in dis.get_instructions(plain) if i.opname.startswith("CALL")}
    appends = [offset for offset, detail in points.items() if ".append()" in detail]
    assert len(appends) == 2 and set(appends) <= calls  # at the call, after pop()
    box = type("Box", (), {"items": [1]})()
    _, details = _helper_details(rotate, ["a"], box)
    assert sorted(details) == sorted(points.values())


class Connection:
    """A connection whose pending list is a property (counted), and which
    drops it when closed."""

    def __init__(self) -> None:
        self._pending = [1]
        self.reads = 0

    @property
    def pending(self) -> list[int]:
        self.reads += 1
        return self._pending

    def close(self) -> int:
        del self._pending
        return 2


def append_while_closing(conn: Any, queue: list[int]) -> tuple[int, list[int]]:
    import heapq

    kept = conn._pending
    conn.pending.append(conn.close())  # its argument drops what it is appended to
    heapq.heappush(queue, len(str(queue.pop())))
    return conn.reads, kept


def test_a_call_whose_change_comes_after_its_arguments_evaluates_each_once() -> None:
    # The rewritten call read its receiver (a property) again after the
    # arguments, and raised AttributeError when they had deleted it.
    conn = Connection()
    result, _ = _helper_details(append_while_closing, conn, [5])
    assert result == (1, [1, 2])


def caches() -> tuple[bool, list[str], int]:
    import functools

    def cache(function: Any) -> Any:  # the program's own decorator of that name
        function.invalidate = lambda: None
        return function

    @cache
    def own() -> int:
        return 1

    loaded: list[str] = []

    @functools.lru_cache(maxsize=8)
    def load(key: str) -> str:
        loaded.append(key)
        return key.upper()

    load("a")
    load("a")
    load.__wrapped__("b")  # past the cache: it stays as it was
    return hasattr(own, "invalidate"), loaded, load.cache_info().currsize


def test_rewritten_caches_keep_what_they_were() -> None:
    # A decorator named `cache` of the program's own was wrapped (its attributes
    # lost), and `__wrapped__` led to the cache, not past it.
    assert _rewritten(caches)() == caches() == (True, ["a", "b"], 1)


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


# -- points from rewritten code's helpers (how 3.10 and 3.11 take them) ----------


REWRITTEN = "<rewritten for a test>"


def _rewritten(function: Any, rewrite: bool = True) -> Any:
    """``function`` compiled from its source as an exploration rewrites user code
    (``rewrite=False``: as written; an exploration before may have rewritten this
    module's functions in place)."""
    import inspect
    import textwrap

    from threadcheck._races._rewrite import compile_user

    namespace: dict[str, Any] = {"SHARED_FLAG": True, "Any": Any}  # loops() ends
    source = textwrap.dedent(inspect.getsource(function))
    compiled = compile_user(source, REWRITTEN) if rewrite else compile(source, REWRITTEN, "exec")
    exec(compiled, namespace)
    return namespace[function.__name__]


def _helper_details(function: Any, *args: Any) -> tuple[Any, list[str]]:
    """``function(*args)`` run rewritten, with the detail of each point its helpers ask for."""
    from threadcheck._races import _access, _shadow
    from threadcheck._sched._points import _site_detail

    points: list[tuple[int, str]] = []
    rewritten = _rewritten(function)
    # Recorded only: this module may be rewritten too (an exploration before
    # rewrote the loaded user modules), and a subscript or a method call here
    # would be a point (the list's `append` is taken beforehand).
    _access.on_access = lambda site, op, add=points.append: add((site, op))
    try:
        result = rewritten(*args)
    finally:
        _access.on_access = None
    sites = [(_shadow.sites[site], op) for site, op in points]
    return result, [_site_detail(site, op) for site, op in sites if site.filename == REWRITTEN]


class _Thing:
    def __init__(self) -> None:
        self.total = 0
        self.items: dict[str, int] = {}
        self.transport = _Thing.Transport()
        self.a = self

    class Transport:
        def write(self, data: bytes) -> None:
            pass

    @property
    def b(self) -> Any:
        return self

    c = 5


class _Deferred:
    def addBoth(self, f: Any) -> None:
        pass


def test_helpers_name_each_access_as_the_instruction_table_does() -> None:
    thing = _Thing()
    _, details = _helper_details(service, thing, 2, {"k": 1}, "k", thing, lambda v: _Deferred())
    assert sorted(details) == sorted(access_points(service.__code__).values())
    assert details[:2] == ["counter.total (load)", "counter.total (store)"]


def test_helpers_make_loop_steps_except_counting_ones() -> None:
    box = type("Box", (), {"spins": 0})()
    result, details = _helper_details(loops, {"ab": 1, "c": 2}, box)
    assert result == 6
    steps = [d for d in details if is_loop_step(d)]
    assert steps == ["iteration of table"] * 3  # two keys, then the end


def rounds(items: list[int], limit: int) -> list[int]:
    seen = []
    n = 0
    while n < limit:
        n += 1
        if n % 2:
            continue  # a round too: the point comes before it
        for item in items:
            if item == n:
                continue  # the for loop's, not the while loop's
            seen.append(item * n)
        else:
            seen.append(-n)
    else:
        seen.append(0)
    seen.extend(x + y for x in items for y in range(2))
    seen.append(sum({k: v for k, v in zip(items, items, strict=True)}.values()))
    return seen


def test_rewritten_loops_compute_what_they_did_with_a_point_each_round() -> None:
    result, details = _helper_details(rounds, [1, 2, 4], 5)
    assert result == rounds([1, 2, 4], 5)
    assert details.count("loop") == 5  # each round of the while, continued or not
    assert details.count("iteration of items") == 2 * 4 + 4  # two rounds of 3 + end; the genexp


def squares(ids: list[int]) -> tuple[list[int], set[int]]:
    import asyncio

    async def rows() -> Any:
        for i in ids:
            await asyncio.sleep(0)
            yield i * i

    async def load() -> tuple[list[int], set[int]]:
        return [r async for r in rows()], {r async for r in rows()}

    return asyncio.run(load())


def test_an_async_comprehension_s_iterable_is_no_loop_s() -> None:
    # Its iterable was wrapped as a loop's: "'async_generator' object is not iterable".
    result, details = _helper_details(squares, [1, 2])
    assert result == ([1, 4], {1, 4})
    assert details.count("iteration of ids") == 2 * 3  # the generator's own loop, twice


COUNT = 0


def bump(by: int) -> int:
    global COUNT
    COUNT += by  # a point between the read and the write: a lost update can happen
    COUNT = COUNT * 1
    return COUNT


def test_a_shared_variable_store_has_its_point_before_the_write() -> None:
    from threadcheck._races import _access

    namespace = _rewritten(bump).__globals__
    namespace["COUNT"] = 10
    seen: list[int] = []
    count = operator.itemgetter("COUNT")  # not a subscript: see _helper_details
    _access.on_access = lambda site, op, add=seen.append: add(count(namespace))
    try:
        assert namespace["bump"](5) == 15
    finally:
        _access.on_access = None
    # The value before each write (read, then computed), and after each read: a
    # shared variable's read is followed by a point (no instruction has one).
    assert seen == [10, 15, 15, 15]


def test_rewritten_code_is_not_traced_where_its_helpers_give_the_points() -> None:
    from threadcheck._sched._points import Instrumentation, _Tracing

    instrumentation = Instrumentation("access", lambda filename: True, helpers=False)
    tracing = _Tracing(instrumentation, every_thread=False)
    rewritten = _rewritten(service)

    def counting(n: int) -> int:
        return sum(i * i for i in range(n))

    assert tracing._tracer_for(_frame(counting)) is None  # no point in it
    assert tracing._tracer_for(_frame(rewritten)) is not None
    instrumentation.helpers = True  # as a 3.10/3.11 exploration that rewrites code has it
    assert tracing._tracer_for(_frame(rewritten)) is None
    assert not tracing.unrewritten
    assert tracing._tracer_for(_frame(_rewritten(service, False))) is not None
    assert tracing.unrewritten  # user code that has points of its own ran


def test_code_of_a_rewritten_module_that_touches_nothing_needs_no_tracing() -> None:
    from threadcheck._races._rewrite import compile_user
    from threadcheck._sched._points import Instrumentation, _Tracing

    instrumentation = Instrumentation("access", lambda filename: True)
    instrumentation.helpers = True
    tracing = _Tracing(instrumentation, every_thread=False)
    module_code = compile_user("class Request:\n    size = 0\n", REWRITTEN)
    namespace: dict[str, Any] = {}
    exec(module_code, namespace)
    class_body = next(c for c in module_code.co_consts if isinstance(c, types.CodeType))
    frame = types.SimpleNamespace(f_code=class_body, f_globals=namespace)
    assert tracing._tracer_for(frame) is None  # rewritten code: its helpers are its points
    assert not tracing.unrewritten


def _frame(function: Any) -> Any:
    """What the trace function is given of a call of ``function``: its code, its globals."""
    return types.SimpleNamespace(f_code=function.__code__, f_globals=function.__globals__)


def test_a_modules_own_code_has_its_points_on_every_python() -> None:
    # Its stores are STORE_NAME, and its helpers are loaded with LOAD_NAME: 3.12's
    # tables had no point there, and dpor "proved" a module-level race.
    from threadcheck._races._rewrite import compile_user

    source = "jobs = []\nstate = 'loading'\njobs.append(1)\nstate = 'ready'\n"
    plain = sorted(access_points(compile(source, "module.py", "exec")).values())
    assert plain == ["jobs (store)", "jobs.append() (call)", "state (store)", "state (store)"]
    rewritten = access_points(compile_user(source, "module.py"))
    assert "jobs.append() (call)" in rewritten.values()


# -- 3.10, 3.11: a whole program's rewritten code runs untraced ------------------

only_with_helper_points = pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="3.12+ takes points with sys.monitoring"
)

LEDGER = "class Ledger:\n    total = 0\n\ndef post(ledger, n):\n    ledger.total += n\n"


def _compiled_only(folder: Path, name: str, source: str) -> None:
    """Module ``name`` in ``folder`` as bytecode alone: the rewriting hook passes it by."""
    (folder / f"{name}_source.py").write_text(source)
    py_compile.compile(str(folder / f"{name}_source.py"), cfile=str(folder / f"{name}.pyc"))
    (folder / f"{name}_source.py").unlink()


def _program(folder: Path, body: str) -> ProgramTarget:
    program = folder / "main.py"
    program.write_text(f"import os, sys\nsys.path.insert(0, {str(folder)!r})\n{body}")
    return ProgramTarget(None, [str(program)])


@only_with_helper_points
def test_a_whole_program_whose_code_is_all_rewritten_runs_untraced(tmp_path: Path) -> None:
    # A trace function makes every instruction of a traced thread 2-3x slower:
    # a metrics collector's numeric loops explored at 15 schedules/s, not 31.
    target = _program(tmp_path, "x = [n * n for n in range(3)]\n")
    with Explorer(target, Settings(footprints=True)) as explorer:
        assert not explorer.instrumentation.untraced()
        explorer.warm_up()
        assert explorer.instrumentation.untraced()
        run = explorer.run(parse("random", 0), 0)
    assert run is not None and run.failure is None and not run.thinned


@only_with_helper_points
def test_a_program_that_runs_code_not_rewritten_stays_traced(tmp_path: Path) -> None:
    _compiled_only(tmp_path, "ledger", LEDGER)
    target = _program(tmp_path, "import ledger\nledger.post(ledger.Ledger(), 1)\n")
    with Explorer(target, Settings(footprints=True)) as explorer:
        explorer.warm_up()
        assert not explorer.instrumentation.untraced()  # ledger's points come from tracing


@only_with_helper_points
def test_code_not_rewritten_met_untraced_is_traced_after_and_no_proof(tmp_path: Path) -> None:
    _compiled_only(tmp_path, "ledger", LEDGER)
    flag = tmp_path / "posting"
    posting = "    import ledger\n    ledger.post(ledger.Ledger(), 1)\n"
    body = f"if os.path.exists({str(flag)!r}):\n{posting}"
    target = _program(tmp_path, body)
    with Explorer(target, Settings(footprints=True)) as explorer:
        explorer.warm_up()
        assert explorer.instrumentation.untraced()
        flag.touch()  # only some schedules take that path
        missed = explorer.run(parse("random", 0), 0)
        assert not explorer.instrumentation.untraced()
        again = explorer.run(parse("random", 0), 1)
    assert missed is not None and missed.thinned == {
        "user code run without points (ledger, not rewritten)"
    }
    assert again is not None and not again.thinned


def test_code_that_accesses_nothing_in_a_rewritten_module_is_rewritten_code() -> None:
    # A comprehension over a thread's own list calls no helper: its loop's
    # points counted as code not rewritten, touching everything, and a whole
    # program's twin took 4,725 schedules to prove, not 50.
    from threadcheck._races import _footprint
    from threadcheck._races._rewrite import compile_user

    source = "def done(results):\n    return [b - a for a, b in results]\n"
    module = compile_user(source, REWRITTEN)
    [function] = [c for c in module.co_consts if isinstance(c, types.CodeType)]
    [comprehension] = [c for c in function.co_consts if isinstance(c, types.CodeType)] or [
        function  # 3.12+ inlines it
    ]
    assert _footprint.is_rewritten(comprehension)
    assert not _footprint.is_rewritten(compile(source, REWRITTEN, "exec"))


class _Account:
    balance = 0


def _deposits(deposit: Any) -> Any:
    def scenario() -> None:
        account = _Account()
        workers = [threading.Thread(target=deposit, args=(account, 10)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert account.balance == 20, f"lost deposit: {account.balance}"

    return scenario


@pytest.mark.parametrize("granularity", ["line", "opcode", "access"])
def test_a_thread_that_clears_the_trace_function_keeps_its_points(granularity: str) -> None:
    # sys.settrace(None) in a controlled thread (a profiler's stop(), pdb's
    # continue) took the scheduler's trace function with it on 3.10 and 3.11:
    # no points, and bounded:2 said every order with 2 preemptions was tried.
    def deposit(account: _Account, amount: int) -> None:
        sys.settrace(None)
        balance = account.balance
        account.balance = balance + amount

    scenario = _deposits(deposit)
    result = threadcheck.explore(scenario, budget=200, granularity=granularity, strategy="pct:2")
    assert result.found, result.report()
    assert "lost deposit: 10" in result.report()


def test_the_programs_own_trace_function_sees_its_calls_beside_the_schedulers() -> None:
    calls: list[str] = []

    def tracer(frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            calls.append(frame.f_code.co_name)

    def audited(amount: int) -> int:
        return amount

    def deposit(account: _Account, amount: int) -> None:
        sys.settrace(tracer)
        try:
            assert sys.gettrace() is tracer
            balance = account.balance
            account.balance = balance + audited(amount)
        finally:
            sys.settrace(None)
        assert sys.gettrace() is None

    result = threadcheck.explore(_deposits(deposit), budget=200, granularity="line")
    assert result.found, result.report()
    assert "lost deposit: 10" in result.report()
    assert "audited" in calls


@pytest.mark.parametrize("locked", [True, False], ids=["locked", "racy"])
def test_a_programs_profiler_sees_only_the_programs_calls_and_takes_no_turn(
    locked: bool,
) -> None:
    # A tiny profiler set in each worker was called for threadcheck's own
    # frames (its counts named our helpers), and its code's points, taken inside
    # the scheduler's, broke its bookkeeping (IndexError, false failures).
    calls: collections.Counter[str] = collections.Counter()

    def scenario() -> None:
        counting = threading.Lock()
        lock: Any = threading.Lock() if locked else contextlib.nullcontext()
        account = _Account()

        def profiler(frame: types.FrameType, event: str, arg: Any) -> Any:
            if event == "call":
                with counting:
                    calls[frame.f_code.co_name] += 1
            return None

        def deposit(amount: int) -> None:
            sys.settrace(profiler)
            try:
                with lock:
                    balance = account.balance
                    account.balance = balance + amount
            finally:
                sys.settrace(None)

        workers = [threading.Thread(target=deposit, args=(10,)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert account.balance == 20, f"lost deposit: {account.balance}"

    result = threadcheck.explore(scenario, budget=300, strategy="random")
    assert result.found is not locked, result.report()
    if not locked:
        assert "lost deposit: 10" in result.report()
    assert set(calls) <= {"__enter__", "__exit__"}, calls  # nullcontext's, and nothing of ours


def test_the_search_for_setters_lists_a_bounded_number_of_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Started in /tmp (27,000 folders here), the first explore walked all of
    # them for a few Python files: 4.5 s before its first schedule. The same
    # folders each time, in order: a replay in another process rewrites alike.
    from threadcheck._races import _rewrite

    for name in "abcde":
        (tmp_path / name).mkdir()
        (tmp_path / name / f"{name}.py").write_text("")
    monkeypatch.setattr(_rewrite, "_NEARBY_FOLDERS", 3)
    found = _rewrite._python_files(str(tmp_path), recursive=True)
    assert [Path(path).name for path in found] == ["a.py", "b.py"]


def test_a_helper_that_calls_another_is_not_where_the_point_is(tmp_path: Path) -> None:
    # Z49: `d.get(k)` is rewritten to a helper (ck) that calls another (cr): the
    # step table's row was at "_access.py:1164 ck", threadcheck's own line.
    target = _program(tmp_path, "mode = os.environ.get('MODE')\n")
    with Explorer(target, Settings(footprints=True, helper_points=True)) as explorer:
        run = explorer.run(parse("random", 0), 0)
    assert run is not None
    [step] = [step for step in run.trace if step.detail == "os.environ.get() (call)"]
    assert (Path(step.filename).name, step.lineno) == ("main.py", 3), step
