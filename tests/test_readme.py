"""The README's example and set-up commands stay true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"


@pytest.mark.slow
def test_readme_example_runs_and_prints_what_it_says(tmp_path: Path) -> None:
    text = README.read_text()
    match = re.search(r"<!-- readme-example[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match, "README example block not found"
    example = tmp_path / "example.py"
    example.write_text(match.group(1))
    assert len(match.group(1).strip().splitlines()) <= 11

    result = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"reactor\.callLater called from thread 'PoolThread-twisted\.internet\.reactor-0' "
        r"\(ident \d+\); the reactor runs in 'MainThread' \(ident \d+\) "
        r"at example\.py:7 in work\n",
        result.stdout,
    )


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```sh\n(.*?)\n```", README.read_text(), re.S)
    assert len(commands) == 2
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci


@pytest.mark.slow
def test_readme_pytest_example_fails_under_threadcheck(tmp_path: Path) -> None:
    text = README.read_text()
    match = re.search(r"<!-- readme-pytest-example[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match, "README pytest example block not found"
    assert len(match.group(1).strip().splitlines()) <= 6
    (tmp_path / "test_retry.py").write_text(match.group(1))

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--threadcheck"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED test_retry.py::test_retry_later - threadcheck: 1 thread-affinity" in (
        result.stdout
    )
    assert "offending call: test_retry.py:6 in test_retry_later" in result.stdout


@pytest.mark.slow
def test_readme_explore_example_finds_and_shrinks_the_race(tmp_path: Path) -> None:
    text = README.read_text()
    match = re.search(r"<!-- readme-explore-example[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match, "README explore example block not found"
    (tmp_path / "example.py").write_text(match.group(1))

    result = subprocess.run(
        [sys.executable, "example.py"], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "threadcheck: exception: AssertionError: lost update: handled is 10"
    assert lines[1].endswith("; shrunk to 1")
    assert "stats.handled (store)   <- preempted: T1 runs" in result.stdout
    assert "replay: threadcheck.replay(scenario, 'tc1." in result.stdout


@pytest.mark.slow
def test_readme_explore_test_passes_every_schedule(tmp_path: Path) -> None:
    text = README.read_text()
    match = re.search(r"<!-- readme-explore-pytest[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert match, "README exploration test block not found"
    (tmp_path / "test_x.py").write_text(match.group(1))

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:twisted", "--threadcheck-explore=200"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 exploration: 200 schedules in" in result.stdout
