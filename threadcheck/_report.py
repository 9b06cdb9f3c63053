"""Human-readable and JSON reports.

Identical violations (same API, kind, threads, stacks and test) are grouped
with a count, so thousands of repeats stay readable; the counts always add up
to the exact number recorded. The JSON layout is described by
``report-schema.json`` in this package and versioned by ``SCHEMA_VERSION``;
:func:`from_json` reads it back, so reports made in other processes (pytest-xdist
workers, trial -j workers) merge without loss.
"""

from __future__ import annotations

import ast
import json
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from threadcheck import _fixes, _stacks
from threadcheck._affinity import AffinityChecker
from threadcheck._violation import Kind, PriorAccess, TestContext, ThreadInfo, Violation

SCHEMA_ID = "threadcheck-report"
SCHEMA_VERSION = 3
SCHEMA_PATH = Path(__file__).with_name("report-schema.json")

# The human report shows this many groups; the JSON report has them all.
MAX_GROUPS_SHOWN = 20


@dataclass(frozen=True)
class Group:
    violation: Violation
    """The first occurrence."""
    count: int
    first_index: int
    apis: dict[str, int]
    """How many of each API, in order of first occurrence: one line's library
    call may do two non-thread-safe things (a write, then a ``callLater``)."""

    def headline(self) -> str:
        """The first occurrence's headline, naming every API of the group."""
        return self._named().headline()

    def summary(self) -> str:
        """The first occurrence's one-line summary, naming every API of the group."""
        return self._named().summary()

    def _named(self) -> Violation:
        if len(self.apis) < 2:
            return self.violation
        return replace(self.violation, api=" and ".join(self.apis))

    def times(self) -> str:
        """``x4: transport.write 2, reactor.callLater 2``, ``x3``; empty for one."""
        if self.count < 2:
            return ""
        if len(self.apis) < 2:
            return f"x{self.count}"
        each = ", ".join(f"{api} {count}" for api, count in self.apis.items())
        return f"x{self.count}: {each}"


def group(violations: Iterable[Violation]) -> list[Group]:
    """Identical violations merged, in order of first occurrence: the same call
    from the same code in two workers of one thread pool is one (shown as the
    first), as the pool could have given the job to either."""
    apis: dict[object, Counter[str]] = {}
    first: dict[object, tuple[Violation, int]] = {}
    for index, violation in enumerate(violations):
        key = _one_mistake(_any_worker(violation))
        apis.setdefault(key, Counter())[violation.api] += 1
        first.setdefault(key, (violation, index))
    return [
        Group(v, sum(apis[key].values()), index, dict(apis[key]))
        for key, (v, index) in first.items()
    ]


def _one_mistake(violation: Violation) -> object:
    """What tells ``violation`` apart: a wrong-thread call is known by the
    user's call that made it and its fix, so that a library call doing two
    non-thread-safe things from one line (autobahn's ``sendClose``: a write,
    then its close timeout's ``callLater``) is one mistake, with one fix."""
    if violation.kind is not Kind.FOREIGN_THREAD:
        return violation
    stack = violation.stack
    user = [i for i, frame in enumerate(stack) if frame.library is None]
    if not user or user[-1] == len(stack) - 1:  # no library call between: as it is
        return violation
    return (violation.kind, violation.thread, stack[: user[-1] + 1], fix_for(violation))


def _any_worker(violation: Violation) -> Violation:
    """``violation`` without what tells one Twisted pool worker from another:
    its number, its ident, and which job made the pool start it. So for threads
    numbered by Python (``Thread-3 (process_request_thread)``, a
    ``socketserver`` handler each) or by an executor (``ThreadPoolExecutor-0_1``),
    started by the same code."""
    name = violation.thread.name
    pool, dash, number = name.rpartition("-")
    if pool.startswith("PoolThread-") and dash and number.isdigit():
        return replace(violation, thread=ThreadInfo(f"{pool}-*", 0), spawn_site=None)
    numbered = _NUMBERED.fullmatch(name)
    if numbered is None:
        return violation
    return replace(violation, thread=ThreadInfo(f"{numbered['kind']}*{numbered['rest']}", 0))


_NUMBERED = re.compile(r"(?P<kind>Thread-|ThreadPoolExecutor-\d+_)\d+(?P<rest> \(.*\))?")


def _written_at(race: Violation) -> str:
    """The source line of a data race's write, if one of its accesses is one."""
    if race.access == "write" and race.stack:
        return race.stack[-1].source or ""
    prior = race.prior
    if prior is not None and prior.what == "write" and prior.stack:
        return prior.stack[-1].source or ""
    return ""


def fix_for(violation: Violation) -> str:
    """What to write instead, for any finding: a violation, a data race or a stall."""
    if violation.kind is Kind.DATA_RACE:
        prior = violation.prior.what if violation.prior is not None else ""
        return _fixes.race_hint(
            violation.api, violation.access or "", prior, _written_at(violation)
        )
    if violation.kind is Kind.STALL:
        return _stall_fix(violation, _blocked_at(violation))
    return _hint(violation)


def _third_party(entry: _stacks.Frame | None) -> bool:
    """Whether the program's call reached the API (``entry``: where it entered a
    library) through a library other than Twisted's (autobahn's ``sendClose``):
    then that call is what moves, whatever the library did (a write, a
    ``DelayedCall.cancel``), so one fix for both."""
    return entry is not None and entry.library not in _NOT_THIRD_PARTY


def _hint(violation: Violation) -> str:
    if violation.kind is Kind.STUCK_AT_SHUTDOWN:
        return _fixes.STUCK_AT_SHUTDOWN
    if violation.kind is Kind.AFTER_STARTING_REACTOR_THREAD:
        return (
            "make the call before starting the reactor's thread, or hand it over: "
            f"reactor.callFromThread({_handed_over_before_run(violation)})"
        )
    if violation.kind is Kind.CONFINED_ELSEWHERE:
        return (
            f"call it in {violation.reactor_thread.name!r}: hand the call to that thread "
            "(a queue it reads), or confine the object to the thread that uses it"
        )
    if violation.kind is Kind.BLOCKING_CALL_AFTER_STOP:
        return (
            "let the threads that call into the reactor finish before it stops: return "
            "a Deferred of their end from a 'before' 'shutdown' trigger (the reactor serves "
            "them until it fires), or stop them before reactor.stop()"
        )
    if violation.kind is Kind.BLOCKING_CALL_IN_REACTOR:
        return (
            "blockingCallFromThread is for threads other than the reactor's; in the "
            "reactor thread call the function directly and use its Deferred"
        )
    finalized = _in_a_del(violation.stack)
    if finalized is not None:
        file = os.path.join(*finalized.filename.split(os.sep)[-2:])
        return (
            f"the object's __del__ ({file}:{finalized.lineno}) ran in this thread, which "
            "dropped its last reference: let the reactor thread drop it (keep it out of "
            "the job, or hand it back with reactor.callFromThread and del it there)"
        )
    entry = _entry_into_library(violation.stack)
    if violation.api.startswith("DelayedCall.") and not _third_party(entry):
        method = violation.api.split(".", 1)[1]
        where = violation.user_frame()
        source = where.source if where is not None else None
        called = _call_on_line(source) or _fixes.handed_written(source or "", method)
        if called is not None:
            # `watchdog.cancel()`, or `d.callback(1)` cancelling the Deferred's
            # addTimeout call: the user's call moves, as written.
            return f"do it in the reactor thread: reactor.callFromThread({called})"
        return f"do it in the reactor thread: reactor.callFromThread(call.{method}, ...)"
    if _from_a_thread_future(violation.stack):
        return (
            "Deferred.fromFuture adapts asyncio futures: a concurrent.futures future "
            "runs its callbacks in its worker thread. Wait for it in the pool instead, "
            "threads.deferToThread(future.result), or hand the result over: "
            "future.add_done_callback(lambda f: reactor.callFromThread(d.callback, f.result()))"
        )
    if _in_a_finalizer(violation.stack):
        api = violation.api if violation.api.startswith("reactor.") else "f"
        return (
            "a weakref.finalize callback runs in whichever thread drops the object's last "
            "reference: register reactor.callFromThread as the finalizer, "
            f"weakref.finalize(obj, reactor.callFromThread, {api}, ...)"
        )
    where = violation.user_frame()
    offending = where.source if where is not None else ""
    inside = _libraries_own(violation)
    if inside is not None:
        return (
            f"nothing of yours is on the way: {inside.library} calls it from a thread of"
            f" its own, a bug to report to its maintainers (or keep the feature that runs"
            f" it off); --include {inside.library} also checks its data races"
        )
    submitted = _submitted_library_callable(violation)
    if submitted is not None:
        # callInThread(self.sendLine, ...): the hand-off itself is the mistake.
        handed = _named_on(offending, submitted.function) or _submitted_owner(
            violation.api, submitted
        )
        return (
            f"{submitted.function}() must run in the reactor thread: hand it over with "
            f"reactor.callFromThread({handed}.{submitted.function}, ...), not callInThread"
        )
    target = _thread_target(violation)
    if target is not None:
        # Thread(target=self.sendLine, ...), executor.submit(self.sendLine, ...).
        taken_from = _named_on(offending, target.function) or "obj"
        return (
            f"{target.function}() must run in the reactor thread: hand it over with "
            f"reactor.callFromThread({taken_from}.{target.function}, ...), not to a thread "
            "of its own"
        )
    if entry is not None and _third_party(entry):
        # autobahn's sendMessage reaching transport.write: the user's call is what moves.
        if entry.function.startswith("__") and entry.function.endswith("__"):
            # `Client(d)` running its __init__, `client(5)` its __call__: the call written.
            written = _fixes.call_written(offending)
            if written is not None and entry.function in ("__init__", "__new__"):
                return (
                    "make it in the reactor thread: "
                    f"threads.blockingCallFromThread(reactor, {written})"
                )
            if written is not None:
                return f"call it in the reactor thread: reactor.callFromThread({written})"
        elif f"{entry.function}(" not in offending and f".{entry.function}" in offending:
            taken_from = _named_on(offending, entry.function) or "obj"
            return (  # a property: its getter made the call
                f"read {entry.function} in the reactor thread: threads.blockingCallFromThread"
                f"(reactor, getattr, {taken_from}, {entry.function!r})"
            )
        if _called_bare(offending, entry.function):  # `from myapp.lib import notify`
            return (
                f"call {entry.function}() in the reactor thread: "
                f"reactor.callFromThread({entry.function}, ...)"
            )
        owner = _called_on(offending, entry.function) or (
            entry.library if _module_function(entry) is not None else "obj"
        )
        return _call_in_reactor(entry.function, f"{owner}.{entry.function}", offending)
    object_fix = _fixes.object_api_fix(violation.api, offending)
    if object_fix is not None:
        called = _through_twisted(entry, violation.api, offending)
        return object_fix if called is None else called
    if not violation.api.startswith(("reactor.", "blockingCallFromThread")):
        return _user_api_hint(violation.api)
    api = violation.api.removeprefix("reactor.")
    if entry is not None and entry.library == "twisted" and entry.function != api:
        # e.g. transport.write reaching reactor.addWriter: the user's call is what moves.
        module = _module_function(entry)
        if module is not None:  # threads.deferToThread: its result may be wanted
            called = f"{module}.{entry.function}"
            return (
                f"call {entry.function}() in the reactor thread: "
                f"reactor.callFromThread({called}, ...), or, for its result, "
                f"threads.blockingCallFromThread(reactor, {called}, ...)"
            )
        owner = _called_on(offending, entry.function) or "obj"  # `agent.request(...)`
        return _call_in_reactor(entry.function, f"{owner}.{entry.function}", offending)
    return _reactor_api_fix(api, offending)


def _call_in_reactor(function: str, called: str, offending: str) -> str:
    """Move the user's call of ``function`` (``called``) to the reactor thread: with
    ``callFromThread``, or ``blockingCallFromThread`` when the line goes on with
    its result (``d = agent.request(...)``: ``callFromThread`` drops it)."""
    if _result_used(offending, function):
        return (
            f"call {function}() in the reactor thread, for its result: "
            f"threads.blockingCallFromThread(reactor, {called}, ...)"
        )
    return f"call {function}() in the reactor thread: reactor.callFromThread({called}, ...)"


def _result_used(line: str, function: str) -> bool:
    """Whether the statement ``line`` keeps what its call of ``function`` returns:
    assigns it, returns it, awaits or yields it, or goes on with it
    (``d = agent.request(...).addCallback(...)``); not a call made in a lambda."""
    try:
        statement = ast.parse(line.strip()).body[0]
    except (SyntaxError, IndexError):  # a line of a longer statement: not known
        return False
    value: ast.AST | None = None
    if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Return)):
        value = statement.value
    elif isinstance(statement, ast.Expr) and isinstance(
        statement.value, (ast.Await, ast.Yield, ast.YieldFrom)
    ):
        value = statement.value.value
    return value is not None and any(
        isinstance(node, ast.Call) and _calls(node, function) for node in _outside_lambdas(value)
    )


def _calls(call: ast.Call, function: str) -> bool:
    func = call.func
    return (isinstance(func, ast.Attribute) and func.attr == function) or (
        isinstance(func, ast.Name) and func.id == function
    )


def _outside_lambdas(node: ast.AST) -> Iterator[ast.AST]:
    yield node
    for child in ast.iter_child_nodes(node):
        if not isinstance(child, ast.Lambda):
            yield from _outside_lambdas(child)


# Reactor methods whose result the caller goes on with: callFromThread drops it.
_RETURNING = frozenset(
    {
        "resolve", "listenTCP", "connectTCP", "listenUDP", "listenMulticast", "listenUNIX",
        "connectUNIX", "listenUNIXDatagram", "connectUNIXDatagram", "listenSSL", "connectSSL",
        "adoptStreamPort", "adoptDatagramPort", "spawnProcess",
    }
)  # fmt: skip


def _reactor_api_fix(api: str, offending: str) -> str:
    """The fix for ``reactor.<api>`` called from a thread, written as the user's
    call where the line holds it whole."""
    if api == "getThreadPool":
        return (
            "hand work to the pool with reactor.callInThread(f, ...), which is thread-safe, "
            "or take the pool in the reactor thread and pass it to the thread"
        )
    kept = _fixes.result_kept(offending, api)
    if kept is not None:
        assigned, written = kept
        if assigned is None:  # `reactor.resolve(host).addCallback(log)`: all of it moves
            return f"do it in the reactor thread: reactor.callFromThread(lambda: {written})"
        return (  # `watchdog = reactor.callLater(5, f)`: the thread goes on with it
            "do it in the reactor thread, for its result: "
            f"{assigned} = threads.blockingCallFromThread(reactor, {written})"
        )
    written = _fixes.call_written(offending, api) or f"reactor.{api}, ..."
    if api in _RETURNING:
        return (
            f"do it in the reactor thread, for its result: "
            f"threads.blockingCallFromThread(reactor, {written})"
        )
    return f"do it in the reactor thread: reactor.callFromThread({written})"


def _handed_over_before_run(violation: Violation) -> str:
    """``callFromThread``'s arguments for a call that raced the reactor's start:
    the user's own call when a Twisted helper made it (``lc.start(0.01)``
    reaching ``reactor.callLater``), which the user can move."""
    api = violation.api.removeprefix("reactor.")
    entry = _entry_into_library(violation.stack)
    where = violation.user_frame()
    offending = where.source if where is not None else ""
    if entry is not None and entry.library == "twisted" and entry.function != api:
        owner = _called_on(offending, entry.function)
        if owner is not None:
            return _fixes.call_written(offending) or f"{owner}.{entry.function}, ..."
    return f"reactor.{api}, ..."


def _through_twisted(entry: _stacks.Frame | None, api: str, offending: str) -> str | None:
    """The fix when the user's line called a Twisted helper that made the call
    (``self.sendLine(...)`` reaching ``transport.write``): the user's call moves,
    not the one the user never wrote."""
    if entry is None or entry.library != "twisted" or entry.function == api.rpartition(".")[2]:
        return None
    owner = _called_on(offending, entry.function)
    if owner is not None:
        return (
            f"call {entry.function}() in the reactor thread: "
            f"reactor.callFromThread({owner}.{entry.function}, ...)"
        )
    handed = _fixes.sole_call_written(offending)
    if handed is None:
        return None
    # `f(*args)` in a dispatch helper of the program's, f being `self.sendLine`.
    return f"make this call in the reactor thread: reactor.callFromThread({handed})"


_NOT_THIRD_PARTY = frozenset({"twisted", "python", "threadcheck", "decorator"}) | (
    _stacks.HARNESS_NAMES
)
"""Libraries whose entry is not what the user called (an installed package's is)."""


def _submitted_owner(api: str, submitted: _stacks.Frame) -> str:
    """What to call the object whose method was handed to the pool."""
    return _fixes.object_name(api) if api.endswith(f".{submitted.function}") else "obj"


def _user_api_hint(api: str) -> str:
    """For your own reactor-only code (``threadcheck.reactor_only``, ``confine``)."""
    if api == "assert_reactor_thread":
        return "this code must run in the reactor thread: hand it over with reactor.callFromThread"
    if api.endswith(" (write)"):
        attribute = api.removesuffix(" (write)").rsplit(".", 1)[-1]
        return (
            f"set it in the reactor thread: "
            f"reactor.callFromThread(setattr, obj, {attribute!r}, value)"
        )
    if api in _MODULE_FUNCTIONS:
        return (
            f"call it in the reactor thread: reactor.callFromThread({api}, ...), or, for "
            f"its result, threads.blockingCallFromThread(reactor, {api}, ...)"
        )
    target = f"obj.{api.rsplit('.', 1)[1]}" if "." in api else api
    return f"call it in the reactor thread: reactor.callFromThread({target}, ...)"


_MODULE_FUNCTIONS = frozenset({"task.deferLater"})
"""Checked APIs that are a module's functions, not an object's methods."""


def _called_bare(source: str, function: str) -> bool:
    """Whether the user's line calls ``function`` by its bare name (imported)."""
    return re.search(rf"(?<![\w.]){re.escape(function)}\(", source) is not None


def _called_on(source: str, function: str) -> str | None:
    """What the user's line calls ``function`` on (``txaio`` in
    ``txaio.call_later(...)``), when it names it plainly."""
    called = re.search(rf"([A-Za-z_][\w.]*)\.{re.escape(function)}\(", source)
    return called[1] if called else None


def _module_function(frame: _stacks.Frame) -> str | None:
    """The module's short name when ``frame``'s function is defined at a
    module's top level (``threads`` for ``deferToThread``), not a method."""
    for lineno in range(frame.lineno, 0, -1):
        line = frame.line_of_file(lineno)
        if line.lstrip().startswith((f"def {frame.function}(", f"async def {frame.function}(")):
            top = not line[:1].isspace()
            return os.path.splitext(os.path.basename(frame.filename))[0] if top else None
    return None


def _entry_into_library(stack: _stacks.Stack) -> _stacks.Frame | None:
    """The library frame the innermost user frame called, e.g. transport.write:
    not the instrumented reactor's own wrapper of it (``d.callback`` reaching
    Twisted's through ours)."""
    if not stack or stack[-1].library is None:
        return None  # the check fired in user code itself (threadcheck.reactor_only)
    for at in range(len(stack) - 2, -1, -1):
        if stack[at].library is None:
            called = [f for f in stack[at + 1 :] if f.library != "threadcheck"]
            return called[0] if called and called[0].library is not None else None
    return None


def _from_a_thread_future(stack: _stacks.Stack) -> bool:
    """Whether ``Deferred.fromFuture``'s callback, run by a ``concurrent.futures``
    future in its worker thread, made the call."""
    adapts = any(f.function == "adapt" and f.library == "twisted" for f in stack)
    invoked = any(
        f.function == "_invoke_callbacks" and f.filename.endswith(f"futures{os.sep}_base.py")
        for f in stack
    )
    return adapts and invoked


def _in_a_del(stack: _stacks.Stack) -> _stacks.Frame | None:
    """The library ``__del__`` that made the call, when no code of the
    program's came after it (pb's ``RemoteReference`` decref'd by the worker
    that dropped it)."""
    for frame in reversed(stack):
        if frame.library is None:
            return None
        if frame.function == "__del__":
            return frame
    return None


def _in_a_finalizer(stack: _stacks.Stack) -> bool:
    """Whether a ``weakref.finalize`` callback made the call (and no code of the
    program's came between)."""
    for frame in reversed(stack):
        if frame.library is None:
            return False
        if frame.function == "__call__" and frame.filename.endswith(f"{os.sep}weakref.py"):
            return True
    return False


def _libraries_own(violation: Violation) -> _stacks.Frame | None:
    """The innermost frame of an installed library's, when none of the user's
    ran, handed the work over or started the thread (carbon's writer thread,
    started by carbon, calling resumeProducing): the call is the library's."""
    if violation.user_frame() is not None:
        return None
    stacks = (violation.stack, violation.submitted_from or (), violation.spawn_site or ())
    for stack in stacks:
        for frame in reversed(stack):
            if frame.library is not None and frame.library not in _NOT_THIRD_PARTY:
                return frame
    return None


def _submitted_library_callable(violation: Violation) -> _stacks.Frame | None:
    """A library callable a pool thread was handed directly, when no user code ran.

    The pool runs submitted work through ``_threads.run_submitted``; the frame
    after it is the callable itself.
    """
    if violation.submitted_from is None or _stacks.innermost_user_frame(violation.stack):
        return None
    frames = violation.stack
    for outer, inner in zip(reversed(frames[:-1]), reversed(frames[1:]), strict=True):
        if outer.function == "run_submitted" and outer.library == "threadcheck":
            return inner
    return None


def _thread_target(violation: Violation) -> _stacks.Frame | None:
    """The library callable a thread (or an executor's) ran directly, when no
    user code ran and it is not the checked API itself (``Thread(target=reactor.stop)``
    has its own fix)."""
    if _stacks.innermost_user_frame(violation.stack):
        return None
    called = [
        f
        for f in violation.stack
        if f.library not in ("python", "threadcheck") and not f.filename.endswith(_POOL_FILES)
    ]
    if not called or violation.api.endswith(f".{called[0].function}"):
        return None
    return called[0]


_POOL_FILES = tuple(
    os.path.join("twisted", *parts)
    for parts in (("_threads", "_threadworker.py"), ("_threads", "_team.py"))
) + tuple(os.path.join("twisted", "python", name) for name in ("threadpool.py", "context.py"))
"""Twisted's thread pool's own frames, which run a job: not the job."""


def _named_on(source: str, function: str) -> str | None:
    """What the user's line takes ``function`` from (``self`` in
    ``Thread(target=self.sendLine)``), when it names it plainly."""
    named = re.search(rf"([A-Za-z_][\w.]*)\.{re.escape(function)}\b", source)
    return named[1] if named else None


def _handed_over(violation: Violation) -> str:
    """Why the offending line is not on the offending thread's stack, if it is not."""
    if _stacks.innermost_user_frame(violation.stack) is not None:
        return ""
    if violation.submitted_from is not None:
        return "  (work handed to the thread pool here)"
    where = violation.user_frame()
    if where is not None and ".start(" not in where.source:  # `Timer(5, d.cancel)`
        return "  (the thread was made here)"
    return "  (the thread was started here)"


def _unknown_start(thread: ThreadInfo) -> str:
    """Where a thread with no spawn site began: the main thread began with the
    process (the report said "main thread, or..." of one named MainThread)."""
    main = threading.main_thread()
    if thread.name == main.name and thread.ident == main.ident:
        return "none: the main thread"
    return "unknown (main thread, or started before threadcheck)"


def _same_place(spawn_site: _stacks.Stack, submitted_from: _stacks.Stack) -> bool:
    """Whether the pool started the thread for the work it runs: the (shorter)
    submitting stack's user frames end the spawn site's."""
    submitted = _user_frames(submitted_from)
    spawned = _user_frames(spawn_site)
    if not submitted:
        return not spawned
    return spawned[-len(submitted) :] == submitted


def _user_frames(stack: _stacks.Stack) -> list[_stacks.Frame]:
    return [frame for frame in stack if frame.library is None]


def _group_head(number: int, g: Group) -> Iterator[str]:
    """A group's first lines: its headline and count, its test, why it is accepted."""
    v = g.violation
    times = f"  [{g.times()}]" if g.count > 1 else ""
    yield f"[{number}] {g.headline()}{times}"
    if v.test is not None:
        yield f"    during test: {v.test.describe()}"
    if v.expected is not None:
        yield f"    expected: {v.expected}"


def _format_group(number: int, g: Group) -> Iterator[str]:
    v = g.violation
    yield from _group_head(number, g)
    where = v.user_frame()
    if where is not None:
        yield f"    offending call: {where.location()}{_handed_over(v)}"
        if where.source:
            yield f"        {where.source}"
    elif (inside := _libraries_own(v)) is not None:
        theirs = f"{inside.library}'s own (nothing of yours ran)"
        yield f"    offending call: {inside.location()}, {theirs}"
        if inside.source:
            yield f"        {inside.source}"
    elif v.runs_pool_jobs() and v.submitted_from is None:
        yield "    offending call: unknown: a job handed to a thread pool that does not say who"
    entry = _entry_into_library(v.stack)
    if entry is not None:
        yield f"    through {entry.library}: {entry.location()}"
    yield "    stack (most recent call last):"
    yield from _stacks.format_stack(v.stack, indent="      ")
    if v.submitted_from is not None:
        yield "    work submitted to the thread pool at (most recent call last):"
        yield from _stacks.format_stack(v.submitted_from, indent="      ")
    if v.spawn_site is None:
        yield f"    thread started at: {_unknown_start(v.thread)}"
    elif v.submitted_from is not None and _same_place(v.spawn_site, v.submitted_from):
        # The pool started this thread for that very work: one stack is enough.
        yield "    thread started at: the same place (the pool started it for this work)"
    else:
        yield "    thread started at (most recent call last):"
        yield from _stacks.format_stack(v.spawn_site, indent="      ")
    yield f"    fix: {_hint(v)}"


def format_report(violations: list[Violation]) -> str:
    """The human-readable report block; empty string when there is nothing to say."""
    races = [v for v in violations if v.kind is Kind.DATA_RACE]
    calls = [v for v in violations if v.kind is not Kind.DATA_RACE]
    blocks = [block for block in (_format_calls(calls), _format_races(races)) if block]
    return "\n".join(blocks)


def _format_calls(violations: list[Violation]) -> str:
    if not violations:
        return ""
    groups = group(violations)
    # A pool stuck at shutdown is no call of ThreadPool.stop's the program made.
    by_api = Counter(
        v.kind.value if v.kind is Kind.STUCK_AT_SHUTDOWN else v.api for v in violations
    )
    noun = "violation" if len(violations) == 1 else "violations"
    lines = [
        f"threadcheck: {len(violations)} thread-affinity {noun} ({len(groups)} distinct)",
        "  " + ", ".join(f"{api}: {n}" for api, n in by_api.most_common()),
        "",
    ]
    lines.extend(_groups(groups, _format_group, "violations"))
    return "\n".join(lines).rstrip() + "\n"


def _groups(
    groups: list[Group], formatter: Callable[[int, Group], Iterator[str]], noun: str
) -> Iterator[str]:
    for number, g in enumerate(groups[:MAX_GROUPS_SHOWN], start=1):
        yield from formatter(number, g)
        yield ""
    if len(groups) > MAX_GROUPS_SHOWN:
        yield (
            f"... {len(groups) - MAX_GROUPS_SHOWN} more distinct {noun}; "
            "the JSON report (--json) has them all"
        )


def _format_races(races: list[Violation]) -> str:
    if not races:
        return ""
    groups = group(races)
    noun = "data race" if len(races) == 1 else "data races"
    lines = [f"threadcheck: {len(races)} {noun} ({len(groups)} distinct)", ""]
    lines.extend(_groups(groups, _format_race, "data races"))
    return "\n".join(lines).rstrip() + "\n"


def _format_race(number: int, g: Group) -> Iterator[str]:
    v = g.violation
    prior = v.prior
    assert prior is not None  # a data race always has its earlier access
    yield from _group_head(number, g)
    yield from _race_access(
        v.access or "access", v.thread, v.stack, v.spawn_site, v.submitted_from
    )
    yield from _race_access(
        f"earlier {prior.what}",
        prior.thread,
        prior.stack,
        prior.spawn_site,
        prior.submitted_from,
    )
    yield f"    fix: {fix_for(v)}"


def _race_access(
    what: str,
    thread: ThreadInfo,
    stack: _stacks.Stack,
    spawn_site: _stacks.Stack | None,
    submitted_from: _stacks.Stack | None,
) -> Iterator[str]:
    where = _stacks.innermost_user_frame(stack)
    at = f"{where.location()}" if where is not None else "unknown"
    yield f"    {what}: {at}, in thread {thread.describe()}"
    if where is not None and where.source:
        yield f"        {where.source}"
    yield "      stack (most recent call last):"
    yield from _stacks.format_stack(stack, indent="        ")
    if submitted_from is not None:
        yield "      work submitted to the thread pool at (most recent call last):"
        yield from _stacks.format_stack(submitted_from, indent="        ")
    if spawn_site is None:
        yield f"      thread started at: {_unknown_start(thread)}"
    elif submitted_from is None or not _same_place(spawn_site, submitted_from):
        yield "      thread started at (most recent call last):"
        yield from _stacks.format_stack(spawn_site, indent="        ")


_STALL_FIXES = {
    "time.sleep": "wait without blocking: task.deferLater(reactor, seconds, f)",
    "Queue.get": "use a DeferredQueue, or wait in a worker: threads.deferToThread(queue.get)",
    "Thread.join": "wait in a worker: threads.deferToThread(thread.join)",
    "Lock.acquire": "never wait for a lock in the reactor thread: take it in a worker "
    "(threads.deferToThread), or use a DeferredLock",
    "Event.wait": "wait in a worker: threads.deferToThread(event.wait)",
    "Thread.start": "nothing of the program's waits here: Thread.start waits until the new "
    "thread runs (a thread pool's new worker), which a busy machine or --races makes slow; "
    "if it stays, raise the threshold (--stall-ms)",
    "blockingCallFromThread": "call the function directly in the reactor thread",
}

_ANY_STALL_FIX = "move the slow work to a thread: threads.deferToThread(f)"
"""The fix of a stall in no known wait."""


def _stall_fix(stall: Violation, where: _stacks.Frame | None) -> str:
    fix = _callback_stall_fix(stall, where)
    driver = _coroutine_driver(stall.stack, where)
    if driver is not None:
        return _awaited(fix, driver)
    handed = _helper_handed_over(stall, where)
    return fix if handed is None else handed


def _coroutine_driver(stack: _stacks.Stack, where: _stacks.Frame | None) -> str | None:
    """``"asyncio"`` or ``"twisted"``: what runs the ``async def`` the reactor
    thread waited in (the frame that called into it: an asyncio task's step,
    or a Deferred's, as ``Deferred.fromCoroutine`` drives one); None when it
    waited in a plain function."""
    if where is None or not _is_async_def(where):
        return None
    at = _index_on(stack, where)
    if at == 0:  # not on the stack, or nothing called it
        return None
    caller = stack[at - 1].filename.replace(os.sep, "/")
    return "asyncio" if "/asyncio/" in caller else "twisted"


def _helper_handed_over(stall: Violation, where: _stacks.Frame | None) -> str | None:
    """The wait of a plain function of the program's that an ``async def`` of its
    own calls (``token = fetch_token()``), handed to a worker by that coroutine:
    the helper's callers want its value, which a callback fix inside it
    (``task.deferLater``) cannot give them. None when no coroutine calls it."""
    if where is None or stall.api not in _STALL_FIXES or stall.api in _NOT_HANDED:
        return None
    stack = stall.stack
    for caller in reversed(stack[: _index_on(stack, where)]):
        if caller.library is not None:  # a library's callback: not the program's own call
            return None
        driver = _coroutine_driver(stack, caller)
        if driver is not None:
            called = _call_on_line(caller.source, valued=True)
            if called is None:
                return None
            to_thread = "asyncio.to_thread" if driver == "asyncio" else "threads.deferToThread"
            return (
                f"wait in a worker, from the coroutine that calls it ({caller.location()}): "
                f"await {to_thread}({called})"
            )
    return None


_NOT_HANDED = ("Thread.start", "blockingCallFromThread")
"""Stalls whose fix is not a wait handed to a worker."""


def _index_on(stack: _stacks.Stack, where: _stacks.Frame) -> int:
    """Where ``where`` is on ``stack`` (its first place), 0 when it is not."""
    return next((i for i, frame in enumerate(stack) if frame == where), 0)


def _is_async_def(where: _stacks.Frame) -> bool:
    """Whether the function ``where`` runs in is an ``async def`` (the nearest
    header of that name above its line)."""
    for lineno in range(where.lineno, max(0, where.lineno - _HEADER_SEARCH), -1):
        header = where.line_of_file(lineno).lstrip()
        for keyword in ("async def ", "def "):
            if header.startswith(keyword) and header[len(keyword) :].startswith(
                f"{where.function}("
            ):
                return keyword == "async def "
    return False


_HEADER_SEARCH = 400
"""Lines above a frame's line looked at for its function's header."""


def _awaited(fix: str, driver: str) -> str:
    """``fix`` as a coroutine writes it: awaited, on what runs the coroutine
    (``task.deferLater`` has no place in an asyncio task, nor a callback to go
    on in once the wait is awaited)."""
    if fix == _STALL_FIXES["time.sleep"]:
        sleep = (
            "asyncio.sleep(seconds)"
            if driver == "asyncio"
            else "task.deferLater(reactor, seconds)"
        )
        return f"wait without blocking: await {sleep}"
    to_thread = "asyncio.to_thread(" if driver == "asyncio" else "threads.deferToThread("
    fix = fix.replace(", and go on in its callback", "")
    return fix.replace("threads.deferToThread(", f"await {to_thread}", 1)


def _callback_stall_fix(stall: Violation, where: _stacks.Frame | None) -> str:
    if (where is None or where.library is not None) and "system event trigger" in (
        stall.detail or ""
    ):
        # A library's wait the reactor runs itself (a ThreadPool's stop at shutdown).
        return (
            "run it in a worker, which shutdown waits for: reactor.addSystemEventTrigger("
            '"before", "shutdown", threads.deferToThread, f), f the trigger'
            + (f" ({where.function})" if where is not None else "")
        )
    source = where.source if where is not None else None
    waited = _WAITED_AS_WRITTEN.get(stall.api)
    written = _fixes.call_written(source or "", waited) if waited else None
    if written is not None:  # `t.join()`, maybe in a lambda a callLater runs
        return f"wait in a worker: threads.deferToThread({written}), and go on in its callback"
    fired = _callback_fired(stall.stack, where)
    if fired is not None:  # `done.callback(x)`, whose callbacks wait: never a worker's to call
        there = _STALL_FIXES.get(stall.api, _ANY_STALL_FIX)
        return (
            f"the wait is in a Deferred callback this line fires ({fired.location()}): there,"
            f" {there}; this line stays in the reactor thread"
        )
    in_lambda = where is not None and where.function == "<lambda>"  # the line is its caller's
    called = None if in_lambda else _waiting_call(stall.api, source)
    if called is not None:  # `server.shutdown()`: the wait is inside the program's call
        return f"wait in a worker: threads.deferToThread({called})"
    return _STALL_FIXES.get(stall.api, _ANY_STALL_FIX)


def _callback_fired(stack: _stacks.Stack, where: _stacks.Frame | None) -> _stacks.Frame | None:
    """Where a Deferred callback run below ``where`` waits, when the wait is in
    one (then the line only fired the Deferred): the innermost frame of a
    library's (trial's cleanup running ``t.join``), else the callback Deferred
    called (``t.join`` itself)."""
    if where is None:
        return None
    below = [f for f in stack[_index_on(stack, where) + 1 :] if f.library != "threadcheck"]
    runs = [
        i
        for i, frame in enumerate(below)
        if frame.function == "_runCallbacks" and _in_defer(frame)
    ]
    if not runs:
        return None
    called = [f for f in below[runs[0] + 1 :] if not _in_defer(f)]
    return next(
        (f for f in reversed(called) if f.library != "python"), called[0] if called else None
    )


def _in_defer(frame: _stacks.Frame) -> bool:
    """Whether ``frame`` is Deferred's own machinery (an ``inlineCallbacks``
    generator resumed is its ``_inlineCallbacks``'s callee)."""
    return frame.filename.replace(os.sep, "/").endswith("/twisted/internet/defer.py")


_WAITED_AS_WRITTEN = {"Queue.get": "get", "Thread.join": "join", "Event.wait": "wait"}
"""The waits whose fix hands the program's own call of them to a worker."""


def _blocked_at(stall: Violation) -> _stacks.Frame | None:
    """Where the reactor thread waited, inside the callback it ran: the
    program's innermost frame, else a library's (not ``reactor.run()``, below it)."""
    return _stacks.where_it_waits(stall.stack[-stall.within :] if stall.within else stall.stack)


def _waiting_call(api: str, source: str | None) -> str | None:
    """The call on the program's blocked line, as ``deferToThread``'s arguments
    (``server.shutdown``), when it is not the waiting API itself (that one's
    fix names it: ``event.wait``)."""
    if api not in _STALL_FIXES or api == "Thread.start":
        return None
    # `return client.get(url)` too: a library's retry backing off in time.sleep.
    called = _call_on_line(source, valued=True)
    if called is None or called.partition(",")[0].rpartition(".")[2] == api.rpartition(".")[2]:
        return None  # `done.wait()` itself: the table's fix says it
    return called


def _call_on_line(source: str | None, valued: bool = False) -> str | None:
    """The call that is the whole of line ``source``, as a hand-off's arguments:
    ``server.shutdown`` for ``server.shutdown()``, ``d.callback, 1`` for ``d.callback(1)``;
    ``valued``: or the value a line returns or assigns to a name or an attribute
    (``return get(u)``, ``self.token = fetch()``)."""
    try:
        statement = ast.parse((source or "").strip()).body
    except SyntaxError:
        return None
    kinds = (ast.Expr, ast.Return, ast.Assign) if valued else (ast.Expr,)
    if len(statement) != 1 or not isinstance(statement[0], kinds):
        return None
    if isinstance(statement[0], ast.Assign) and (
        len(statement[0].targets) != 1
        or not isinstance(statement[0].targets[0], (ast.Name, ast.Attribute))
    ):
        return None
    call = statement[0].value
    if not isinstance(call, ast.Call) or call.keywords:
        return None
    return ", ".join([ast.unparse(call.func), *(ast.unparse(a) for a in call.args)])


def format_stalls(stalls: list[Violation]) -> str:
    """The stall section (stalls fail nothing); empty string when there were none."""
    if not stalls:
        return ""
    noun = "stall" if len(stalls) == 1 else "stalls"
    lines = [f"threadcheck: {len(stalls)} reactor {noun} (reported, not failures)", ""]
    for number, stall in enumerate(stalls[:MAX_GROUPS_SHOWN], start=1):
        lines.append(f"[{number}] {stall.headline()}")
        if stall.test is not None:
            lines.append(f"    during test: {stall.test.describe()}")
        where = _blocked_at(stall)
        if where is not None:
            lines.append(f"    blocked at: {where.location()}")
            if where.source:
                lines.append(f"        {where.source}")
        lines.append("    stack (most recent call last):")
        lines.extend(_stacks.format_stack(stall.stack, indent="      "))
        lines.extend([f"    fix: {_stall_fix(stall, where)}", ""])
    return "\n".join(lines).rstrip() + "\n"


def _thread_json(thread: ThreadInfo) -> dict[str, object]:
    return {"name": thread.name, "ident": thread.ident}


def _test_json(test: TestContext | None) -> dict[str, str] | None:
    return None if test is None else {"nodeid": test.nodeid, "phase": test.phase}


def to_json(violations: list[Violation], mode: str) -> dict[str, object]:
    groups = group(violations)
    return {
        "schema": SCHEMA_ID,
        "version": SCHEMA_VERSION,
        "mode": mode,
        "total": len(violations),
        "counts_by_api": dict(Counter(v.api for v in violations)),
        "violations": [
            {
                "api": g.violation.api,
                "kind": g.violation.kind.value,
                "count": g.count,
                "apis": g.apis,
                "first_index": g.first_index,
                "summary": g.summary(),
                "thread": _thread_json(g.violation.thread),
                "reactor_thread": _thread_json(g.violation.reactor_thread),
                "stack": _stacks.to_json(g.violation.stack),
                "spawn_site": _stacks.to_json(g.violation.spawn_site),
                "submitted_from": _stacks.to_json(g.violation.submitted_from),
                "test": _test_json(g.violation.test),
                "expected": g.violation.expected,
                "detail": g.violation.detail,
                "access": g.violation.access,
                "prior": _prior_json(g.violation.prior),
            }
            for g in groups
        ],
    }


def from_json(document: dict[str, Any]) -> list[Violation]:
    """The violations a :func:`to_json` document holds, each repeated ``count``
    times (as each of its ``apis``, that many times each)."""
    if document.get("schema") != SCHEMA_ID or document.get("version") != SCHEMA_VERSION:
        raise ValueError(
            f"not a {SCHEMA_ID} version {SCHEMA_VERSION} document: "
            f"{document.get('schema')!r} version {document.get('version')!r}"
        )
    violations: list[Violation] = []
    for entry in document["violations"]:
        test = entry["test"]
        violation = Violation(
            api=entry["api"],
            kind=Kind(entry["kind"]),
            thread=ThreadInfo(**entry["thread"]),
            reactor_thread=ThreadInfo(**entry["reactor_thread"]),
            stack=_stack_from_json(entry["stack"]),
            spawn_site=_optional_stack_from_json(entry["spawn_site"]),
            submitted_from=_optional_stack_from_json(entry["submitted_from"]),
            test=None if test is None else TestContext(**test),
            expected=entry["expected"],
            detail=entry.get("detail"),
            access=entry.get("access"),
            prior=_prior_from_json(entry.get("prior")),
        )
        apis = entry.get("apis") or {entry["api"]: entry["count"]}
        for api, count in apis.items():
            violations.extend([replace(violation, api=api)] * count)
    return violations


def _prior_json(prior: PriorAccess | None) -> dict[str, object] | None:
    if prior is None:
        return None
    return {
        "what": prior.what,
        "thread": _thread_json(prior.thread),
        "stack": _stacks.to_json(prior.stack),
        "spawn_site": _stacks.to_json(prior.spawn_site),
        "submitted_from": _stacks.to_json(prior.submitted_from),
    }


def _prior_from_json(entry: dict[str, Any] | None) -> PriorAccess | None:
    if entry is None:
        return None
    return PriorAccess(
        what=entry["what"],
        thread=ThreadInfo(**entry["thread"]),
        stack=_stack_from_json(entry["stack"]),
        spawn_site=_optional_stack_from_json(entry["spawn_site"]),
        submitted_from=_optional_stack_from_json(entry["submitted_from"]),
    )


def _stack_from_json(frames: list[dict[str, Any]]) -> _stacks.Stack:
    return _stacks.intern(
        tuple(_stacks.Frame(f["file"], f["line"], f["function"]) for f in frames)
    )


def _optional_stack_from_json(frames: list[dict[str, Any]] | None) -> _stacks.Stack | None:
    return None if frames is None else _stack_from_json(frames)


def write_json(
    violations: list[Violation], mode: str, path: str | Path, lost: list[str] | None = None
) -> None:
    """``lost``: the processes whose violations are missing (the report is incomplete)."""
    document = to_json(violations, mode)
    if lost:
        document["lost"] = lost
    Path(path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")


def json_path_problem(path: str | Path, option: str) -> str | None:
    """Why the JSON report cannot go to ``path`` (one line naming ``option``), or None.

    Asked before the program runs, so a long run is not lost to a typo. The file
    is opened for real (and removed again if this made it): permission bits do
    not bind root, and ``/proc`` takes no new files.
    """
    target = Path(path)
    folder = target.absolute().parent
    if target.is_dir():
        return f"{option}: is a directory: {path}"
    if not folder.is_dir():
        return f"{option}: no such directory: {folder}"
    existed = target.exists()
    try:
        with open(target, "a", encoding="utf-8"):
            pass
    except OSError as error:
        return f"{option}: cannot write {path}: {error.strerror or error}"
    if not existed:
        target.unlink(missing_ok=True)
    return None


def save_json(
    violations: list[Violation],
    mode: str,
    path: str | Path,
    stream: IO[str],
    lost: list[str] | None = None,
) -> bool:
    """Write the JSON report; if that fails after all, say so in one line on ``stream``."""
    try:
        write_json(violations, mode, path, lost)
    except OSError as error:
        stream.write(
            f"threadcheck: error: cannot write the JSON report to {path}: "
            f"{error.strerror or error}\n"
        )
        return False
    return True


@dataclass(frozen=True)
class Finished:
    found: int
    """Violations reported."""
    json_written: bool
    """False when the JSON report was asked for and could not be written."""


def finish(checker: AffinityChecker, json_path: str | Path | None, stream: IO[str]) -> Finished:
    """Judge pending calls, write the reports (the human one first: a JSON report that
    cannot be written loses nothing else)."""
    checker.flush_pending()
    violations = checker.recorder.violations()
    if violations:
        stream.write(format_report(violations))
    stream.write(format_stalls(checker.recorder.stalls()))
    written = json_path is None or save_json(violations, checker.mode.value, json_path, stream)
    stream.flush()
    return Finished(len(violations), written)
