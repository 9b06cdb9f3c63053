"""Where the scheduler puts its points, and how the step table names them: the
same on every supported Python, whatever its bytecode."""

from __future__ import annotations

from typing import Any

from threadcheck._sched._points import access_points


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
