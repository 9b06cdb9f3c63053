"""Fuzz: random correct callFromThread/deferToThread/blockingCallFromThread programs.

Each example builds a small program: a few worker threads, each doing a
random sequence of thread-safe hand-offs to the reactor, plus work submitted
with deferToThread from the reactor thread. It runs on a fresh instrumented
reactor in raise mode and checks what Twisted promises:

* callFromThread calls made by one thread run in the reactor thread, in the
  order that thread made them;
* every deferToThread result is delivered exactly once, in the reactor thread;
* blockingCallFromThread returns the value computed in the reactor thread;
* threadcheck reports nothing: correct programs give no false positives.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import threads
from twisted.internet.defer import Deferred, gatherResults

from threadcheck import Mode
from threadcheck_reactor import ThreadCheckReactor

# Generous for a few threads doing at most 30 hand-offs each; short enough
# that shrinking a hang stays practical.
RUN_TIMEOUT = 10.0

ops = st.lists(st.sampled_from(["post", "ask", "yield"]), max_size=30)


@dataclass
class Trace:
    reactor_ident: int = 0
    posts: dict[int, list[int]] = field(default_factory=dict)
    wrong_thread: list[str] = field(default_factory=list)
    asked: list[tuple[int, int]] = field(default_factory=list)

    def post(self, worker: int, seq: int) -> None:
        if threading.get_ident() != self.reactor_ident:
            self.wrong_thread.append(f"post {worker}/{seq}")
        self.posts.setdefault(worker, []).append(seq)


@given(workers=st.lists(ops, min_size=1, max_size=4), deferred_jobs=st.integers(0, 20))
def test_thread_handoffs_keep_their_promises(workers: list[list[str]], deferred_jobs: int) -> None:
    reactor = ThreadCheckReactor(Mode.RAISE)
    trace = Trace(reactor_ident=threading.get_ident())
    delivered: list[int] = []
    errors: list[BaseException] = []

    def worker(index: int, script: list[str]) -> None:
        try:
            for seq, op in enumerate(script):
                if op == "post":
                    reactor.callFromThread(trace.post, index, seq)
                elif op == "ask":
                    got = threads.blockingCallFromThread(reactor, lambda s=seq: s * 2)
                    trace.asked.append((seq * 2, got))
                else:
                    threading.Event().wait(0)  # let another thread in
        except BaseException as error:
            errors.append(error)

    def job(n: int) -> int:
        return n + 1000

    def deliver(result: int) -> None:
        if threading.get_ident() != trace.reactor_ident:
            trace.wrong_thread.append(f"deliver {result}")
        delivered.append(result)

    def start() -> Deferred[object]:
        pool = reactor.getThreadPool()
        jobs = [
            threads.deferToThreadPool(reactor, pool, job, n).addCallback(deliver)
            for n in range(deferred_jobs)
        ]
        spawned = [
            threading.Thread(target=worker, args=(i, script), name=f"w{i}")
            for i, script in enumerate(workers)
        ]
        for thread in spawned:
            thread.start()
        # deferToThreadPool with this reactor: deferToThread would use the global one.
        joined = [threads.deferToThreadPool(reactor, pool, thread.join) for thread in spawned]
        done: Deferred[object] = gatherResults(jobs + joined)
        done.addErrback(errors.append)
        # Posts queued before the joins finished run before this call does.
        done.addBoth(lambda _: reactor.callFromThread(reactor.stop))
        return done

    reactor.callWhenRunning(start)
    timeout = reactor.callLater(RUN_TIMEOUT, reactor.stop)
    reactor.run(installSignalHandlers=False)

    assert timeout.active(), "program did not finish in time"
    assert errors == []
    assert trace.wrong_thread == []
    for index, script in enumerate(workers):
        expected = [seq for seq, op in enumerate(script) if op == "post"]
        assert trace.posts.get(index, []) == expected
    assert all(want == got for want, got in trace.asked)
    assert sorted(delivered) == [n + 1000 for n in range(deferred_jobs)]
    assert reactor.threadcheck.recorder.violations() == []
