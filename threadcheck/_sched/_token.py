"""Replay tokens: one printable string holding a whole schedule.

``tc1.`` followed by URL-safe base64 of zlib-compressed JSON: every decision
(run-length encoded; negative values are non-thread choices), the environment
it was recorded in (Python, Twisted and threadcheck versions, hash seed,
granularity), how it was found (strategy, seed, index), and a digest of the
run (points and their locations) with its failure's signature, so that a
replay that goes elsewhere is detected instead of passing.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from threadcheck import _arguments

PREFIX = "tc1."
VERSION = 1


class TokenError(ValueError):
    """Not a replay token this threadcheck can read; the message is one line."""


def encode(document: dict[str, Any]) -> str:
    raw = json.dumps({"v": VERSION, **document}, separators=(",", ":"), sort_keys=True)
    packed = base64.urlsafe_b64encode(zlib.compress(raw.encode(), 9)).rstrip(b"=")
    return PREFIX + packed.decode("ascii")


def decode(token: str) -> dict[str, Any]:
    token = token.strip()
    if not token.startswith(PREFIX):
        raise TokenError(f"not a threadcheck replay token (they start with {PREFIX!r})")
    body = token[len(PREFIX) :]
    try:
        # Strict: base64 would skip stray characters, zlib ignore what follows its end.
        packed = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
        unpacker = zlib.decompressobj()
        raw = unpacker.decompress(packed)
        if unpacker.unused_data or not unpacker.eof:
            raise ValueError("more or less than one compressed document")
        document = json.loads(raw)
    except (binascii.Error, zlib.error, ValueError):
        raise TokenError("damaged replay token: it does not decode (copied whole?)") from None
    if not isinstance(document, dict) or document.get("v") != VERSION:
        version = document.get("v") if isinstance(document, dict) else None
        raise TokenError(f"replay token of an unknown version: {version!r}")
    _check_shape(document)
    return document


MAX_DECISIONS = 1_000_000
"""More than a schedule can take (its step bounds): a token asking more is damaged."""


def _check_shape(document: dict[str, Any]) -> None:
    decisions = document.get("decisions")
    well_formed = (
        isinstance(decisions, list)
        and all(
            isinstance(run, list)
            and len(run) == 2
            and all(isinstance(n, int) for n in run)
            and run[1] > 0
            for run in decisions
        )
        and isinstance(document.get("digest"), str)
        and isinstance(document.get("failure"), str)
    )
    if not well_formed:
        raise TokenError("damaged replay token: its decisions or digest are malformed")
    if sum(count for _, count in document["decisions"]) > MAX_DECISIONS:
        raise TokenError(f"damaged replay token: more than {MAX_DECISIONS:,} decisions")
    wrong = [
        name for name, valid in _SETTINGS.items() if name in document and not valid(document[name])
    ]
    if wrong:
        raise TokenError(f"damaged replay token: its settings are not valid ({', '.join(wrong)})")


def _granularity(value: Any) -> bool:
    from threadcheck._sched._points import GRANULARITIES

    return value in GRANULARITIES


_SETTINGS: dict[str, Callable[[Any], bool]] = {
    "granularity": _granularity,
    "max_delay": lambda value: value is not None and _arguments.seconds(value) is None,
    "seed": lambda value: value is not None and _arguments.seed(value) is None,
    "include": lambda value: isinstance(value, list) and all(isinstance(v, str) for v in value),
    "races": lambda value: type(value) is bool,
    "rewritten": lambda value: type(value) is bool,
    "real_io": lambda value: type(value) is bool,
    "rerun_diverged": lambda value: type(value) is bool,
    "entropy": lambda value: type(value) is str and len(value) <= 64,
    "hashseed": lambda value: (
        value == "random" or (type(value) is str and value.isdigit() and int(value) <= 4294967295)
    ),
}
"""What each setting a token carries must be: another is a damaged token, not an internal error."""


def run_length(decisions: Sequence[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for decision in decisions:
        if runs and runs[-1][0] == decision:
            runs[-1][1] += 1
        else:
            runs.append([decision, 1])
    return runs


def expand(runs: Iterable[Sequence[int]]) -> list[int]:
    return [value for value, count in runs for _ in range(count)]


def digest(points: Iterable[tuple[int, str, str, int]]) -> str:
    """CRC-32 of (thread, kind, file name, line) per point: where the run went."""
    text = "".join(f"{tid}|{kind}|{filename}|{line};" for tid, kind, filename, line in points)
    return f"{zlib.crc32(text.encode()):08x}"  # as one CRC over the points one by one


def of_a_scenario(target: str) -> bool:
    """Whether a token's ``target`` names a scenario (``module:qualname``:
    ``threadcheck.run`` or ``explore`` from Python, a Hypothesis test's), not a
    program's command line nor a pytest test (``path::name``)."""
    words = target.split()
    first = words[0] if words else ""
    return ":" in first and "::" not in first and not first.startswith("-")


def python_replay(scenario: str, token: str) -> str:
    """The line that replays ``token`` from Python: pasted into a test, it fails
    as the schedule did (``replay`` alone returns the result, and the test passed)."""
    name, _, note = scenario.partition("  # ")  # a scenario's comment comes last
    line = f"threadcheck.replay({name}, {token!r}).assert_clean()"
    return f"{line}  # {note}" if note else line
