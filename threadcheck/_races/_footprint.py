"""What the running step of a schedule touched: the dependence DPOR reasons with.

While :data:`collecting`, the rewritten code's access helpers (:mod:`._access`)
and the scheduler's primitives add each location they touch, and the
scheduler hands the sets to its strategy at the end of each step (see
``Scheduler.point``). Locations must name the same thing in every schedule of
an exploration, as the strategy compares steps of different schedules: so an
object is named by its type, not its address (``Account.balance`` is one
location for every account), and a synchronisation object by its type and the
line that made it. Two objects confused is a conflict too many, never one
missed: the search does more, and stays right.

A wait is not a look: a thread that blocks on a lock, a queue, an event or a
join records nothing of it in that step. The step that ends its wait records
the object, and *acquires* it: it could not have run before the release that
woke it (had that release come first, it would not have blocked, and gone on
to the same state). A condition's waiter does record its wait, since a notify
before it is lost.

Thread safety: only the thread holding the scheduler's turn runs, so the sets
need no lock; a thread outside the scheduler that runs rewritten code meanwhile
can only add conflicts.
"""

from __future__ import annotations

import dis
import os
import sys
from _thread import get_ident
from collections.abc import Hashable
from types import CodeType, FrameType, ModuleType
from typing import Any

collecting = False

reads: set[Hashable] = set()
writes: set[Hashable] = set()
acquires: set[Hashable] = set()
"""What the step was woken by: it could not have run before that release."""
releases: set[Hashable] = set()
"""The waits the step ended (it woke their threads)."""
waits: set[Hashable] = set()
"""What the step ended blocked on."""
exclusive: set[Hashable] = set()
"""The locks among ``acquires``."""

_KEYS = (str, int, float, bytes, bool, type(None))
_OWN = os.path.dirname(os.path.dirname(__file__))  # the threadcheck package's folder


def location(obj: Any, key: Any) -> Hashable:
    """``obj``'s ``key`` (an attribute's name, a container's key, a variable's name)."""
    if type(key) not in _KEYS and key is not WHOLE and key is not EVERY:
        key = "*"  # an object as a key: every such key is one location
    if type(obj) is ModuleType:  # module.x is the x its functions' `global x` names
        return "dict", key
    if issubclass(type(obj), type):  # a class attribute: what its instances read
        return obj.__qualname__, key
    return type(obj).__qualname__, key


CLOCK: Hashable = ("clock",)
"""Virtual time: read by the clocks and every wait with a deadline, written
by time passing."""

time_would: frozenset[Hashable] = frozenset()
"""What time passing would write, were it chosen at the decision being asked:
the clock and the waits it would end. A step chosen instead that writes one of
them (an event set, an item put) ends that wait before its deadline: the
search must also try time first."""

FILES: Hashable = ("files",)
"""The file system: written by every call of ``open`` and of the ``os``,
``os.path`` and ``shutil`` functions the program makes (``if not
os.path.exists(p): open(p, "x")`` in two threads is a check, then an act)."""

WHOLE: Hashable = ("whole",)
"""The key of a container as a whole: its size, its order, what iterating it sees."""

EVERY: Hashable = ("every",)
"""Every key of a container at once: written by a call that may change any
(``d.update(...)``, ``items.sort()``, ``items.append(x)``, which changes
``items[-1]``), read by each key's read. A key's store does not write it."""


def read(obj: Any, key: Any) -> None:
    reads.add(location(obj, key))


def write(obj: Any, key: Any) -> None:
    writes.add(location(obj, key))


GENERATOR: Hashable = ("generator", WHOLE)
"""``location(gen, WHOLE)`` of every generator: where one runs, its object is
out of reach (one location for all of them, as for every object of a type)."""

_made: dict[tuple[str, int], int] = {}
"""Synchronisation objects made at each line so far in this schedule."""


def name_at_creation(obj: Any) -> None:
    """Name the synchronisation object ``obj`` (its ``_footprint_key``) by its type
    and, while collecting, the first line outside threadcheck that is making it
    and how many that line made before in the schedule: the same in every
    schedule up to where two of them part, and they only compare steps taken
    from one state."""
    if not collecting:
        obj._footprint_key = ("sync", type(obj).__qualname__)
        return
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_OWN):
        frame = frame.f_back  # type: ignore[assignment]
    where = (frame.f_code.co_filename, frame.f_lineno) if frame is not None else ("?", 0)
    made = _made[where] = _made.get(where, 0) + 1
    obj._footprint_key = ("sync", type(obj).__qualname__, where, made)


def touch(key: Hashable) -> None:
    """A synchronisation operation (or an effect nobody sees the details of) on ``key``."""
    writes.add(key)


def looked_at(key: Hashable) -> None:
    """A synchronisation object's state read, not changed (``Event.is_set``)."""
    reads.add(key)


def released(key: Hashable) -> None:
    """``key`` given back or made available (a lock released, an item put, a
    thread started or ended, a wait ended): what a later :func:`acquired` waits for."""
    writes.add(key)
    releases.add(key)


def acquired(key: Hashable, changed: bool = True) -> None:
    """``key`` taken, or (``changed=False``) seen available: never in place of a
    release of it before. Had it come first, it would have waited for one, to the
    same state."""
    (writes if changed else reads).add(key)
    acquires.add(key)


def thread(tid: int) -> Hashable:
    """A controlled thread's start and end, as a footprint key."""
    return ("thread", tid)


# An attribute's helper runs just before the instruction that accesses it, and
# the scheduling point of that access comes between them: what the helper saw
# belongs to the step that point starts. So it waits here, for each thread,
# until the point of its access (matched by name and operation) or the end of
# the thread's step, whichever comes first.
_pending: dict[int, list[list[Any]]] = {}
"""Thread ident -> [attribute name, operations, location, written, times carried]."""
CARRY_LIMIT = 8
"""Steps an unmatched access is recorded in (its point may be a few steps away:
the right-hand side of ``self.total += work()`` has its own)."""


def expect(obj: Any, name: str, operations: tuple[str, ...], written: bool) -> None:
    """``obj.name`` is about to be accessed by the next point's instruction."""
    _pending.setdefault(get_ident(), []).append(
        [name, operations, location(obj, name), written, 0]
    )


_CALL = ("call",)


def expect_call(obj: Any, method: str, every: bool) -> None:
    """Container ``obj``'s mutating ``method()`` (``pop()``) is about to be called
    by the next point's instruction: a write of it as a whole, and (``every``)
    of every key."""
    waiting = _pending.setdefault(get_ident(), [])
    waiting.append([method, _CALL, location(obj, WHOLE), True, 0])
    if every:
        waiting.append([method, _CALL, location(obj, EVERY), True, 0])


# A container handed to C code that may call the program back (``xs.sort(key=f)``,
# ``s.add(obj)`` calling ``obj.__hash__``, ``max(s, key=f)``) is touched by it
# throughout the call, while the program's code it calls takes scheduling
# points: every step that ends inside the call touched it too, and so does the
# one it returns in. Otherwise a change made by another thread meanwhile (``list
# modified during sort``) conflicted only with the call's start.
_calls: dict[int, list[list[Any]]] = {}
"""Thread ident -> [the calling frame, the offset of its call instruction, the
container's location, written, whether it called back] of each call not yet
seen returned."""
_call_after: dict[tuple[CodeType, int], int] = {}
"""(code, offset of a helper's call) -> offset of the next call: the one the helper's
value is handed to (a method of it, or the call it is the last argument of)."""


def handed(obj: Any, written: bool, caller: FrameType) -> None:
    """Container ``obj`` is handed by ``caller``'s code, which is calling this
    helper, to the next call it makes."""
    where = (caller.f_code, caller.f_lasti)
    offset = _call_after.get(where)
    if offset is None:
        offset = _call_after[where] = _next_call(*where)
    calls = _calls.setdefault(get_ident(), [])
    for call in calls:  # the same call again (a loop's): one entry, begun afresh
        if call[0] is caller and call[1] == offset:
            call[2:] = [location(obj, WHOLE), written, False]
            return
    calls.append([caller, offset, location(obj, WHOLE), written, False])


_held: dict[int, list[Any]] = {}
"""Thread ident -> objects handed by the arguments evaluated so far, to a call
that may call the program back (``None`` for those not containers)."""


def hold(obj: Any) -> None:
    _held.setdefault(get_ident(), []).append(obj)


def hand_held(count: int, caller: FrameType) -> None:
    """The last ``count`` objects held are handed to ``caller``'s next call: read
    in each step that ends inside it (reads suffice: such a call changes its
    container between its calls back, at once, as C code)."""
    held = _held.get(get_ident())
    if not held:
        return
    for obj in held[-count:]:
        if obj is not None:
            handed(obj, False, caller)
    del held[-count:]


def _next_call(code: CodeType, after: int) -> int:
    for instruction in dis.get_instructions(code):
        name = instruction.opname
        if (
            instruction.offset > after
            and name.startswith("CALL")
            and not name.startswith("CALL_INTRINSIC")
        ):
            return instruction.offset
    return -1


def _in_calls(calls: list[list[Any]]) -> None:
    """The step ending now touched the containers of the calls in ``calls``
    that called the program back in it, or returned in it after calling back."""
    innermost: FrameType | None = sys._getframe(2)
    while innermost is not None and innermost.f_code.co_filename.startswith(_OWN):
        innermost = innermost.f_back
    running = []
    for call in calls:
        caller, offset = call[0], call[1]
        inside = innermost is not caller and _on_stack(caller, innermost)
        if caller.f_lasti == offset and inside:
            call[4] = True  # the program called back: the step ended inside
        elif caller.f_lasti > offset or not (inside or innermost is caller):
            # Returned (or its caller did): the step it returned in touched it.
            if call[4]:
                (writes if call[3] else reads).add(call[2])
            continue
        if call[4]:
            (writes if call[3] else reads).add(call[2])
        running.append(call)  # still to begin (its arguments, its own point) or inside
    calls[:] = running


def _on_stack(caller: FrameType, innermost: FrameType | None) -> bool:
    frame = innermost
    while frame is not None:
        if frame is caller:
            return True
        frame = frame.f_back
    return False


UNKNOWN: Hashable = ("*",)
"""What a step touched when nobody knows (code that was not rewritten): every
location. Equal to the DPOR search's ``EVERYTHING``."""

_rewritten: dict[CodeType, bool] = {}


def is_rewritten(code: CodeType) -> bool:
    """Whether ``code`` was rewritten: made by :func:`~threadcheck._races._rewrite.
    compile_user` (see :func:`compiled`), or calls the access helpers (a
    function's code swapped in place)."""
    rewritten = _rewritten.get(code)
    if rewritten is None:
        rewritten = _rewritten[code] = any(n.startswith("__tc_") for n in code.co_names)
    return rewritten


def compiled(code: CodeType) -> None:
    """``code`` and every code in it were rewritten, those that access nothing
    included (a comprehension over its own locals: its loop's steps are points,
    which would otherwise count as touching everything)."""
    _rewritten[code] = True
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            compiled(constant)


def at_point(ident: int, detail: str, code: CodeType | None) -> list[tuple[Hashable, bool]]:
    """The accesses ``ident`` expects of the access point described by ``detail``
    (``counter.total (store)``) in ``code``, taken from those it waits for. In
    code not rewritten (a function made before exploring began), nothing was
    recorded: the access may be to anything."""
    if code is not None and not is_rewritten(code):
        return [(UNKNOWN, True)]
    waiting = _pending.get(ident)
    if not waiting:
        return []
    head, _, tail = detail.rpartition(" (")
    name, operation = head.rpartition(".")[2], tail[:-1]
    matched = [entry for entry in waiting if entry[0] == name and operation in entry[1]]
    if matched:
        waiting[:] = [entry for entry in waiting if entry not in matched]
    return [(entry[2], entry[3]) for entry in matched]


def record(accesses: list[tuple[Hashable, bool]]) -> None:
    for loc, written in accesses:
        (writes if written else reads).add(loc)


def step_ends(ident: int) -> None:
    """``ident``'s step ends. An access expected in an earlier step and still
    not met may have been done without a point (an assertion's internals): it
    is recorded in this step and the next ones, until met or carried long enough.
    One expected in this step is not: its point is still to come."""
    calls = _calls.get(ident)
    if calls and ident == get_ident():
        _in_calls(calls)
    waiting = _pending.get(ident)
    if not waiting:
        return
    for entry in waiting:
        if entry[4]:
            (writes if entry[3] else reads).add(entry[2])
        entry[4] += 1
    waiting[:] = [entry for entry in waiting if entry[4] < CARRY_LIMIT]


def take() -> tuple[frozenset[Hashable], ...]:
    """The step's (reads, writes, acquires, releases, exclusive, waits), and a
    fresh start for the next."""
    taken = (
        frozenset(reads),
        frozenset(writes),
        frozenset(acquires),
        frozenset(releases),
        frozenset(exclusive),
        frozenset(waits),
    )
    clear_step()
    return taken


def clear_step() -> None:
    reads.clear()
    writes.clear()
    acquires.clear()
    releases.clear()
    exclusive.clear()
    waits.clear()


def clear() -> None:
    _pending.clear()
    _calls.clear()
    _held.clear()
    _made.clear()
    clear_step()
