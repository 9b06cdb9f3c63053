"""``threadcheck run`` end to end, in subprocesses: exit codes, reports, usage errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

from threadcheck import examples
from threadcheck._report import SCHEMA_PATH

pytestmark = pytest.mark.slow

THREADCHECK = [sys.executable, "-m", "threadcheck"]


def threadcheck(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*THREADCHECK, *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def script(tmp_path: Path, body: str, name: str = "prog.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def test_correct_example_exits_zero() -> None:
    result = threadcheck("run", "-m", "threadcheck.examples.correct")
    assert result.returncode == 0, result.stderr
    assert "8 digests, 8 progress reports" in result.stdout
    assert "threadcheck: no thread-affinity violations found" in result.stderr


BUGGY_EXAMPLES = [
    ("calllater_from_worker", "reactor.callLater", "reactor.callLater(0.01, retry)"),
    ("write_from_thread", "reactor.addWriter", "self.transport.write(reply)"),
    ("stop_from_thread", "reactor.stop", "reactor.stop()  # BUG"),
    (
        "blocking_call_in_reactor",
        "blockingCallFromThread",
        "threads.blockingCallFromThread(reactor, lookup, key)",
    ),
]


def test_every_bundled_example_is_covered() -> None:
    assert {example for example, _, _ in BUGGY_EXAMPLES} == set(examples.BUGGY)
    assert examples.CORRECT == ("correct",)


@pytest.mark.parametrize(("example", "api", "line"), BUGGY_EXAMPLES)
def test_buggy_examples_exit_one_with_a_report(example: str, api: str, line: str) -> None:
    result = threadcheck("run", "-m", f"threadcheck.examples.{example}")
    assert result.returncode == 1, result.stderr
    assert "threadcheck: 1 thread-affinity violation (1 distinct)" in result.stderr
    assert f"  {api}: 1" in result.stderr
    assert re.search(rf"offending call: \S*examples/{example}\.py:\d+ in ", result.stderr)
    assert line in result.stderr


def test_raise_mode_on_a_buggy_example() -> None:
    result = threadcheck(
        "run", "--mode", "raise", "-m", "threadcheck.examples.calllater_from_worker"
    )
    assert result.returncode == 1
    assert "first attempt: reactor.callLater called from thread" in result.stdout


def test_script_gets_its_arguments_and_the_instrumented_reactor(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """
        import sys
        from twisted.internet import reactor
        from threadcheck_reactor import ThreadCheckMixin
        assert isinstance(reactor, ThreadCheckMixin), type(reactor)
        assert reactor.threadcheck.mode.value == "warn"
        print(sys.argv[1:], __name__)
        """,
    )
    result = threadcheck("run", "--mode", "warn", "--", prog, "--mode", "x", "-m")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['--mode', 'x', '-m'] __main__"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ("raise SystemExit(3)", 3),
        ("import sys; sys.exit()", 0),
        ("raise SystemExit('bye')", 1),
        ("1 / 0", 1),
    ],
)
def test_clean_script_keeps_its_own_exit_status(tmp_path: Path, body: str, status: int) -> None:
    result = threadcheck("run", script(tmp_path, body))
    assert result.returncode == status, result.stderr


def test_violations_win_over_the_script_status(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """
        import threading
        from twisted.internet import reactor
        reactor.callWhenRunning(lambda: None)
        t = threading.Thread(target=lambda: reactor.callLater(1, print))
        t.start(); t.join()
        raise SystemExit(0)
        """,
    )
    result = threadcheck("run", prog)
    assert result.returncode == 1
    assert "called before run() from thread" in result.stderr  # the reactor never ran


def test_json_report_is_written_and_valid(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = threadcheck(
        "run", "--json", str(report), "-m", "threadcheck.examples.write_from_thread"
    )
    assert result.returncode == 1
    document = json.loads(report.read_text())
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    assert document["total"] == 1
    [violation] = document["violations"]
    assert violation["api"] == "reactor.addWriter"
    assert violation["submitted_from"] is not None


def test_json_report_is_written_when_clean(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = threadcheck("run", "--json", str(report), script(tmp_path, "pass"))
    assert result.returncode == 0
    assert json.loads(report.read_text())["total"] == 0


def test_console_script_matches_python_m(tmp_path: Path) -> None:
    console = Path(sys.executable).with_name("threadcheck")
    result = subprocess.run(
        [str(console), "run", script(tmp_path, "raise SystemExit(5)")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "missing command"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["run"], "expected a script or -m module"),
        (["run", "--mode", "loud", "x.py"], "invalid choice: 'loud'"),
        (["run", "missing.py"], "no such file: missing.py"),
        (["run", "--bogus", "{prog}"], "unrecognized arguments: --bogus"),
        (["run", "--json", "/no/such/dir/r.json", "{prog}"], "--json: no such directory"),
        (["run", "-m", "no_such_module_xyz"], "no module named 'no_such_module_xyz'"),
        (["run", "--json"], "expected one argument"),
    ],
)
def test_usage_errors_are_one_line_with_status_two(
    tmp_path: Path, args: list[str], message: str
) -> None:
    prog = script(tmp_path, "print('ran')")
    result = threadcheck(*(a.replace("{prog}", prog) for a in args))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("threadcheck: error: ")
    assert message in lines[0]


def test_program_that_installs_threadcheck_itself_keeps_the_runners_mode(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """
        import threadcheck
        reactor = threadcheck.install(mode="warn")
        print(reactor.threadcheck.mode.value)
        """,
    )
    result = threadcheck("run", "--mode", "raise", prog)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "raise"


def test_program_that_installs_another_reactor_first_gets_a_clear_error(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """
        import threadcheck
        from twisted.internet import reactor  # the default reactor, installed here
        threadcheck.install()
        """,
    )
    result = subprocess.run([sys.executable, prog], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "call threadcheck.install() before anything imports twisted.internet.reactor" in (
        result.stderr
    )


def test_runs_a_directory_with_main_and_imports_beside_it(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "helper.py").write_text("VALUE = 'found helper'\n")
    (app / "__main__.py").write_text("import helper\nprint(helper.VALUE)\n")
    result = threadcheck("run", str(app))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "found helper"
