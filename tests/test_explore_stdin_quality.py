"""A whole program that reads its standard input, explored: every run reads it.

Z48 (magic-wormhole's ``receive``: the code typed at a prompt, read by
``input()`` in a thread): the warm-up run read all of the piped input, and every
schedule after it met its end, "fails on every schedule: not an interleaving bug".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import CLEAN, write_program

TRANSFERS = """
import threading
from twisted.internet import reactor, threads
from twisted.internet.defer import gatherResults

received = {{"bytes": 0}}
lock = threading.Lock()

def ask():
    return input("Enter the transfer's chunk count: ")

def receive(chunks):
    for _ in range(chunks):
        {update}

def start(answer):
    chunks = int(answer)
    jobs = [threads.deferToThread(receive, chunks) for _ in range(2)]
    return gatherResults(jobs)

def check(_):
    assert received["bytes"] == 2 * int(COUNT[0]), received

COUNT = []
d = threads.deferToThread(ask)
d.addCallback(lambda answer: COUNT.append(answer) or answer).addCallback(start)
d.addCallback(check).addBoth(lambda r: (reactor.stop(), r)[1])
d.addErrback(lambda f: (print("failed:", f.value), setattr(reactor, "failed", 1)))
reactor.run()
if getattr(reactor, "failed", 0):
    raise SystemExit(1)
"""
LOST = 'received["bytes"] += 1'
LOCKED = """with lock:
            received["bytes"] += 1"""


def explore(program: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "threadcheck", *args, str(program)]
    return subprocess.run(
        command, input="2\n", capture_output=True, text=True, timeout=300, cwd=program.parent
    )


def test_a_lost_update_after_a_prompt_is_found_and_replayed_with_the_same_input(
    tmp_path: Path,
) -> None:
    program = write_program(tmp_path, TRANSFERS.format(update=LOST))
    result = explore(program, "explore", "--budget", "300")
    assert result.returncode == 1, result.stderr
    assert "failed: {'bytes':" in result.stdout, result.stdout  # the check's, not EOFError
    assert "EOF" not in result.stdout + result.stderr
    [replay] = [line for line in result.stderr.splitlines() if line.startswith("replay: ")]
    token = replay.split()[3]
    replayed = explore(program, "replay", token)
    assert replayed.returncode == 1, replayed.stderr
    assert replayed.stderr.splitlines()[0] == result.stderr.splitlines()[0], replayed.stderr


def test_its_locked_twin_reads_the_input_in_every_schedule(tmp_path: Path) -> None:
    program = write_program(tmp_path, TRANSFERS.format(update=LOCKED))
    result = explore(program, "explore", "--budget", "200")
    assert result.returncode == 0, result.stdout + result.stderr
    assert CLEAN.match(result.stderr), result.stderr
    assert "failed" not in result.stdout, result.stdout
