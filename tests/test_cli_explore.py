"""``threadcheck explore`` and ``threadcheck replay`` end to end, in subprocesses."""

from __future__ import annotations

import html
import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from threadcheck import examples
from threadcheck._sched import _token

pytestmark = pytest.mark.slow

THREADCHECK = [sys.executable, "-m", "threadcheck"]
RACE = "threadcheck.examples.race_lost_update"
RACE_FIXED = "threadcheck.examples.race_lost_update_fixed"
LOST_UPDATE = "exit: the program exited with status 1: lost update: 1 request(s) counted"


def threadcheck(
    *args: str, cwd: Path | None = None, hash_seed: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHASHSEED"}
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    return subprocess.run(
        [*THREADCHECK, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


def script(tmp_path: Path, body: str, name: str = "prog.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


def replay_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("replay: ")]
    assert len(lines) == 1, output
    return lines[0].removeprefix("replay: ")


def token_of(output: str) -> str:
    return shlex.split(replay_line(output))[2]


@pytest.fixture(scope="module")
def race() -> subprocess.CompletedProcess[str]:
    """The bundled race, explored once for the tests that need its token."""
    return threadcheck("explore", "-m", RACE)


def test_every_race_example_has_a_fixed_twin_and_is_covered() -> None:
    assert examples.RACES == ("race_lost_update",)
    folder = Path(examples.__file__).parent
    assert all((folder / f"{name}_fixed.py").exists() for name in examples.RACES)


def test_explore_finds_the_bundled_race(race: subprocess.CompletedProcess[str]) -> None:
    assert race.returncode == 1, race.stderr
    assert race.stderr.startswith(f"threadcheck: {LOST_UPDATE}")
    assert "shrunk to 1" in race.stderr
    assert "stats.handled (store)   <- preempted: T" in race.stderr
    assert re.search(
        rf"^replay: threadcheck replay tc1\.\S+ -m {re.escape(RACE)}$", race.stderr, re.M
    )


def test_the_printed_replay_command_reproduces_the_failure(
    race: subprocess.CompletedProcess[str],
) -> None:
    command = shlex.split(replay_line(race.stderr))
    assert command[:2] == ["threadcheck", "replay"]
    replayed = threadcheck(*command[1:])
    assert replayed.returncode == 1, replayed.stderr
    assert replayed.stderr.startswith(f"threadcheck: {LOST_UPDATE}")
    assert "replayed from its token (1 preemption)" in replayed.stderr
    assert "warning" not in replayed.stderr


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("nonsense", "not a threadcheck replay token"),
        ("tc1.eNpFjtFuwyAMRX9l4pkhCNJS8StRVCFwAxqFCDtdqmn", "damaged replay token"),
    ],
)
def test_a_garbage_token_is_a_one_line_usage_error(token: str, message: str) -> None:
    result = threadcheck("replay", token, "-m", RACE)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"threadcheck: error: {message}")


def test_a_tampered_token_is_a_one_line_usage_error(
    race: subprocess.CompletedProcess[str],
) -> None:
    token = token_of(race.stderr)
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    result = threadcheck("replay", tampered, "-m", RACE)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("threadcheck: error: damaged replay token")


def test_a_token_replayed_on_another_program_diverges(
    race: subprocess.CompletedProcess[str],
) -> None:
    result = threadcheck("replay", token_of(race.stderr), "-m", RACE_FIXED)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("threadcheck: the replay diverged: ")
    # It did not say what the token was recorded running (other arguments, say).
    assert result.stderr.endswith(
        f"; the token was recorded running -m {RACE}: replay it with the same arguments\n"
    )


COROUTINES = """
from twisted.internet import defer, reactor, threads

class Stats:
    bytes = 0

stats = Stats()

def fetch(n):
    {fetch}
    return n

@defer.inlineCallbacks
def legacy(n):
    got = yield threads.deferToThread(fetch, n)
    stats.bytes += 1000 * got

async def modern(n):
    got = await threads.deferToThread(fetch, n)
    stats.bytes += 1000 * got

d = defer.gatherResults([legacy(1), defer.ensureDeferred(modern(2)), legacy(4)])
d.addErrback(print)  # the program's own error handling
d.addBoth(lambda _: reactor.stop())
reactor.run()
if stats.bytes % 1000 != 7:
    raise SystemExit(f"lost update: {{stats.bytes}}")
"""


def test_a_diverging_replay_shows_the_program_none_of_our_internals(tmp_path: Path) -> None:
    # The Abort that unwinds the schedule reached the program's errback, which
    # printed it with our frames.
    (tmp_path / "bug").mkdir()
    (tmp_path / "other").mkdir()
    buggy = script(tmp_path / "bug", COROUTINES.format(fetch="stats.bytes += n  # BUG"))
    other = script(tmp_path / "other", COROUTINES.format(fetch="pass"))
    found = threadcheck("explore", buggy)
    assert found.returncode == 1, found.stderr
    result = threadcheck("replay", token_of(found.stderr), other)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("threadcheck: the replay diverged: "), result.stderr
    assert "recorded running" not in result.stderr  # the same script name, in another folder
    assert "Abort" not in result.stdout + result.stderr


def test_a_token_with_edited_decisions_diverges(race: subprocess.CompletedProcess[str]) -> None:
    document = _token.decode(token_of(race.stderr))
    del document["v"]
    # Every decision now picks T0: the preemption that lost the update is gone.
    decisions = _token.expand(document["decisions"])
    document["decisions"] = _token.run_length([0 for _ in decisions])
    result = threadcheck("replay", _token.encode(document), "-m", RACE)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("threadcheck: the replay diverged: ")


def test_a_replay_under_another_hash_seed_warns_on_stderr(
    race: subprocess.CompletedProcess[str],
) -> None:
    result = threadcheck("replay", token_of(race.stderr), "-m", RACE, hash_seed="7")
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        "threadcheck: warning: the token was recorded with hashseed 0, this run has 7"
    )


def test_the_fixed_twin_explores_clean() -> None:
    result = threadcheck("explore", "--budget", "300", "--strategy", "random", "-m", RACE_FIXED)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(
        r"threadcheck: 300 schedules \(\d+ distinct\) in [\d.]+ s, no failure; "
        r"budget spent: no failure seen, which is not a proof\n",
        result.stderr,
    )
    assert result.stdout == ""


def test_json_when_a_schedule_fails(tmp_path: Path) -> None:
    path = tmp_path / "outcome.json"
    result = threadcheck("explore", "--json", str(path), "-m", RACE)
    assert result.returncode == 1, result.stderr
    outcome = json.loads(path.read_text())
    assert outcome["token"] == token_of(result.stderr)
    assert outcome["found"] is True
    assert 1 <= outcome["distinct"] <= outcome["schedules"]
    failure = outcome["failure"]
    assert failure["kind"] == "exit"
    assert failure["message"].startswith("the program exited with status 1: lost update")
    assert failure["thread"] == "MainThread"
    assert re.fullmatch(r".*race_lost_update\.py:\d+ in main", failure["location"])


def test_json_when_clean(tmp_path: Path) -> None:
    path = tmp_path / "outcome.json"
    result = threadcheck(
        "explore", "--budget", "20", "--strategy", "random", "--json", str(path), "-m", RACE_FIXED
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(path.read_text())
    assert outcome == {
        "found": False,
        "inconclusive": False,
        "token": None,
        "schedules": 20,
        "distinct": outcome["distinct"],
        "exhausted": False,
        "proof": False,
        "bounded_by": [],
        "failure": None,
    }
    assert 1 <= outcome["distinct"] <= 20


def test_json_of_a_bounded_search_names_its_bound(tmp_path: Path) -> None:
    path = tmp_path / "outcome.json"
    result = threadcheck(
        "explore", "--strategy", "bounded:1", "--budget", "5000", "--json", str(path),
        "-m", RACE_FIXED,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr.rstrip().endswith(
        "every schedule with at most 1 preemption (bounded:1), which is not a proof"
    ), result.stderr
    outcome = json.loads(path.read_text())
    assert (outcome["exhausted"], outcome["proof"], outcome["bounded_by"]) == (
        True,
        False,
        ["at most 1 preemption"],
    )


def test_json_of_a_proof(tmp_path: Path) -> None:
    path = tmp_path / "outcome.json"
    result = threadcheck("explore", "--strategy", "dpor", "--json", str(path), "-m", RACE_FIXED)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("threadcheck: every interleaving explored ("), result.stderr
    outcome = json.loads(path.read_text())
    assert (outcome["exhausted"], outcome["proof"], outcome["bounded_by"]) == (True, True, [])
    assert outcome["schedules"] < 50


def test_html_and_trace_of_a_failure_and_of_its_replay(tmp_path: Path) -> None:
    from test_view import validate_chrome_trace

    page, trace = tmp_path / "found.html", tmp_path / "found.json"
    found = threadcheck("explore", "--html", str(page), "--trace", str(trace), "-m", RACE)
    assert found.returncode == 1, found.stderr
    text = page.read_text()
    assert "<svg" in text and f"threadcheck explore -m {RACE}" in text
    assert html.escape(replay_line(found.stderr), quote=True) in text
    document = json.loads(trace.read_text())
    validate_chrome_trace(document)
    assert document["otherData"]["replay"] == replay_line(found.stderr)
    command = shlex.split(replay_line(found.stderr))
    again, again_trace = tmp_path / "replayed.html", tmp_path / "replayed.json"
    replayed = threadcheck(
        "replay", "--html", str(again), "--trace", str(again_trace), *command[2:]
    )
    assert replayed.returncode == 1, replayed.stderr
    assert "replayed from its token" in again.read_text()
    # The replay's trace said "replay": "" (it holds the command that reruns it).
    assert json.loads(again_trace.read_text())["otherData"]["replay"] == shlex.join(command)


def test_a_pytest_session_with_pytest_twisted_is_explored(tmp_path: Path) -> None:
    # pytest-twisted finds the default reactor's class through the module of
    # twisted.internet.default.install, which explore's no-op installer had
    # made threadcheck's: INTERNALERROR, then "exited with status 3".
    script(tmp_path, "def test_simple():\n    assert True\n", name="test_simple.py")
    result = threadcheck(
        "explore", "--budget", "3", "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-p", "twisted", "test_simple.py", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "INTERNALERROR" not in result.stdout


def test_time_bounds_the_exploration() -> None:
    # Not less: beside other CPU-bound work, the warm-up alone once took the
    # whole of 0.5 s, and once of 1.5 s ("inconclusive: no schedule ran").
    result = threadcheck("explore", "--time", "4", "--strategy", "random", "-m", RACE_FIXED)
    assert result.returncode == 0, result.stderr
    assert re.match(r"threadcheck: \d+ schedules? .* no failure", result.stderr)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "5", "--time", "1"], "argument --time: not allowed with argument --budget"),
        (["--strategy", "dfs"], "--strategy: unknown strategy 'dfs': use portfolio, random"),
        (["--strategy", "bounded:200000000"], "--strategy: unknown strategy 'bounded:200000000'"),
        (["--strategy", "pct:"], "--strategy: unknown strategy 'pct:'"),
        (
            ["--strategy", "dpor", "--granularity", "line"],
            "--strategy: the dpor strategy reasons on accesses: it needs granularity 'access'",
        ),
        (["--granularity", "word"], "argument --granularity: invalid choice: 'word'"),
        (["--budget", "0"], "argument --budget: expected a positive number, got '0'"),
        (["--time", "soon"], "argument --time: expected a positive number, got 'soon'"),
        (["--time", "inf"], "argument --time: expected a positive number, got 'inf'"),
        (["--time", "1e400"], "argument --time: expected a positive number, got '1e400'"),
    ],
)
def test_bad_options_are_one_line_usage_errors(args: list[str], message: str) -> None:
    result = threadcheck("explore", *args, "-m", RACE)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"threadcheck: error: {message}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explore"], "explore: expected a script or -m module"),
        (["explore", "missing.py"], "no such file: missing.py\n"),  # not "... None ..."
        (["explore", "-m", "threadcheck.examples.nosuch"], "no module named"),
        (["explore", "--json", "/no/such/folder/out.json", "x.py"], "--json: no such directory"),
        (["explore", "--html", "/no/such/folder/p.html", "x.py"], "--html: no such directory"),
        (["replay", "--trace", "/no/such/t.json", "tc1.x", "x.py"], "--trace: no such directory"),
        (["replay"], "replay: expected a token, then a script or -m module"),
        (["replay", "tc1.x"], "replay: expected a script or -m module"),
        (["replay", "x.py", "tc1.x"], "replay: the token comes first: threadcheck replay TOKEN"),
        (["replay", "tc1.x", "--budget", "3", "-m", RACE], "unrecognized arguments: --budget"),
    ],
)
def test_missing_or_wrong_programs_are_one_line_usage_errors(
    args: list[str], message: str
) -> None:
    result = threadcheck(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("threadcheck: error: ")
    assert message in result.stderr


def test_a_scenario_function_named_on_the_command_line_points_to_the_api(
    tmp_path: Path,
) -> None:
    # It said only "no such file: scenarios.py:lost_update".
    (tmp_path / "scenarios.py").write_text("def lost_update(reactor):\n    pass\n")
    result = threadcheck("explore", "scenarios.py:lost_update", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        "threadcheck: error: no such file: scenarios.py:lost_update (threadcheck explore runs"
        " a program; explore a scenario function from Python:"
        " threadcheck.explore(module.function), see docs/explore.md)\n"
    )


def test_explore_s_options_after_the_program_are_warned_of(tmp_path: Path) -> None:
    # `explore prog.py --budget 3` gave --budget to the program, silently, and
    # explored the default budget of 2000.
    program = script(tmp_path, "import sys\nprint(sys.argv[1:])\n")
    result = threadcheck("explore", "--budget", "2", program, "--time=60", "-v", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert warnings == [  # once: not again from the command re-executed with its hash seed
        "threadcheck: warning: --time=60 after the program is the program's argument;"
        " threadcheck explore's options go before the script or -m module (or write --"
        " before the script: the arguments are the program's)"
    ]
    assert "['--time=60', '-v']" in result.stdout


@pytest.mark.parametrize(
    "separated", [["--", "prog.py", "--json", "out.json"], ["prog.py", "--", "--json", "out.json"]]
)
def test_options_the_program_is_given_after_a_double_dash_are_no_warning(
    tmp_path: Path, separated: list[str]
) -> None:
    # A program with a --json of its own had no way to say the arguments were its.
    script(tmp_path, "import sys\nprint(sys.argv[1:])\n")
    result = threadcheck("explore", "--budget", "2", *separated, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr
    assert "'--json', 'out.json']" in result.stdout


# Exits with status 3 when the worker's write lands between the main thread's
# read and write: only on some schedules.
EXITS_ON_A_RACE = """
import sys
import threading
from twisted.internet import reactor

state = {"n": 0}

def bump():
    state["n"] += 1

worker = threading.Thread(target=bump)
worker.start()
bump()
worker.join()
reactor.callWhenRunning(reactor.stop)
reactor.run()
if state["n"] != 2:
    sys.exit(3)
"""


def test_a_program_that_exits_non_zero_on_some_schedule(tmp_path: Path) -> None:
    path = tmp_path / "outcome.json"
    prog = script(tmp_path, EXITS_ON_A_RACE)
    result = threadcheck("explore", "--json", str(path), prog)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: exit: the program exited with status 3\n")
    failure = json.loads(path.read_text())["failure"]
    assert failure["kind"] == "exit"
    assert failure["location"].endswith("prog.py:18 in <module>")
    assert replay_line(result.stderr).endswith(f"replay {token_of(result.stderr)} {prog}")


INSTALLS = """
from twisted.internet import {module}
{module}.install()
from twisted.internet import reactor, threads

def fetch():
    reactor.callLater(0, print, "retry")  # BUG: from a worker thread

threads.deferToThread(fetch).addBoth(lambda _: reactor.callLater(0.1, reactor.stop))
reactor.run()
"""


def test_a_program_installing_its_reactor_is_explored_on_the_scheduled_one(
    tmp_path: Path,
) -> None:
    result = threadcheck("explore", script(tmp_path, INSTALLS.format(module="epollreactor")))
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("threadcheck: violation: reactor.callLater called from")
    assert "at prog.py:7 in fetch" in result.stderr


def test_a_program_installing_the_asyncio_reactor_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    # It used to fail every schedule with ReactorAlreadyInstalledError.
    result = threadcheck("explore", script(tmp_path, INSTALLS.format(module="asyncioreactor")))
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("threadcheck: the program installs Twisted's asyncio reactor")
    assert "`threadcheck run`" in result.stderr


def test_an_uncaught_exception_shows_the_programs_own_traceback(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """
        from twisted.internet import reactor, threads

        def fetch():
            raise KeyError("gone")

        def done(result):
            reactor.stop()
            return result

        outcome = []
        threads.deferToThread(fetch).addBoth(done).addErrback(outcome.append)
        reactor.run()
        outcome[0].raiseException()
        """,
    )
    result = threadcheck("explore", prog)
    assert result.returncode == 1, result.stderr
    # It fails whatever the schedule: said so, and shown as it ran, without preemptions.
    assert re.match(
        r"threadcheck: exception: KeyError: 'gone'; fails on every schedule tried "
        r"\(\d+: the first, and \d+ more run to check it, outside the budget\): "
        r"not an interleaving bug\n",
        result.stderr,
    )
    traceback = result.stderr[result.stderr.index("Traceback") :]
    assert "runpy" not in traceback and "_targets.py" not in traceback
    assert f'File "{prog}", line 14, in <module>' in traceback


def test_a_failure_on_the_first_schedule_that_others_escape_is_an_interleaving_bug(
    tmp_path: Path,
) -> None:
    # Fails without preemptions and with one at the first choice: a producer's
    # work is lost when the other's stop() is handled first. Only a schedule
    # where both producers post before the reactor runs their calls passes.
    prog = script(
        tmp_path,
        """
        import sys
        import threading
        from twisted.internet import reactor

        results = []

        def producer(base):
            for i in range(2):
                reactor.callFromThread(results.append, base + i)
            reactor.callFromThread(reactor.stop)  # BUG: the first producer done stops all

        def start():
            for base in (0, 10):
                threading.Thread(target=producer, args=(base,)).start()

        reactor.callWhenRunning(start)
        reactor.run()
        if len(results) != 4:
            sys.exit(f"lost work at shutdown: {sorted(results)}")
        """,
    )
    result = threadcheck("explore", prog)
    assert result.returncode == 1, result.stderr
    headline = result.stderr.splitlines()[0]
    assert (
        headline
        == "threadcheck: exit: the program exited with status 1: lost work at shutdown: [0, 1]"
    )
    assert "found on schedule 1 " in result.stderr


def test_each_schedule_gets_fresh_modules_and_the_programs_arguments(tmp_path: Path) -> None:
    script(tmp_path, "seen = []\n", name="helper.py")
    prog = script(
        tmp_path,
        """
        import sys
        import threading
        import helper
        from twisted.internet import reactor, threads

        helper.seen.append(sys.argv[1:])
        assert helper.seen == [["--flag", "value"]], helper.seen
        threads.deferToThread(len, "x").addBoth(lambda _: reactor.stop())
        reactor.run()
        print(sys.argv[0] == __file__, __name__, threading.current_thread().name)
        """,
    )
    result = threadcheck(
        "explore", "--budget", "25", "--strategy", "random", prog, "--flag", "value"
    )
    assert result.returncode == 0, result.stderr
    # One warm-up run (the same state for recording and replaying), then 25.
    assert result.stdout.splitlines() == ["True __main__ MainThread"] * 26


HASH_OF_A = """
from twisted.internet import reactor
print(hash("a"))
reactor.callWhenRunning(reactor.stop)
reactor.run()
"""


def test_the_hash_seed_is_pinned(tmp_path: Path) -> None:
    prog = script(tmp_path, HASH_OF_A)
    runs = [
        threadcheck("explore", "--budget", "10", "--strategy", "random", prog) for _ in range(2)
    ]
    assert [run.returncode for run in runs] == [0, 0]
    assert runs[0].stdout == runs[1].stdout
    assert set(runs[0].stdout.split()) == {str(_hash_under("0", "a"))}
    assert len(runs[0].stdout.split()) == 1 + 10  # the warm-up run, then 10 schedules


def test_an_empty_hash_seed_is_random_and_is_pinned(tmp_path: Path) -> None:
    # Python hashes strings randomly when PYTHONHASHSEED is empty, as when unset.
    prog = script(tmp_path, HASH_OF_A)
    result = threadcheck("explore", "--budget", "3", prog, hash_seed="")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {str(_hash_under("0", "a"))}
    assert "string hashes of PYTHONHASHSEED=0)" in result.stderr


def test_a_hash_seed_already_set_is_kept(tmp_path: Path) -> None:
    prog = script(tmp_path, HASH_OF_A)
    result = threadcheck("explore", "--budget", "3", prog, hash_seed="123")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == {str(_hash_under("123", "a"))}


def test_the_token_records_the_pinned_hash_seed(race: subprocess.CompletedProcess[str]) -> None:
    assert _token.decode(token_of(race.stderr))["hashseed"] == "0"


def _hash_under(seed: str, text: str) -> int:
    check = subprocess.run(
        [sys.executable, "-c", f"print(hash({text!r}))"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": seed},
        check=True,
    )
    return int(check.stdout)


def test_a_time_budget_too_short_for_one_schedule_is_inconclusive(tmp_path: Path) -> None:
    prog = script(tmp_path, "import threading\nthreading.Thread(target=print).start()\n")
    result = threadcheck("explore", "--time", "0.000001", prog)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "threadcheck: error: inconclusive: no schedule ran (budget 1e-06 s was spent before "
        "the first one ended); nothing was explored"
    ]


def test_include_takes_a_module_name_and_refuses_a_missing_one(tmp_path: Path) -> None:
    prog = script(tmp_path, "import threading\nthreading.Thread(target=print).start()\n")
    missing = threadcheck("explore", "--include", "no_such_library", prog)
    assert missing.returncode == 2
    assert missing.stderr.splitlines() == [
        "threadcheck: error: --include: no such file, folder or module: no_such_library"
    ]
    named = threadcheck("explore", "--budget", "20", "--include", "json", prog)
    assert named.returncode == 0, named.stderr
    assert "no failure" in named.stderr


TWISTED_RACE = """
from types import SimpleNamespace

from twisted.internet import reactor, task, threads
from twisted.internet.defer import gatherResults

stats = SimpleNamespace(handled=0)


def handle():
    stats.handled += 1


work = [threads.deferToThread(handle), task.deferLater(reactor, 0, handle)]
gatherResults(work).addBoth(lambda _: reactor.stop())
reactor.run()
"""


@pytest.mark.parametrize("command", [["explore", "--budget", "20"], ["run", "--races"]])
def test_twisted_itself_can_be_included(tmp_path: Path, command: list[str]) -> None:
    # Rewritten, Twisted's _ModuleProxy.__getattribute__ called a hook whose
    # isinstance() called it again: RecursionError, "internal error".
    result = threadcheck(*command, "--include", "twisted", script(tmp_path, TWISTED_RACE))
    assert "internal error" not in result.stderr, result.stderr
    if command[0] == "run":
        assert result.returncode == 3, result.stderr
        assert "data race on SimpleNamespace.handled" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert result.stderr.startswith("threadcheck: 20 schedules"), result.stderr


DAEMON_CHDIR = """
import os
import threading

from twisted.internet import reactor, threads

os.chdir("etc")  # relative, as daemons do
with open("app.cfg") as config:
    jobs = int(config.read())
lock = threading.Lock()
done = []


def job():
    with lock:
        done.append(1)


work = [threads.deferToThread(job) for _ in range(jobs)]
threads.defer.gatherResults(work).addBoth(lambda _: reactor.stop())
reactor.run()
assert len(done) == jobs
"""


@pytest.mark.parametrize("command", ["explore", "run"])
def test_a_program_that_changes_directory(tmp_path: Path, command: str) -> None:
    # The next schedule started in etc/ (FileNotFoundError on every schedule
    # after the first: "not an interleaving bug"), and a relative --json was
    # written where the program ended up.
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "app.cfg").write_text("2")
    options = ["--budget", "50"] if command == "explore" else []
    prog = script(tmp_path, DAEMON_CHDIR)
    result = threadcheck(command, *options, "--json", "out.json", prog, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "out.json").read_text())
    assert not (tmp_path / "etc" / "out.json").exists()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("granularity", "bogus"),
        ("max_delay", "abc"),
        ("seed", "x"),
        ("include", 5),
        ("hashseed", "99999999999"),  # Python itself refused it, with a fatal error
    ],
)
def test_a_token_with_settings_edited_is_damaged_not_an_internal_error(
    race: subprocess.CompletedProcess[str], setting: str, value: object
) -> None:
    from threadcheck._sched import _token

    document = _token.decode(token_of(race.stderr))
    edited = _token.encode({**document, setting: value})
    result = threadcheck("replay", edited, "-m", RACE)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(
        "threadcheck: error: damaged replay token: its settings are not valid"
    ), result.stderr


def test_a_pytest_tests_token_says_how_to_replay_it(
    race: subprocess.CompletedProcess[str],
) -> None:
    # It diverged on the file, with a warning about the hash seed: unclear.
    from threadcheck._sched import _token

    document = _token.decode(token_of(race.stderr))
    test = "test_sessions.py::test_buggy"
    token = _token.encode({**document, "target": test})
    result = threadcheck("replay", token, "test_sessions.py")
    assert result.returncode == 2
    assert result.stderr == (
        f"threadcheck: error: replay: the token is of the pytest test {test}: replay it with "
        f"pytest '{test}' --threadcheck-replay={token}\n"
    )


def test_a_scenarios_token_says_how_to_replay_it(
    race: subprocess.CompletedProcess[str],
) -> None:
    # A Hypothesis test's token (threadcheck.run), replayed on the test's file:
    # "the replay diverged: ... replay it with the same arguments".
    from threadcheck._sched import _token

    document = _token.decode(token_of(race.stderr))
    token = _token.encode({**document, "target": "test_cache:test_cache.<locals>.<lambda>"})
    result = threadcheck("replay", token, "test_sessions.py")
    assert result.returncode == 2
    assert result.stderr == (
        "threadcheck: error: replay: the token is of the scenario "
        "test_cache:test_cache.<locals>.<lambda>, not of a program: replay it in Python with "
        "threadcheck.replay(scenario, TOKEN), that scenario with the same values, as printed "
        "beside it\n"
    )


def test_an_inconclusive_exploration_writes_its_json_over_an_earlier_one(tmp_path: Path) -> None:
    # The file of the clean run before still said "found": false; then none was
    # written at all, though the docs promise the outcome of an exploration.
    out, page, trace = tmp_path / "out.json", tmp_path / "out.html", tmp_path / "trace.json"
    out.write_text('{"found": false}')
    views = ["--html", str(page), "--trace", str(trace)]  # none were written, silently
    result = threadcheck("explore", "--time", "0.000001", "--json", str(out), *views, "-m", RACE)
    assert result.returncode == 2, result.stderr
    outcome = json.loads(out.read_text())
    assert (outcome["found"], outcome["inconclusive"], outcome["schedules"]) == (False, True, 0)
    assert "inconclusive: no schedule ran" in page.read_text()
    assert "inconclusive" in json.loads(trace.read_text())["otherData"]["outcome"]


@pytest.mark.parametrize("command", ["run", "explore"])
def test_bad_input_leaves_the_files_at_the_report_paths_alone(
    tmp_path: Path, command: str
) -> None:
    # The check of the report paths removed what was there before the program
    # was even found: `--json last.json typo.py` lost last.json, and
    # `--json app.py app.py` (the report's name left out) the program itself.
    app = tmp_path / "app.py"
    app.write_text("print('serving')\n")
    last = tmp_path / "last.json"
    last.write_text('{"found": false}')
    typo = threadcheck(command, "--json", str(last), str(tmp_path / "typo.py"))
    assert typo.returncode == 2 and "no such file" in typo.stderr, typo.stderr
    same = threadcheck(command, "--html", str(app), str(app))
    assert same.returncode == 2
    assert same.stderr == (
        f"threadcheck: error: --html: {app} is a Python file, not a report's: give the "
        "report its name\n"
    )
    assert app.read_text() == "print('serving')\n" and last.read_text() == '{"found": false}'


def test_a_warning_of_the_program_is_shown_once_not_once_per_schedule(tmp_path: Path) -> None:
    prog = script(
        tmp_path,
        """
        import warnings
        from twisted.internet import reactor, threads

        warnings.warn("the config format is old", UserWarning)
        threads.deferToThread(int).addBoth(lambda _: reactor.stop())
        reactor.run()
        """,
    )
    result = threadcheck("explore", "--budget", "30", prog)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("UserWarning: the config format is old") == 1, result.stderr


@pytest.mark.parametrize(
    ("body", "called"),
    [
        ("threadcheck.explore(lambda: None, budget=2)", "explore() (or replay, run)"),
        (
            "worker = threading.Thread(target=threadcheck.explore, args=(lambda: None,))\n"
            "worker.start()\n"
            "worker.join()",
            "explore() (or replay, run)",
        ),
        ("threadcheck.stress(lambda reactor: None, 2)", "stress()"),
    ],
    ids=["explore", "explore-in-a-worker", "stress"],
)
def test_a_program_that_explores_itself_is_refused_in_one_line(
    tmp_path: Path, body: str, called: str
) -> None:
    # Nested, explore spun for ever (deaf to SIGTERM); from a worker it failed
    # the schedule as the program's exception; stress waited 10 s, then "blocked".
    program = tmp_path / "prog.py"
    program.write_text(f"import threading\nimport threadcheck\n{body}\n")
    result = subprocess.run(
        [sys.executable, "-m", "threadcheck", "explore", str(program)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"threadcheck: threadcheck.{called} called by a program being explored: "
        "explore the program that does not call it, or run this one with python\n"
    )


def test_a_module_of_the_program_shadowing_twisteds_is_its_doing_not_ours(
    tmp_path: Path,
) -> None:
    # attrs.py beside the program: Twisted's `from attrs import define` failed
    # as threadcheck imported it, "internal error ...; please report it".
    script(tmp_path, "VERSION = '1.0'\n", name="attrs.py")
    program = script(tmp_path, "import attrs\nprint(attrs.VERSION)\n")
    result = threadcheck("explore", "--budget", "5", program)
    assert result.returncode == 2, result.stderr
    cannot_start = "threadcheck: error: the program cannot start: "
    assert result.stderr.startswith(cannot_start), result.stderr
    assert "the program's own attrs.py shadows the 'attrs' module" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_a_command_on_path_is_named_by_its_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `threadcheck run twistd ...` said only "no such file: twistd".
    from threadcheck._cli._options import UsageError, check_script

    command = tmp_path / "twistd"
    command.write_text("#!/usr/bin/env python3\n")
    command.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError) as raised:
        check_script("twistd")
    assert str(raised.value) == (
        f"no such file: twistd (the command's script: threadcheck run {command} ...)"
    )
    # Under explore it named `threadcheck run` too.
    for subcommand, words in (("explore", "explore"), ("replay", "replay TOKEN")):
        with pytest.raises(UsageError) as raised:
            check_script("twistd", subcommand)
        assert str(raised.value) == (
            f"no such file: twistd (the command's script: threadcheck {words} {command} ...)"
        )
