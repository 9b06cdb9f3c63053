"""``threadcheck run`` end to end, in subprocesses: exit codes, reports, usage errors."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jsonschema
import pytest

import threadcheck as threadcheck_package
from threadcheck import examples
from threadcheck._cli import INTERRUPTED, USAGE_ERROR, VIOLATIONS_FOUND
from threadcheck._cli._run import REACTORS
from threadcheck._report import SCHEMA_PATH
from threadcheck_reactor import KINDS, reactor_class

from support import TWISTED_CLASSES, twisted_default_kind

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
    ("write_from_thread", "transport.write", "self.transport.write(reply)"),
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
def test_buggy_examples_exit_three_with_a_report(example: str, api: str, line: str) -> None:
    result = threadcheck("run", "-m", f"threadcheck.examples.{example}")
    assert result.returncode == VIOLATIONS_FOUND, result.stderr
    assert "threadcheck: 1 thread-affinity violation (1 distinct)" in result.stderr
    assert f"  {api}: 1" in result.stderr
    assert re.search(rf"offending call: \S*examples/{example}\.py:\d+ in ", result.stderr)
    assert line in result.stderr


def test_raise_mode_on_a_buggy_example() -> None:
    result = threadcheck(
        "run", "--mode", "raise", "-m", "threadcheck.examples.calllater_from_worker"
    )
    assert result.returncode == VIOLATIONS_FOUND
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
    # Its own 3 is ours for "found" too: the summary tells them apart.
    own = "; the program's own exit status is 3" if status == VIOLATIONS_FOUND else ""
    assert result.stderr.endswith(f"threadcheck: no thread-affinity violations found{own}\n")


# Made in a thread the reactor never ran in: judged `before-run` at the report.
VIOLATION = """
import threading
from twisted.internet import reactor
reactor.callWhenRunning(lambda: None)
t = threading.Thread(target=lambda: reactor.callLater(1, print))
t.start(); t.join()
"""


def test_violations_win_over_a_clean_exit(tmp_path: Path) -> None:
    result = threadcheck("run", script(tmp_path, VIOLATION + "raise SystemExit(0)"))
    assert result.returncode == VIOLATIONS_FOUND
    assert "called before run() from thread" in result.stderr  # the reactor never ran
    assert "also failed" not in result.stderr


@pytest.mark.parametrize(("body", "status"), [("raise SystemExit(4)", 4), ("1 / 0", 1)])
def test_violations_win_over_a_failure_which_is_named_after_the_report(
    tmp_path: Path, body: str, status: int
) -> None:
    result = threadcheck("run", script(tmp_path, VIOLATION + body))
    assert result.returncode == VIOLATIONS_FOUND
    report_at = result.stderr.index("threadcheck: 1 thread-affinity violation")
    assert result.stderr.splitlines()[-1] == (
        f"threadcheck: the program also failed (exit status {status})"
    )
    assert report_at < result.stderr.index("the program also failed")


@pytest.mark.parametrize(("body", "status"), [("pass", 0), ("raise SystemExit(4)", 4)])
def test_report_only_keeps_the_program_status(tmp_path: Path, body: str, status: int) -> None:
    result = threadcheck("run", "--report-only", script(tmp_path, VIOLATION + body))
    assert result.returncode == status
    assert "threadcheck: 1 thread-affinity violation (1 distinct)" in result.stderr
    assert "also failed" not in result.stderr


def test_violations_made_while_waiting_for_threads_are_reported(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """
        import threading
        from twisted.internet import reactor

        def after_main():
            threading.main_thread().join()  # returns once the main thread is finished
            reactor.callLater(1, print)

        threading.Thread(target=after_main).start()
        """,
    )
    result = threadcheck("run", prog)
    assert result.returncode == VIOLATIONS_FOUND, result.stderr
    assert "  reactor.callLater: 1" in result.stderr


def test_a_program_installed_as_a_package_is_the_users_code(tmp_path: Path) -> None:
    # `threadcheck run -m myapp` from site-packages: its frames were folded as a
    # library's, the report had no offending line and a fix for a method.
    package = tmp_path / "lib" / "site-packages" / "myapp"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "from twisted.internet import reactor, threads\n"
        "def work():\n"
        "    reactor.callLater(0, print)  # BUG\n"
        "threads.deferToThread(work).addBoth(lambda _: reactor.stop())\n"
        "reactor.run()\n"
    )
    result = subprocess.run(
        [*THREADCHECK, "run", "-m", "myapp"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(package.parent)},
    )
    assert result.returncode == VIOLATIONS_FOUND, result.stderr
    assert re.search(r"offending call: \S*myapp/__main__\.py:3 in work", result.stderr)
    assert "fix: do it in the reactor thread: reactor.callFromThread(reactor.callLater" in (
        result.stderr
    )


def test_json_report_is_written_and_valid(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = threadcheck(
        "run", "--json", str(report), "-m", "threadcheck.examples.write_from_thread"
    )
    assert result.returncode == VIOLATIONS_FOUND
    document = json.loads(report.read_text())
    jsonschema.validate(document, json.loads(SCHEMA_PATH.read_text()))
    assert document["total"] == 1
    [violation] = document["violations"]
    assert violation["api"] == "transport.write"
    assert violation["submitted_from"] is not None


def test_json_report_is_written_when_clean(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = threadcheck("run", "--json", str(report), script(tmp_path, "pass"))
    assert result.returncode == 0
    assert json.loads(report.read_text())["total"] == 0


def test_html_report_of_a_run(tmp_path: Path) -> None:
    from test_view import parse

    page = tmp_path / "report.html"
    result = threadcheck(
        "run", "--html", str(page), "-m", "threadcheck.examples.write_from_thread"
    )
    assert result.returncode == VIOLATIONS_FOUND
    text = page.read_text()
    assert parse(text).classes["card"] == 1 and parse(text).external == []
    assert "transport.write called from thread" in text
    assert "reactor.callFromThread(self.transport.write, reply)" in text
    assert "self.transport.write(reply)  # BUG: called in a thread-pool thread" in text
    clean = tmp_path / "clean.html"
    assert threadcheck("run", "--html", str(clean), script(tmp_path, "pass")).returncode == 0
    assert "threadcheck: no findings" in clean.read_text()
    unwritable = threadcheck(
        "run", "--html", str(tmp_path / "no" / "r.html"), script(tmp_path, "pass")
    )
    assert unwritable.returncode == USAGE_ERROR
    assert unwritable.stderr.startswith("threadcheck: error: --html: no such directory")


def test_a_run_traced_reports_what_it_reports_untraced(tmp_path: Path) -> None:
    # --trace's wrapper took one of the submission's few frames: the user's
    # deferToThread line was gone, and the pool thread's whole spawn stack shown.
    prog = script(
        tmp_path,
        """
        from twisted.internet import reactor, threads

        def job():
            reactor.callLater(0, print)  # BUG: from the pool

        def start():
            threads.deferToThread(job)
            reactor.callLater(0.2, reactor.stop)

        reactor.callWhenRunning(start)
        reactor.run()
        """,
    )
    plain = threadcheck("run", prog)
    traced = threadcheck("run", "--trace", str(tmp_path / "t.json"), prog)
    assert plain.returncode == traced.returncode == VIOLATIONS_FOUND
    assert "work submitted to the thread pool at (most recent call last):\n" in plain.stderr
    assert "prog.py:8 in start\n          threads.deferToThread(job)" in plain.stderr
    numbers = r"ident \d+|\d+ frames"  # the wrapper's own frame is folded with Twisted's
    assert re.sub(numbers, "", traced.stderr) == re.sub(numbers, "", plain.stderr)


def test_trace_of_a_run_s_threads(tmp_path: Path) -> None:
    from test_view import validate_chrome_trace

    trace = tmp_path / "run.json"
    result = threadcheck(
        "run", "--trace", str(trace), "-m", "threadcheck.examples.write_from_thread"
    )
    assert result.returncode == VIOLATIONS_FOUND
    document = json.loads(trace.read_text())
    validate_chrome_trace(document)
    events = document["traceEvents"]
    threads = {e["tid"]: e["args"]["name"] for e in events if e["name"] == "thread_name"}
    job = next(e for e in events if e["ph"] == "X" and e["name"] == "callInThread Shout.answer")
    assert threads[job["tid"]].startswith("PoolThread-")
    submitted = next(e for e in events if e["name"] == "-> callInThread Shout.answer")
    assert threads[submitted["tid"]] == "MainThread"
    flows = {
        e["ph"]: e for e in events if e["ph"] in "sf" and e["ts"] in (job["ts"], submitted["ts"])
    }
    assert flows["s"]["id"] == flows["f"]["id"]  # the hand-off, joined
    unwritable = threadcheck(
        "run", "--trace", str(tmp_path / "no" / "t.json"), script(tmp_path, "pass")
    )
    assert unwritable.returncode == USAGE_ERROR
    assert unwritable.stderr.startswith("threadcheck: error: --trace: no such directory")


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
        (["run", "-m"], "argument -m: expected one argument"),
        (["run", "--report-only"], "expected a script or -m module"),
        (["run", "--mod", "raise", "{prog}"], "unrecognized arguments: --mod"),
        (["run", "--reactor"], "expected one argument"),
        (
            ["run", "--reactor", "kqueue", "{prog}"],
            "--reactor: no instrumented 'kqueue' reactor; choose from default, select, ",
        ),
        (["run", "--include", "twisted", "{prog}"], "--include: only with --races"),
        (
            ["run", "--races", "--include", "no_such_pkg_xyz", "{prog}"],
            "--include: no such file, folder or module: no_such_pkg_xyz",
        ),
        (
            ["run", "--races", "--include", "threadcheck", "{prog}"],
            "--include: threadcheck is threadcheck's own code, which is never watched",
        ),
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


# Which reactor the program runs on, and whether scrapy-style class checks accept it.
SHOW_REACTOR = """
import sys
from twisted.internet import reactor
from twisted.python.reflect import namedAny
from threadcheck_reactor import ThreadCheckMixin
assert isinstance(reactor, ThreadCheckMixin), type(reactor)
print(type(reactor).__qualname__, type(reactor) == namedAny(sys.argv[1]))
"""


def twisted_class(kind: str) -> str:
    return TWISTED_CLASSES[twisted_default_kind() if kind == "default" else kind]


@pytest.mark.parametrize("kind", KINDS)
def test_reactor_option_installs_that_instrumented_reactor(tmp_path: Path, kind: str) -> None:
    prog = script(tmp_path, SHOW_REACTOR)
    result = threadcheck("run", "--reactor", kind, prog, twisted_class(kind))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{reactor_class(kind).__qualname__} True\n"


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "default"])
def test_a_program_that_installs_its_reactor_gets_it_instrumented(
    tmp_path: Path, kind: str
) -> None:
    module = twisted_class(kind).rpartition(".")[0]
    prog = script(tmp_path, f"import {module}\n{module}.install()\n{SHOW_REACTOR}")
    result = threadcheck("run", prog, twisted_class(kind))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{reactor_class(kind).__qualname__} True\n"


def test_a_reactor_the_program_installs_reports_with_the_runs_options(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        "from twisted.internet import asyncioreactor\n"
        "asyncioreactor.install()\n"
        "from twisted.internet import reactor\n"
        "print(reactor.threadcheck.mode.value, reactor.stall_threshold)\n" + VIOLATION,
    )
    result = threadcheck("run", "--mode", "warn", "--stall-ms", "250", prog)
    assert result.returncode == VIOLATIONS_FOUND, result.stderr
    assert result.stdout == "warn 0.25\n"
    assert "  reactor.callLater: 1" in result.stderr


def test_a_program_that_never_imports_the_reactor_installs_none(tmp_path: Path) -> None:
    prog = script(tmp_path, "import sys\nprint('twisted.internet.reactor' in sys.modules)\n")
    result = threadcheck("run", prog)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "False\n"
    assert result.stderr == "threadcheck: no thread-affinity violations found\n"


def test_the_reactor_option_conflicting_with_the_programs_choice_is_a_usage_error(
    tmp_path: Path,
) -> None:
    # A traceback of our installer's, exit 1, and "no violations found" of a
    # program that never ran past its install.
    prog = script(
        tmp_path, "from twisted.internet import asyncioreactor\nasyncioreactor.install()\n"
    )
    result = threadcheck("run", "--reactor", "select", prog)
    assert result.returncode == 2
    assert result.stderr == (
        "threadcheck: error: --reactor select installed a reactor; the program installs the"
        " asyncio reactor itself: drop --reactor\n"
    )


def test_the_reactor_option_agreeing_with_the_programs_install_is_no_error(
    tmp_path: Path,
) -> None:
    # The program's own asyncioreactor.install() raised ReactorAlreadyInstalledError.
    prog = script(
        tmp_path,
        """
        from twisted.internet import asyncioreactor
        asyncioreactor.install()
        from twisted.internet import reactor
        print(type(reactor).__name__)
        """,
    )
    result = threadcheck("run", "--reactor", "asyncio", prog)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ThreadCheckAsyncioReactor\n"


def test_a_reactor_threadcheck_does_not_instrument_is_an_error(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """
        from twisted.internet.main import installReactor
        from twisted.internet.selectreactor import SelectReactor

        class Homemade(SelectReactor):
            pass

        installReactor(Homemade())
        """,
    )
    result = threadcheck("run", prog)
    assert result.returncode == USAGE_ERROR
    assert result.stderr.splitlines() == [
        "threadcheck: error: the program installed __main__.Homemade, which threadcheck does "
        f"not instrument: nothing was checked (instrumented: {', '.join(KINDS)})"
    ]


def test_runs_a_directory_with_main_and_imports_beside_it(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "helper.py").write_text("VALUE = 'found helper'\n")
    (app / "__main__.py").write_text("import helper\nprint(helper.VALUE)\n")
    result = threadcheck("run", str(app))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "found helper"


def test_version() -> None:
    result = threadcheck("--version")
    assert result.returncode == 0
    assert result.stdout == f"threadcheck {threadcheck_package.__version__}\n"


def test_run_help_documents_the_exit_statuses() -> None:
    result = threadcheck("run", "--help")
    assert result.returncode == 0
    epilog = result.stdout[result.stdout.index("exit status:") :]
    assert f"{VIOLATIONS_FOUND}    violations were found" in epilog
    assert f"{INTERRUPTED}  interrupted by Ctrl-C" in epilog


@pytest.mark.parametrize("command", ["explore", "replay"])
def test_explore_and_replay_help_name_the_views(command: str) -> None:
    result = threadcheck(command, "--help")
    assert result.returncode == 0, result.stderr  # replay: no token needed for --help
    assert "[--html PATH] [--trace PATH]" in result.stdout
    assert "exit status:" in result.stdout


def test_run_help_names_every_reactor_it_can_install() -> None:
    result = threadcheck("run", "--help")
    assert result.returncode == 0
    assert "--reactor NAME" in result.stdout
    help_text = " ".join(result.stdout.split())  # argparse wraps it
    assert f"{', '.join(REACTORS)} (those this platform has)" in help_text
    assert set(KINDS) <= set(REACTORS)


CROCHET_PROGRAM = """
from crochet import setup, wait_for
setup()
from twisted.internet import reactor, task

@wait_for(timeout=10)
def add(a, b):
    return task.deferLater(reactor, 0.01, lambda: a + b)

print(add(1, 2))
"""


def test_correct_crochet_program_exits_like_python(tmp_path: Path) -> None:
    # crochet stops its reactor thread once the main thread is finished: a
    # runner that joins threads first hangs (the subprocess timeout catches it).
    result = threadcheck("run", script(tmp_path, CROCHET_PROGRAM))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3\n"
    assert "threadcheck: no thread-affinity violations found" in result.stderr


def test_crochet_program_with_a_violation(tmp_path: Path) -> None:
    prog = script(tmp_path, CROCHET_PROGRAM + "reactor.callLater(0, print, 'late')  # BUG\n")
    result = threadcheck("run", prog)
    assert result.returncode == VIOLATIONS_FOUND, result.stderr
    assert (
        "reactor.callLater called from thread 'MainThread' (ident " in result.stderr
        and "the reactor runs in 'CrochetReactor'" in result.stderr
    )
    assert "reactor.callLater(0, print, 'late')  # BUG" in result.stderr


def argv_module(tmp_path: Path) -> None:
    script(tmp_path, "import sys; print(sys.argv[1:])", name="show_argv.py")


@pytest.mark.parametrize(
    "args",
    [
        ["-q"],
        ["--mode", "raise", "--json", "x", "--report-only", "-m", "y"],
        ["--", "-q"],
        ["--version", "--help"],
    ],
)
def test_arguments_after_the_module_belong_to_it(tmp_path: Path, args: list[str]) -> None:
    argv_module(tmp_path)
    result = threadcheck("run", "--mode=warn", "-m", "show_argv", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{args}\n"


def test_arguments_after_the_script_belong_to_it(tmp_path: Path) -> None:
    prog = script(tmp_path, "import sys; print(sys.argv[1:])")
    result = threadcheck("run", prog, "--mode", "raise", "-m", "x", "--bogus")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['--mode', 'raise', '-m', 'x', '--bogus']\n"


def test_double_dash_ends_run_options(tmp_path: Path) -> None:
    script(tmp_path, "import sys; print(sys.argv[1:])", name="-prog.py")
    result = threadcheck("run", "--report-only", "--", "-prog.py", "--", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "['--', '-q']\n"


def test_options_with_equals_and_module_glued_to_m(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = threadcheck(
        "run", "--mode=raise", f"--json={report}", "-mthreadcheck.examples.correct"
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(report.read_text())["mode"] == "raise"


def test_pytest_runs_with_its_own_options(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text("def test_passes():\n    pass\n")
    result = threadcheck("run", "-m", "pytest", "-q", "-p", "no:cacheprovider", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^1 passed", result.stdout, re.MULTILINE), result.stdout


RACY_TEST = """
import threading

class Stats:
    handled = 0

def test_counts():
    stats = Stats()
    def work():
        for _ in range(100):
            stats.handled += 1
    workers = [threading.Thread(target=work) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert stats.handled == 200
"""


def test_races_in_a_test_module_pytest_imports_itself_are_reported(tmp_path: Path) -> None:
    # pytest's assertion rewriting compiled the test module past the race hook:
    # the test passed and "no data races found", two runs in three.
    (tmp_path / "test_racy.py").write_text(RACY_TEST)
    command = ("run", "--races", "-m", "pytest", "-q", "-p", "no:cacheprovider")
    result = threadcheck(*command, cwd=tmp_path)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "data race on Stats.handled" in result.stderr, result.stderr


DEEP_WALK = """
import sys

class Node:
    def __init__(self, value, child=None):
        self.value = value
        self.child = child
        self.meta = {"depth": 0}

def walk(node, seen):
    if node is None:
        return len(seen)
    node.meta["depth"] = len(seen)
    seen.append(node.value)
    return walk(node.child, seen)

root = None
for value in range(985):  # close to python's limit of 1,000 frames
    root = Node(value, root)
print(walk(root, []))
"""


def test_races_leave_a_deep_recursion_the_frames_python_gives_it(tmp_path: Path) -> None:
    # The detector's helpers, called at the deepest access, hit RecursionError.
    result = threadcheck("run", "--races", script(tmp_path, DEEP_WALK))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "985\n"


MAIN_AND_WORKER = """
import threading

class Stats:
    seen = 0

stats = Stats()
worker = threading.Thread(target=lambda: setattr(stats, "seen", stats.seen + 1))
worker.start()
stats.seen += 1
worker.join()
"""


def test_a_races_access_in_the_main_thread_says_it_began_with_the_process(tmp_path: Path) -> None:
    # Z49: "thread started at: unknown (main thread, or started before
    # threadcheck)" of the thread named MainThread.
    result = threadcheck("run", "--races", script(tmp_path, MAIN_AND_WORKER))
    assert result.returncode == 3, result.stderr
    assert "in thread 'MainThread'" in result.stderr, result.stderr
    assert "thread started at: none: the main thread" in result.stderr, result.stderr
    assert "unknown (main thread" not in result.stderr


FAILING_PROGRAM = """
def parse(text):
    return int(text)

def main():
    try:
        parse("x")
    except ValueError as error:
        raise RuntimeError("bad input") from error

main()
"""


def python_and_threadcheck(tmp_path: Path, body: str, as_module: bool) -> tuple[str, str]:
    """The stderr of `python` and of `threadcheck run` running the same program."""
    script(tmp_path, body, name="failing.py")
    target = ["-m", "failing"] if as_module else [str(tmp_path / "failing.py")]
    python = subprocess.run(
        [sys.executable, *target], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    checked = threadcheck("run", *target, cwd=tmp_path)
    assert python.returncode == checked.returncode == 1, checked.stderr
    *program_stderr, verdict = checked.stderr.splitlines(keepends=True)
    assert verdict == "threadcheck: no thread-affinity violations found\n"
    return python.stderr, "".join(program_stderr)


def without_runpy_frames(traceback: str) -> str:
    """Drop runpy's frames: `<frozen runpy>` (3.11+) or runpy.py with its source lines (3.10)."""
    kept: list[str] = []
    in_runpy = False
    for line in traceback.splitlines(keepends=True):
        if line.startswith('  File "'):
            in_runpy = '"<frozen runpy>"' in line or "/runpy.py" in line
        elif not line.startswith("    "):
            in_runpy = False
        if not in_runpy:
            kept.append(line)
    return "".join(kept)


@pytest.mark.parametrize("as_module", [False, True], ids=["script", "module"])
def test_uncaught_exception_is_shown_as_python_shows_it(tmp_path: Path, as_module: bool) -> None:
    python, checked = python_and_threadcheck(tmp_path, FAILING_PROGRAM, as_module)
    # `python -m` shows its own runpy frames; threadcheck shows none of its own.
    assert checked == without_runpy_frames(python)
    assert "RuntimeError: bad input" in checked
    assert "The above exception was the direct cause" in checked


@pytest.mark.parametrize("as_module", [False, True], ids=["script", "module"])
def test_syntax_error_is_shown_as_python_shows_it(tmp_path: Path, as_module: bool) -> None:
    python, checked = python_and_threadcheck(tmp_path, "def f(:\n    pass\n", as_module)
    # `python -m` puts a traceback of runpy and importlib frames before it; a
    # script's SyntaxError (and threadcheck's, either way) has none.
    assert checked == python[python.index(f'  File "{tmp_path / "failing.py"}"') :]
    assert not as_module or python.startswith("Traceback")
    assert checked.startswith('  File "')
    assert checked.endswith("SyntaxError: invalid syntax\n")


def test_failing_parent_package_is_the_program_failing(tmp_path: Path) -> None:
    package = tmp_path / "broken"
    package.mkdir()
    (package / "__init__.py").write_text("1 / 0\n")
    (package / "tool.py").write_text("print('unreachable')\n")
    result = threadcheck("run", "-m", "broken.tool", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines()[:2] == [
        "Traceback (most recent call last):",
        f'  File "{package / "__init__.py"}", line 1, in <module>',
    ]
    assert "ZeroDivisionError: division by zero" in result.stderr


def interrupt_after_ready(
    *args: str, sig: int = signal.SIGINT
) -> subprocess.CompletedProcess[str]:
    """Run threadcheck; send ``sig`` once the program prints 'ready'."""
    with subprocess.Popen(
        [*THREADCHECK, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stdout is not None
        # A hang before 'ready' must fail the test, not hang it.
        if not select.select([process.stdout], [], [], 60)[0]:
            process.kill()
            pytest.fail(f"no 'ready' line within 60 s; stderr: {process.communicate()[1]}")
        assert process.stdout.readline() == "ready\n"
        process.send_signal(sig)
        stdout, stderr = process.communicate(timeout=60)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_ctrl_c_in_the_program_still_reports(tmp_path: Path) -> None:
    prog = script(tmp_path, VIOLATION + "import time\nprint('ready', flush=True)\ntime.sleep(60)")
    result = interrupt_after_ready("run", prog)
    assert result.returncode == INTERRUPTED, result.stderr
    assert "threadcheck: 1 thread-affinity violation (1 distinct)" in result.stderr
    assert result.stderr.startswith("Traceback (most recent call last):\n")
    assert "\nKeyboardInterrupt\n" in result.stderr
    assert "runpy" not in result.stderr and "threadcheck/_cli" not in result.stderr


def test_ctrl_c_while_waiting_for_threads_still_reports(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        VIOLATION
        + """
def outlive_main():
    import os
    import time
    while threading.main_thread().is_alive():  # as crochet's watchdog polls it
        time.sleep(0.01)
    # threadcheck is now waiting for this thread. os.write holds no stdout
    # lock that a Ctrl-C'd interpreter could find taken as it finalizes.
    os.write(1, b"ready\\n")
    threading.Event().wait()

threading.Thread(target=outlive_main).start()
""",
    )
    result = interrupt_after_ready("run", prog)
    assert result.returncode == INTERRUPTED, result.stderr
    assert "threadcheck: 1 thread-affinity violation (1 distinct)" in result.stderr


FORGOTTEN_POOL = """
import os, threading, time
from twisted.internet import reactor
from twisted.python.threadpool import ThreadPool

pool = ThreadPool(minthreads=1, maxthreads=1, name="render")
reactor.callWhenRunning(pool.start)  # BUG: no shutdown trigger stops it

def announce():
    while threading.main_thread().is_alive():  # until the exit's wait for threads
        time.sleep(0.01)
    os.write(1, b"ready\\n")

threading.Thread(target=announce, daemon=True).start()
reactor.callWhenRunning(reactor.stop)
reactor.run()
"""


FORGOTTEN_EXECUTOR = """
import concurrent.futures, os, threading, time
from twisted.internet import reactor

pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="exporter")
stop = threading.Event()

def export_loop():
    while not stop.wait(0.05):  # BUG: nothing sets it: the exit waits for ever
        pass

pool.submit(export_loop)

def announce():
    while not concurrent.futures.thread._shutdown:  # the exit's join of its workers began
        time.sleep(0.01)
    time.sleep(0.2)
    os.write(1, b"ready\\n")

threading.Thread(target=announce, daemon=True).start()
reactor.callWhenRunning(reactor.stop)
reactor.run()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
@pytest.mark.parametrize(
    ("program", "thread"),
    [(FORGOTTEN_POOL, "PoolThread-render-0"), (FORGOTTEN_EXECUTOR, "exporter_0")],
    ids=["pool", "executor"],
)
def test_a_signal_while_waiting_for_a_forgotten_pool_still_reports(
    tmp_path: Path, sig: int, program: str, thread: str
) -> None:
    # The stopped reactor's own handlers stayed installed and only asked it to
    # stop again: the wait for the pool's thread went on, past Ctrl-C and SIGTERM.
    # An executor's worker, its join cut short, was no longer is_alive(): unnamed.
    result = interrupt_after_ready("run", script(tmp_path, program), sig=sig)
    assert result.returncode == 128 + sig, result.stderr
    assert result.stderr.splitlines() == [
        f"threadcheck: interrupted while waiting at exit for {thread!r}, which "
        "nobody stopped (a non-daemon thread: the interpreter waits for it)",
        "threadcheck: no thread-affinity violations found",
    ]


STUCK_SHUTDOWN = """
import os, threading, time
from twisted.internet import reactor, threads

def job():
    while not reactor._stopped:  # the reactor is shutting down, waiting for this job
        time.sleep(0.01)
    time.sleep(0.2)
    os.write(1, b"ready\\n")
    threading.Event().wait()  # BUG: never returns: the shutdown waits for ever

threads.deferToThread(job)
reactor.callLater(0.1, reactor.stop)
reactor.run()
"""


def test_a_signal_while_the_shutdown_waits_for_a_stuck_job_still_reports(
    tmp_path: Path,
) -> None:
    # Twisted's handlers only asked the stopping reactor to stop again: the
    # shutdown went on waiting, past SIGTERM, and no report came.
    result = interrupt_after_ready("run", script(tmp_path, STUCK_SHUTDOWN), sig=signal.SIGTERM)
    assert result.returncode == 143, result.stderr
    assert (
        "threadcheck: SIGTERM while the reactor was shutting down: not waiting for its "
        "shutdown any longer\n"
    ) in result.stderr
    assert "threadcheck: no thread-affinity violations found" in result.stderr


SWALLOWED_AND_HUNG = """
import threading, time
from twisted.internet import reactor

answer = threading.Event()

def poll():
    # A client library's worker: any error is swallowed and retried, nothing logged.
    while not answer.is_set():
        try:
            reactor.callLater(0, answer.set)  # BUG: callLater from a worker
        except Exception:
            time.sleep(0.05)

reactor.callInThread(poll)
reactor.run()  # waits for ever: the answer never comes
"""


def test_raise_mode_names_the_violation_at_once_though_the_program_hangs(
    tmp_path: Path,
) -> None:
    prog = script(tmp_path, SWALLOWED_AND_HUNG)
    with subprocess.Popen(
        [*THREADCHECK, "run", "--mode", "raise", prog], stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stderr is not None
            ready, _, _ = select.select([process.stderr], [], [], 60)
            assert ready, "nothing printed within 60 s"
            first = process.stderr.readline()
            time.sleep(0.5)  # some retries later: still one line
            process.kill()
            rest = process.stderr.read()
        finally:
            process.kill()
    assert first.startswith(
        "threadcheck: raising ThreadAffinityError: reactor.callLater called from thread "
        "'PoolThread-twisted.internet.reactor-0'"
    ), first
    assert first.rstrip().endswith("prog.py:11 in poll"), first
    assert "raising" not in rest, rest


@pytest.mark.parametrize("value", ["inf", "1e20", "-1", "nan", "soon"])
def test_a_stall_threshold_out_of_range_is_a_usage_error(tmp_path: Path, value: str) -> None:
    # inf passed, then crashed the watch thread (OverflowError) and checked nothing.
    prog = tmp_path / "prog.py"
    prog.write_text("pass\n")
    result = threadcheck("run", "--stall-ms", value, str(prog))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"threadcheck: error: --stall-ms takes milliseconds up to a day (0: off), got {value!r}"
    ]


@pytest.mark.parametrize("command", ["run", "explore"])
def test_a_binary_file_is_no_script(tmp_path: Path, command: str) -> None:
    # On 3.10 compiling it raised ValueError, which explore took for a failing schedule.
    prog = tmp_path / "prog"
    prog.write_bytes(b"\x7fELF\x00\x01\x02")
    result = threadcheck(command, str(prog))
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        f"threadcheck: error: not a Python script (it holds null bytes): {prog}"
    ]


def test_the_report_goes_to_stderr_when_the_program_logs_to_stdout(tmp_path: Path) -> None:
    # startLogging(sys.stdout) makes sys.stderr a log file: the report went into
    # the program's log on stdout, timestamped, and stderr stayed empty.
    prog = script(
        tmp_path,
        """
        import sys
        from twisted.python import log
        from twisted.internet import reactor, threads

        log.startLogging(sys.stdout)
        threads.deferToThread(reactor.callLater, 0, print, "retry").addBoth(
            lambda _: reactor.stop()
        )
        reactor.run()
        """,
    )
    result = threadcheck("run", prog)
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("threadcheck: 1 thread-affinity violation"), result.stderr
    assert "thread-affinity violation" not in result.stdout


def test_a_librarys_function_exported_from_an_object_is_named_as_the_user_calls_it(
    tmp_path: Path,
) -> None:
    # txaio.call_later is a bound method of txaio's API object: the fix said
    # reactor.callFromThread(obj.call_later, ...).
    site = tmp_path / "site-packages"
    site.mkdir()
    (site / "tickets.py").write_text(
        "class _Api:\n"
        "    def call_later(self, delay, f):\n"
        "        from twisted.internet import reactor\n"
        "        return reactor.callLater(delay, f)\n\n"
        "call_later = _Api().call_later\n"
    )
    prog = script(
        tmp_path,
        """
        import threading
        import tickets
        worker = threading.Thread(target=lambda: tickets.call_later(0, print))
        worker.start()
        worker.join()
        """,
    )
    result = subprocess.run(
        [*THREADCHECK, "run", prog],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    assert result.returncode == VIOLATIONS_FOUND, result.stderr
    assert "reactor.callFromThread(tickets.call_later, ...)" in result.stderr, result.stderr


def test_an_included_folder_holding_threadcheck_leaves_its_code_alone(tmp_path: Path) -> None:
    # A folder that holds the tool (a checkout, a venv's site-packages): its
    # own modules were rewritten too and every access recursed.
    holding = os.path.dirname(os.path.dirname(os.path.abspath(threadcheck_package.__file__)))
    prog = script(
        tmp_path,
        """
        import threading
        hits = []
        workers = [threading.Thread(target=hits.append, args=(n,)) for n in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        print(sorted(hits))
        """,
    )
    result = threadcheck("run", "--races", "--include", holding, prog)
    assert (result.returncode, result.stdout) == (0, "[0, 1]\n"), result.stderr
    assert result.stderr.splitlines()[-1] == (
        "threadcheck: no thread-affinity violations or data races found"
    )


FORKING = """
import os, sys
from twisted.internet import reactor, threads

def job():
    {job}

pid = os.fork()
if pid == 0:
    threads.deferToThread(job).addBoth(lambda _: reactor.stop())
    reactor.run()
    {child_exit}
_, status = os.waitpid(pid, 0)
print("child status", os.waitstatus_to_exitcode(status))
"""
BUGGY_JOB = "reactor.callLater(0, int)  # in the worker: the planted bug"
FIXED_JOB = "reactor.callFromThread(reactor.callLater, 0, int)"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
@pytest.mark.parametrize("child_exit", ["sys.exit(0)", "os._exit(0)"])
def test_what_a_forked_child_finds_is_in_the_parent_s_report(
    tmp_path: Path, child_exit: str
) -> None:
    # The child reported alone (or, ending in os._exit, not at all); the parent
    # said "no thread-affinity violations found" and exited 0.
    script(tmp_path, FORKING.format(job=BUGGY_JOB, child_exit=child_exit))
    result = threadcheck("run", "prog.py", cwd=tmp_path)
    assert result.returncode == VIOLATIONS_FOUND, result.stderr
    assert result.stdout == f"child status {VIOLATIONS_FOUND if 'sys' in child_exit else 0}\n"
    assert result.stderr.count("threadcheck: 1 thread-affinity violation (1 distinct)") == 1
    assert "offending call: prog.py:6 in job" in result.stderr, result.stderr
    assert result.stderr.splitlines()[-1] == "threadcheck: 1 of them in forked child processes"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_child_that_finds_nothing_leaves_the_run_clean(tmp_path: Path) -> None:
    prog = script(tmp_path, FORKING.format(job=FIXED_JOB, child_exit="os._exit(0)"))
    result = threadcheck("run", prog)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "threadcheck: no thread-affinity violations found\n"


def test_report_paths_are_from_where_the_user_started(tmp_path: Path) -> None:
    # A program that changes directory had its files named from there.
    (tmp_path / "elsewhere").mkdir()
    script(
        tmp_path,
        """
        import os, threading
        from twisted.internet import reactor
        os.chdir("elsewhere")
        threading.Thread(target=reactor.callLater, args=(0, print)).start()
        reactor.callLater(0.1, reactor.stop)
        reactor.run()
        """,
    )
    result = threadcheck("run", "prog.py", cwd=tmp_path)
    assert result.returncode == VIOLATIONS_FOUND, result.stderr
    assert "\n      prog.py:5 in <module>\n" in result.stderr, result.stderr
    assert "elsewhere" not in result.stderr
