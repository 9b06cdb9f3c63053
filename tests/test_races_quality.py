"""Quality: the race detector reports each unsynchronised access pair once,
naming the variable, and is silent when any happens-before edge orders them.

Programs run in this process under :mod:`threadcheck._races` (rewritten as a
user script is by ``threadcheck run --races``). Every racy program is written
so that the race is there on every run, whatever the interleaving: the
detector needs both accesses, not an unlucky order. Each has a fixed twin
that differs only by the synchronisation, and must be silent.
"""

from __future__ import annotations

import collections
import gc
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from threadcheck import Recorder
from threadcheck._races import _access, _detector, _hook
from threadcheck._report import format_report, group
from threadcheck._violation import Kind, Violation

pytestmark = pytest.mark.quality

PRELUDE = """\
import queue, threading, time
from concurrent.futures import ThreadPoolExecutor

class Box:
    def __init__(self):
        self.v = 0

box = Box()
"""


def races_in(tmp_path: Path, body: str) -> list[Violation]:
    """The data races one run of ``body`` (after :data:`PRELUDE`) has."""
    program = tmp_path / "program.py"
    program.write_text(PRELUDE + textwrap.dedent(body))
    recorder = Recorder()
    _detector.start(recorder)
    try:
        _hook.run_script(str(program))
    finally:
        _detector.stop()
    found = recorder.violations()
    assert all(v.kind is Kind.DATA_RACE for v in found)
    return found


def assert_one_race(found: list[Violation], location: str, program_line: str) -> None:
    groups = group(found)
    assert len(groups) == 1, format_report(found)
    race = groups[0].violation
    assert race.api == location, format_report(found)
    assert race.prior is not None
    lines = {race.stack[-1].source, race.prior.stack[-1].source}
    assert not program_line or program_line in lines, format_report(found)


@dataclass(frozen=True)
class Case:
    name: str
    racy: str
    fixed: str
    location: str
    line: str
    """A line of the racy program that is one of the two accesses."""


VALIDATING_RECORD = """
    class Record:
        def __setattr__(self, name, value):
            if name not in ("status", "retries"):
                raise AttributeError(name)  # a validating record
            {store}
    job = Record()
    job.status = "new"
    t = threading.Thread(target=setattr, args=(job, "status", "running")); t.start()
"""
"""A record whose own __setattr__ checks a field's name, then stores it."""


ITEMS_AS_ATTRIBUTES = """
    class Settings(dict):  # carbon's conf.Settings
        __getattr__ = dict.__getitem__
        __setattr__ = dict.__setitem__
    settings = Settings(mode="a")
    def work():
        settings.mode = "b"
    t = threading.Thread(target=work); t.start()
"""
"""A dict whose items are its attributes, by builtin methods taken as its own."""


ACCESS_KINDS = [
    *(
        Case(
            f"attribute written through {how}",
            racy=f"""
                import functools
                def work():
                    {write}
                t = threading.Thread(target=work); t.start()
                seen = getattr(box, "v", None)
                t.join()
            """,
            fixed=f"""
                import functools
                def work():
                    {write}
                t = threading.Thread(target=work); t.start()
                t.join()
                seen = getattr(box, "v", None)
            """,
            location="Box.v",
            line=write,
        )
        for how, write in [
            ("object.__setattr__", 'object.__setattr__(box, "v", 1)'),
            ("a bound __setattr__", 'box.__setattr__("v", 1)'),
            ("object.__delattr__", 'object.__delattr__(box, "v")'),
            ("setattr taken as a value", 'functools.partial(setattr, box, "v")(1)'),
            ("a __setattr__ taken as a value", 'list(map(box.__setattr__, ["v"], [1]))'),
        ]
    ),
    Case(
        "attribute update",
        racy="""
            def work():
                box.v += 1
            t = threading.Thread(target=work); t.start()
            box.v += 1
            t.join()
        """,
        fixed="""
            def work():
                box.v += 1
            t = threading.Thread(target=work); t.start()
            t.join()
            box.v += 1
        """,
        location="Box.v",
        line="box.v += 1",
    ),
    Case(
        "attribute read of a state machine a worker drives",
        racy="""
            class Machine:
                def __init__(self):
                    self.state = "idle"
                def advance(self):
                    self.state = "running"
            m = Machine()
            t = threading.Thread(target=m.advance); t.start()
            seen = m.state
            t.join()
        """,
        fixed="""
            class Machine:
                def __init__(self):
                    self.state = "idle"
                    self.lock = threading.Lock()
                def advance(self):
                    with self.lock:
                        self.state = "running"
            m = Machine()
            t = threading.Thread(target=m.advance); t.start()
            with m.lock:
                seen = m.state
            t.join()
        """,
        location="Machine.state",
        line='self.state = "running"',
    ),
    Case(
        "global",
        racy="""
            _registry = None
            def register():
                global _registry
                _registry = {"a": 1}
            t = threading.Thread(target=register); t.start()
            current = _registry
            t.join()
        """,
        fixed="""
            _registry = None
            def register():
                global _registry
                _registry = {"a": 1}
            t = threading.Thread(target=register); t.start()
            t.join()
            current = _registry
        """,
        location="global _registry",
        line='_registry = {"a": 1}',
    ),
    Case(
        "closure variable",
        racy="""
            def count():
                total = 0
                def bump():
                    nonlocal total
                    total += 1
                t = threading.Thread(target=bump); t.start()
                total += 1
                t.join()
                return total
            count()
        """,
        fixed="""
            def count():
                total = 0
                lock = threading.Lock()
                def bump():
                    nonlocal total
                    with lock:
                        total += 1
                t = threading.Thread(target=bump); t.start()
                with lock:
                    total += 1
                t.join()
                return total
            count()
        """,
        location="nonlocal total",
        line="total += 1",
    ),
    Case(
        "subscript store and load",
        racy="""
            sessions = {}
            def login():
                sessions["alice"] = "token"
            t = threading.Thread(target=login); t.start()
            token = sessions.get("alice") or sessions["bob"] if "bob" in sessions else None
            sessions["alice"] = "other"
            t.join()
        """,
        fixed="""
            sessions = {}
            def login():
                sessions["alice"] = "token"
            t = threading.Thread(target=login); t.start()
            t.join()
            sessions["alice"] = "other"
        """,
        location="sessions[...]",
        line='sessions["alice"] = "token"',
    ),
    Case(
        "membership test while another thread adds",
        racy="""
            seen = set()
            def visit():
                seen.add("a")
            t = threading.Thread(target=visit); t.start()
            found = "a" in seen
            t.join()
        """,
        fixed="""
            seen = set()
            def visit():
                seen.add("a")
            t = threading.Thread(target=visit); t.start()
            t.join()
            found = "a" in seen
        """,
        location="seen",
        line='found = "a" in seen',
    ),
    Case(
        "length read while another thread appends",
        racy="""
            items = []
            def produce():
                items.append(1)
            t = threading.Thread(target=produce); t.start()
            size = len(items)
            t.join()
        """,
        fixed="""
            items = []
            def produce():
                items.append(1)
            t = threading.Thread(target=produce); t.start()
            t.join()
            size = len(items)
        """,
        location="items",
        line="size = len(items)",
    ),
    Case(
        "subscript delete",
        racy="""
            cache = {"k": 1}
            def evict():
                del cache["k"]
            t = threading.Thread(target=evict); t.start()
            cache["k"] = 2
            t.join()
        """,
        fixed="""
            cache = {"k": 1}
            lock = threading.Lock()
            def evict():
                with lock:
                    del cache["k"]
            t = threading.Thread(target=evict); t.start()
            with lock:
                cache["k"] = 2
            t.join()
        """,
        location="cache[...]",
        line='del cache["k"]',
    ),
    Case(
        "dict iterated by an exporter thread while keys are added",
        racy="""
            metrics = {"requests": 1}
            def export():
                return [f"{name} {value}" for name, value in metrics.items()]
            t = threading.Thread(target=export); t.start()
            metrics["errors"] = 0
            t.join()
        """,
        fixed="""
            metrics = {"requests": 1}
            lock = threading.Lock()
            def export():
                with lock:
                    return [f"{name} {value}" for name, value in metrics.items()]
            t = threading.Thread(target=export); t.start()
            with lock:
                metrics["errors"] = 0
            t.join()
        """,
        location="metrics",
        line='metrics["errors"] = 0',
    ),
    Case(
        "list iterated while another thread appends",
        racy="""
            pending = []
            def drain():
                for item in pending:
                    pass
            t = threading.Thread(target=drain); t.start()
            pending.append(1)
            t.join()
        """,
        fixed="""
            pending = []
            q = queue.Queue()
            def drain():
                q.get()
                for item in pending:
                    pass
            t = threading.Thread(target=drain); t.start()
            pending.append(1)
            q.put(None)
            t.join()
        """,
        location="pending",
        line="for item in pending:",
    ),
    Case(
        "a write after Thread.start() and before join()",
        racy="""
            config = Box()
            def serve():
                return config.v
            t = threading.Thread(target=serve); t.start()
            config.v = 8080
            t.join()
        """,
        fixed="""
            config = Box()
            def serve():
                return config.v
            config.v = 8080
            t = threading.Thread(target=serve); t.start()
            t.join()
        """,
        location="Box.v",
        line="config.v = 8080",
    ),
    Case(
        "a lazily created singleton",
        racy="""
            class Client:
                _instance = None
                @classmethod
                def get(cls):
                    if cls._instance is None:
                        cls._instance = cls()
                    return cls._instance
            threads = [threading.Thread(target=Client.get) for _ in range(2)]
            for t in threads: t.start()
            for t in threads: t.join()
        """,
        fixed="""
            class Client:
                _instance = None
                _lock = threading.Lock()
                @classmethod
                def get(cls):
                    with cls._lock:
                        if cls._instance is None:
                            cls._instance = cls()
                        return cls._instance
            threads = [threading.Thread(target=Client.get) for _ in range(2)]
            for t in threads: t.start()
            for t in threads: t.join()
        """,
        location="Client._instance",
        line="cls._instance = cls()",
    ),
    Case(
        "a cache filled after d.get(k) found nothing",
        racy="""
            cache = {}
            def lookup():
                if cache.get("token") is None:
                    cache["token"] = "fetched"
            threads = [threading.Thread(target=lookup) for _ in range(2)]
            for t in threads: t.start()
            for t in threads: t.join()
        """,
        fixed="""
            cache = {}
            lock = threading.Lock()
            def lookup():
                with lock:
                    if cache.get("token") is None:
                        cache["token"] = "fetched"
            threads = [threading.Thread(target=lookup) for _ in range(2)]
            for t in threads: t.start()
            for t in threads: t.join()
        """,
        location="cache[...]",
        line='if cache.get("token") is None:',
    ),
    Case(
        "a config reloaded with update() while a handler reads a key",
        racy="""
            settings = {"timeout": 30}
            def handle():
                return settings["timeout"]
            t = threading.Thread(target=handle); t.start()
            settings.update(timeout=5)
            t.join()
        """,
        fixed="""
            settings = {"timeout": 30}
            def handle():
                return settings["timeout"]
            settings.update(timeout=5)
            t = threading.Thread(target=handle); t.start()
            t.join()
        """,
        location="settings[...]",
        line='return settings["timeout"]',
    ),
    Case(
        "an LRU cache reordered while an evictor looks for its oldest entry",
        racy="""
            from collections import OrderedDict
            cache = OrderedDict(a=1, b=2)
            def evict():
                oldest = next(iter(cache))
                cache.pop(oldest, None)
            t = threading.Thread(target=evict); t.start()
            time.sleep(0.2)  # the evictor's look, then its pop, come first, unordered
            cache.move_to_end("b")
            t.join()
        """,
        fixed="""
            from collections import OrderedDict
            cache = OrderedDict(a=1, b=2)
            def evict():
                oldest = next(iter(cache))
                cache.pop(oldest, None)
            t = threading.Thread(target=evict); t.start()
            t.join()
            cache.move_to_end("b")
        """,
        location="cache",
        line='cache.move_to_end("b")',
    ),
    Case(
        "a defaultdict's look-up of a new key while another thread walks it",
        racy="""
            from collections import defaultdict
            hits = defaultdict(int, {"GET /": 3})
            def report():
                return [route for route in hits]
            t = threading.Thread(target=report); t.start()
            hot = hits["PUT /"] > 10
            t.join()
        """,
        fixed="""
            from collections import defaultdict
            hits = defaultdict(int, {"GET /": 3})
            def report():
                return [route for route in hits]
            t = threading.Thread(target=report); t.start()
            t.join()
            hot = hits["PUT /"] > 10
        """,
        location="hits",
        line='hot = hits["PUT /"] > 10',
    ),
    Case(
        "the busiest route found with max(d.items()) while a route is added",
        racy="""
            scores = {"a": 1}
            def busiest():
                return max(scores.items(), key=lambda item: item[1])
            t = threading.Thread(target=busiest); t.start()
            scores["b"] = 2
            t.join()
        """,
        fixed="""
            scores = {"a": 1}
            def busiest():
                return max(scores.items(), key=lambda item: item[1])
            t = threading.Thread(target=busiest); t.start()
            t.join()
            scores["b"] = 2
        """,
        location="scores",
        line='scores["b"] = 2',
    ),
    Case(
        "an attribute deleted with delattr() while another thread reads it",
        racy="""
            name = "v"
            def peek():
                return getattr(box, name, None)
            t = threading.Thread(target=peek); t.start()
            delattr(box, name)
            t.join()
        """,
        fixed="""
            name = "v"
            def peek():
                return getattr(box, name, None)
            t = threading.Thread(target=peek); t.start()
            t.join()
            delattr(box, name)
        """,
        location="Box.v",
        line="delattr(box, name)",
    ),
    Case(
        "a switch flipped through the class, read through an instance",
        racy="""
            class Server:
                accepting = True
                def handle(self):
                    return "served" if self.accepting else "refused"
            t = threading.Thread(target=Server().handle); t.start()
            Server.accepting = False
            t.join()
        """,
        fixed="""
            class Server:
                accepting = True
                def handle(self):
                    return "served" if self.accepting else "refused"
            Server.accepting = False
            t = threading.Thread(target=Server().handle); t.start()
            t.join()
        """,
        location="Server.accepting",
        line="Server.accepting = False",
    ),
    Case(
        "a class default read, then the instance given its own by another thread",
        racy="""
            class Job:
                done = False
            job = Job()
            t = threading.Thread(target=lambda: job.done); t.start()
            time.sleep(0.2)  # the read comes first, unordered
            job.done = True
            t.join()
        """,
        fixed="""
            class Job:
                done = False
            job = Job()
            t = threading.Thread(target=lambda: job.done); t.start()
            t.join()
            job.done = True
        """,
        location="Job.done",
        line="job.done = True",
    ),
    Case(
        "a job handed to a thread started with _thread.start_new_thread",
        racy="""
            import _thread
            finished = threading.Lock(); finished.acquire()
            def run():
                doubled = box.v * 2
                finished.release()
            _thread.start_new_thread(run, ())
            box.v = 21  # set after the start
            finished.acquire()
        """,
        fixed="""
            import _thread
            finished = threading.Lock(); finished.acquire()
            def run():
                doubled = box.v * 2
                finished.release()
            box.v = 21  # set before the start: the start orders it
            _thread.start_new_thread(run, ())
            finished.acquire()
        """,
        location="Box.v",
        line="box.v = 21  # set after the start",
    ),
    Case(
        "a list's append taken as a value, then called",
        racy="""
            lines = []
            record = lines.append  # a common micro-optimisation
            def work():
                record("worker")
            t = threading.Thread(target=work); t.start()
            seq = len(lines)
            t.join()
        """,
        fixed="""
            lines = []
            lock = threading.Lock()
            record = lines.append
            def work():
                with lock:
                    record("worker")
            t = threading.Thread(target=work); t.start()
            with lock:
                seq = len(lines)
            t.join()
        """,
        location="lines",
        line='record("worker")',
    ),
    Case(
        "a set's add made a partial, then called",
        racy="""
            import functools
            seen = set()
            mark = functools.partial(set.add, seen)
            def work():
                mark(7)
            t = threading.Thread(target=work); t.start()
            fresh = 7 not in seen
            t.join()
        """,
        fixed="""
            import functools
            seen = set()
            mark = functools.partial(set.add, seen)
            def work():
                mark(7)
            t = threading.Thread(target=work); t.start()
            t.join()
            fresh = 7 not in seen
        """,
        location="seen",
        line="mark(7)",
    ),
    Case(
        "a dict's get and store taken as values, on one key",
        racy="""
            settings = {"timeout": 1, "retries": 2}
            get, put = settings.get, settings.__setitem__
            def work():
                put("timeout", 3)
            t = threading.Thread(target=work); t.start()
            timeout = get("timeout")
            t.join()
        """,
        fixed="""
            settings = {"timeout": 1, "retries": 2}
            get, put = settings.get, settings.__setitem__
            def work():
                put("timeout", 3)
            t = threading.Thread(target=work); t.start()
            retries = get("retries")  # another key
            t.join()
        """,
        location="settings[...]",
        line='put("timeout", 3)',
    ),
    Case(
        "a dict merged in place with |=",
        racy="""
            cache = {"a": 1}
            def work(merged=cache):
                merged |= {"b": 2}
            t = threading.Thread(target=work); t.start()
            seen = len(cache)
            t.join()
        """,
        fixed="""
            cache = {"a": 1}
            def work(merged=cache):
                merged |= {"b": 2}
            t = threading.Thread(target=work); t.start()
            t.join()
            seen = len(cache)
        """,
        location="cache",
        line='merged |= {"b": 2}',
    ),
    Case(
        "a heap pushed onto",
        racy="""
            import heapq
            due = [3]
            def work():
                heapq.heappush(due, 1)
            t = threading.Thread(target=work); t.start()
            first = len(due)
            t.join()
        """,
        fixed="""
            import heapq
            due = [3]
            lock = threading.Lock()
            def work():
                with lock:
                    heapq.heappush(due, 1)
            t = threading.Thread(target=work); t.start()
            with lock:
                first = len(due)
            t.join()
        """,
        location="due",
        line="heapq.heappush(due, 1)",
    ),
    Case(
        "a list attribute named like a method, iterated while appended to",
        racy="""
            class Batch:
                def __init__(self):
                    self.items = []
            batch = Batch()
            def work():
                batch.items.append(1)
            t = threading.Thread(target=work); t.start()
            total = sum(x for x in batch.items)
            t.join()
        """,
        fixed="""
            class Batch:
                def __init__(self):
                    self.items = []
            batch = Batch()
            def work():
                batch.items.append(1)
            t = threading.Thread(target=work); t.start()
            t.join()
            total = sum(x for x in batch.items)
        """,
        location="batch.items",
        line="batch.items.append(1)",
    ),
    Case(
        "a dict subclass's own item methods over its storage",
        racy="""
            class Headers(dict):
                def __getitem__(self, key):
                    return super().__getitem__(key.lower())
                def __setitem__(self, key, value):
                    super().__setitem__(key.lower(), value)
                def __delitem__(self, key):
                    super().__delitem__(key.lower())
            headers = Headers()
            headers["Token"] = "old"
            def work():
                headers["Token"] = "new"
            t = threading.Thread(target=work); t.start()
            seen = headers["Token"]
            t.join()
        """,
        fixed="""
            class Headers(dict):
                def __getitem__(self, key):
                    return super().__getitem__(key.lower())
                def __setitem__(self, key, value):
                    super().__setitem__(key.lower(), value)
                def __delitem__(self, key):
                    super().__delitem__(key.lower())
            headers = Headers()
            headers["Token"] = "old"
            def work():
                headers["Token"] = "new"
            t = threading.Thread(target=work); t.start()
            t.join()
            seen = headers["Token"]
        """,
        location="headers[...]",
        line='headers["Token"] = "new"',
    ),
    Case(
        "a dict keyed by values made afresh for each look-up",
        racy="""
            class Endpoint:  # one database: every Endpoint is the same key
                def __eq__(self, other):
                    return isinstance(other, Endpoint)
                def __hash__(self):
                    return 5432
            pool = {}
            def work():
                time.sleep(0.05)  # the look-up's key object is long gone
                pool[Endpoint()] = "conn"
            t = threading.Thread(target=work); t.start()
            conn = pool.get(Endpoint())
            t.join()
        """,
        fixed="""
            class Endpoint:  # one database: every Endpoint is the same key
                def __eq__(self, other):
                    return isinstance(other, Endpoint)
                def __hash__(self):
                    return 5432
            pool = {}
            def work():
                pool[Endpoint()] = "conn"
            t = threading.Thread(target=work); t.start()
            t.join()
            conn = pool.get(Endpoint())
        """,
        location="pool[...]",
        line='pool[Endpoint()] = "conn"',
    ),
    Case(
        "a loop's variable read by each thread it starts (late binding)",
        racy="""
            def serve(jobs):
                started = []
                for job in jobs:
                    started.append(threading.Thread(target=lambda: print(job)))
                    started[-1].start()
                for thread in started:
                    thread.join()
            serve(["a", "b"])
        """,
        fixed="""
            def serve(jobs):
                started = []
                for job in jobs:
                    started.append(threading.Thread(target=lambda job=job: print(job)))
                    started[-1].start()
                for thread in started:
                    thread.join()
            serve(["a", "b"])
        """,
        location="nonlocal job",
        line="for job in jobs:",
    ),
    Case(
        "a variable a generator expression reads, consumed by another thread",
        racy="""
            def export(rows):
                sep = ","
                lines = (sep.join(row) for row in rows)
                t = threading.Thread(target=list, args=(lines,)); t.start()
                sep = ";"
                t.join()
            export([("a", "b")])
        """,
        fixed="""
            def export(rows):
                sep = ","
                lines = (sep.join(row) for row in rows)
                t = threading.Thread(target=list, args=(lines,)); t.start()
                t.join()
                sep = ";"
            export([("a", "b")])
        """,
        location="nonlocal sep",
        line='sep = ";"',
    ),
    Case(
        "a counter in rules compiled with flags of their own",
        racy="""
            rules = {}
            text = "count = 0\\ndef bump():\\n    global count\\n    count += 1\\n"
            exec(compile(text, "<rules>", "exec", dont_inherit=True), rules)
            t = threading.Thread(target=rules["bump"]); t.start()
            rules["bump"]()
            t.join()
        """,
        fixed="""
            rules = {}
            text = "count = 0\\ndef bump():\\n    global count\\n    count += 1\\n"
            exec(compile(text, "<rules>", "exec", dont_inherit=True), rules)
            t = threading.Thread(target=rules["bump"]); t.start()
            t.join()
            rules["bump"]()
        """,
        location="global count",
        line="",
    ),
    Case(
        "a list's size read after the thread's own append",
        racy="""
            buf = []
            def work():
                time.sleep(0.05)  # the other append comes first, unordered
                buf.append(1)
                full = len(buf) >= 2
            t = threading.Thread(target=work); t.start()
            buf.append(2)
            t.join()
        """,
        fixed="""
            buf = []
            def work():
                time.sleep(0.05)
                buf.append(1)
                full = len(buf) >= 2
            buf.append(2)
            t = threading.Thread(target=work); t.start()
            t.join()
        """,
        location="buf",
        line="full = len(buf) >= 2",
    ),
    *(
        Case(
            f"a global bound by {how}",
            racy=f"""
                import contextlib
                current = None
                def work():
                    global current
                    {binding}
                t = threading.Thread(target=work); t.start()
                seen = current
                t.join()
            """,
            fixed=f"""
                import contextlib
                current = None
                def work():
                    global current
                    {binding}
                t = threading.Thread(target=work); t.start()
                t.join()
                seen = current
            """,
            location="global current",
            line=binding,
        )
        for how, binding in [
            ("a loop's target", 'for current in ("a.db",): pass'),
            ("an assignment expression", 'print(current := "a.db")'),
            ("with ... as", "with contextlib.nullcontext(1) as current: pass"),
            ("an import", "import json as current"),
            ("a def", "def current(): pass"),
            ("a class", "class current: pass"),
            # Changed with the module's others at once: each name changed is written.
            ("globals().update() of a dict", 'globals().update({"current": "b.db"})'),
            ("globals().update() of keywords", 'globals().update(current="b.db")'),
        ]
    ),
    *(
        Case(
            f"an attribute stored by a __setattr__ that {how}",
            racy=VALIDATING_RECORD.format(store=store) + "    seen = job.status\n    t.join()\n",
            fixed=VALIDATING_RECORD.format(store=store) + "    t.join()\n    seen = job.status\n",
            # Its own store: the class's __setattr__ only checks before it.
            location="Record.status",
            line="seen = job.status",
        )
        for how, store in [
            ("calls super()'s", "super().__setattr__(name, value)"),
            ("calls object's", "object.__setattr__(self, name, value)"),
            ("writes __dict__", "self.__dict__[name] = value"),
        ]
    ),
    Case(
        "an attribute that is a dict's item (__getattr__ = dict.__getitem__)",
        racy=ITEMS_AS_ATTRIBUTES + "    seen = settings.mode\n    t.join()\n",
        fixed=ITEMS_AS_ATTRIBUTES + "    t.join()\n    seen = settings.mode\n",
        location="Settings.mode",
        line='settings.mode = "b"',
    ),
    *(
        Case(
            f"a value kept by {how}",
            racy=f"""
                import contextlib
                lock = contextlib.nullcontext()
                {keeper}
                breaker = Breaker()
                t = threading.Thread(target=setattr, args=(breaker, "state", "open")); t.start()
                seen = breaker.state
                t.join()
            """,
            fixed=f"""
                lock = threading.Lock()
                {keeper}
                breaker = Breaker()
                t = threading.Thread(target=setattr, args=(breaker, "state", "open")); t.start()
                seen = breaker.state
                t.join()
            """,
            # The keeper's own accesses, not `state`: under the lock, nothing races.
            location=location,
            line=line,
        )
        for how, keeper, location, line in [
            (
                "a property that takes a lock",
                """
                class Breaker:
                    _state = "closed"
                    @property
                    def state(self):
                        with lock:
                            return self._state
                    @state.setter
                    def state(self, value):
                        with lock:
                            self._state = value
                """,
                "Breaker._state",
                "self._state = value",
            ),
            (
                "__setattr__ and __getattr__ that take a lock",
                """
                class Breaker:
                    __slots__ = ("values",)
                    def __init__(self):
                        object.__setattr__(self, "values", {})
                    def __setattr__(self, name, value):
                        with lock:
                            self.values[name] = value
                    def __getattr__(self, name):
                        with lock:
                            return self.values.get(name, "closed")
                """,
                "self.values[...]",
                "self.values[name] = value",
            ),
        ]
    ),
]


@pytest.mark.parametrize("case", ACCESS_KINDS, ids=lambda c: c.name)
def test_access_kind_racy_is_reported_once_by_name(tmp_path: Path, case: Case) -> None:
    assert_one_race(races_in(tmp_path, case.racy), case.location, case.line)


@pytest.mark.parametrize("case", ACCESS_KINDS, ids=lambda c: c.name)
def test_access_kind_fixed_twin_is_silent(tmp_path: Path, case: Case) -> None:
    assert races_in(tmp_path, case.fixed) == []


def test_an_instance_attribute_shadowing_its_class_default_is_its_own(tmp_path: Path) -> None:
    found = races_in(
        tmp_path,
        """
        class Client:
            timeout = 30
            def configured(self):
                return self.timeout
        mine, theirs = Client(), Client()
        mine.configured()  # the class default, read through this instance
        t = threading.Thread(target=theirs.configured); t.start()
        mine.timeout = 5  # now its own: not the default the other thread reads
        mine.configured()
        t.join()
        """,
    )
    assert found == [], format_report(found)


def test_a_module_imported_lazily_by_one_thread_is_not_raced_by_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its variables are written by its import in one thread, read after another
    # thread's import found it done: the import lock orders them.
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "rates", raising=False)  # and again after
    (tmp_path / "rates.py").write_text(
        "import logging\nlog = logging.getLogger(__name__)\nRATES = {'a': 1}\n"
        "def rate(k):\n    log.debug('rate %s', k)\n    return RATES.get(k, 0)\n"
    )
    found = races_in(
        tmp_path,
        """
        import importlib
        def first():
            import rates
            rates.rate("a")
        def second():
            time.sleep(0.2)
            from rates import rate
            rate("b")
            importlib.import_module("rates").rate("c")
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads: t.start()
        for t in threads: t.join()
        import rates
        assert rates.RATES
        """,
    )
    assert found == [], format_report(found)
    assert "rates" in sys.modules  # it ran: the threads imported it


def test_a_dicts_keyed_pop_does_not_race_another_keys_read(tmp_path: Path) -> None:
    # pop(k) and setdefault(k) change that key, as del d[k] does: they wrote
    # every key at once, and raced a read of another key.
    found = races_in(
        tmp_path,
        """
        sessions = {"alice": 1, "bob": 2}
        def expire():
            sessions.pop("alice", None)
            sessions.setdefault("carol", 3)
        t = threading.Thread(target=expire); t.start()
        bob = sessions["bob"]
        t.join()
        """,
    )
    assert found == [], format_report(found)


def test_a_sum_after_a_threads_own_key_store_races_the_others_store(tmp_path: Path) -> None:
    # The store wrote the dict as a whole (atomic: no other store races it);
    # the same thread's sum then read it, and was skipped as "already seen".
    found = races_in(
        tmp_path,
        """
        counts = {"a": 0, "b": 0}
        def worker(name):
            counts[name] += 1
            total = sum(counts.values())  # BUG: unlocked, beside the other's store
        t = threading.Thread(target=worker, args=("b",)); t.start()
        worker("a")
        t.join()
        """,
    )
    # Each sum races the other thread's store: one race, maybe seen both ways.
    assert len(group(found)) == 1, format_report(found)


def test_the_locked_sum_after_a_key_store_is_clean(tmp_path: Path) -> None:
    found = races_in(
        tmp_path,
        """
        counts = {"a": 0, "b": 0}
        lock = threading.Lock()
        def worker(name):
            with lock:
                counts[name] += 1
                total = sum(counts.values())
        t = threading.Thread(target=worker, args=("b",)); t.start()
        worker("a")
        t.join()
        """,
    )
    assert found == [], format_report(found)


def test_two_keyed_calls_of_a_key_never_race_each_other(tmp_path: Path) -> None:
    # Each is one call CPython makes atomic: two setdefaults of a key agree, two
    # pops leave it gone. Both were reported as write/write races.
    found = races_in(
        tmp_path,
        """
        sessions = {}
        def touch():
            sessions.setdefault("user1", []).append(1)
            sessions.pop("gone", None)
        t = threading.Thread(target=touch); t.start()
        touch()
        t.join()
        """,
    )
    assert found == [], format_report(found)


def test_two_counter_updates_race_each_other(tmp_path: Path) -> None:
    # Counter.update (and subtract) is Python: a read, then a write, per key,
    # and two threads at once lose counts. It was taken for one of dict's
    # atomic calls: no race, and explore "proved" the program.
    found = races_in(
        tmp_path,
        """
        import collections
        stats = collections.Counter()
        def handle():
            stats.update({"requests": 1})  # BUG: two at once lose a count
        t = threading.Thread(target=handle); t.start()
        handle()
        t.join()
        """,
    )
    line = 'stats.update({"requests": 1})  # BUG: two at once lose a count'
    assert_one_race(found, "stats", line)


def test_counter_updates_under_one_lock_and_dict_updates_do_not_race(tmp_path: Path) -> None:
    found = races_in(
        tmp_path,
        """
        import collections
        stats = collections.Counter()
        settings = {}
        lock = threading.Lock()
        def handle():
            with lock:
                stats.update({"requests": 1})
            settings.update({"timeout": 3})  # dict's own: one atomic call
        t = threading.Thread(target=handle); t.start()
        handle()
        t.join()
        """,
    )
    assert found == [], format_report(found)


def test_a_key_looked_at_then_popped_races_another_pop(tmp_path: Path) -> None:
    found = races_in(
        tmp_path,
        """
        sessions = {"gone": 1}
        def expire():
            if "gone" in sessions:  # BUG: looked at, then popped, unlocked
                sessions.pop("gone")
        t = threading.Thread(target=expire); t.start()
        expire()
        t.join()
        """,
    )
    assert len(found) == 1, format_report(found)


def test_a_proxys_own_dict_property_is_not_called_by_the_detector(tmp_path: Path) -> None:
    # Looking for an instance's own attributes went through a class's __dict__
    # property: the program's code, rewritten, which looked again (RecursionError).
    found = races_in(
        tmp_path,
        """
        class Proxy:
            label = "L"
            def __init__(self, target):
                object.__setattr__(self, "_target", target)
            @property
            def __dict__(self):
                return self._target.__dict__
        proxy = Proxy(box)
        assert proxy.label == "L"
        """,
    )
    assert found == []


def test_start_new_thread_still_refuses_what_it_refuses(tmp_path: Path) -> None:
    found = races_in(
        tmp_path,
        """
        import _thread
        for bad in ((None, ()), (print, []), (print, (), [])):
            try:
                _thread.start_new_thread(*bad)
            except TypeError:
                continue
            raise AssertionError(f"start_new_thread{bad!r} was accepted")
        """,
    )
    assert found == []


def test_a_function_whose_variables_no_thread_shares_keeps_its_locals(tmp_path: Path) -> None:
    # A comprehension reading a total the loop before it updated made the total
    # a closure location: locals() then held threadcheck's scope object.
    found = races_in(
        tmp_path,
        """
        import json
        def summary(values):
            total = 0
            for value in values:
                total += value
            shares = [value / total for value in values]
            return json.dumps({k: v for k, v in locals().items() if k != "values"})
        assert sorted(json.loads(summary([1, 3]))) == ["shares", "total", "value"]
        """,
    )
    assert found == []


def test_a_closure_variables_scope_is_not_among_its_functions_names(tmp_path: Path) -> None:
    # A variable a nested function declares nonlocal is held by a scope object
    # in a hidden local: Endpoint(**locals()) got it as an argument.
    found = races_in(
        tmp_path,
        """
        def endpoint(host, port):
            attempts = 0
            def bump():
                nonlocal attempts
                attempts += 1
            bump()
            assert sorted(vars()) == sorted(dir()) == ["attempts", "bump", "host", "port"]
            del bump, attempts
            return dict(**locals())
        assert endpoint("db", 5432) == {"host": "db", "port": 5432}
        """,
    )
    assert found == []


def test_text_run_by_exec_behaves_as_written(tmp_path: Path) -> None:
    # Rewritten, it ran in threadcheck's own namespace when given none, bound
    # our helpers into the namespace given (a plugin loader listed them), and
    # failed in a sandbox or with separate locals (NameError, ImportError).
    found = races_in(
        tmp_path,
        """
        exec("LOADED = 5")
        assert LOADED == 5
        def check(limit):
            exec("assert limit == 3")  # the caller's locals
        check(3)
        plugin = {}
        exec("def handle(x):\\n    return x + 1\\n", plugin)
        assert sorted(k for k in plugin if k != "__builtins__") == ["handle"]
        assert plugin["handle"](1) == 2
        rules = {}
        exec("def too_many(n):\\n    return n > 3\\n", {"__builtins__": {}}, rules)
        assert rules["too_many"](5)
        routes = {}
        exec("def health(path):\\n    return path.upper()\\n", {}, routes)
        assert routes["health"]("/health") == "/HEALTH"
        code = compile("def size():\\n    return len('ab')\\n", "<rules>", "exec")
        sandbox = {"__builtins__": {"len": len}}
        exec(code, sandbox)
        assert sandbox["size"]() == 2
        """,
    )
    assert found == []


def test_text_run_by_exec_or_eval_keeps_python_s_rules(tmp_path: Path) -> None:
    # A compiled rule eval'd in a sandbox, locals with __missing__, the caller's
    # `from __future__ import annotations`, and tracebacks that start in the text.
    program = tmp_path / "rules_loader.py"
    program.write_text(
        textwrap.dedent(
            """
            from __future__ import annotations
            import collections, traceback
            code = compile("total = price * 2", "<rules>", "exec")
            sandbox = {"__builtins__": {}, "price": 3}
            eval(code, sandbox)
            assert sandbox["total"] == 6
            names = collections.defaultdict(lambda: "bob")
            exec("greeting = 'hello ' + name", {}, names)
            assert names["greeting"] == "hello bob"
            exec("def handle(request: Request) -> Reply: return 'ok'", {})  # not evaluated
            try:
                exec(compile("x = 1\\nboom = 1 / 0", "<rules>", "exec"), {})
            except ZeroDivisionError as error:
                frames = traceback.extract_tb(error.__traceback__)
                assert [frame.filename for frame in frames][-1:] == ["<rules>"]
                assert "_texts" not in "".join(traceback.format_tb(error.__traceback__))
            """
        )
    )
    found = races_in(tmp_path, f"exec(open({str(program)!r}).read())")
    assert found == []


def test_a_container_method_taken_as_a_value_copies_and_pickles_as_the_method(
    tmp_path: Path,
) -> None:
    # Wrapped, a deep copy of an object keeping `self.emit = self.lines.append`
    # recursed for ever; isinstance and inspect saw the wrapper.
    found = races_in(
        tmp_path,
        """
        import copy, inspect, pickle, types
        class Collector:
            def __init__(self):
                self.lines = []
                self.emit = self.lines.append
        original = Collector()
        snapshot = copy.deepcopy(original)
        snapshot.emit("GET /")  # a builtin method is copied as itself
        assert (len(original.lines), len(snapshot.lines)) == (1, 0)
        assert copy.copy(original.emit) == original.emit
        again = pickle.loads(pickle.dumps(original.emit))
        assert again.__name__ == "append"
        assert isinstance(original.emit, types.BuiltinMethodType)
        assert inspect.isbuiltin(original.emit)
        assert original.emit.__doc__ == [].append.__doc__
        assert original.emit.__reduce__() == (getattr, (original.lines, "append"))
        import weakref
        listeners = weakref.WeakSet([original.emit])  # an event bus's listeners
        assert len(listeners) == 1
        """,
    )
    assert found == []


def test_a_setter_taken_as_a_value_behaves_as_the_setter(tmp_path: Path) -> None:
    # Wrapped to record its writes: pickled, it was looked up in threadcheck.
    found = races_in(
        tmp_path,
        """
        import copy, functools, pickle, types
        set_v = functools.partial(setattr, box, "v")
        set_v(1)
        assert pickle.loads(pickle.dumps(setattr)) == setattr
        assert pickle.loads(pickle.dumps(set_v)).args[1] == "v"
        assert copy.deepcopy(box.__setattr__) == box.__setattr__
        assert isinstance(setattr, types.BuiltinFunctionType)
        assert repr(setattr) == "<built-in function setattr>"
        bound = box.__setattr__
        bound("w", 2)
        assert (box.v, box.w) == (1, 2)
        """,
    )
    assert found == []


def test_a_warning_from_a_mapping_s_getitem_names_the_user_s_line(tmp_path: Path) -> None:
    # The subscript ran in threadcheck's helper: stacklevel=2 named _access.py.
    found = races_in(
        tmp_path,
        """
        import collections.abc, sys, warnings
        class Settings(collections.abc.Mapping):
            def __init__(self, values):
                self._values = values
            def __getitem__(self, key):
                if key == "timeout":
                    warnings.warn("use read_timeout", DeprecationWarning, stacklevel=2)
                    key = "read_timeout"
                return self._values[key]
            def __iter__(self):
                return iter(self._values)
            def __len__(self):
                return len(self._values)
        settings = Settings({"read_timeout": 5})
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            line = sys._getframe().f_lineno + 1
            assert settings["timeout"] == 5  # the caller's line
        assert (caught[0].filename, caught[0].lineno) == (__file__, line), caught[0]
        """,
    )
    assert found == []


def test_a_key_deleted_from_a_watched_dict_is_freed(tmp_path: Path) -> None:
    # Each key's location held the key: a connection deleted from a registry
    # was never freed while the registry lived, and its finalizer never ran.
    found = races_in(
        tmp_path,
        """
        import gc, threading, weakref
        class Connection:
            pass
        registry = {}
        closed = []
        def connect():
            conn = Connection()
            weakref.finalize(conn, closed.append, "closed")
            registry[conn] = "open"
            assert registry[conn] == "open"
        worker = threading.Thread(target=connect); worker.start(); worker.join()
        for conn in list(registry):
            del registry[conn]
        del conn
        gc.collect()
        assert closed == ["closed"], closed
        """,
    )
    assert found == []


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 re-raises the traceback it caught")
def test_a_failing_subscript_s_traceback_ends_at_the_users_line(tmp_path: Path) -> None:
    # It ended in threadcheck's helper (`return obj[key]`): pytest showed that
    # as the failing line, traceback.extract_tb(...)[-1] named it.
    found = races_in(
        tmp_path,
        """
        import traceback
        settings = {"db": {"host": "localhost"}}
        ports = [8080]
        def port():
            return settings["db"]["port"]
        def backup():
            return ports[1]
        def forget():
            del settings["cache"]
        def pop():
            return settings.pop("cache")
        for operation in (port, backup, forget, pop):
            try:
                operation()
            except LookupError as error:
                last = traceback.extract_tb(error.__traceback__)[-1]
                assert (last.filename, last.name) == (__file__, operation.__name__), last
            else:
                raise AssertionError(f"{operation.__name__} did not raise")
        """,
    )
    assert found == []


def test_builtin_container_methods_are_not_races_among_themselves(tmp_path: Path) -> None:
    found = races_in(
        tmp_path,
        """
        log = []
        seen = set()
        def record(n):
            log.append(n)
            seen.add(n)
        threads = [threading.Thread(target=record, args=(n,)) for n in range(3)]
        for t in threads: t.start()
        log.append(-1); seen.discard(0)
        for t in threads: t.join()
        """,
    )
    assert found == []


def test_objects_private_to_each_thread_are_silent(tmp_path: Path) -> None:
    found = races_in(
        tmp_path,
        """
        def work():
            mine = Box()
            for _ in range(100):
                mine.v += 1
            counts = {}
            counts["x"] = mine.v
            return counts
        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads: t.start()
        for t in threads: t.join()
        """,
    )
    assert found == []


def test_a_threading_local_is_each_threads_own(tmp_path: Path) -> None:
    found = races_in(
        tmp_path,
        """
        context = threading.local()
        def work(n):
            context.request = n
            context.request += 1
        threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
        for t in threads: t.start()
        context.request = -1
        for t in threads: t.join()
        """,
    )
    assert found == []


def test_the_detector_keeps_no_frame_or_container_alive(tmp_path: Path) -> None:
    """Finalizers run when the program lets go, as without the detector: no
    caller's frame (with its locals) is kept for the report, and a dict the
    program subscripted goes at the next collection of the older generations."""
    races_in(
        tmp_path,
        """
        import gc
        finalized = []

        class Resource:
            def __init__(self):
                self.open = True
            def __del__(self):
                finalized.append(type(self).__name__)

        def close(resource):
            resource.open = False

        def use():
            resource = Resource()
            close(resource)

        use()
        assert finalized == ["Resource"], finalized

        def cache():
            entries = {}
            entries["k"] = Resource()

        cache()
        gc.collect()
        assert finalized == ["Resource", "Resource"], finalized
        """,
    )


def test_a_tuple_read_is_not_held_past_the_programs_last_reference(tmp_path: Path) -> None:
    # A tuple read was held by the detector (it cannot be referenced weakly):
    # in a cycle, for good, and with it what it holds (foolscap's test of its
    # weak cache of references failed under --races).
    races_in(
        tmp_path,
        """
        import gc, weakref

        class Reference:
            pass

        class Node:
            pass

        def describe(obj):
            return f"{obj[0]}: {len(obj)} {[type(x).__name__ for x in obj]}"

        cache = weakref.WeakValueDictionary()
        ref = Reference()
        cache["r1"] = ref
        node = Node()
        obj = ("graph tangly", ref, node)
        node.back = obj  # a cycle: only the collector frees it
        describe(obj)
        del ref, obj, node
        gc.collect()
        assert "r1" not in cache, "the reference was kept alive"
        """,
    )


def test_a_test_kept_in_a_cycle_through_a_held_container_is_freed(tmp_path: Path) -> None:
    # Buildbot's debug wrapper iterates its own frame's f_locals (a dict that
    # holds the frame, which holds it): held by the detector, the cycle, the
    # test case in its locals and its database engine lived for the whole run
    # (416 engines, 494 MB against 144 MB for 453 tests). So did a list of
    # children, each holding its parent.
    races_in(
        tmp_path,
        """
        import gc, inspect, weakref

        class Engine:
            pass

        class Case:
            def __init__(self):
                self.engine = Engine()
                self.children = []

        class Child:
            def __init__(self, parent):
                self.parent = parent

        def timed(fn):
            def wrap(*args):
                frame = inspect.currentframe()
                names = frame.f_locals
                for name in names:
                    pass
                return fn(*args)
            return wrap

        @timed
        def query(case):
            case.children.append(Child(case))
            return len(case.children)

        engines = []
        for _ in range(4):  # a test run
            case = Case()
            engines.append(weakref.ref(case.engine))
            query(case)
            del case
            gc.collect()
        alive = [engine for engine in engines[:-2] if engine() is not None]
        assert not alive, f"{len(alive)} of the first tests' engines alive"
        """,
    )


def test_a_collection_in_the_cycle_sweeps_window_loses_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CI, 3.10, four pool workers: another thread's collection, between the
    # sweep letting go of its holds and its own collection, freed them with
    # what they held, and nothing could be given back (StopIteration, raised in
    # the program). Here that collection comes as the sweep reads gc's flags.
    from threadcheck._races import _shadow

    kept = {"kept": True}
    cycle: dict[str, object] = {}
    cycle["self"] = cycle
    try:
        for container in (kept, cycle):
            _shadow._shadow(container)  # held: a dict cannot be referenced weakly
        keys = [id(kept), id(cycle)]
        del cycle, container
        get_debug = gc.get_debug
        monkeypatch.setattr(gc, "get_debug", lambda: (gc.collect(), get_debug())[1])
        assert _shadow._died(keys) == {keys[1]}
        assert _shadow.objects[keys[0]].ref is kept
    finally:
        _shadow.reset()


def test_a_frames_or_a_named_tuples_fields_are_no_locations() -> None:
    # Neither can be referenced weakly: tracked, each would be held (a frame
    # with its locals: Buildbot's debug wrapper read its own frame's f_locals),
    # for no race (the program cannot write either).
    point_type = collections.namedtuple("point_type", "x y")
    point_type.registry = []  # type: ignore[attr-defined]  # a class attribute may be written
    frame = sys._getframe()
    assert _access._kept_by_code(frame, "f_locals", False)
    assert _access._kept_by_code(frame.f_code, "co_name", False)
    assert _access._kept_by_code(point_type(1, 2), "x", False)
    assert not _access._kept_by_code(point_type(1, 2), "registry", False)


def test_a_module_run_afresh_for_each_test_is_freed(tmp_path: Path) -> None:
    # A migration tool (alembic) loads its scripts afresh for each test, never
    # into sys.modules: their globals, held, kept every module, and what it held.
    script = tmp_path / "migration_042.py"
    script.write_text("STEPS = []\n\ndef upgrade(engine):\n    STEPS.append(engine)\n")
    races_in(
        tmp_path,
        f"""
        import gc, importlib.util, weakref

        class Engine:
            pass

        def migrate(engine):
            spec = importlib.util.spec_from_file_location("migration_042", {str(script)!r})
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            module.upgrade(engine)
            return len(module.STEPS)

        engines = []
        for _ in range(4):
            engine = Engine()
            engines.append(weakref.ref(engine))
            migrate(engine)
            del engine
            gc.collect()
        alive = [engine for engine in engines[:-1] if engine() is not None]
        assert not alive, f"{{len(alive)}} of the first tests' engines alive"
        """,
    )


def test_a_race_on_a_global_of_a_module_outside_sys_modules_is_found(tmp_path: Path) -> None:
    # Its globals are remembered weakly, through its function: still while it lives.
    script = tmp_path / "plugin_counter.py"
    script.write_text("hits = 0\n\ndef hit():\n    global hits\n    hits += 1\n")
    found = races_in(
        tmp_path,
        f"""
        import importlib.util

        spec = importlib.util.spec_from_file_location("plugin_counter", {str(script)!r})
        plugin = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(plugin)
        threads = [threading.Thread(target=plugin.hit) for _ in range(2)]
        for t in threads: t.start()
        for t in threads: t.join()
        """,
    )
    assert_one_race(found, "global hits", "hits += 1")


def test_containers_dropped_by_several_pool_workers_at_once_are_let_go(tmp_path: Path) -> None:
    # A sweep in one worker replaced the whole list of held containers, losing
    # what the others added meanwhile: held for good (26,070 of 400,000 records).
    races_in(
        tmp_path,
        """
        import gc
        from concurrent.futures import ThreadPoolExecutor

        def parse(chunk):
            count = 0
            for i in chunk:
                record = {"id": i, "tags": [i]}
                count += len(record["tags"])
            return count

        with ThreadPoolExecutor(4) as pool:
            chunks = [range(i, i + 1000) for i in range(0, 200_000, 1000)]
            assert sum(pool.map(parse, chunks)) == 200_000
        gc.collect()
        alive = sum(1 for o in gc.get_objects() if type(o) is dict and "tags" in o)
        assert alive < 2_000, f"{alive} records still held"
        """,
    )


@pytest.mark.skipif(sys.version_info < (3, 11), reason="3.11's resource tracker reads it")
def test_a_tracked_rlock_tells_its_recursion_count(tmp_path: Path) -> None:
    # multiprocessing's spawn context (ProcessPoolExecutor(mp_context=...))
    # reads its tracker's RLock._recursion_count(): an AttributeError under --races.
    body = """
    lock = threading.RLock()
    with lock, lock:
        assert lock._recursion_count() == 2
    assert lock._recursion_count() == 0
    """
    assert races_in(tmp_path, body) == []


def test_a_generic_simple_queue_annotation_still_works(tmp_path: Path) -> None:
    assert races_in(tmp_path, "jobs: queue.SimpleQueue[int] = queue.SimpleQueue()\n") == []


def _edge(writer: str, racy_main: str, fixed_main: str, setup: str = "") -> tuple[str, str]:
    """A worker writes ``box.v`` then synchronises; main reads it before
    (racy) or after (fixed) its side of the same synchronisation."""

    def program(main: str) -> str:
        worker = textwrap.indent(textwrap.dedent(writer), "    ")
        return f"{textwrap.dedent(setup)}\ndef work():\n{worker}\n{textwrap.dedent(main)}"

    return program(racy_main), program(fixed_main)


EDGES = {
    "Lock": _edge(
        "with lock:\n    box.v += 1",
        "t = threading.Thread(target=work); t.start()\nbox.v += 1\nt.join()",
        "t = threading.Thread(target=work); t.start()\nwith lock:\n    box.v += 1\nt.join()",
        setup="lock = threading.Lock()",
    ),
    "RLock": _edge(
        "with lock:\n    with lock:\n        box.v += 1",
        "t = threading.Thread(target=work); t.start()\nbox.v += 1\nt.join()",
        "t = threading.Thread(target=work); t.start()\nwith lock:\n    box.v += 1\nt.join()",
        setup="lock = threading.RLock()",
    ),
    "Condition": _edge(
        "with cond:\n    box.v = 1\n    done.append(1)\n    cond.notify_all()",
        "t = threading.Thread(target=work); t.start()\nprint(box.v)\nt.join()",
        "t = threading.Thread(target=work); t.start()\n"
        "with cond:\n    cond.wait_for(lambda: len(done) > 0)\nprint(box.v)\nt.join()",
        setup="cond = threading.Condition()\ndone = []",
    ),
    "Event": _edge(
        "box.v = 1\nready.set()",
        "t = threading.Thread(target=work); t.start()\nprint(box.v)\nready.wait()\nt.join()",
        "t = threading.Thread(target=work); t.start()\nready.wait()\nprint(box.v)\nt.join()",
        setup="ready = threading.Event()",
    ),
    "Semaphore": _edge(
        "box.v = 1\nsem.release()",
        "t = threading.Thread(target=work); t.start()\nprint(box.v)\nsem.acquire()\nt.join()",
        "t = threading.Thread(target=work); t.start()\nsem.acquire()\nprint(box.v)\nt.join()",
        setup="sem = threading.Semaphore(0)",
    ),
    "Barrier": _edge(
        "box.v = 1\nbarrier.wait()",
        "t = threading.Thread(target=work); t.start()\nprint(box.v)\nbarrier.wait()\nt.join()",
        "t = threading.Thread(target=work); t.start()\nbarrier.wait()\nprint(box.v)\nt.join()",
        setup="barrier = threading.Barrier(2)",
    ),
    "Queue": _edge(
        "box.v = 1\nq.put(None)",
        "t = threading.Thread(target=work); t.start()\nprint(box.v)\nq.get()\nt.join()",
        "t = threading.Thread(target=work); t.start()\nq.get()\nprint(box.v)\nt.join()",
        setup="q = queue.Queue()",
    ),
    "SimpleQueue": _edge(
        "box.v = 1\nq.put(None)",
        "t = threading.Thread(target=work); t.start()\nprint(box.v)\nq.get()\nt.join()",
        "t = threading.Thread(target=work); t.start()\nq.get()\nprint(box.v)\nt.join()",
        setup="q = queue.SimpleQueue()",
    ),
    "Thread.start": _edge(
        "print(box.v)",
        "t = threading.Thread(target=work); t.start()\nbox.v = 1\nt.join()",
        "box.v = 1\nt = threading.Thread(target=work); t.start()\nt.join()",
    ),
    "Thread.join": _edge(
        "box.v = 1",
        "t = threading.Thread(target=work); t.start()\nprint(box.v)\nt.join()",
        "t = threading.Thread(target=work); t.start()\nt.join()\nprint(box.v)",
    ),
    "ThreadPoolExecutor submit": _edge(
        "print(box.v)",
        "with ThreadPoolExecutor(1) as pool:\n    f = pool.submit(work)\n    box.v = 1\n"
        "    f.result()",
        "with ThreadPoolExecutor(1) as pool:\n    box.v = 1\n    pool.submit(work).result()",
    ),
    "Future.result": _edge(
        "box.v = 1",
        "with ThreadPoolExecutor(1) as pool:\n    f = pool.submit(work)\n    print(box.v)\n"
        "    f.result()",
        "with ThreadPoolExecutor(1) as pool:\n    pool.submit(work).result()\n    print(box.v)",
    ),
    "threading.Timer": _edge(
        "box.v = 1",
        "t = threading.Timer(0.01, work); t.start()\nprint(box.v)\nt.join()",
        "t = threading.Timer(0.01, work); t.start()\nt.join()\nprint(box.v)",
    ),
    # Polls: a reactor's LoopingCall checks instead of waiting (once reported
    # as races, though what they saw orders the accesses).
    "Event.is_set": _edge(
        "box.v = 1\nready.set()",
        "t = threading.Thread(target=work); t.start()\nprint(box.v)\n"
        "while not ready.is_set():\n    time.sleep(0.001)\nt.join()",
        "t = threading.Thread(target=work); t.start()\n"
        "while not ready.is_set():\n    time.sleep(0.001)\nprint(box.v)\nt.join()",
        setup="ready = threading.Event()",
    ),
    "Thread.is_alive": _edge(
        "box.v = 1",
        "t = threading.Thread(target=work); t.start()\nprint(box.v)\n"
        "while t.is_alive():\n    time.sleep(0.001)",
        "t = threading.Thread(target=work); t.start()\n"
        "while t.is_alive():\n    time.sleep(0.001)\nprint(box.v)",
    ),
    "asyncio call_soon_threadsafe": _edge(
        "box.v = 1\nloop.call_soon_threadsafe(show)",
        "t = threading.Thread(target=work); t.start()\nprint(box.v)\nloop.run_forever()\nt.join()",
        "t = threading.Thread(target=work); t.start()\nloop.run_forever()\nt.join()",
        setup="import asyncio\nloop = asyncio.new_event_loop()\n\n"
        "def show():\n    print(box.v)\n    loop.stop()\n",
    ),
}


@pytest.mark.parametrize("edge", EDGES)
def test_edge_missing_is_reported_once_by_name(tmp_path: Path, edge: str) -> None:
    racy, _ = EDGES[edge]
    assert_one_race(races_in(tmp_path, racy), "Box.v", "")


@pytest.mark.parametrize("edge", EDGES)
def test_edge_orders_the_accesses(tmp_path: Path, edge: str) -> None:
    _, fixed = EDGES[edge]
    assert races_in(tmp_path, fixed) == []


@pytest.mark.slow  # subprocesses
def test_a_race_inside_an_included_library_is_shown_at_its_lines(tmp_path: Path) -> None:
    """An installed package is watched when included, and its lines lead the
    report (they are not folded away as library frames)."""
    import subprocess
    import sys

    library = tmp_path / "site-packages" / "countlib"
    library.mkdir(parents=True)
    (library / "__init__.py").write_text(
        textwrap.dedent(
            """
            class Counter:
                def __init__(self):
                    self.n = 0

                def bump(self):
                    self.n += 1  # the library's own unlocked update
            """
        )
    )
    program = tmp_path / "program.py"
    program.write_text(
        textwrap.dedent(
            f"""
            import sys, threading
            sys.path.insert(0, {str(library.parent)!r})
            import countlib
            counter = countlib.Counter()
            worker = threading.Thread(target=counter.bump)
            worker.start()
            counter.bump()
            worker.join()
            """
        )
    )
    command = [sys.executable, "-m", "threadcheck", "run", "--races"]
    plain = subprocess.run([*command, str(program)], capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0, plain.stderr  # not watched: an installed package
    included = subprocess.run(
        [*command, "--include", str(library), str(program)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert included.returncode == 3, included.stderr
    assert "data race on Counter.n: update in thread" in included.stderr
    assert "countlib/__init__.py:7 in bump" in included.stderr


def test_a_decorated_function_is_rewritten_in_place(tmp_path: Path) -> None:
    # A function under a decorator that is a call (a pytest marker, an
    # lru_cache(maxsize=...)) kept its code: the rewritten one began a line
    # later, and an explored test's own body ran as written (a container's
    # method taken as a value in it was invisible; dpor "proved" the test).
    import importlib.util

    from threadcheck._races._inplace import rewrite_loaded

    (tmp_path / "marked.py").write_text(
        "import functools\n"
        "\n"
        "@functools.lru_cache(maxsize=None)\n"
        "def lookup(key):\n"
        "    return key.upper()\n"
    )
    spec = importlib.util.spec_from_file_location("marked", tmp_path / "marked.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = module.lookup.__wrapped__
    assert rewrite_loaded(module, [function]) >= 1
    assert any(name.startswith("__tc_") for name in function.__code__.co_names)


def test_a_user_file_loaded_by_hand_is_rewritten_while_the_hook_is_on(tmp_path: Path) -> None:
    # A runner loading a test file with spec_from_file_location (trial's
    # _importFromFile) ran it as written: its races were not looked for.
    import importlib.util

    path = tmp_path / "by_hand.py"
    path.write_text("VALUE = 1\n")
    _hook.install(lambda file: file == str(path))
    try:
        spec = importlib.util.spec_from_file_location("by_hand", path)
        other = importlib.util.spec_from_file_location("other", tmp_path / "other.py")
    finally:
        _hook.uninstall()
    assert spec is not None and isinstance(spec.loader, _hook.RewritingLoader)
    assert other is not None and not isinstance(other.loader, _hook.RewritingLoader)
    after = importlib.util.spec_from_file_location("by_hand", path)
    assert after is not None and not isinstance(after.loader, _hook.RewritingLoader)


def test_an_item_bumped_in_two_threads_is_a_lost_update(tmp_path: Path) -> None:
    # Reported as "read ... and write", with the generic fix, where an
    # attribute's or a global's `+= 1` is "update ... and update".
    found = races_in(
        tmp_path,
        """
        hits = {"/": 0}
        def bump():
            hits["/"] += 1
        t = threading.Thread(target=bump); t.start()
        bump()
        t.join()
        """,
    )
    report = format_report(found)
    assert len(group(found)) == 1, report
    assert "data race on hits[...]: update in thread" in report
    assert "and update in thread" in report
    assert "an update of hits[...] reads, then writes: two at once lose one" in report


def test_an_invalidation_racing_a_read_is_named_by_what_it_touches(tmp_path: Path) -> None:
    # Synapse's SYN-369: the cache was invalidated in the database thread while
    # the reactor read it. The key was "self.cache.pop()", the call, and the
    # sequence's read against its update had the fix of two updates.
    found = races_in(
        tmp_path,
        """
        class Cache:
            def __init__(self):
                self.cache = {"room": "old"}
                self.sequence = 0
            def invalidate(self, key):
                self.sequence += 1
                self.cache.pop(key, None)
            def get(self, key):
                seen = self.sequence
                return self.cache.get(key), seen
        cache = Cache()
        t = threading.Thread(target=cache.invalidate, args=("room",)); t.start()
        cache.get("room")
        t.join()
        """,
    )
    report = format_report(found)
    assert "data race on Cache.sequence: " in report, report
    assert "a read of Cache.sequence while another thread updates it sees either value" in report
    assert "data race on self.cache[...]: " in report, report
    assert ".pop()" not in report.split("\n\n")[0], report


def test_a_global_bound_by_a_match_capture_races_its_read(tmp_path: Path) -> None:
    found = races_in(
        tmp_path,
        """
        mode = "safe"
        def configure(command):
            global mode
            match command:
                case ("set", mode):
                    pass
        t = threading.Thread(target=configure, args=(("set", "fast"),)); t.start()
        seen = mode
        t.join()
        """,
    )
    assert_one_race(found, "global mode", 'case ("set", mode):')


def test_an_attribute_a_loop_or_with_assigns_is_no_global_s_write(tmp_path: Path) -> None:
    # `for progress.current in ...` and `with ... as conn.log` write attributes:
    # reported as races on the global `progress`, which no one rebinds.
    found = races_in(
        tmp_path,
        """
        import contextlib
        class Progress:
            def __init__(self):
                self.lock = threading.Lock()
                self.current = None
        progress = Progress()
        def sweep():
            with progress.lock:  # the global read before the lock is held
                for progress.current in ("a.db", "b.db"):
                    pass
                with contextlib.nullcontext("log") as progress.current:
                    pass
        t = threading.Thread(target=sweep); t.start()
        with progress.lock:
            seen = progress.current
        t.join()
        """,
    )
    assert found == [], format_report(found)


def test_a_late_binding_race_s_fix_gives_each_round_its_value(tmp_path: Path) -> None:
    # The fix said to hold a lock around both, which leaves every thread the
    # last round's value.
    found = races_in(
        tmp_path,
        """
        def send_all(chunks):
            sent = []
            started = []
            for chunk in chunks:
                started.append(threading.Thread(target=lambda: sent.append(chunk)))
                started[-1].start()
            for thread in started:
                thread.join()
        send_all(["x", "y"])
        """,
    )
    assert len(group(found)) == 1, format_report(found)
    assert (
        format_report(found)
        .rstrip()
        .endswith(
            "fix: each round of the loop rebinds chunk, which what it started reads later: "
            "give it the round's value (lambda chunk=chunk: ..., or pass chunk as an argument: "
            "reactor.callFromThread(f, chunk))"
        )
    )


@pytest.mark.parametrize(
    "call",
    [
        "exec(RULE, ns)",
        "exec(RULE, globals=ns)" if sys.version_info >= (3, 13) else "exec(RULE, ns, None)",
        "exec(*(RULE, ns))",
        "builtins.exec(RULE, ns)",
        'eval(compile(RULE, "<rule>", "exec"), ns)',
    ],
)
def test_a_rule_run_by_exec_is_watched_however_exec_is_called(tmp_path: Path, call: str) -> None:
    # Called with a keyword or *args, the text was no longer rewritten: its
    # race was missed and dpor proved the program.
    found = races_in(
        tmp_path,
        f"""
        import builtins
        class Stats:
            hits = 0
        stats = Stats()
        RULE = "stats.hits = stats.hits + 1"
        def apply_rule():
            ns = globals()
            {call}
        t = threading.Thread(target=apply_rule); t.start()
        apply_rule()
        t.join()
        """,
    )
    assert {g.violation.api for g in group(found)} == {"Stats.hits"}, format_report(found)


def test_compile_gives_the_program_its_plain_code(tmp_path: Path) -> None:
    # It returned the rewritten code: a rule cache marshalled it (a later plain
    # run failed on __tc_st__), a rules engine rejected the helpers' names.
    found = races_in(
        tmp_path,
        """
        import marshal
        code = compile("total = price * 2", "<rule>", "exec")
        assert not [name for name in code.co_names if name.startswith("__tc_")], code.co_names
        cached = marshal.loads(marshal.dumps(code))
        namespace = {"price": 3}
        exec(cached, namespace)
        assert namespace["total"] == 6
        """,
    )
    assert found == []


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13's exec takes them as keywords")
def test_exec_refuses_namespaces_as_keywords_as_python_does(tmp_path: Path) -> None:
    found = races_in(
        tmp_path,
        """
        try:
            exec("x = 1", globals={})
        except TypeError as error:
            assert "keyword" in str(error), error
        else:
            raise AssertionError("exec took globals= before 3.13")
        """,
    )
    assert found == []


def test_an_executor_jobs_race_names_the_line_that_submitted_it(tmp_path: Path) -> None:
    # The job's violations named its submission; its races only the worker
    # thread's start (an earlier, unrelated job's submit).
    found = races_in(
        tmp_path,
        """
        executor = ThreadPoolExecutor(max_workers=1)
        executor.submit(print, end="").result()  # starts the only worker

        def flush():
            box.v += 1

        def on_timer():
            return executor.submit(flush)  # the job that races, submitted here

        job = on_timer()
        time.sleep(0.1)  # the job's update first: main's wait on it orders nothing then
        box.v += 1
        job.result()
        executor.shutdown()
        """,
    )
    [race] = found
    assert race.prior is not None and race.thread.name == "MainThread"
    submitted = race.prior.submitted_from
    assert submitted is not None, format_report(found)
    assert "on_timer" in [frame.function for frame in submitted]


def test_a_deprecation_a_module_warns_of_at_import_names_its_importer(tmp_path: Path) -> None:
    # warnings.warn(..., stacklevel=2) skips the import system's frames: the
    # detector's import wrapper was not one of them, so the warning went to
    # threadcheck's file, where Python's default filters do not show it.
    (tmp_path / "legacy_api.py").write_text(
        "import warnings\n"
        'warnings.warn("legacy_api is deprecated", DeprecationWarning, stacklevel=2)\n'
    )
    program = tmp_path / "app.py"
    program.write_text("import legacy_api\n")
    command = [sys.executable, "-m", "threadcheck", "run", "--races", str(program)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{program}:1: DeprecationWarning: legacy_api is deprecated" in result.stderr


MISSING_OPTIONAL = """\
import traceback

def render(text):
    import markdown_not_installed
    return markdown_not_installed.markdown(text)

try:
    render("# title")
except ImportError as error:
    deepest = traceback.extract_tb(error.__traceback__)[-1]
    print(deepest.name, deepest.lineno)
"""


def test_a_missing_module_imported_in_a_function_is_raised_from_that_function(
    tmp_path: Path,
) -> None:
    # The import's error is raised again from a frame at the importer's line
    # (trial tells "no such module" by it): named "<module>", it read as the
    # module's top level (Z47: Buildbot's optional markdown import).
    program = tmp_path / "app.py"
    program.write_text(MISSING_OPTIONAL)
    command = [sys.executable, "-m", "threadcheck", "run", "--races", str(program)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "render 4\n", result.stdout
