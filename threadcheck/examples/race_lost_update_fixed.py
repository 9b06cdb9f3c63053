"""``race_lost_update``, fixed: only the reactor thread updates the count.

The worker returns its result; the Deferred's callback, which runs in the
reactor thread, counts it.
"""

from __future__ import annotations

import sys


class Stats:
    def __init__(self) -> None:
        self.handled = 0

    def count(self, _: object = None) -> None:
        self.handled += 1


def main() -> None:
    from twisted.internet import reactor, task, threads
    from twisted.internet.defer import gatherResults

    stats = Stats()

    def handle_in_worker() -> None:
        pass  # the work; counted by the callback below, in the reactor thread

    work = [
        threads.deferToThread(handle_in_worker).addCallback(stats.count),
        task.deferLater(reactor, 0, stats.count),
    ]
    gatherResults(work).addBoth(lambda _: reactor.stop())
    reactor.run()
    if stats.handled != 2:
        sys.exit(f"lost update: {stats.handled} request(s) counted, 2 handled")


if __name__ == "__main__":
    main()
