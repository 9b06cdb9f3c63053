"""A race found by :mod:`._shadow`, made a :class:`~threadcheck._violation.Violation`.

Each distinct pair of sites is described once per test: later occurrences
record the same violation again, so reports count them.

Thread safety: :meth:`RaceReporter.found` runs in whichever thread made the
second access; the cache is a dict (single operations).
"""

from __future__ import annotations

import threading
from typing import Any

from threadcheck import _stacks, _threads
from threadcheck._races._rewrite import is_globals
from threadcheck._races._shadow import EVERY, WHOLE, Access, Site, sites
from threadcheck._recorder import Recorder
from threadcheck._violation import Kind, PriorAccess, TestContext, ThreadInfo, Violation


class RaceReporter:
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self._described: dict[tuple[frozenset[int], TestContext | None], Violation] = {}

    def found(self, now: Access, earlier: Access, obj: Any, key: Any) -> None:
        test = _charged(now, earlier, self.recorder.context)
        pair = (frozenset((now.site, earlier.site)), test)
        violation = self._described.get(pair)
        if violation is None:
            violation = self._described[pair] = describe(now, earlier, obj, key, test)
        self.recorder.record(violation)


def _charged(now: Access, earlier: Access, running: TestContext | None) -> TestContext | None:
    """The test a race fails: the one running, unless its later access came from
    another thread (a session fixture's heartbeat) and its earlier one from the
    thread running the tests, in a test that has ended since: then no test (it
    fails the session), never the one that happens to run meanwhile."""
    main = threading.main_thread()
    made_in = earlier.test
    if now.thread is main or earlier.thread is not main or made_in is None:
        return running
    if running is not None and running.nodeid == made_in.nodeid:
        return running
    return None


def describe(
    now: Access, earlier: Access, obj: Any, key: Any, test: TestContext | None
) -> Violation:
    thread = _thread_info(now)
    prior = PriorAccess(
        what=earlier.mode,
        thread=_thread_info(earlier),
        stack=_stack(earlier),
        spawn_site=_spawn_site(earlier.thread),
        submitted_from=_submission(earlier),
    )
    return Violation(
        api=location_name(sites[now.site], sites[earlier.site], obj, key),
        kind=Kind.DATA_RACE,
        thread=thread,
        reactor_thread=prior.thread,
        stack=_stack(now),
        spawn_site=_spawn_site(now.thread),
        submitted_from=_submission(now),
        test=test,
        access=now.mode,
        prior=prior,
    )


def location_name(now: Site, earlier: Site, obj: Any, key: Any) -> str:
    """``Stats.handled``, ``sessions[...]``, ``global _registry``, ``nonlocal total``,
    or, for a container as a whole, the container iterated (``self.requests``)."""
    if key is EVERY:  # a key's read against a call that may change any key
        return next((s.text for s in (now, earlier) if s.kind == "subscript"), now.text)
    if key is WHOLE:
        for kind in ("iteration", "look", "membership"):
            for site in (now, earlier):
                if site.kind == kind:
                    return _container(site)
        if now.kind == "method":  # two calls of a method in Python (Counter.update)
            return now.text.rpartition(".")[0]
        return now.text
    if now.kind == "attribute":
        return f"{_owner_name(obj)}.{key}"
    if now.kind == "membership":  # a dict's key looked up
        return f"{_container(now)}[...]"
    if type(key) is str and is_globals(obj):
        return f"global {key}"  # set by a call that changes them all: globals().update()
    if now.kind == "method":  # a key's change by a method (self.cache.pop(key)): the key's
        other = next((s.text for s in (now, earlier) if s.kind == "subscript"), None)
        return other or f"{now.text.rpartition('.')[0]}[...]"
    return now.text


def _container(site: Site) -> str:
    """The container a site iterates or looks into, as the user wrote it."""
    return site.text.split(" ", 2)[-1]  # "iteration over c", "look into c", "membership in c"


def _owner_name(obj: Any) -> str:
    if isinstance(obj, type):
        return obj.__qualname__
    module_name = getattr(obj, "__name__", None) if type(obj).__name__ == "module" else None
    return module_name if isinstance(module_name, str) else type(obj).__qualname__


def _thread_info(access: Access) -> ThreadInfo:
    if access.thread is None:  # started outside threading (_thread, C)
        return ThreadInfo(f"Dummy-{access.ident}", access.ident)
    return ThreadInfo(access.thread.name, access.ident)


def _stack(access: Access) -> _stacks.Stack:
    site = sites[access.site]
    outer = _stacks.materialize(access.outer) if access.outer else ()
    return (*outer, _stacks.Frame(site.filename, site.lineno, site.function))


def _spawn_site(thread: threading.Thread | None) -> _stacks.Stack | None:
    return None if thread is None else _threads.spawn_site(thread)


def _submission(access: Access) -> _stacks.Stack | None:
    raw = access.submission
    return None if raw is None else _stacks.materialize(raw)
