"""Bug: a lost update between a reactor callback and a ``deferToThread`` worker.

Both count handled requests with ``stats.handled += 1``: a read, an add and a
write. When the worker is preempted between its read and its write, the
reactor's increment is overwritten and a request goes uncounted. It almost
never shows in a plain run; ``threadcheck explore`` finds the interleaving.
Fix (``race_lost_update_fixed``): count in the reactor thread only, from the
worker's result.
"""

from __future__ import annotations

import sys


class Stats:
    def __init__(self) -> None:
        self.handled = 0


def main() -> None:
    from twisted.internet import reactor, task, threads
    from twisted.internet.defer import gatherResults

    stats = Stats()

    def handle_in_worker() -> None:
        stats.handled += 1  # BUG: the reactor thread updates it too

    def handle_in_reactor() -> None:
        stats.handled += 1

    work = [
        threads.deferToThread(handle_in_worker),
        task.deferLater(reactor, 0, handle_in_reactor),
    ]
    gatherResults(work).addBoth(lambda _: reactor.stop())
    reactor.run()
    if stats.handled != 2:
        sys.exit(f"lost update: {stats.handled} request(s) counted, 2 handled")


if __name__ == "__main__":
    main()
