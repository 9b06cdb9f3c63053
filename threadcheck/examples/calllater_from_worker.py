"""Bug: a ``deferToThread`` worker schedules a retry with ``reactor.callLater``.

callLater is not thread-safe: the timer is appended to the reactor's lists
from the worker thread while the reactor thread may be reading them, and the
reactor is not woken up, so the retry can fire late or never.
Fix: ``reactor.callFromThread(reactor.callLater, 0.01, retry)``.
"""

from __future__ import annotations

from threadcheck.examples._util import stop_if_running


def main() -> None:
    from twisted.internet import reactor, threads

    attempts: list[int] = []

    def fetch(attempt: int) -> str:
        if attempt == 0:
            # BUG: called in a thread-pool thread.
            reactor.callLater(0.01, retry)
            return "busy"
        return "ok"

    def retry() -> None:
        attempts.append(1)
        threads.deferToThread(fetch, len(attempts)).addBoth(finish)

    def finish(result: object) -> None:
        print(f"second attempt: {result}")
        reactor.stop()

    def start() -> None:
        threads.deferToThread(fetch, 0).addErrback(lambda f: print(f"first attempt: {f.value}"))

    reactor.callWhenRunning(start)
    # Safety net: in raise mode the retry is never scheduled.
    reactor.callLater(2, stop_if_running, reactor)
    reactor.run()


if __name__ == "__main__":
    main()
