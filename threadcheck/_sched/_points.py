"""Scheduling points inside user code: before each access, line or instruction.

Granularities:

* ``sync``: none here; only synchronisation operations are points.
* ``access`` (the default): before each attribute load or store, subscript
  load or store, and store to a global or closure variable, so that a
  one-line ``self.total += 1`` can be split by another thread; and at each
  step of a loop (``for`` over anything but a ``range``, and a ``while``
  loop's back-edge), so that another thread can change a dict while it is
  iterated, and a thread that spins on a flag lets the one that sets it run.
  A loop's first steps in a schedule are points, then ever fewer (see
  :meth:`~threadcheck._sched._core.Scheduler.loop_step`): a loop over 30,000
  lines is not 30,000 points.
* ``line``: before each line. ``opcode``: before every instruction.

Only *user code* is instrumented: files that are neither the standard library,
installed packages, Twisted nor threadcheck. Python 3.12 and newer use
``sys.monitoring`` (with a free tool id, so coverage and debuggers keep theirs):
each location that is not a point is disabled after its first hit. 3.10 and
3.11 use ``sys.settrace`` with opcode events in controlled threads (3.12's
settrace misses opcode events on a code object's first run, which would break
replay), except in code rewritten as for the race detector
(:mod:`threadcheck._races._rewrite`), which at the ``access`` granularity
takes its points from the helpers around its accesses instead: an opcode event
on every instruction made a loop over a thread's own numbers 30x slower,
while a helper costs only where the code touches something. (What the helpers
do not see, a closure variable assigned by the function that owns it, is not a
point there.)

Thread safety: :meth:`Instrumentation.start` and :meth:`stop` are called by the
exploring thread outside schedules; the callbacks run in any thread and act
only for controlled ones.
"""

from __future__ import annotations

import dis
import sys
import threading
import weakref
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

from threadcheck._races import _access, _footprint, _shadow
from threadcheck._races._rewrite import GLOBALS, MUTATORS
from threadcheck._sched._chained import (
    chained,
    chained_hook,
    gettrace,
    is_chained,
    set_by_program,
    settrace,
    unfiltered,
    without_ours,
)
from threadcheck._sched._core import active

GRANULARITIES = ("sync", "access", "line", "opcode")
DEFAULT_GRANULARITY = "access"


def points_from_helpers(granularity: str) -> bool:
    """Whether rewritten code may take its scheduling points from its access
    helpers (3.10, 3.11), when an exploration rewrites user code."""
    return sys.version_info < (3, 12) and granularity == DEFAULT_GRANULARITY


_ATTRIBUTE = {"LOAD_ATTR": "load", "STORE_ATTR": "store", "DELETE_ATTR": "delete"}
_SUBSCRIPT = {"BINARY_SUBSCR": "load", "STORE_SUBSCR": "store", "DELETE_SUBSCR": "delete"}
_SLICE = {"BINARY_SLICE": "load", "STORE_SLICE": "store"}
"""3.12+: ``c[a:b]`` and ``c[a:b] = v`` (a subscript with a slice before)."""
_VARIABLE = {
    "STORE_GLOBAL": "store",
    "DELETE_GLOBAL": "delete",
    "STORE_NAME": "store",  # a module's (or a class body's) own code
    "DELETE_NAME": "delete",
    "STORE_DEREF": "store",
    "DELETE_DEREF": "delete",
}
_OWNER_LOADS = ("LOAD_FAST", "LOAD_GLOBAL", "LOAD_DEREF", "LOAD_NAME", "LOAD_FAST_CHECK")


def access_points(code: CodeType) -> dict[int, str]:
    """Offsets of ``code``'s access instructions, with what each accesses."""
    instructions = list(dis.get_instructions(code))
    points: dict[int, str] = {}
    for index, instruction in enumerate(instructions):
        name = instruction.opname
        if name in _ATTRIBUTE and "NULL" not in instruction.argrepr:  # not a method load
            owner = _attribute_owner(instructions, index)
            if owner.startswith("@py"):
                continue  # pytest's assertion rewriting: its helpers, not the program's state
            points[instruction.offset] = f"{owner}.{instruction.argval} ({_ATTRIBUTE[name]})"
        elif _is_method_load(instruction) and instruction.argval in MUTATORS:
            # A builtin container's mutator is one step with no point inside:
            # `if items: items.pop()` races only with a point between the look
            # and the call. An attribute's (`self.items.pop()`) has the point
            # of that load just before; an item's (`batches[k].append(x)`) needs
            # one after its look-up (another thread may swap the batch out).
            owner = _pushed(instructions, index - 1)
            call = _call_of(instructions, index, depth=1)
            detail = f"{owner}.{instruction.argval}() (call)"
            if call is not None and _doing(instructions[index + 1 : call]):
                # `items.append(items.pop() + 1)`: the change comes after the
                # arguments, which have points of their own (any owner).
                points[instructions[call].offset] = detail
            elif owner.isidentifier() or owner.endswith("[...]"):
                points[instruction.offset] = detail
        elif _is_method_load(instruction) and instruction.argval in _SETTERS:
            # `object.__setattr__(stats, "n", v)`, `stats.__setattr__("n", v)`:
            # the access is the call's, as setattr's.
            call = _call_of(instructions, index, depth=1)
            if call is not None:
                detail = _setter_access(instructions, index)
                points[instructions[call].offset] = detail
        elif name in _SUBSCRIPT:
            owner = _subscript_owner(instructions, index, 1 if name != "STORE_SUBSCR" else 2)
            points[instruction.offset] = f"{owner}[...] ({_SUBSCRIPT[name]})"
        elif name in _SLICE:
            bounds = instructions[max(0, index - 2) : index]
            plain = all(i.opname.startswith((*_OWNER_LOADS, "LOAD_CONST")) for i in bounds)
            owner = _pushed(instructions, index - 3) if plain else "<expr>"
            points[instruction.offset] = f"{owner}[...] ({_SLICE[name]})"
        elif name in _VARIABLE and not str(instruction.argval).startswith("__tc_"):
            # (Not the rewriter's own helpers, stored in each rewritten module.)
            points[instruction.offset] = f"{instruction.argval} ({_VARIABLE[name]})"
        elif name in ("LOAD_GLOBAL", "LOAD_NAME") and instruction.argval in _NAMED_ACCESS:
            call = _call_of(instructions, index)
            if call is not None:
                points[instructions[call].offset] = _named_access(instructions, index)
        elif name == "FOR_ITER" and not _over_a_range(instructions, index):
            points[instruction.offset] = LoopStep(f"iteration of {_iterated(instructions, index)}")
        elif _is_while_back_edge(instructions, index):
            points[instruction.offset] = LoopStep("loop")
    return points


_NAMED_ACCESS = {"getattr": "load", "hasattr": "load", "setattr": "store", "delattr": "delete"}
"""Builtins that access an attribute by name: the access is their call's."""
_CALLS = (
    "CALL",
    "CALL_FUNCTION",
    "CALL_FUNCTION_KW",
    "CALL_KW",
    "CALL_FUNCTION_EX",
    "CALL_METHOD",
)
_PLAIN = frozenset(
    {
        "LOAD_CONST", "LOAD_SMALL_INT", "LOAD_GLOBAL", "LOAD_DEREF", "LOAD_NAME", "PUSH_NULL",
        "PRECALL", "KW_NAMES", "CACHE", "EXTENDED_ARG", "NOP", "COMPARE_OP", "IS_OP",
        "BUILD_TUPLE", "BUILD_LIST", "BUILD_MAP", "BUILD_CONST_KEY_MAP", "BUILD_SET",
        "LIST_EXTEND", "FORMAT_VALUE", "FORMAT_SIMPLE", "CONVERT_VALUE", "BUILD_STRING", "COPY",
        "SWAP", "TO_BOOL",
    }
)  # fmt: skip
"""Instructions that reach no point of their own: loads of names and constants,
arithmetic, literals (and a call's own preparation)."""


def _doing(instructions: list[dis.Instruction]) -> bool:
    """Whether any of ``instructions`` may reach a point of its own (whatever is
    not known to be plain: a call, an attribute, an item, a loop, a store)."""
    return any(
        not (
            i.opname in _PLAIN
            or i.opname.startswith(("LOAD_FAST", "UNARY_"))
            or (
                i.opname.startswith("BINARY_")
                and i.opname not in ("BINARY_SUBSCR", "BINARY_SLICE")
            )
        )
        for i in instructions
    )


def _call_of(instructions: list[dis.Instruction], index: int, depth: int = 0) -> int | None:
    """The call of the function ``instructions[index]`` loads: the first call
    after which only its result is left (its arguments' own calls leave it too).
    ``depth``: what the stack held for it before (a method's owner: 1)."""
    for at in range(index, min(len(instructions), index + 200)):
        instruction = instructions[at]
        argument = instruction.arg if instruction.opcode >= dis.HAVE_ARGUMENT else None
        try:
            depth += dis.stack_effect(instruction.opcode, argument, jump=False)
        except ValueError:  # an instruction with no fixed effect: not followed
            return None
        if depth <= 0:
            return None
        if at > index and depth == 1 and instruction.opname in _CALLS:
            return at
    return None


def _named_access(instructions: list[dis.Instruction], index: int) -> str:
    """``getattr(self, "n")`` as ``self.n (load)``, the name a constant (as the
    helpers' accesses name it: they match); ``setattr(self, name) (store)`` else."""
    function = str(instructions[index].argval)
    operation = _NAMED_ACCESS[function]
    following = [  # in rewritten code, ``obj`` is a helper's first argument
        i
        for i in instructions[index + 1 : index + 6]
        if i.opname != "PUSH_NULL" and not str(i.argval).startswith("__tc_")
    ][:2]
    if following and isinstance(following[0].argval, tuple):  # LOAD_FAST_LOAD_FAST (3.13)
        owner, name = (str(part) for part in following[0].argval[:2])
        return f"{function}({owner}, {name}) ({operation})"
    if len(following) < 2 or not following[0].opname.startswith(_OWNER_LOADS):
        return f"{function}() ({operation})"
    owner = _loaded_name(following[0])
    if following[1].opname == "LOAD_CONST" and isinstance(following[1].argval, str):
        return f"{owner}.{following[1].argval} ({operation})"
    return f"{function}({owner}, {_loaded_name(following[1])}) ({operation})"


_SETTERS = {"__setattr__": "store", "__delattr__": "delete"}
"""Methods that access the attribute they name: the access is their call's."""


def _setter_access(instructions: list[dis.Instruction], index: int) -> str:
    """``object.__setattr__(stats, "n", v)`` or ``stats.__setattr__("n", v)`` as
    ``stats.n (store)``: the name a constant among its first arguments, as the
    helpers' accesses name it; ``stats.__setattr__() (store)`` else."""
    method = str(instructions[index].argval)
    operation = _SETTERS[method]
    for following in instructions[index + 1 : index + 8]:
        if following.opname == "LOAD_CONST" and isinstance(following.argval, str):
            return f"{_pushed(instructions, index - 1)}.{following.argval} ({operation})"
    return f"{_pushed(instructions, index - 1)}.{method}() ({operation})"


def _is_method_load(instruction: dis.Instruction) -> bool:
    """``obj.name`` loaded to be called at once: ``LOAD_METHOD`` (3.10, 3.11),
    ``LOAD_ATTR`` with its method flag (3.12+)."""
    name = instruction.opname
    return name == "LOAD_METHOD" or (name == "LOAD_ATTR" and "NULL" in instruction.argrepr)


class LoopStep(str):
    """The detail of a loop's step: marked by its type when the table is made,
    as no text can tell it from an access (``loop.running (load)``)."""


def is_loop_step(detail: str) -> bool:
    return type(detail) is LoopStep


def _iterated(instructions: list[dis.Instruction], index: int) -> str:
    """What a ``for`` loop iterates: pushed before its GET_ITER, when plain to see."""
    start = _loop_start(instructions, index)
    return _pushed(instructions, start - 1) if start is not None else "<expr>"


def _loop_start(instructions: list[dis.Instruction], index: int) -> int | None:
    """The GET_ITER just before the loop's FOR_ITER."""
    for back in range(index - 1, max(-1, index - 3), -1):
        if instructions[back].opname == "GET_ITER":
            return back
    return None


def _over_a_range(instructions: list[dis.Instruction], index: int) -> bool:
    """``for i in range(...)``: counting, with nothing shared to iterate."""
    start = _loop_start(instructions, index)
    if start is None:
        return False
    # The range() call itself is the iterable (not reversed(range(...)) or zip(range(n), xs)).
    first = max(0, start - 8)
    return any(
        instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME")
        and instruction.argval == "range"
        and _call_of(instructions, at) == start - 1
        for at, instruction in enumerate(instructions[first:start], first)
    )


_BACKWARD = ("JUMP_BACKWARD", "JUMP_ABSOLUTE", "POP_JUMP_")  # the conditional ones: 3.10, 3.11


def _is_while_back_edge(instructions: list[dis.Instruction], index: int) -> bool:
    """A jump back to the start of a ``while`` loop (a ``for`` loop's goes to FOR_ITER)."""
    instruction = instructions[index]
    if not instruction.opname.startswith(_BACKWARD) or not isinstance(instruction.argval, int):
        return False
    if instruction.argval >= instruction.offset:
        return False
    target = next((i for i in instructions if i.offset == instruction.argval), None)
    return target is not None and target.opname != "FOR_ITER"


def _owner(instructions: list[dis.Instruction], index: int, skip: int = 0) -> str:
    """The name the accessed object was loaded from, when it is plain to see."""
    for instruction in reversed(instructions[max(0, index - 8) : index]):
        if instruction.opname.startswith(_OWNER_LOADS):
            if skip == 0:
                return _loaded_name(instruction)
            skip -= 1
    return "<expr>"


def _attribute_owner(instructions: list[dis.Instruction], index: int) -> str:
    """What the attribute is read from or written to: the value the instruction
    before pushed (``self.transport`` for ``self.transport.write``); in an
    augmented assignment (``counter.total += n``), what the matching read had;
    ``<expr>`` for anything else (a call's result)."""
    previous = instructions[index - 1] if index > 0 else None
    if previous is not None and previous.opname in ("SWAP", "ROT_TWO"):
        name = instructions[index].argval  # the store of `owner.name += value`
        for back in range(index - 2, max(0, index - 10), -1):
            if instructions[back].opname == "LOAD_ATTR" and instructions[back].argval == name:
                return _pushed(instructions, back - 1)
    return _pushed(instructions, index - 1)


def _subscript_owner(instructions: list[dis.Instruction], index: int, skip: int) -> str:
    """The container of ``container[key]``: pushed just before a plain key."""
    key = instructions[index - 1] if index > 0 else None
    if key is not None and key.opname == "DUP_TOP_TWO":  # the read of `c[k] += v`, 3.10
        return _subscript_owner(instructions, index - 1, skip)
    if key is not None and key.opname == "COPY" and instructions[index - 2].opname == "COPY":
        return _subscript_owner(instructions, index - 2, skip)  # the same, 3.11+
    if key is not None and isinstance(key.argval, tuple) and len(key.argval) == 2:
        return str(key.argval[0])  # LOAD_FAST_LOAD_FAST (container, key), 3.13
    if key is not None and key.opname in ("SWAP", "ROT_THREE", "ROT_TWO"):
        for back in range(index - 2, max(0, index - 10), -1):  # `container[key] += value`
            if instructions[back].opname == "BINARY_SUBSCR":
                return _subscript_owner(instructions, back, 1)
    if key is not None and key.opname.startswith((*_OWNER_LOADS, "LOAD_CONST")):
        owner = _pushed(instructions, index - 2)
        if owner != "<expr>":
            return owner
    return _owner(instructions, index, skip)


def _pushed(instructions: list[dis.Instruction], index: int, depth: int = 0) -> str:
    """The name of the value instruction ``index`` pushed, when it is plain to see."""
    if index < 0 or depth > 2:
        return "<expr>"
    instruction = instructions[index]
    if instruction.opname.startswith(_OWNER_LOADS):
        return _loaded_name(instruction)
    if instruction.opname == "LOAD_ATTR" and "NULL" not in instruction.argrepr:
        return f"{_pushed(instructions, index - 1, depth + 1)}.{instruction.argval}"
    if instruction.opname in ("DUP_TOP", "COPY") and instruction.argval in (None, 1):
        return _pushed(instructions, index - 1, depth)
    if instruction.opname in ("CALL", "CALL_FUNCTION"):
        return _helper_argument(instructions, index, depth)
    if instruction.opname == "BINARY_SUBSCR":
        owner = _subscript_owner(instructions, index, 1)
        return "<expr>" if owner == "<expr>" else f"{owner}[...]"
    return "<expr>"


def _helper_argument(instructions: list[dis.Instruction], call: int, depth: int) -> str:
    """In code rewritten for races or DPOR, ``__tc_ra__(counter, "total", 3).total``
    reads ``counter.total``: the helper's first argument is the owner, pushed
    before its constant arguments."""
    back = call - 1
    if back >= 0 and instructions[back].opname == "PRECALL":  # 3.11
        back -= 1
    while back >= 0 and instructions[back].opname == "LOAD_CONST":
        back -= 1
    window = instructions[max(0, back - 12) : back]
    if not any(
        str(i.argval).startswith("__tc_")
        for i in window
        if "GLOBAL" in i.opname or i.opname == "LOAD_NAME"  # a module's, a class body's
    ):
        return "<expr>"
    return _pushed(instructions, back, depth)


def _loaded_name(instruction: dis.Instruction) -> str:
    value = instruction.argval
    if isinstance(value, tuple):  # LOAD_FAST_LOAD_FAST (3.13): the last is on top
        value = value[-1]
    return str(value).split(" ")[0]


def instruction_points(code: CodeType) -> dict[int, str]:
    return {i.offset: i.opname for i in dis.get_instructions(code)}


_TABLES: dict[
    Callable[[CodeType], dict[int, str]], weakref.WeakKeyDictionary[CodeType, dict[int, str]]
] = {
    access_points: weakref.WeakKeyDictionary(),
    instruction_points: weakref.WeakKeyDictionary(),
}
"""Each code's table, kept from one exploration to the next (a table depends on
the code alone): reading them again was most of a first schedule's cost."""


class Instrumentation:
    """Puts scheduling points in user code for one exploration."""

    def __init__(
        self, granularity: str, is_user_file: Callable[[str], bool], *, helpers: bool = True
    ) -> None:
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"unknown granularity {granularity!r}: choose one of {', '.join(GRANULARITIES)}"
            )
        self.granularity = granularity
        self.is_user_file = is_user_file
        self.helpers = helpers and points_from_helpers(granularity)
        """Rewritten code's helpers are its points (3.10, 3.11; see the module's docstring)."""
        self._table_of = instruction_points if granularity == "opcode" else access_points
        self._shared = _TABLES[self._table_of]
        self._tables: dict[CodeType, dict[int, str]] = {}
        """The tables this exploration met: a plain dict, as the backends look one
        up at every instruction and a weak dictionary's lookup makes a weakref."""
        self._backend: _Monitoring | _Tracing | None = None

    def start(self, *, every_thread: bool = False) -> None:
        """``every_thread``: settrace also in threads started from now on, not
        only controlled ones (sys.monitoring covers every thread anyway)."""
        sys.settrace, sys.gettrace = _program_settrace, _program_gettrace
        if self.granularity == "sync":
            return
        if sys.version_info >= (3, 12):
            self._backend = _Monitoring(self)
        else:
            self._backend = _Tracing(self, every_thread)
        if self.helpers:
            _access.on_access = _helper_point
        _access.on_handover = _helper_point
        self._backend.start()

    def stop(self) -> None:
        _access.on_access = _access.on_handover = None
        if self._backend is not None:
            self._backend.stop()
            self._backend = None
        sys.settrace, sys.gettrace = settrace, gettrace

    def thread_started(self) -> None:
        """In a newly controlled thread: settrace is per thread."""
        if isinstance(self._backend, _Tracing):
            self._backend.trace_this_thread()

    def untraced(self) -> bool:
        """Whether user code runs without settrace: see :meth:`drop_tracing`."""
        return isinstance(self._backend, _Tracing) and not self._backend.on

    def drop_tracing(self) -> bool:
        """3.10, 3.11, helper points: stop tracing if all the user code that ran
        so far was rewritten (its helpers are its points, so the trace function
        only cost: every instruction of a traced thread runs 2-3x slower). For
        a target that imports its user modules afresh each schedule, after one
        run. Whether it was dropped."""
        backend = self._backend
        if not (self.helpers and isinstance(backend, _Tracing)) or backend.unrewritten:
            return False
        backend.pause()
        return True

    def trace_again(self) -> None:
        """User code that was not rewritten turned up: trace from now on."""
        if isinstance(self._backend, _Tracing) and not self._backend.on:
            self._backend.start()

    def thread_ended(self) -> None:
        if isinstance(self._backend, _Tracing):
            settrace(None)

    def codes_met(self) -> list[CodeType]:
        """The codes whose table this exploration asked for."""
        return list(self._tables)

    def table(self, code: CodeType) -> dict[int, str]:
        table = self._tables.get(code)
        if table is None:
            table = self._shared.get(code)
            if table is None:
                table = self._shared[code] = self._table_of(code)
            self._tables[code] = table
        return table


_perturbation: list[Callable[[], None]] = []


def perturb_with(perturb: Callable[[], None] | None) -> None:
    """Outside schedules, call ``perturb()`` at each point instead (stress runs
    on real threads: it may yield the GIL)."""
    _perturbation[:] = [] if perturb is None else [perturb]


def _point(kind: str, detail: str, frame: FrameType, where: object) -> None:
    """``where``: the point's place, a loop's key for :meth:`~threadcheck._sched.
    _core.Scheduler.loop_step` (a code and offset, or a helper's site)."""
    scheduler = active()
    if scheduler is not None and scheduler.controlled() is not None:
        if is_loop_step(detail) and not scheduler.loop_step(where):
            return
        scheduler.point(kind, detail, frame)
    elif _perturbation:
        _perturbation[0]()


_details: dict[tuple[int, str], str] = {}


def _helper_point(site: int, operation: str) -> None:
    """The point a rewritten access's helper asks for (``_access.on_access``),
    called by the helper that user code called."""
    detail = _details.get((site, operation))
    if detail is None:
        detail = _details[site, operation] = _site_detail(_shadow.sites[site], operation)
    frame = sys._getframe(2)
    while frame.f_code.co_filename == _HELPERS and frame.f_back is not None:
        frame = frame.f_back  # a helper that called another (``ck``, ``cr``): its caller's
    _point("access", detail, frame, site)


_HELPERS = _access.cr.__code__.co_filename


def _site_detail(site: _shadow.Site, operation: str) -> str:
    """As :func:`access_points` words it: ``counter.total (load)``, ``total
    (store)``, a loop's step."""
    if operation == "step":
        return LoopStep(site.text)
    if site.kind in ("global", "nonlocal"):
        return f"{site.text.partition(' ')[2]} ({operation})"
    return f"{site.text} ({operation})"


class _Monitoring:
    """sys.monitoring (3.12+): PY_START turns on per-code events for user code."""

    def __init__(self, instrumentation: Instrumentation) -> None:
        self.instrumentation = instrumentation
        self.monitoring: Any = sys.monitoring  # type: ignore[attr-defined,unused-ignore]
        self.tool = self._free_tool()

    def _free_tool(self) -> int:
        for tool in (4, 3, 5, 2):  # leave 0 (debugger) and 1 (coverage) to their owners
            if self.monitoring.get_tool(tool) is None:
                return tool
        raise RuntimeError("no free sys.monitoring tool id for threadcheck's scheduling points")

    def start(self) -> None:
        m = self.monitoring
        m.use_tool_id(self.tool, "threadcheck")
        events = m.events
        self.local_events = (
            events.LINE if self.instrumentation.granularity == "line" else (events.INSTRUCTION)
        )
        m.register_callback(self.tool, events.PY_START, self._on_start)
        m.register_callback(self.tool, events.INSTRUCTION, self._on_instruction)
        m.register_callback(self.tool, events.LINE, self._on_line)
        m.set_events(self.tool, events.PY_START)
        # Locations an earlier exploration disabled (say, code that was library
        # code then and is included now) must report again.
        m.restart_events()

    def stop(self) -> None:
        m = self.monitoring
        m.set_events(self.tool, 0)
        for code in self.instrumentation.codes_met():  # each got local events
            m.set_local_events(self.tool, code, 0)
        for event in (m.events.PY_START, m.events.INSTRUCTION, m.events.LINE):
            m.register_callback(self.tool, event, None)
        m.free_tool_id(self.tool)

    def _on_start(self, code: CodeType, offset: int) -> Any:
        # Rewritten code is the program's wherever it came from (text it compiled).
        if self.instrumentation.is_user_file(code.co_filename) or _footprint.is_rewritten(code):
            self.instrumentation.table(code)
            self.monitoring.set_local_events(self.tool, code, self.local_events)
        return self.monitoring.DISABLE

    def _on_instruction(self, code: CodeType, offset: int) -> Any:
        detail = self.instrumentation.table(code).get(offset)
        if detail is None:
            return self.monitoring.DISABLE
        _point("access", detail, sys._getframe(1), (code, offset))
        return None

    def _on_line(self, code: CodeType, line: int) -> Any:
        _point("line", f"line {line}", sys._getframe(1), (code, line))
        return None


_UNDECIDED = object()


class _Tracing:
    """sys.settrace (3.10, 3.11): opcode or line events in user frames of controlled threads."""

    def __init__(self, instrumentation: Instrumentation, every_thread: bool) -> None:
        self.instrumentation = instrumentation
        self.lines = instrumentation.granularity == "line"
        self.every_thread = every_thread
        self._previous: Any = None
        self._previous_hook: Any = None
        self._theirs: dict[int, Any] = {}
        """Per OS thread, the trace function ours was chained after (coverage's)."""
        self._tracers: dict[CodeType, Any] = {}
        self._on_call = self._global_tracer()
        self.on = False
        self.unrewritten = False
        """Whether user code that was not rewritten ran, with points of its own."""

    def start(self) -> None:
        if not self.on:
            self._previous = gettrace()
            self._previous_hook = threading.gettrace()
        self.on = True
        self.trace_this_thread()
        if self.every_thread:
            hook = self._previous_hook
            threading.settrace(
                self._on_call if hook is None else chained_hook(self._on_call, hook, self._theirs)
            )
        sys.settrace = self._program_settrace
        sys.gettrace = self._program_gettrace

    def stop(self) -> None:
        sys.settrace, sys.gettrace = _program_settrace, _program_gettrace  # still exploring
        settrace(self._previous)
        if self.every_thread:
            threading.settrace(self._previous_hook)
        self._theirs.clear()

    def _ours(self) -> bool:
        """Whether this thread runs our trace function (alone, or after another)."""
        now = gettrace()
        return now is self._on_call or is_chained(now)

    def _program_settrace(self, function: Any) -> None:
        """``sys.settrace`` while we trace: in a thread we trace, the program's
        function (a profiler's, pdb's) goes before ours, and None takes only it
        away (a profiler's ``stop()`` took the thread's points with it)."""
        if function is not None and set_by_program(sys._getframe(1)):
            function = without_ours(function)
        if not self._ours():
            settrace(function)
        elif function is None or function is self._on_call or is_chained(function):
            self._theirs.pop(threading.get_ident(), None)
            settrace(self._on_call)
        else:
            settrace(chained(self._on_call, function, self._theirs))

    def _program_gettrace(self) -> Any:
        """``sys.gettrace`` while we trace: the program's own function, not ours."""
        if not self._ours():
            return unfiltered(gettrace())
        return unfiltered(self._theirs.get(threading.get_ident()))

    def pause(self) -> None:
        """No tracing from now on, in this thread and those started later."""
        self.stop()
        self.on = False

    def trace_this_thread(self) -> None:
        """Trace this thread, after the trace function it has (coverage's), or
        had until ours raised and CPython dropped both."""
        if not self.on:
            return
        theirs = gettrace()
        if theirs is None or theirs is self._on_call or is_chained(theirs):
            theirs = self._theirs.get(threading.get_ident())
        if theirs is None:
            settrace(self._on_call)
        else:
            settrace(chained(self._on_call, theirs, self._theirs))

    def _global_tracer(self) -> Callable[[FrameType, str, Any], Any]:
        """The trace function: called for every call in a controlled thread,
        Twisted's included (a sixth of a schedule's time), so it is a closure
        over locals, and decides once per code object. Being the global one, it
        only ever sees "call" events."""
        tracers = self._tracers
        find = tracers.get
        decide = self._tracer_for
        opcodes = not self.lines
        undecided = _UNDECIDED

        def on_call(frame: FrameType, event: str, arg: Any) -> Any:
            tracer = find(frame.f_code, undecided)
            if tracer is undecided:
                tracer = tracers[frame.f_code] = decide(frame)
            if tracer is not None and opcodes:
                frame.f_trace_opcodes = True
                frame.f_trace_lines = False
            return tracer

        return on_call

    def _tracer_for(self, frame: FrameType) -> Any:
        code = frame.f_code
        if not self.instrumentation.is_user_file(code.co_filename):
            return None
        if self.lines:
            return self._on_line
        table = self.instrumentation.table(code)
        if not table:
            return None  # no point in it: tracing its instructions would only cost
        if self.instrumentation.helpers:
            if _footprint.is_rewritten(code):
                return None  # its helpers are its points
            # Rewritten, but touching nothing (a class body's names): no matter.
            self.unrewritten = self.unrewritten or GLOBALS not in frame.f_globals

        # One per code object, holding its table: it is called for each of
        # the code's instructions (3.10's points cost 27 us, 3.12's 5).
        def on_opcode(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "opcode":
                detail = table.get(frame.f_lasti)
                if detail is not None:
                    _point("access", detail, frame, (code, frame.f_lasti))
            return on_opcode

        return on_opcode

    def _on_line(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            _point("line", f"line {frame.f_lineno}", frame, (frame.f_code, frame.f_lineno))
        return self._on_line


def _program_settrace(function: Any) -> None:
    """``sys.settrace`` while exploring: the program's function is not called
    for threadcheck's frames (see :func:`~._chained.without_ours`)."""
    if function is not None and set_by_program(sys._getframe(1)):
        function = without_ours(function)
    settrace(function)


def _program_gettrace() -> Any:
    return unfiltered(gettrace())
