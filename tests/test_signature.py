"""The checked wrappers keep their function's own signature and pass every argument on."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from threadcheck_reactor._signature import same_signature

PASS_ON = "    return original({call})"


def plain(self: Any, data: Any) -> Any:
    return (self, data)


def defaults(self: Any, a: Any, b: Any = 2, c: Any = None) -> Any:
    return (self, a, b, c)


def every_kind(a: Any, /, b: Any, *args: Any, c: Any, d: Any = 4, **kwargs: Any) -> Any:
    return (a, b, args, c, d, kwargs)


def keyword_only(self: Any, *, flag: bool = False) -> Any:
    return (self, flag)


@pytest.mark.parametrize(
    ("function", "args", "kwargs"),
    [
        (plain, (1, 2), {}),
        (plain, (1,), {"data": 2}),
        (defaults, (1, 2), {}),
        (defaults, (1, 2, 3), {"c": 5}),
        (every_kind, (1, 2, 3, 4), {"c": 5, "e": 6}),
        (every_kind, (1,), {"b": 2, "c": 3}),
        (keyword_only, (1,), {"flag": True}),
        (keyword_only, (1,), {}),
    ],
)
def test_same_signature_passes_every_argument_on(
    function: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    wrapper = same_signature(function, PASS_ON)
    assert inspect.signature(wrapper) == inspect.signature(function)
    assert wrapper(*args, **kwargs) == function(*args, **kwargs)
    assert wrapper.__name__ == function.__name__


def test_the_first_parameter_is_named_for_the_body() -> None:
    body = "    return ({first}, original({call}))"
    assert same_signature(plain, body)("obj", "data") == ("obj", ("obj", "data"))


def test_bad_calls_fail_as_the_original_would() -> None:
    wrapper = same_signature(defaults, PASS_ON)
    with pytest.raises(TypeError):
        wrapper(1)  # a missing
    with pytest.raises(TypeError):
        wrapper(1, 2, 3, 4, 5)  # one too many
