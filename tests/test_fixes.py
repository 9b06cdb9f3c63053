"""The fix line a report gives can be pasted: the user's own call, handed over."""

from __future__ import annotations

import pytest

from threadcheck import _fixes


@pytest.mark.parametrize(
    ("line", "handed"),
    [
        ('self.transport.write(b"pong", addr)  # BUG', 'self.transport.write, b"pong", addr'),
        (
            'self.pending["req-1"].deferred.callback(b"x")',
            'self.pending["req-1"].deferred.callback, b"x"',
        ),
        ('d.callback(")")', 'd.callback, ")"'),
        ('self.lookup("req-1").deferred.callback(1)', 'self.lookup("req-1").deferred.callback, 1'),
        ("return d.callback(*results)", "d.callback, *results"),
        ("d.callback(result=value)", "d.callback, result=value"),
        ("d.cancel()", "d.cancel"),
    ],
)
def test_the_users_call_is_handed_over_as_written(line: str, handed: str) -> None:
    # A regular expression cut `self.pending["req-1"]...` at the quote and
    # `d.callback(")")` at the parenthesis in the string: neither was Python.
    fix = _fixes.object_api_fix("Deferred." + handed.split(",")[0].rsplit(".", 1)[1], line)
    assert fix == f"do it in the reactor thread: reactor.callFromThread({handed})"


@pytest.mark.parametrize("line", ["if d.callback(1):", "d.callback(", "    result,"])
def test_a_line_that_is_no_whole_statement_gets_the_methods_fix(line: str) -> None:
    fix = _fixes.object_api_fix("Deferred.callback", line)
    assert fix == "do it in the reactor thread: reactor.callFromThread(d.callback, result)"
