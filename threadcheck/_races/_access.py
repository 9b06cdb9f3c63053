"""What rewritten user code calls at each access (see :mod:`._rewrite`).

Each helper records the access, then lets it happen unchanged: attribute
helpers return the object (``__tc_ra__(obj, "x", 7).x``), the subscript
helper returns a proxy that does the subscript itself, so the program
evaluates exactly what it did, in the same order. Sites are numbers into
:data:`._shadow.sites`.

The user's frame is the first one out of this module (see ``_shadow._outer``).

Thread safety: called from any thread; see :mod:`._shadow`.
"""

from __future__ import annotations

import builtins
import collections
import copy
import functools
import gc
import pathlib
import sys
from _thread import get_ident
from collections.abc import Callable, Iterator
from types import (
    CodeType,
    FrameType,
    FunctionType,
    GeneratorType,
    ModuleType,
    TracebackType,
)
from typing import Any

from threadcheck._races import _footprint, _texts
from threadcheck._races._clocks import ThreadClock, clocks, current, module_imported
from threadcheck._races._rewrite import GLOBALS, HELPERS, MUTATORS, helper, is_globals
from threadcheck._races._shadow import (
    EVERY,
    WHOLE,
    Site,
    add_site,
    attribute,
    instance_dict,
    location,
    objects,
    own_attribute,
    read,
    sites,
    write,
)

enabled = False
"""Off, rewritten code runs as written (a module imported while detecting
stays rewritten after)."""

on_access: Callable[[int, str], None] | None = None
"""Set while an exploration takes its scheduling points from the helpers
(Python 3.10 and 3.11, see ``threadcheck._sched._points``): called with the
site and the operation (``load``, ``store``, ``delete``, ``step``) before each
access, a ``for`` loop's step and a ``while`` loop's back-edge. Tracing every
instruction of user code costs 30x there; a helper call costs only where the
code touches something."""

on_handover: Callable[[int, str], None] | None = None
"""Set while an exploration has scheduling points in user code (every Python):
called with the site before a container is handed to a call (:func:`oa`), a
point that no instruction table has where the rewritten code makes the call."""

CONTAINERS = (
    list,
    dict,
    set,
    bytearray,
    collections.deque,
)
"""Builtin containers, whose methods are single atomic operations: a call of
a mutating one writes the container as a whole. Asked of ``type(obj)``, never
``isinstance(obj, ...)``: that reads ``obj.__class__`` through a rewritten
``__getattribute__`` (Twisted's ``_ModuleProxy`` under ``--include twisted``),
which calls these hooks again."""


_LOAD = ("load",)
_STORE = ("store", "delete")


def ra(obj: Any, name: str, site: int) -> Any:
    """``obj.name`` is read."""
    if on_access is not None:
        on_access(site, "load")
        if _footprint.collecting:
            _footprint.read(obj, name)
    elif _footprint.collecting:
        _footprint.expect(obj, name, _LOAD, False)
    if enabled:
        tc = clocks.get(get_ident()) or current()
        # Inline, the common case: this thread read it already since its
        # last synchronisation (a loop over one object's attributes).
        shadow = objects.get(id(obj))
        loc = shadow.locations.get(name) if shadow is not None else None
        if loc is None:
            if _kept_by_code(obj, name, False):
                return obj
            loc, shared = attribute(obj, name)
            read(tc, loc, site, obj, name, "read")
            if shared is not None:
                read(tc, shared, site, obj, name, "read")
        else:
            last = loc.read or loc.write  # a write since covers a read: see _shadow.read
            if last is None or last.tid != tc.tid or last.clock != tc.clock:
                read(tc, loc, site, obj, name, "read")
                borrowed = shadow.borrowed if shadow is not None else None
                if borrowed is not None and name in borrowed:
                    read(tc, borrowed[name], site, obj, name, "read")
    return obj


def wa(obj: Any, name: str, site: int) -> Any:
    """``obj.name`` is assigned or deleted."""
    if on_access is not None:
        on_access(site, "store")
        if _footprint.collecting:
            _footprint.write(obj, name)
    elif _footprint.collecting:
        _footprint.expect(obj, name, _STORE, True)
    if enabled:
        _written(obj, name, site, "write")
    return obj


def ua(obj: Any, name: str, site: int) -> Any:
    """``obj.name op= value``: read, then written (after the point of :func:`st`
    around the value)."""
    if on_access is not None:
        on_access(site, "load")
        if _footprint.collecting:
            _footprint.read(obj, name)
            _footprint.expect(obj, name, _STORE, True)  # met at st's point
    elif _footprint.collecting:
        _footprint.expect(obj, name, _LOAD, True)
        _footprint.expect(obj, name, _STORE, True)
    if enabled:
        _written(obj, name, site, "update")
    return obj


def _written(obj: Any, name: str, site: int, mode: str) -> None:
    tc = clocks.get(get_ident()) or current()
    shadow = objects.get(id(obj))
    loc = shadow.locations.get(name) if shadow is not None else None
    if loc is None:
        if _kept_by_code(obj, name, True):
            return
        loc = location(obj, name)
    else:
        if shadow is not None and shadow.borrowed is not None:
            own_attribute(obj, name)  # it read its class's so far: now has its own
        last = loc.write
        if last is not None and last.tid == tc.tid and last.clock == tc.clock:
            return  # written by this thread since its last synchronisation (read too)
    if mode == "update":
        read(tc, loc, site, obj, name, mode)
    write(tc, loc, site, obj, name, mode, False)


def _kept_by_code(obj: Any, name: str, write: bool) -> bool:
    """Whether ``obj.name`` is no storage but the program's code that keeps the
    value elsewhere: a property's getter or setter, a data descriptor, the
    class's own ``__getattribute__``/``__setattr__``, or its ``__getattr__``
    when nothing has that name. That code's own accesses are recorded as it
    makes them, under the lock it may take (a circuit breaker's locked
    ``state`` property was a race of ``state`` itself)."""
    kind = type(obj)
    key = (kind, name, write)
    kept = _by_code.get(key, _MISSING)
    if kept is _MISSING:
        kept = _by_code[key] = _code_keeping(kind, name, write)
    if kept is None:  # by __getattr__, unless the instance has one of its own
        own = instance_dict(obj, kind)
        return own is None or name not in own
    return bool(kept)


def _code_keeping(kind: type, name: str, write: bool) -> bool | None:
    """:func:`_kept_by_code` for ``kind``'s instances; None: by its ``__getattr__``."""
    if issubclass(kind, (type, ModuleType)):
        return False
    if issubclass(kind, _INTERPRETER_STATE) or _tuple_field(kind, name):
        return True
    hook_name = "__setattr__" if write else "__getattribute__"
    hook = getattr(kind, hook_name, None)
    if _rewritten_function(hook) and not _delegates(hook, hook_name):
        return True
    for cls in kind.__mro__:
        found = cls.__dict__.get(name, _MISSING)
        if found is _MISSING:
            continue
        if isinstance(found, property):
            return _rewritten_function(found.fset if write else found.fget)
        descriptor = type(found)
        accessor = getattr(descriptor, "__set__" if write else "__get__", None)
        return hasattr(descriptor, "__set__") and _rewritten_function(accessor)
    if not write and _rewritten_function(getattr(kind, "__getattr__", None)):
        return None
    return False


def _tuple_field(kind: type, name: str) -> bool:
    """Whether ``name`` is a field of a named tuple (no instance of which can be
    given an attribute: its fields are all it has)."""
    return (
        issubclass(kind, tuple)
        and not kind.__dictoffset__
        and name in getattr(kind, "_fields", ())
    )


_INTERPRETER_STATE = (FrameType, CodeType, TracebackType)
"""Whose attributes are the interpreter's, not the program's storage (a frame's
``f_locals``): no race is in them, and their shadows would hold them (none can be
referenced weakly), and all they hold: Buildbot's debug wrapper read its own
frame's, and kept each test's frame, test case and database engine."""


def _delegates(hook: Any, name: str) -> bool:
    """Whether a class's own ``__setattr__``/``__getattribute__`` (``name``) keeps
    the value on the object after all (``super().__setattr__(name, value)``,
    ``object.__setattr__``, ``self.__dict__[name]``): a dirty flag or a
    validation before the store, which is the storage's access then."""
    names = hook.__code__.co_names
    return name in names or "__dict__" in names


_by_code: dict[tuple[type, str, bool], bool | None] = {}
"""What :func:`_code_keeping` said of each class's attribute, read and written."""

_MISSING: Any = object()


def st(value: Any, site: int) -> Any:
    """``value`` is about to be stored at ``site`` (``obj.x += value``, a shared
    variable assigned): the store's scheduling point, between the read of an
    augmented assignment and its write, where a lost update happens."""
    if on_access is not None:
        on_access(site, "store")
    return value


def sv(value: Any, obj: Any, name: Any, site: int) -> Any:
    """``setattr(obj, name, value)`` is about to store ``value``: the store's
    point, after the value was computed (a ``getattr`` in it and this store are
    a read-modify-write, as ``obj.x += 1`` is). :func:`wa`'s body, not a call of
    it: the point takes the user's frame one call up."""
    if on_access is not None:
        on_access(site, "store")
        if _footprint.collecting:
            _footprint.write(obj, name)
    elif _footprint.collecting:
        _footprint.expect(obj, name, _STORE, True)
    if enabled and type(name) is str:
        _written(obj, name, site, "write")
    return value


def lp(iterable: Any, site: int) -> Any:
    """The iterable of a ``for`` loop (not over a ``range``): each step a point
    (where points come from the helpers), and each step of an iterator that may
    be shared (a generator) a write of it, for DPOR."""
    if on_access is None and not _footprint.collecting:
        return iterable
    iterator = iter(iterable)
    read = _container(iterable) if _footprint.collecting else iterable  # for DPOR only
    # An iterator of its own advances; a lazy one over a container (`map(f,
    # d.values())`) reads that container at each step, as a loop over it does.
    advancing = iterator is iterable and read is iterable
    if on_access is None:  # the points are the instruction table's (so collecting)
        if advancing:
            return _Advancing(iterator)
        return iterator if _unchanging(iterable) else _Reading(iterator, read)
    if not _footprint.collecting or (iterator is not iterable and _unchanging(iterable)):
        return _Steps(iterator, site, on_access)
    if advancing:
        return _AdvancingSteps(iterator, site, on_access)
    return _ReadingSteps(iterator, site, on_access, read)


_UNCHANGING = (tuple, str, bytes, frozenset, range)


def _unchanging(iterable: Any) -> bool:
    """A loop over ``iterable`` reads nothing another thread could change."""
    return type(iterable) in _UNCHANGING


_DICT_VIEWS: tuple[type, ...] = (type({}.keys()), type({}.values()), type({}.items()))


def _container(iterable: Any) -> Any:
    """What a loop over ``iterable`` reads at each step: a dict view's dict, the
    container a lazy iterator goes through (``map(f, d.values())``)."""
    if type(iterable) in _DICT_VIEWS:
        return gc.get_referents(iterable.mapping)[0]  # the proxy's one referent
    if type(iterable) in _LAZY:
        return _iterated(iterable) or iterable
    return iterable


class _Reading:
    """The steps of a loop over a container: each reads it as a whole, for
    DPOR. A write between two steps (``dictionary changed size during
    iteration``, an item skipped) then conflicts with the step after it, not
    only with the loop's start."""

    __slots__ = ("container", "iterator")

    def __init__(self, iterator: Iterator[Any], container: Any) -> None:
        self.iterator = iterator
        self.container = container

    def __iter__(self) -> _Reading:
        return self

    def __next__(self) -> Any:
        _footprint.read(self.container, _footprint.WHOLE)
        return next(self.iterator)


class _Advancing:
    """The steps of a loop over an iterator that may be shared (a generator):
    each writes it, where it begins and in the step it ends in, so another
    thread's step is also tried while a generator runs in this one
    (``ValueError: generator already executing``)."""

    __slots__ = ("iterator",)

    def __init__(self, iterator: Iterator[Any]) -> None:
        self.iterator = iterator

    def __iter__(self) -> _Advancing:
        return self

    def __next__(self) -> Any:
        return _advance(self.iterator)


def _advance(iterator: Iterator[Any]) -> Any:
    _footprint.write(iterator, _footprint.WHOLE)
    try:
        return next(iterator)
    finally:
        _footprint.write(iterator, _footprint.WHOLE)


class _Steps:
    """An iterator that is a scheduling point before each step of the loop over it."""

    __slots__ = ("iterator", "on_access", "site")

    def __init__(self, iterator: Iterator[Any], site: int, on_access: Callable[[int, str], None]):
        self.iterator = iterator
        self.site = site
        self.on_access = on_access

    def __iter__(self) -> _Steps:
        return self

    def __next__(self) -> Any:
        self.on_access(self.site, "step")
        return next(self.iterator)


class _AdvancingSteps(_Steps):
    """:class:`_Advancing`'s steps, each a point too."""

    __slots__ = ()

    def __next__(self) -> Any:
        self.on_access(self.site, "step")
        return _advance(self.iterator)


class _ReadingSteps(_Steps):
    """:class:`_Reading`'s steps, each a point too."""

    __slots__ = ("container",)

    def __init__(
        self,
        iterator: Iterator[Any],
        site: int,
        on_access: Callable[[int, str], None],
        container: Any,
    ) -> None:
        super().__init__(iterator, site, on_access)
        self.container = container

    def __next__(self) -> Any:
        self.on_access(self.site, "step")
        _footprint.read(self.container, _footprint.WHOLE)
        return next(self.iterator)


def lw(site: int) -> None:
    """A ``while`` loop goes round again: a point, so that a thread spinning on
    a flag lets the one that sets it run."""
    if on_access is not None:
        on_access(site, "step")


def it(obj: Any, site: int) -> Any:
    """``obj`` is iterated: a read of it as a whole."""
    _read_whole(obj, site, "iteration")
    return obj


def _read_whole(obj: Any, site: int, mode: str) -> None:
    if _footprint.collecting:
        _footprint.read(obj, _footprint.WHOLE)
    if enabled and not isinstance(obj, _UNCHANGING):  # nothing writes a tuple: no race
        tc = clocks.get(get_ident()) or current()
        read(tc, location(obj, WHOLE), site, obj, WHOLE, mode)


def cm(obj: Any, site: int, point: bool = False, every: bool = True) -> Any:
    """A mutating method of ``obj`` is about to be called; ``point``: the call
    has a scheduling point of its own (a method of a plain name, ``items.pop()``:
    ``self.items.pop()`` has the point of ``self.items``'s load just before);
    ``every``: it may change any key (not a dict's ``pop(k)``: that key only)."""
    if point and on_access is not None:
        on_access(site, "call")
    if every and is_globals(obj):
        return _GlobalsChange(obj, site)
    _mutated(obj, site, point, every)
    return obj


class _GlobalsChange:
    """A module's globals about to be changed by a method that may change any
    name (``globals().update(overrides)``): its variables are written as the
    method runs, in the step its arguments' points leave it in."""

    __slots__ = ("scope", "site")

    def __init__(self, scope: dict[str, Any], site: int) -> None:
        self.scope = scope
        self.site = site

    def __getattr__(self, method: str) -> Any:
        bound = getattr(self.scope, method)

        def call(*args: Any, **kwargs: Any) -> Any:
            before = dict(self.scope)
            try:
                return bound(*args, **kwargs)
            finally:
                _globals_changed(self.scope, self.site, before)

        return call


def fs(value: Any, site: int) -> Any:
    """``value``, the last argument of a call that works on files (``open(p,
    "x")``, ``os.path.exists(p)``): a scheduling point just before the call,
    whose step then touches the file system (for DPOR's dependence)."""
    if on_handover is not None:
        on_handover(site, "call")
    if _footprint.collecting:
        _footprint.touch(_footprint.FILES)
    return value


def _mutated(obj: Any, site: int, point: bool, every: bool) -> None:
    container = issubclass(type(obj), CONTAINERS)
    # A library's or C object's (an array.array's pop()): for DPOR, a write of it.
    if not container and not (_footprint.collecting and _opaque(obj)):
        return
    if _footprint.collecting:
        if point and on_access is None:  # the point is the table's, after this
            _footprint.expect_call(obj, sites[site].text.rpartition(".")[2], every)
        else:
            _footprint.write(obj, _footprint.WHOLE)
            if every:
                _footprint.write(obj, _footprint.EVERY)
        if container:
            _footprint.handed(obj, True, sys._getframe(2))  # ``xs.sort(key=f)``
    if enabled and container:
        _written_whole(obj, site, every, _one_operation(type(obj), _method_at(site)))


def _globals_changed(
    scope: dict[str, Any], site: int, before: dict[str, Any] | None = None
) -> None:
    """A module's variables (``scope``, its globals) changed at once
    (``globals().update(overrides)``): each that changed since ``before`` (or
    each) is written, as its reads read each alone (see :func:`rv`)."""
    names = [
        name
        for name in (sorted(scope.keys() | before.keys()) if before is not None else scope)
        if not (name.startswith("__") and name.endswith("__"))
        and (before is None or before.get(name, _MISSING) is not scope.get(name, _MISSING))
    ]
    if _footprint.collecting:
        for name in names:
            _footprint.write(scope, name)
    if enabled:
        tc = clocks.get(get_ident()) or current()
        for name in names:
            write(tc, location(scope, name), site, scope, name, "write", False)


def _changed(obj: Any, site: int, method: str) -> None:
    """Container ``obj`` changed by a call of its method ``method``, any key."""
    if is_globals(obj):
        _globals_changed(obj, site)
        return
    if _footprint.collecting:
        _footprint.write(obj, _footprint.WHOLE)
        _footprint.write(obj, _footprint.EVERY)
    if enabled:
        _written_whole(obj, site, True, _one_operation(type(obj), method))


def _written_whole(obj: Any, site: int, every: bool, atomic: bool) -> None:
    tc = clocks.get(get_ident()) or current()
    whole = location(obj, WHOLE)
    if not atomic:  # a method in Python (Counter.update): a read, then a write, per key
        read(tc, whole, site, obj, WHOLE, "update")
    write(tc, whole, site, obj, WHOLE, "write" if atomic else "update", atomic)
    if every:
        write(tc, location(obj, EVERY), site, obj, EVERY, "write", True)


_atomic_methods: dict[tuple[type, str], bool] = {}
_site_methods: dict[int, str] = {}


def _one_operation(cls: type, method: str) -> bool:
    """Whether ``cls``'s method ``method`` is one of CPython's single operations: a
    builtin's, not a subclass's Python code (``Counter.update`` and ``subtract``
    loop over their argument; two at once lose counts)."""
    atomic = _atomic_methods.get((cls, method))
    if atomic is None:
        found = getattr(cls, method, None)
        atomic = _atomic_methods[cls, method] = not isinstance(found, FunctionType)
    return atomic


def _method_at(site: int) -> str:
    """The method the call at ``site`` calls, by its text: ``stats.update()``
    calls ``update``, ``cache |=`` calls ``__ior__`` (read once per site)."""
    method = _site_methods.get(site)
    if method is None:
        text = sites[site].text
        method = _IN_PLACE.get(text.rpartition(" ")[2]) or text.rpartition(".")[2].removesuffix(
            "()"
        )
        _site_methods[site] = method
    return method


_kept: dict[tuple[int, int], list[Any]] = {}
"""By thread and site: the containers whose mutating call waits for its arguments."""


def cms(obj: Any, site: int) -> Any:
    """``obj``, whose mutating method is called with arguments that have points
    of their own: kept for :func:`cml`, which comes after them."""
    if is_globals(obj):
        obj = _GlobalsChange(obj, site)  # written by the call, after the arguments
    kept = _kept.setdefault((get_ident(), site), [])
    kept.append(obj)
    if len(kept) > 64:  # arguments that raised left theirs: not kept for ever
        del kept[0]
    return obj


def cml(value: Any, site: int) -> Any:
    """``value``, the last argument of the mutating call whose container
    :func:`cms` kept (``items.append(items.pop() + 1)``): the change, and its
    point, come after the arguments, which have points of their own."""
    if on_access is not None:
        on_access(site, "call")
    kept = _kept.get((get_ident(), site))
    if kept:
        changed = kept.pop()
        if type(changed) is not _GlobalsChange:
            _mutated(changed, site, True, True)
    return value


LRU_WRAPPER = type(functools.lru_cache(maxsize=None)(lambda: None))
"""What ``functools.lru_cache`` and ``functools.cache`` make."""


def cached(site: int) -> Callable[[Any], Any]:
    """The decorator put above user code's ``@functools.lru_cache`` (or
    ``@cache``): a call of what it made looks into its cache and may fill it,
    in C, unseen. The call is a scheduling point, and writes the cache before
    and after (two threads that both miss build the value twice, where the
    program meant one: dpor's dependence must see it)."""

    def wrap(wrapper: Any) -> Any:
        if type(wrapper) is not LRU_WRAPPER:
            return wrapper  # the program's own decorator of that name
        key = ("cached", getattr(wrapper, "__qualname__", "?"))  # the same in each schedule

        @functools.wraps(wrapper)
        def call(*args: Any, **kwargs: Any) -> Any:
            if on_handover is not None:
                on_handover(site, "call")
            if _footprint.collecting:
                _footprint.touch(key)
            try:
                return wrapper(*args, **kwargs)
            finally:
                if _footprint.collecting:
                    _footprint.touch(key)  # the fill, in the step that ends the call

        for name in ("cache_info", "cache_clear", "cache_parameters"):
            if hasattr(wrapper, name):
                setattr(call, name, getattr(wrapper, name))
        call.__wrapped__ = wrapper.__wrapped__  # type: ignore[attr-defined]  # past the cache
        return call

    return wrap


def cmk(obj: Any, site: int, point: bool = False) -> Any:
    """``obj.pop(key, ...)`` or ``obj.setdefault(key, ...)`` is about to be called:
    for a dict, a write of that key (not of every key), as ``del d[key]`` and
    ``d[key] = v`` are (``if k in d: d.pop(k)`` in two threads races on the key)."""
    if point and on_access is not None:  # here: the point names the user's frame two up
        on_access(site, "call")
    keyed = issubclass(type(obj), dict)
    _mutated(obj, site, point, not keyed)
    return _KeyedChange(obj, site) if enabled and keyed else obj


def cr(obj: Any, site: int) -> Any:
    """``obj``'s method is about to be called. For the scheduler only: a
    container's that does not change it (``d.get(k)``) reads it as a whole (one
    key, which the race detector cannot see here); a method of library or C
    code (``conn.execute(sql)``, ``f.write(line)``) may change its object
    unseen, so it writes it as a whole, and is a scheduling point (Twisted's
    reactor-side objects excepted: using one from two threads is a violation
    already; adbapi's, which pool threads use, are not)."""
    collecting = _footprint.collecting
    if not collecting and on_handover is None:
        return obj
    kind = _kinds.get(type(obj))
    if kind is None:
        kind = _kind_of(type(obj))
    if kind == _CONTAINER:
        if collecting:
            _footprint.read(obj, _footprint.WHOLE)
    elif kind == _FILES:
        # `if not d.exists(): d.mkdir()`: as os.path's (see :func:`fs`); a
        # path's own computations (`p.with_suffix(".tmp")`) touch nothing.
        if _method_at(site) not in _PATH_COMPUTATIONS:
            if on_handover is not None:
                on_handover(site, "call")
            if collecting:
                _footprint.touch(_footprint.FILES)
    elif kind:
        # Called from here, not a shared helper: the point takes the user's
        # frame two calls up (``_points._helper_point``).
        if kind == _OPAQUE and on_handover is not None:
            on_handover(site, "call")
        if collecting:
            _footprint.write(obj, _footprint.WHOLE)
    return obj


_PATH_COMPUTATIONS = frozenset(
    name for name in dir(pathlib.PurePath) if callable(getattr(pathlib.PurePath, name, None))
)
"""A ``pathlib`` path's methods that compute another path or a string."""


def oa(obj: Any, site: int) -> Any:
    """``obj`` is handed to a call. What library or C code does with a container
    it is given is unseen (``heapq.heappop(pq)``, ``bisect.insort(xs, x)``): the
    call is a scheduling point, as a container's own mutator is, and for the
    scheduler's dependence it writes the container as a whole. Never a race
    report: most calls only read it. A lazy iterator over a container
    (``",".join(map(show, cache.items()))``) is iterated by the call, which may
    call the program back: for DPOR, each step until it returns reads the
    container (another thread's new key meanwhile ends the iteration)."""
    if issubclass(type(obj), CONTAINERS):
        if on_handover is not None:
            on_handover(site, "call")
        if _footprint.collecting:
            _footprint.write(obj, _footprint.WHOLE)
            _footprint.write(obj, _footprint.EVERY)
    elif type(obj) is GeneratorType:  # next(gen): it starts running (see gy)
        if on_handover is not None:
            on_handover(site, "call")
        if _footprint.collecting:
            _footprint.writes.add(_footprint.GENERATOR)
    elif _footprint.collecting and type(obj) in _LAZY:
        _lazy_handed(obj, sys._getframe(1))
    return obj


def _lazy_handed(obj: Any, caller: FrameType) -> None:
    """View or lazy iterator ``obj`` is handed by ``caller`` to its next call,
    which iterates it: for DPOR, each step until that call returns reads the
    container it goes through."""
    container = _iterated(obj)
    if container is not None:
        _footprint.handed(container, False, caller)


_LAZY = frozenset(
    {
        map, filter, zip, enumerate, reversed,
        type({}.keys()), type({}.values()), type({}.items()),
        type(iter({})), type(iter({}.values())), type(iter({}.items())),
        type(iter([])), type(iter(set())), type(reversed([])),
    }
)  # fmt: skip
"""Views and lazy iterators that go through a container as they are iterated."""


def _iterated(obj: Any) -> Any:
    """The builtin container that view or lazy iterator ``obj`` goes through
    (``map(f, d.items())``: ``d``), or None."""
    found = [obj]
    for _ in range(4):  # map -> its iterators' tuple -> a dict's item iterator -> the dict
        inner = []
        for item in found:
            for referent in gc.get_referents(item):
                if issubclass(type(referent), CONTAINERS):
                    return referent
                if type(referent) in _LAZY or type(referent) is tuple:
                    inner.append(referent)
        found = inner
    return None


def oah(obj: Any, site: int, changes: bool = False) -> Any:
    """As :func:`oa`, ``obj`` handed to C code that may call the program back
    while it holds it (``heapq.heappush(pq, job)`` compares with the job's
    ``__lt__``). For DPOR, each step ending inside that call reads it too:
    another thread's ``pq.clear()`` meanwhile (``list changed size during
    iteration``) conflicts with them. :func:`oaw` names the call. For the race
    detector, a read of it, or a write (``changes``: ``heappush``, ``insort``)."""
    container = issubclass(type(obj), CONTAINERS)
    if container and enabled:
        if changes:
            _written_whole(obj, site, True, atomic=True)
        else:
            tc = clocks.get(get_ident()) or current()
            read(tc, location(obj, WHOLE), site, obj, WHOLE, "read")
    if container and on_handover is not None:  # here: the point names our caller
        on_handover(site, "call")
    if _footprint.collecting:
        if container:
            _footprint.write(obj, _footprint.WHOLE)
            _footprint.write(obj, _footprint.EVERY)
        _footprint.hold(obj if container else None)
    return obj


def oaw(value: Any, held: int) -> Any:
    """``value``, the last argument evaluated for a call that was handed ``held``
    objects by :func:`oah`: the next call is theirs."""
    if _footprint.collecting:
        _footprint.hand_held(held, sys._getframe(1))
    return value


_BOUND: tuple[type, ...] = (type([].append), type([].__setitem__))
"""A builtin method bound to its object, and a slot's (``d.__setitem__``)."""
_UNBOUND: tuple[type, ...] = (type(list.append), type(list.__setitem__))
"""The same taken from the class (``set.add``): its object comes first in each call."""
_CHANGING = frozenset({*MUTATORS, "__setitem__", "__delitem__"})
_KEYED_METHODS = frozenset(
    {"get", "__getitem__", "__contains__", "__setitem__", "__delitem__", "pop", "setdefault"}
)
"""A dict's methods whose first argument is the one key they read or change."""


def bm(method: Any, site: int) -> Any:
    """``method``, an attribute taken as a value, not called at once. A builtin
    container's method (``record = lines.append``, ``self._put =
    self.ids.__setitem__``, ``functools.partial(set.add, seen)``, ``seen.add``
    handed as a callback) is wrapped: each call is a scheduling point and a
    change (or a look) of its container, as ``lines.append(x)`` written out is.
    Anything else is returned as it is."""
    kind = type(method)
    if kind in _BOUND:
        owner = method.__self__
        if not issubclass(type(owner), CONTAINERS):
            return method
    elif kind in _UNBOUND:
        if not issubclass(method.__objclass__, CONTAINERS):
            return method
        owner = None
    else:
        return method
    return _ContainerMethod(method, owner, site)


class _TakenAsValue:
    """A callable of the program's, taken as a value and wrapped to record what
    each call does: to the program, the callable (``self.method``) itself."""

    __slots__ = ("__weakref__", "method", "owner", "site")
    _OWN = frozenset({"method", "owner", "site", "changes", "keyed"})

    def __getattr__(self, name: str) -> Any:
        if name in self._OWN:  # not set yet: copied or unpickled
            raise AttributeError(name)
        return getattr(self.method, name)

    # What the program may ask of the method it took, answered by the method:
    # its class (isinstance, inspect.isbuiltin) and its docs. A builtin method
    # is copied as itself (copy's atomic types), and pickled as one.

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(self.method)

    def __copy__(self) -> _TakenAsValue:
        return self

    def __deepcopy__(self, memo: Any) -> _TakenAsValue:
        return self

    @property
    def __doc__(self) -> Any:  # type: ignore[override]
        return self.method.__doc__

    def __reduce_ex__(self, protocol: Any) -> Any:
        # The callable itself, pickled as it pickles, given back by copy.copy
        # (a builtin's own reduction is its bare name: looked up in this module).
        return (copy.copy, (self.method,))

    def __reduce__(self) -> Any:
        return self.method.__reduce__()

    def __eq__(self, other: object) -> bool:
        return bool(self.method == (other.method if isinstance(other, _TakenAsValue) else other))

    def __hash__(self) -> int:
        return hash(self.method)

    def __repr__(self) -> str:
        return repr(self.method)


class _ContainerMethod(_TakenAsValue):
    """A builtin container's method taken as a value (see :func:`bm`)."""

    __slots__ = ("changes", "keyed")

    def __init__(self, method: Any, owner: Any, site: int) -> None:
        self.method = method
        self.owner = owner
        self.site = site
        self.changes = method.__name__ in _CHANGING
        self.keyed = method.__name__ in _KEYED_METHODS

    def __get__(self, instance: Any, kind: type | None = None) -> Any:
        """A class attribute (``__getattr__ = dict.__getitem__``) binds to the
        instance, as the method it stands for does (it was called unbound)."""
        if instance is None or self.owner is not None:
            return self
        return _ContainerMethod(self.method.__get__(instance, kind), instance, self.site)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        owner = self.owner if self.owner is not None else (args[0] if args else None)
        if issubclass(type(owner), CONTAINERS):
            caller = sys._getframe(1)
            # Called back by a library (Twisted's callbacks): no point, as library
            # code runs whole between points; the change is the running step's.
            by_user = GLOBALS in caller.f_globals or _footprint.is_rewritten(caller.f_code)
            if by_user and on_handover is not None:  # here: the point names our caller
                on_handover(self.site, "call")
            site = _called_at(caller, self.site, by_user) if enabled else self.site
            keyed = (
                self.keyed and issubclass(type(owner), dict) and len(args) > (self.owner is None)
            )
            if keyed:  # `d.get(k)`, `d[k] = v` through it: that key, as written out
                self._keyed(owner, args[self.owner is None], site)
            elif not self.changes:
                _read_whole(owner, site, "read")
            else:
                _changed(owner, site, self.method.__name__)
        return self.method(*args, **kwargs)

    def _keyed(self, owner: Any, key: Any, site: int) -> None:
        if _footprint.collecting:
            (_footprint.write if self.changes else _footprint.read)(owner, _footprint.WHOLE)
        if not enabled:
            return
        site = _key_site(site)  # named as `d[k]` is: `settings[...]`
        if not self.changes:
            _read_key(owner, key, site)
            return
        tc = clocks.get(get_ident()) or current()
        _write_key(tc, owner, key, site, "write", atomic=True)
        _written_whole(owner, site, every=False, atomic=True)


def sa(setter: Any, site: int) -> Any:
    """``setattr`` or ``delattr``, or a ``__setattr__``/``__delattr__``, taken as a
    value, not called at once (``functools.partial(setattr, stats, "n")``,
    ``set_ = object.__setattr__``): wrapped, so that each later call writes
    the attribute it names, as ``setattr(obj, name, value)`` written out does.
    Anything else (a local function named ``setattr``) is returned as it is."""
    if setter is builtins.setattr or setter is builtins.delattr:
        return _Setter(setter, None, site)
    if getattr(setter, "__name__", None) not in ("__setattr__", "__delattr__"):
        return setter
    owner = getattr(setter, "__self__", None)  # `stats.__setattr__`: bound to stats
    return _Setter(setter, None if owner is None or isinstance(owner, type) else owner, site)


class _Setter(_TakenAsValue):
    """A setter taken as a value (see :func:`sa`)."""

    __slots__ = ()

    def __init__(self, setter: Any, owner: Any, site: int) -> None:
        self.method = setter
        self.owner = owner
        self.site = site

    def __call__(self, *args: Any) -> Any:
        if self.owner is not None and args:
            obj, name = self.owner, args[0]
        elif len(args) >= 2:
            obj, name = args[0], args[1]
        else:
            return self.method(*args)  # its own TypeError
        caller = sys._getframe(1)
        # Called back by a library (a partial called by Twisted): no point, as
        # library code runs whole between points; the write is the running step's.
        by_user = GLOBALS in caller.f_globals or _footprint.is_rewritten(caller.f_code)
        if by_user and on_handover is not None:  # here: no instruction table has it
            on_handover(self.site, "call")
        if _footprint.collecting and type(name) is str:
            _footprint.write(obj, name)
        if enabled and type(name) is str:
            _written(obj, name, self.site, "write")
        return self.method(*args)


_key_sites: dict[int, int] = {}


def _key_site(site: int) -> int:
    """Site ``site`` of ``settings.get()``, as the subscript ``settings[...]``."""
    keyed = _key_sites.get(site)
    if keyed is None:
        at = sites[site]
        text = f"{at.text.rpartition('.')[0]}[...]"
        where = Site(at.filename, at.lineno, at.function, "subscript", text)
        keyed = _key_sites[site] = add_site(where)
    return keyed


_call_sites: dict[tuple[CodeType, int, int], int] = {}


def _called_at(caller: FrameType, taken: int, by_user: bool) -> int:
    """The site of a call, by ``caller``, of the method taken at site ``taken``: the
    caller's line when it is user code, else (a library calling it back) where it
    was taken."""
    if not by_user:
        return taken
    code = caller.f_code
    key = (code, caller.f_lineno, taken)
    site = _call_sites.get(key)
    if site is None:
        text = sites[taken].text
        where = Site(code.co_filename, caller.f_lineno, code.co_name, "method", text)
        site = _call_sites[key] = add_site(where)
    return site


def ip(value: Any, target: Any, site: int) -> Any:
    """``value``, the right side of ``target op= value``: a builtin container as
    ``target`` is changed in place (``cache |= fresh``, ``items += more``), every
    key at once, as its ``update()`` or ``extend()`` would."""
    if issubclass(type(target), CONTAINERS):
        _changed(target, site, _method_at(site))  # Counter's in-place operators are Python
    return value


_IN_PLACE = {"|=": "__ior__", "&=": "__iand__", "^=": "__ixor__"}


def own_code(builtin: Any) -> Any:
    """``exec`` or ``compile`` as the program's code calls it (``builtin``, unless
    the program rebound the name): source text it compiles for ``exec`` is
    rewritten as the program's modules are (see :mod:`~threadcheck._races._texts`).
    Only while races are watched or a schedule's points taken: a module
    rewritten in place for one exploration runs on after it."""
    if not (enabled or on_handover is not None):
        return builtin
    if builtin is builtins.compile:
        return _texts.rewritten_compile
    if builtin is builtins.exec or builtin is builtins.eval:
        _install_helpers()  # a call with keywords or *args: through a wrapper
        return _RUN_WRAPPERS[builtin]
    return builtin


_RUN_WRAPPERS = {run: _texts.run_wrapper(run) for run in (builtins.exec, builtins.eval)}


def code_args(builtin: Any, source: Any, *namespaces: Any) -> tuple[Any, ...]:
    """The arguments for ``exec(source, *namespaces)`` (or ``eval``), called
    from the user's frame: ``source`` rewritten when it is text, or code
    ``compile`` made of text (see :mod:`~threadcheck._races._texts`)."""
    if not (enabled or on_handover is not None):
        return (source, *namespaces)
    _install_helpers()
    return _texts.code_args(builtin, source, namespaces, sys._getframe(1))


@functools.cache
def _install_helpers() -> None:
    module = globals()
    _texts.install({helper(name): module[name] for name in HELPERS})


def gy(value: Any) -> Any:
    """A generator of user code is about to yield or return ``value``: it stops
    running. For DPOR, a write of it in that step, as its start (``next(gen)``,
    handed over: :func:`oa`) is one: another thread's ``next()`` of it while it
    runs (``ValueError: generator already executing``) conflicts with both."""
    if _footprint.collecting:
        _footprint.writes.add(_footprint.GENERATOR)
    return value


def oal(value: Any, site: int, *objs: Any) -> Any:
    """``value``, the last argument of a call that was handed ``objs`` before
    arguments with points of their own (``heappush(pq, heappop(pq) + 1)``): each
    container among them handed over again, with the point just before the call."""
    containers = [obj for obj in objs if issubclass(type(obj), CONTAINERS)]
    if containers:
        if on_handover is not None:
            on_handover(site, "call")
        if _footprint.collecting:
            for obj in containers:
                _footprint.write(obj, _footprint.WHOLE)
                _footprint.write(obj, _footprint.EVERY)
    return value


_TRANSPARENT = frozenset(
    {
        "builtins", "threading", "thread", "queue", "concurrent", "threadcheck",
        "re", "datetime", "decimal", "fractions", "pathlib", "uuid", "ipaddress", "enum",
        "struct", "string", "json", "operator", "functools", "types", "typing",
        "dataclasses", "abc", "numbers", "math",
    }
)  # fmt: skip
"""Top-level modules whose objects' methods record what they touch themselves
(the scheduler's primitives, ``concurrent.futures``), or change nothing that
is shared (immutable values)."""

_FILES = 4
"""A ``pathlib.Path``: its methods may work on the file system."""
_CONTAINER = 3
"""A builtin container (:data:`CONTAINERS`): its methods' effects are known."""
_OPAQUE = 2
"""A library's or C object, whose method calls are scheduling points."""
_TWISTED = 1
"""Twisted's: its methods are dependent, but no points (see :func:`cr`)."""

_kinds: dict[type, int] = {}
"""Each type met, and what :func:`_kind_of` said of it."""


def forget_types() -> None:
    """As a schedule starts: the classes a program made in the last one (it
    runs again from the start, and makes them anew) are not kept, nor
    everything their functions' globals hold (a schedule's whole state)."""
    _kinds.clear()
    _own_items.clear()
    _by_code.clear()


def _kind_of(cls: type) -> int:
    """What ``cls``'s methods are: a builtin container's (:data:`_CONTAINER`),
    library or C code whose effects are unseen (:data:`_OPAQUE`,
    :data:`_TWISTED`), or neither (0): rewritten user code, a synchronisation
    object, a module or a builtin."""
    module_name = getattr(cls, "__module__", None) or "builtins"
    module = sys.modules.get(module_name)
    top = module_name.partition(".")[0].lstrip("_")
    if issubclass(cls, CONTAINERS):
        kind = _CONTAINER
    elif issubclass(cls, pathlib.Path):
        kind = _FILES
    elif GLOBALS in getattr(module, "__dict__", ()) or top in _TRANSPARENT:
        kind = 0
    elif top == "twisted" and not module_name.startswith(_THREAD_SIDE_TWISTED):
        kind = _TWISTED
    else:
        kind = _OPAQUE
    _kinds[cls] = kind
    return kind


_THREAD_SIDE_TWISTED = ("twisted.enterprise.",)
"""Twisted's objects made to be used in pool threads (adbapi's transactions and
connections): unchecked, so their methods are points as any library's."""


class _Keyed:
    """Stands for a dict in a call of one of its keyed methods, recording the key."""

    __slots__ = ("obj", "site")

    def __init__(self, obj: dict[Any, Any], site: int) -> None:
        self.obj = obj
        self.site = site


class _KeyedChange(_Keyed):
    """``d.pop(k)``/``d.setdefault(k, v)``: records the key's write."""

    __slots__ = ()

    def pop(self, key: Any, *default: Any) -> Any:
        self._changed(key, "delete")
        try:
            return self.obj.pop(key, *default)
        except BaseException as error:
            _raised_by_user(error)
            raise

    def setdefault(self, key: Any, default: Any = None) -> Any:
        self._changed(key, "write")
        return self.obj.setdefault(key, default)

    def __setitem__(self, key: Any, value: Any) -> None:  # `d.__setitem__(k, v)` called
        self._changed(key, "write")
        self.obj[key] = value

    def __delitem__(self, key: Any) -> None:
        self._changed(key, "delete")
        del self.obj[key]

    def _changed(self, key: Any, mode: str) -> None:
        # One call CPython makes atomic: it races the key's reads and plain
        # stores, never another such call (two setdefaults of a key agree).
        tc = clocks.get(get_ident()) or current()
        _write_key(tc, self.obj, key, self.site, mode, atomic=True)


def ck(obj: Any, site: int, key_site: int) -> Any:
    """``obj.get(key, ...)`` is about to be called: for a dict, a read of that key
    (at ``key_site``), as ``obj[key]`` is (``if d.get(k) is None: d[k] = v`` in
    two threads races on the key). Any call is recorded as :func:`cr` does."""
    cr(obj, site)
    return _KeyedLook(obj, key_site) if enabled and issubclass(type(obj), dict) else obj


class _KeyedLook(_Keyed):
    """``d.get(k)``: records the key's read."""

    __slots__ = ()

    def get(self, key: Any, *default: Any) -> Any:
        _read_key(self.obj, key, self.site)
        return self.obj.get(key, *default)


def lk(obj: Any, site: int) -> Any:
    """``obj`` is looked into as a whole: ``len(c)``, another builtin, its truth.
    A read of the container, which another thread's ``append`` or new key makes
    stale (``if len(items) < limit: items.append(x)`` in two threads). A lazy
    iterator (``list(filter(f, d.values()))``) is iterated by the call, which
    may call the program back: for DPOR, each step until it returns reads the
    container it goes through."""
    if issubclass(type(obj), CONTAINERS):
        _read_whole(obj, site, "read")
    elif _footprint.collecting and type(obj) in _LAZY:
        _lazy_handed(obj, sys._getframe(1))
    elif _footprint.collecting:
        _opaque_looked_into(obj)
    return obj


def _opaque_looked_into(obj: Any) -> None:
    """For DPOR, a look into a library's or C object (``len(samples)`` of an
    ``array.array``, ``if sessions:`` of a ``WeakValueDictionary``) reads it
    as a whole, as a call of its method writes it (see :func:`cr`)."""
    if _opaque(obj):
        _footprint.read(obj, _footprint.WHOLE)


def _opaque(obj: Any) -> bool:
    """Whether ``obj`` is a library's or C object, whose calls are unseen."""
    kind = _kinds.get(type(obj))
    if kind is None:
        kind = _kind_of(type(obj))
    return kind == _OPAQUE


def lkc(obj: Any, site: int) -> Any:
    """``obj`` is looked into by ``max``, ``min`` or ``sorted``, which may call
    the program back (a key function, an ``__lt__``): as :func:`lk`, and for
    DPOR, looked into in each step until the call returns. A dict's view
    (``max(d.values(), key=f)``) is its dict's."""
    container = _iterated(obj) if type(obj) in _LAZY else obj
    lk(container, site)
    if _footprint.collecting and issubclass(type(container), CONTAINERS):
        _footprint.handed(container, False, sys._getframe(1))
    return obj


def isin(key: Any, container: Any, site: int) -> bool:
    """``key in container``: a read of that key of a dict (as ``container[key]``
    is), of the whole of a set (its ``add`` writes the whole) or a list. For
    DPOR's dependence, of the whole in every case: ``d.pop(k)`` writes the
    whole, not the key."""
    if not issubclass(type(container), dict):
        if issubclass(type(container), CONTAINERS):
            _read_whole(container, site, "read")
        elif _footprint.collecting:
            _opaque_looked_into(container)
        return key in container
    if _footprint.collecting:
        _footprint.read(container, _footprint.WHOLE)
    if enabled:
        _read_key(container, key, site)
    return key in container


def _read_key(obj: Any, key: Any, site: int, mode: str = "read") -> None:
    """``obj[key]`` is read (or looked up: ``key in obj``): that key, and every
    key at once, which a mutating method's call writes (``d.update(...)``).
    Not a tuple's (nor a string's): nothing writes it, so no read of it races,
    and its shadow would hold it (it cannot be referenced weakly), and what it
    holds, past the program's last reference (a test of a weak cache failed)."""
    if isinstance(obj, _UNCHANGING):
        return
    tc = clocks.get(get_ident()) or current()
    try:
        loc = location(obj, key)
    except TypeError:  # an unhashable key (an array index): not tracked
        return
    read(tc, loc, site, obj, key, mode)
    read(tc, location(obj, EVERY), site, obj, EVERY, mode)


def _write_key(
    tc: ThreadClock, obj: Any, key: Any, site: int, mode: str, atomic: bool = False
) -> None:
    """``obj[key]`` is written or deleted (``d.pop(key)`` too)."""
    try:
        loc = location(obj, key)
    except TypeError:  # an unhashable key: not tracked (the container's change is)
        return
    write(tc, loc, site, obj, key, mode, atomic)


def own(names: Any) -> Any:
    """``locals()``, ``vars()`` or ``dir()`` in rewritten code, without the names
    the rewriting added (``__tc_s1__``, a closure variable's scope): a factory
    forwarding ``**locals()`` passed them on as arguments."""
    if isinstance(names, dict):
        return {name: value for name, value in names.items() if not _added(name)}
    if isinstance(names, list):
        return [name for name in names if not _added(name)]
    return names


def _added(name: object) -> bool:
    return isinstance(name, str) and name.startswith("__tc_")


def im(scope: dict[str, Any]) -> None:
    """A rewritten module's code ran to its end (its import is done)."""
    if enabled:
        module_imported(str(scope.get("__name__")))


def rv(scope: Any, name: str, site: int, value: Any) -> Any:
    """A global or closure variable was read (``scope`` stands for its namespace),
    then a point: no instruction table has one at a variable's load (a thread
    spinning on ``while not ready:`` lets the setter run; ``if conn: use(conn)``
    can see another thread's ``conn = None`` in between). The read was the
    step's that ends here."""
    if _footprint.collecting:
        _footprint.read(scope, name)
    if on_access is not None:
        on_access(site, "load")
    elif on_handover is not None:
        on_handover(site, "load")
    if enabled:
        tc = clocks.get(get_ident()) or current()
        # Inline, the common case (as in ra): read since the last synchronisation.
        shadow = objects.get(id(scope))
        loc = shadow.locations.get(name) if shadow is not None else None
        if loc is None:
            read(tc, location(scope, name), site, scope, name, "read")
        else:
            last = loc.read or loc.write
            if last is None or last.tid != tc.tid or last.clock != tc.clock:
                read(tc, loc, site, scope, name, "read")
    return value


def wv(scope: Any, name: str, site: int) -> None:
    """A global or closure variable was assigned."""
    if _footprint.collecting:
        _footprint.write(scope, name)
    if enabled:
        tc = clocks.get(get_ident()) or current()
        write(tc, location(scope, name), site, scope, name, "write", False)


def wn(value: Any, scope: Any, name: str, site: int) -> Any:
    """``(name := value)`` assigned a global or closure variable: ``value``."""
    wv(scope, name, site)
    return value


def uv(scope: Any, name: str, site: int) -> None:
    """A global or closure variable was updated in place (``total += 1``)."""
    if _footprint.collecting:
        _footprint.write(scope, name)
    if enabled:
        tc = clocks.get(get_ident()) or current()
        loc = location(scope, name)
        read(tc, loc, site, scope, name, "update")
        write(tc, loc, site, scope, name, "update", False)


class Scope:
    """Stands for one call's closure variables: each call of the enclosing
    function has its own."""

    __slots__ = ("__weakref__", "name")

    def __init__(self, name: str) -> None:
        self.name = name


_own_items: dict[type, bool] = {}
"""Per class, whether its item methods are all rewritten code (see :class:`sub`)."""

_ITEM_METHODS = ("__setitem__", "__delitem__")


def _items_rewritten(cls: type) -> bool:
    """Whether ``cls`` gets items with rewritten code, and sets and deletes
    them with it, or not at all (a read-only ``Mapping``), keeping them in
    something else than itself (not a ``dict`` subclass)."""
    if issubclass(cls, CONTAINERS):  # its super().__getitem__ is C's: recorded by nobody
        return False
    getter = getattr(cls, "__getitem__", None)
    if not _rewritten_function(getter):
        return False
    return all(
        method is None or _rewritten_function(method)
        for method in (getattr(cls, name, None) for name in _ITEM_METHODS)
    )


def _rewritten_function(method: Any) -> bool:
    code = getattr(method, "__code__", None)
    return isinstance(code, CodeType) and _footprint.is_rewritten(code)


def _missing(mapping: Any, key: Any) -> bool:
    try:
        return key not in mapping
    except TypeError:  # unhashable: the subscript raises it, from the user's line
        return False


def _raised_by_user(error: BaseException) -> None:
    """The user's operation raised (``KeyError`` from ``d[k]``): its traceback
    starts at the user's line, as without the detector, not in this helper. A
    bare ``raise`` keeps the traceback set here (3.11+; 3.10 re-raises the one
    it caught)."""
    traceback = error.__traceback__
    if traceback is not None:
        error.__traceback__ = traceback.tb_next


class sub:  # noqa: N801 - called by rewritten code as if it were a function
    """``sub(obj, site)[key]``: the subscript, recorded, then done on ``obj``;
    or ``obj`` itself when its class's item methods are rewritten code, which
    records its own accesses: run from the user's frame, a ``warnings.warn(...,
    stacklevel=2)`` in its ``__getitem__`` names the user's line, not ours."""

    __slots__ = ("obj", "site")
    obj: Any
    site: int
    READ = "read"
    WRITE = "write"

    def __new__(cls, obj: Any, site: int) -> Any:
        own = _own_items.get(type(obj))
        if own is None:
            own = _own_items[type(obj)] = _items_rewritten(type(obj))
        if own:
            return obj
        self = object.__new__(cls)
        self.obj = obj
        self.site = site
        return self

    def __getitem__(self, key: Any) -> Any:
        obj = self.obj
        if on_access is not None:
            on_access(self.site, "load")
        if issubclass(type(obj), collections.defaultdict) and _missing(obj, key):
            self._written(obj, key, self.WRITE)  # a missing key's look inserts it
        else:
            if _footprint.collecting:
                if type(key) is slice:
                    _footprint.read(obj, _footprint.WHOLE)
                else:
                    _footprint.read(obj, key)
                    _footprint.read(obj, _footprint.EVERY)
            if enabled and type(key) is not slice:
                _read_key(obj, key, self.site, self.READ)
        try:
            return obj[key]
        except BaseException as error:
            _raised_by_user(error)
            raise

    def __setitem__(self, key: Any, value: Any) -> None:
        obj = self.obj
        if on_access is not None:
            on_access(self.site, "store")
        self._written(obj, key, self.WRITE)
        try:
            obj[key] = value
        except BaseException as error:
            _raised_by_user(error)
            raise

    def __delitem__(self, key: Any) -> None:
        obj = self.obj
        if on_access is not None:
            on_access(self.site, "delete")
        self._written(obj, key, "delete")
        try:
            del obj[key]
        except BaseException as error:
            _raised_by_user(error)
            raise

    def _written(self, obj: Any, key: Any, mode: str) -> None:
        if _footprint.collecting:
            _footprint.write(obj, key if type(key) is not slice else _footprint.WHOLE)
            _footprint.write(obj, _footprint.WHOLE)
        if not enabled:
            return
        tc = clocks.get(get_ident()) or current()
        if type(key) is not slice:
            _write_key(tc, obj, key, self.site, mode)  # an unhashable one: the whole's change
        write(tc, location(obj, WHOLE), self.site, obj, WHOLE, mode, True)


class subu(sub):  # noqa: N801 - called by rewritten code as if it were a function
    """``subu(obj, site)[key] += value``: the item's read and write are an
    update, reported as one (a lost update), as ``obj.x += 1``'s are."""

    __slots__ = ()
    READ = "update"
    WRITE = "update"


class subo:  # noqa: N801 - called by rewritten code as if it were a function
    """``subo(X, X.__dict__, site)[key]`` (or ``vars(X)``): ``X``'s attribute
    ``key``, recorded as ``X.key`` is, then done on the dictionary: a counter
    bumped as ``self.__dict__["n"] += 1`` in one thread and ``self.n += 1`` in
    another is one location (they were two, and a lost update was "proved")."""

    __slots__ = ("mapping", "owner", "site")

    def __init__(self, owner: Any, mapping: Any, site: int) -> None:
        self.owner = owner
        self.mapping = mapping
        self.site = site

    def __getitem__(self, key: Any) -> Any:
        if on_access is not None:
            on_access(self.site, "load")
        if _footprint.collecting:
            _footprint.read(self.owner, key)
        if enabled and type(key) is str:
            tc = clocks.get(get_ident()) or current()
            read(tc, location(self.owner, key), self.site, self.owner, key, "read")
        return self.mapping[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        if on_access is not None:
            on_access(self.site, "store")
        self._written(key, "write")
        self.mapping[key] = value

    def __delitem__(self, key: Any) -> None:
        if on_access is not None:
            on_access(self.site, "delete")
        self._written(key, "delete")
        del self.mapping[key]

    def _written(self, key: Any, mode: str) -> None:
        if _footprint.collecting:
            _footprint.write(self.owner, key)
        if enabled and type(key) is str:
            _written(self.owner, key, self.site, mode)
