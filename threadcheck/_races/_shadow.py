"""FastTrack's shadow state: for each location, the last write and the reads
since, and the check that two of them conflict with nothing ordering them.

A location is ``(object, key)``: an attribute or closure variable's name, a
container's key, or :data:`WHOLE` for the container as a whole (iterating it
reads it; any call of a mutating method, or a store or delete of a key,
writes it), or :data:`EVERY` for all its keys at once (each key's read reads
it, a mutating method's call writes it). Writes to :data:`WHOLE` and
:data:`EVERY` are single operations CPython makes atomic (``list.append``,
``d[k] = v``): they conflict with an iteration or a key's read, never with
each other.

Objects are remembered weakly where they can be: when one dies its
locations go, so a new object at the same address starts clean. Those that
cannot be (dicts, lists) are held, and let go by :func:`sweep` once nothing
else holds them.

Thread safety: called from any thread, without a lock: every operation here
is a few dict and attribute steps, and a thread switch between two of them
can at worst lose one access's record (a missed race, never a false one).
"""

from __future__ import annotations

import _thread
import functools
import gc
import sys
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType, FunctionType, GetSetDescriptorType, ModuleType
from typing import Any

from threadcheck import _threads
from threadcheck._races._clocks import ThreadClock, current

_HELPERS = __file__.replace("_shadow.py", "_access.py")
"""The helpers' file: their frames stand between the user's and these functions."""

WHOLE: Any = object()
"""The key of a container as a whole."""

EVERY: Any = object()
"""Every key of a container at once: written by a mutating method's call
(``d.update``, ``items.append``, which changes ``items[-1]``), read by each
key's read. A key's store does not write it."""

OUTER_DEPTH = 30
"""Frames kept outside the accessing one, for the report."""


@dataclass(frozen=True, slots=True)
class Site:
    """A place in user code that accesses shared state, numbered when its
    module is rewritten."""

    filename: str
    lineno: int
    function: str
    kind: str
    """attribute, subscript, global, nonlocal, iteration, method, look (``len(c)``,
    a truth) or membership (``k in c``)."""
    text: str
    """The accessed expression as written (``self.total``, ``sessions[...]``)."""


sites: list[Site] = []


def add_site(site: Site) -> int:
    # list.append is atomic; the index read after it could be another
    # module's if two threads import at once, so look it up by identity.
    sites.append(site)
    for index in range(len(sites) - 1, -1, -1):
        if sites[index] is site:
            return index
    raise AssertionError("unreachable: the site was just added")


class Access:
    """One recorded access: who, when (their clock), where."""

    __slots__ = (
        "atomic",
        "clock",
        "ident",
        "mode",
        "outer",
        "site",
        "submission",
        "test",
        "thread",
        "tid",
    )

    def __init__(self, tc: ThreadClock, site: int, outer: tuple[Any, ...], mode: str) -> None:
        self.tid = tc.tid
        self.clock = tc.clock
        self.site = site
        self.outer = outer
        self.submission = tc.frame_submission
        self.thread = tc.thread
        self.ident = tc.ident
        self.mode = mode
        self.atomic = False
        """A write no other write races (a builtin container's one call)."""
        source = _tests[0] if _tests else None
        self.test = None if source is None else source.context
        """The test running as it was made (pytest's: see :func:`set_handler`)."""


class Location:
    __slots__ = ("read", "readers", "write", "writers")

    def __init__(self) -> None:
        self.write: Access | None = None
        self.read: Access | None = None
        self.readers: dict[int, Access] | None = None
        """Concurrent reads, by thread, once there is more than one."""
        self.writers: dict[int, Access] | None = None
        """Atomic writes of other threads that a later atomic write, not ordered
        after them, replaced: a read after it races them still (a worker's
        ``append`` then ``len()`` of a buffer the reactor appends to)."""


RaceHandler = Callable[[Access, Access, Any, Any], None]
"""Called with the access now, the earlier one it conflicts with, the object and the key."""

_handler: list[RaceHandler] = []
_tests: list[Any] = []
"""What tells the test running now (a recorder's ``context``), when one does."""


def set_handler(handler: RaceHandler | None, tests: Any = None) -> None:
    """Races go to ``handler``; each access notes ``tests.context`` as it is made."""
    _handler[:] = [handler] if handler is not None else []
    _tests[:] = [tests] if handler is not None and tests is not None else []


def handlers() -> list[RaceHandler]:
    return list(_handler)


def tests() -> Any:
    return _tests[0] if _tests else None


class _Shadow:
    __slots__ = ("__weakref__", "borrowed", "locations", "per_thread", "ref")

    def __init__(self, ref: Any, per_thread: bool) -> None:
        self.ref = ref
        self.locations: dict[Any, Location] = {}
        self.per_thread = per_thread
        """A ``threading.local``: each thread's attributes are its own locations."""
        self.borrowed: dict[str, Location] | None = None
        """Attributes read through its class, with the class attribute's
        location, which each read of them reads too (see :func:`attribute`)."""


objects: dict[int, _Shadow] = {}
_held: list[int] = []
"""Objects held strongly (not weakly referenceable), for :func:`sweep`."""
_sweep_at = 10_000
_sweeping = _thread.allocate_lock()


def location(obj: object, key: Any) -> Location:
    shadow = _shadow(obj)
    if shadow.per_thread:  # by thread number: a later thread may have the same ident
        key = (key, current().tid)
    found = shadow.locations.get(key)
    if found is None:
        stored = _WeakKey(key, shadow) if _by_identity(type(key)) else key
        found = shadow.locations[stored] = Location()
    return found


def _by_identity(kind: type) -> bool:
    """Whether keys of ``kind`` may be held weakly: equal only to themselves
    (a key equal by value may be made again, a temporary: ``pool.get(Endpoint(
    "db", 5432))``, and its location must outlive each)."""
    hashed: Any = getattr(kind, "__hash__", None)
    compared: Any = getattr(kind, "__eq__", None)
    return bool(kind.__weakrefoffset__) and hashed is _OBJECT_HASH and compared is _OBJECT_EQ


_OBJECT_HASH: Any = object.__hash__
_OBJECT_EQ: Any = object.__eq__


class _WeakKey(weakref.ref):  # type: ignore[type-arg]
    """A key equal only to itself (an object of the program's), kept weakly
    in its container's shadow: a connection deleted from a registry is freed
    (its finalizer runs) as it would be without the detector; its location
    goes with it. Equal to the key while it lives, as the key itself is."""

    __slots__ = ("hash",)

    def __new__(cls, key: Any, shadow: _Shadow) -> _WeakKey:
        return super().__new__(cls, key, functools.partial(_forget, weakref.ref(shadow)))

    def __init__(self, key: Any, shadow: _Shadow) -> None:
        # (its callback is __new__'s)
        super().__init__(key)  # type: ignore[call-arg]
        self.hash = hash(key)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        key = self()
        return key is not None and (key is other or bool(key == other))


def _forget(shadow_ref: weakref.ref[_Shadow], key: _WeakKey) -> None:
    shadow = shadow_ref()
    if shadow is not None:
        shadow.locations.pop(key, None)


def _shadow(obj: object) -> _Shadow:
    if type(obj) is ModuleType:  # module.x is the x its functions' `global x` names
        obj = obj.__dict__
    shadow = objects.get(id(obj))
    if shadow is None:
        shadow = objects[id(obj)] = _Shadow(_reference(obj), isinstance(obj, _thread._local))
        if len(_held) >= _sweep_at:  # after the shadow is in: a sweep keeps it
            sweep()
        if _cycles_due or len(_held) >= _cycles_at:
            sweep_cycles()
    return shadow


_MISSING = object()


def attribute(obj: object, name: str) -> tuple[Location, Location | None]:
    """The locations ``obj.name`` reads: its own attribute's, and, while it has
    none of that name, its class's plain attribute's, which ``Server.accepting =
    False`` writes (remembered in the instance's shadow: its next reads read it
    too, until :func:`own_attribute`). Its own is read as well: a write that gives
    it one of its own (``s.fired = 1`` in another thread) races the read."""
    owner = _class_owner(obj, name)
    own = location(obj, name)
    if owner is None:
        return own, None
    shared = location(owner, name)
    shadow = _shadow(obj)
    if shadow.borrowed is None:
        shadow.borrowed = {}
    shadow.borrowed[name] = shared
    return own, shared


def own_attribute(obj: object, name: str) -> None:
    """``obj`` has its own attribute ``name`` now: its reads no longer read its class's."""
    shadow = _shadow(obj)
    if shadow.borrowed is not None:
        shadow.borrowed.pop(name, None)


def instance_dict(obj: object, kind: type) -> dict[str, Any] | None:
    """``obj``'s own attribute dictionary, from the slot Python keeps it in: not
    through a ``__dict__`` its class may define (a proxy's property, which is
    the program's code)."""
    for cls in kind.__mro__:
        slot = cls.__dict__.get("__dict__")
        if type(slot) is GetSetDescriptorType:
            try:
                found = slot.__get__(obj, kind)
            except Exception:  # an odd object: no class attribute then
                return None
            return found if type(found) is dict else None
    return None


def _class_owner(obj: object, name: str) -> type | None:
    """The class whose plain attribute ``obj.name`` is, when ``obj`` (not a class,
    a module or a ``threading.local``) has no attribute of its own by that name.
    Not a data descriptor's class (a property, a slot): that value is the instance's."""
    kind = type(obj)
    if issubclass(kind, (type, ModuleType, _thread._local)):
        return None
    own = instance_dict(obj, kind)
    if own is not None and name in own:
        return None
    for cls in kind.__mro__:
        found = cls.__dict__.get(name, _MISSING)
        if found is not _MISSING:
            return None if hasattr(type(found), "__set__") else cls
    return None


def _reference(obj: object) -> Any:
    key = id(obj)
    try:
        return _weak(_anchor(obj), key)
    except TypeError:
        _held.append(key)
        return obj


def _weak(anchor: object, key: int) -> weakref.ref[Any]:
    return weakref.ref(anchor, lambda _: objects.pop(key, None))


def _anchor(obj: object) -> object:
    """What ``obj`` lives at least as long as, weakly referenceable: itself, or for
    a module's globals its module or one of its functions (each holds them for
    good: ``__dict__``, ``__globals__`` cannot be set). Held, a module's globals
    would keep it alive, and all it holds: a migration tool loads its scripts
    afresh for each test, never into ``sys.modules``, and each kept its test's
    database engine. When the anchor goes first (a function replaced), the
    globals' history goes with it: a missed race at worst, never a stale one.
    Globals read as their module runs, before it defines a function, are held
    until :func:`sweep` finds one."""
    if type(obj) is not dict or "__builtins__" not in obj:
        return obj
    module = sys.modules.get(obj.get("__name__"))  # type: ignore[arg-type]
    if module is not None and getattr(module, "__dict__", None) is obj:
        return module
    for value in list(obj.values()):
        if type(value) is FunctionType and value.__globals__ is obj:
            return value
    return obj


def sweep() -> None:
    """Forget held objects that only the shadow still holds.

    Threads hold new objects while one sweeps: only the keys there were when it
    began are replaced (one slice assignment, atomic under the GIL), and one
    thread sweeps at a time. Replacing the whole list lost the keys another
    thread added meanwhile, and their objects were held for good (hundreds of
    thousands of dicts, with four pool workers)."""
    global _sweep_at, _kept_by_cycles
    if not _sweeping.acquire(False):
        return  # another thread sweeps now
    try:
        swept = len(_held)
        kept: list[int] = []
        for key in _held[:swept]:
            shadow = objects.get(key)
            # References: the shadow's and getrefcount's argument; more are the program's.
            if shadow is None or sys.getrefcount(shadow.ref) <= 2:
                objects.pop(key, None)
            elif (anchor := _anchor(shadow.ref)) is not shadow.ref:  # a module's, run now
                shadow.ref = _weak(anchor, key)
            else:
                kept.append(key)
        _held[:swept] = kept
        _sweep_at = max(10_000, 2 * len(kept))
        # The fewest held since the last sweep_cycles: more than that is new.
        _kept_by_cycles = min(_kept_by_cycles, len(kept))
    finally:
        _sweeping.release()


def sweep_on_collection(phase: str, info: dict[str, int]) -> None:
    """A ``gc.callbacks`` hook: as the older generations are collected, let go of
    held objects the program dropped (their contents die with them, as they would
    without the detector)."""
    global _cycles_due
    if phase != "start" or info.get("generation", 0) < 1 or not _held or _sweeping.locked():
        return  # (locked: one of sweep_cycles' own collections)
    sweep()
    # Not in this collection: one cannot be started from its callback.
    _cycles_due = info.get("generation") == 2 and len(_held) > _kept_by_cycles


_CYCLES_AT = 2_000
_cycles_at = _CYCLES_AT
"""Held objects at which :func:`sweep_cycles` runs (then at twice as many as it
kept), as it runs after each whole collection (which comes as the program's
long-lived objects grow by a quarter) that finds more held: its cost is one
more whole collection."""
_cycles_due = False
_kept_by_cycles = 0
"""The fewest objects held since the last :func:`sweep_cycles` (what it kept, or
fewer once those died): a whole collection runs one when more are held (a
count of the moment, many live containers, put it off for good)."""


class _Holds:
    """Our holds on the held objects during :func:`sweep_cycles`, in a cycle of
    garbage: the collection judges them by the program's references alone."""

    def __init__(self, held: list[Any]) -> None:
        self.held = held
        self.me: _Holds | None = self


def sweep_cycles() -> None:
    """Forget held objects that only their shadows and garbage cycles hold.

    :func:`sweep` counts references, which a cycle keeps above its shadow's
    one: a frame's ``f_locals`` dict holds the frame that holds it; a held list
    of children, each of which holds its parent, which holds the list. Held, the
    whole cycle lives on (each test's database engine, for a whole trial run).
    Here the shadows' holds move into a cycle of their own, and one whole
    collection that keeps its garbage (``gc.DEBUG_SAVEALL``) tells which held
    objects died; the others' holds are given back. The garbage is freed by the
    next whole collection. Only while the program collects garbage (an
    exploration's schedules pause the collector)."""
    global _cycles_at, _cycles_due, _kept_by_cycles
    _cycles_due = False
    if not gc.isenabled() or gc.get_debug() & gc.DEBUG_SAVEALL:  # the program keeps its own
        return
    if not _sweeping.acquire(False):
        return
    try:
        swept = len(_held)
        keys = [key for key in _held[:swept] if key in objects]
        died = _died(keys)
        kept = [key for key in keys if key not in died]
        _held[:swept] = kept
        _cycles_at = max(_CYCLES_AT, 2 * len(kept))
        _kept_by_cycles = len(kept)
    finally:
        _sweeping.release()


def _died(keys: list[int]) -> set[int]:
    """The keys of those held objects that a whole collection found garbage."""
    flags = gc.get_debug()
    saved = len(gc.garbage)
    # Garbage kept from before the holds are let go: a collection the next
    # allocation starts (in any thread) would free them with what they hold,
    # and nothing could be given back (a StopIteration, under four pool workers).
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        shadows = [objects[key] for key in keys]
        holds = _Holds([shadow.ref for shadow in shadows])
        for each in shadows:
            each.ref = None
        del shadows
        found = weakref.ref(holds)  # cleared if the collection finds it garbage
        del holds
        gc.collect()
    finally:
        gc.set_debug(flags)
    garbage = gc.garbage[saved:]
    del gc.garbage[saved:]
    back = found() or next((item for item in garbage if type(item) is _Holds), None)
    if back is None:  # (another thread emptied gc.garbage): forget them all
        for key in keys:
            objects.pop(key, None)
        return set(keys)
    dead = {id(item) for item in garbage}
    died: set[int] = set()
    for key, held in zip(keys, back.held, strict=True):
        if id(held) in dead:
            died.add(key)
            objects.pop(key, None)
        elif (shadow := objects.get(key)) is not None:
            shadow.ref = held
    back.me = None
    return died


def reset() -> None:
    objects.clear()
    _held.clear()


def _ordered(earlier: Access, tc: ThreadClock) -> bool:
    return earlier.tid == tc.tid or earlier.clock <= tc.vc.get(earlier.tid, 0)


def read(tc: ThreadClock, loc: Location, site: int, obj: object, key: Any, mode: str) -> None:
    """Thread ``tc`` reads ``loc`` (``mode`` names how, for the report)."""
    last = loc.read or loc.write
    if last is not None and last.tid == tc.tid and last.clock == tc.clock and not last.atomic:
        # This thread read or wrote it since its last synchronisation: a write
        # that races this read races that access too, and is reported there
        # (not an atomic write, which no other write races: `counts[k] += 1`
        # then `sum(counts.values())` must keep the sum's read).
        return
    last = loc.read
    write = loc.write
    access = Access(tc, site, _outer(tc), mode)
    if write is not None and not _ordered(write, tc):
        _report(access, write, obj, key)
    elif loc.writers is not None:
        for earlier in loc.writers.values():
            if earlier.tid != tc.tid and not _ordered(earlier, tc):
                _report(access, earlier, obj, key)
                break
    readers = loc.readers
    if readers is not None:
        readers[tc.tid] = access
    elif last is None or _ordered(last, tc):
        loc.read = access
    else:
        loc.readers = {last.tid: last, tc.tid: access}
        loc.read = access


def write(
    tc: ThreadClock, loc: Location, site: int, obj: object, key: Any, mode: str, atomic: bool
) -> None:
    """Thread ``tc`` writes ``loc``; an ``atomic`` write conflicts only with reads."""
    last = loc.write
    if last is not None and last.tid == tc.tid and last.clock == tc.clock:
        return
    access = Access(tc, site, _outer(tc), mode)
    access.atomic = atomic
    if not atomic and last is not None and not _ordered(last, tc):
        _report(access, last, obj, key)
    readers = loc.readers
    if readers is not None:
        for reader in readers.values():
            if not _ordered(reader, tc):
                _report(access, reader, obj, key)
                break
    elif loc.read is not None and not _ordered(loc.read, tc):
        _report(access, loc.read, obj, key)
    if not atomic:
        # A later access that conflicts with a read since this write conflicts
        # with this write. An atomic write conflicts with no write: the reads stay.
        loc.readers = None
        loc.read = None
        loc.writers = None
    elif last is not None and last.tid != tc.tid and not _ordered(last, tc):
        if loc.writers is None:
            loc.writers = {}
        loc.writers[last.tid] = last
    loc.write = access


_last_reported: list[tuple[int, int, int, int]] = [(0, 0, 0, 0)]


def _report(now: Access, earlier: Access, obj: object, key: Any) -> None:
    # An update is a read and a write: one race, however many of its parts conflict.
    reported = (now.tid, now.clock, now.site, earlier.tid)
    if _last_reported[0] == reported:
        return
    _last_reported[0] = reported
    for handler in _handler:
        handler(now, earlier, obj, key)


def _outer(tc: ThreadClock) -> tuple[Any, ...]:
    """The stack outside the accessing frame, as ``(code, offset, ...)``: taken
    once per call, whatever the called function accesses."""
    frame = sys._getframe(2)
    while frame.f_code.co_filename == _HELPERS:
        frame = frame.f_back  # type: ignore[assignment]  # user code is further out
    caller = frame.f_back
    if caller is None:
        return ()
    # The same caller at the same instruction: the same call, so the same stack
    # outside it. Known by identity, code and offset, not held: a frame kept
    # would keep its locals alive (and their finalizers from running).
    key = (id(caller), caller.f_code, caller.f_lasti)
    if tc.frame_key == key and _same_job(tc, caller):
        return tc.frame_stack
    tc.frame_key = key
    tc.frame_stack, tc.frame_submission, tc.frame_submission_at = _capture(caller)
    return tc.frame_stack


def _same_job(tc: ThreadClock, caller: FrameType) -> bool:
    """Whether the stack last captured still holds the job it names. A frame's id
    is reused once the frame is gone: a pool thread's next job calls the same
    code from the same instruction of a new frame at the old one's address, and
    its submission is another. Read again (a few frames out)."""
    at = tc.frame_submission_at
    if at is None:
        return True
    frame: FrameType | None = caller
    for _ in range(at):
        frame = frame.f_back if frame is not None else None
    # Read as _capture reads them: the executor's code is known once one is made.
    if frame is None or not (
        frame.f_code is _threads._RUN_SUBMITTED or frame.f_code is _threads._WORK_ITEM_RUN
    ):
        return False
    tc.frame_submission = _threads.submission_in(frame)
    return True


def _capture(frame: FrameType | None) -> tuple[tuple[Any, ...], Any, int | None]:
    """The stack from ``frame`` out, as ``(code, offset, ...)``; the submission of
    the job it runs, and how many frames out that job's frame is."""
    frames: list[Any] = []
    submission = None
    at = None
    while frame is not None and len(frames) < 2 * OUTER_DEPTH:
        code = frame.f_code
        # A pool's job or an executor's (inline: this loop runs for every new call).
        if at is None and (code is _threads._RUN_SUBMITTED or code is _threads._WORK_ITEM_RUN):
            submission = _threads.submission_in(frame)
            at = len(frames) // 2
        frames += (code, frame.f_lasti)
        frame = frame.f_back
    return tuple(frames), submission, at
