"""The README and docs stay true: every code block that claims to run is run.

The convention (CONTRIBUTING.md, "Documentation that runs"): an HTML comment on
the line before a fenced block says what it is.

* ``<!-- file: NAME -->`` before a block: written to ``NAME`` in a fresh
  temporary folder, for the next ``run`` block of the same document.
* ``<!-- run: exit N[, M...] -->`` before a ``console`` block: each ``$ ``
  line is a command (``python``, ``threadcheck`` or ``pytest``, run with this
  interpreter), run in that folder; it must exit with its status and print the
  lines that follow it, in order. Whitespace is collapsed, ``…`` stands for
  any text within a line, lines of ``...`` and blank lines are skipped, and
  ``tc1.…`` in a command is the last replay token printed.
* ``<!-- fragment -->``: not run, on purpose.

Every ``python`` block must be a file or a fragment. Only the standard
library, pytest and threadcheck are imported here: CI also runs this file in a
bare environment (``pip install .``, pytest and hypothesis).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
CONTRIBUTING = ROOT / "CONTRIBUTING.md"
DOCUMENTS = [README, *DOCS, CONTRIBUTING]

FENCE = re.compile(
    r"^(?:<!--(?P<directive>[^\n]*?)-->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```[ \t]*$",
    re.M | re.S,
)
TOKEN = re.compile(r"tc1\.[A-Za-z0-9_\-=]+")
ANY = "…"
TIMEOUT = 180


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    lang: str
    directive: str | None
    body: str

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def blocks(document: Path) -> list[Block]:
    text = document.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        fence_at = match.start("lang") - 3
        directive = match.group("directive")
        found.append(
            Block(
                document,
                text.count("\n", 0, fence_at) + 1,
                match.group("lang"),
                None if directive is None else directive.strip(),
                match.group("body"),
            )
        )
    return found


@dataclass(frozen=True)
class Run:
    block: Block
    files: dict[str, str]
    statuses: list[int]


def runs(document: Path) -> list[Run]:
    """The document's run blocks, each with the files declared since the one before."""
    found = []
    files: dict[str, str] = {}
    for block in blocks(document):
        directive = block.directive or ""
        if directive.startswith("file:"):
            files[directive.removeprefix("file:").strip()] = block.body
        elif directive.startswith("run:"):
            statuses = directive.removeprefix("run:").strip().removeprefix("exit").split(",")
            found.append(Run(block, files, [int(status) for status in statuses]))
            files = {}
    return found


ALL_RUNS = [run for document in DOCUMENTS for run in runs(document)]


# -- the convention holds --------------------------------------------------------


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_block_is_marked_and_every_file_is_run(document: Path) -> None:
    pending: list[str] = []
    for block in blocks(document):
        directive = block.directive or ""
        if directive.startswith("file:"):
            pending.append(block.where)
        elif directive.startswith("run:"):
            assert block.lang == "console", f"{block.where}: a run block is a console transcript"
            assert re.fullmatch(r"run: exit \d+(, \d+)*", directive), block.where
            commands = [line for line in block.body.splitlines() if line.startswith("$ ")]
            assert len(commands) == len(runs_at(block).statuses), (
                f"{block.where}: one exit status per $ command"
            )
            pending.clear()
        elif directive not in ("", "fragment"):
            pytest.fail(f"{block.where}: unknown directive <!-- {directive} -->")
        if block.lang == "python":
            assert directive.startswith("file:") or directive == "fragment", (
                f"{block.where}: a python block is run (<!-- file: NAME --> and a run "
                "block after it) or marked <!-- fragment -->"
            )
    assert not pending, f"files never run: {pending}"


def runs_at(block: Block) -> Run:
    return next(run for run in runs(block.document) if run.block == block)


def test_the_readme_fits_and_starts_with_the_set_up_commands() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 250
    readme = blocks(README)
    assert [block.lang for block in readme[:2]] == ["sh", "sh"]
    assert [block.lang for block in readme].count("sh") == 2
    for document in [*DOCS, CONTRIBUTING]:
        assert "sh" not in [block.lang for block in blocks(document)], document.name


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```sh\n(.*?)\n```", README.read_text(), re.S)
    assert len(commands) == 2
    ci = (README.parent / ".ci" / "run").read_text()
    assert commands[1] in ci


def test_the_readme_links_every_doc_and_every_link_resolves() -> None:
    readme = README.read_text(encoding="utf-8")
    for doc in DOCS:
        assert f"](docs/{doc.name})" in readme, f"README does not link {doc.name}"
    assert "](CONTRIBUTING.md)" in readme
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (document.parent / path).resolve() if path else document
            assert linked.exists(), f"{document.name}: broken link {target}"
            if anchor and linked.suffix == ".md":
                assert anchor in anchors(linked), f"{document.name}: no heading for {target}"


def anchors(document: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+ (.*)$", document.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_checks_doc_names_every_checked_api() -> None:
    from threadcheck_reactor import CHECKED_APIS

    checks = (ROOT / "docs" / "checks.md").read_text(encoding="utf-8")
    missing = sorted(api for api in CHECKED_APIS if f"`{api}`" not in checks)
    assert not missing, f"docs/checks.md does not list {missing}"


def test_reports_doc_names_every_field_and_kind_of_the_schema() -> None:
    schema = json.loads((resources.files("threadcheck") / "report-schema.json").read_text())
    violation = schema["$defs"]["violation"]["properties"]
    names = [*schema["properties"], *violation, *violation["kind"]["enum"]]
    reports = (ROOT / "docs" / "reports.md").read_text(encoding="utf-8")
    missing = [name for name in names if f"`{name}`" not in reports]
    assert not missing, f"docs/reports.md does not name {missing}"


# -- the blocks run ------------------------------------------------------------------


def test_the_first_set_up_command_reports_and_exits_3() -> None:
    first = re.findall(r"```sh\n(.*?)\n```", README.read_text(), re.S)[0]
    command = shlex.split(first.split("&&")[-1])
    assert command[0] == ".venv/bin/threadcheck"
    result = subprocess.run(
        [sys.executable, "-m", "threadcheck", *command[1:]],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment(),
    )
    assert result.returncode == 3, result.stderr
    assert "[1] reactor.callLater called from thread 'PoolThread-" in result.stderr


@pytest.mark.parametrize("run", ALL_RUNS, ids=lambda run: run.block.where)
def test_the_block_runs_and_prints_what_it_says(run: Run, tmp_path: Path) -> None:
    for name, body in run.files.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    token = None
    for (command, expected), status in zip(transcript(run.block.body), run.statuses, strict=True):
        if token is not None:
            command = command.replace(f"tc1.{ANY}", token)
        result = subprocess.run(
            argv(command),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=TIMEOUT,
            cwd=tmp_path,
            env=environment(),
        )
        output = result.stdout
        where = f"{run.block.where}: $ {command}"
        assert result.returncode == status, f"{where}: exit {result.returncode}\n{output}"
        assert_prints(output, expected, where)
        tokens = TOKEN.findall(output)
        if tokens:
            token = tokens[-1]


def transcript(body: str) -> list[tuple[str, list[str]]]:
    """Each ``$`` command with the lines it must print."""
    commands: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands and normal(line) not in ("", "..."):
            commands[-1][1].append(line)
    return commands


def argv(command: str) -> list[str]:
    program, *args = shlex.split(command)
    if program == "python":
        return [sys.executable, *args]
    if program == "threadcheck":
        return [sys.executable, "-m", "threadcheck", *args]
    if program == "pytest":
        # No cache folder; the same plugins whether or not pytest-twisted is installed.
        return [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:twisted",
            *args,
        ]
    raise AssertionError(f"unknown command in a run block: {command}")


def environment() -> dict[str, str]:
    """This one, without pytest's own settings (this run's may be xdist's)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    env.update(PYTHONUNBUFFERED="1", COLUMNS="100")
    return env


def normal(line: str) -> str:
    """Collapsed whitespace, without pytest's ``===`` rules around a line."""
    return " ".join(line.strip().strip("=").split())


def assert_prints(output: str, expected: list[str], where: str) -> None:
    lines = [normal(line) for line in output.splitlines()]
    at = 0
    for want in expected:
        pattern = re.compile(".*".join(re.escape(part) for part in normal(want).split(ANY)))
        at = next((i for i in range(at, len(lines)) if pattern.fullmatch(lines[i])), -1)
        assert at >= 0, f"{where}: did not print, in order:\n  {want}\n--- output ---\n{output}"
        at += 1
