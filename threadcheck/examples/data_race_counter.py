"""Bug: a counter updated by a reactor callback and by a ``deferToThread`` job,
with nothing ordering the two updates (no lock, no hand-off between them).

A plain run almost always counts 2; ``threadcheck run --races`` reports the
unsynchronised pair on every run, with both stacks. Fix: update the count
in the reactor thread only, from the job's result
(``d.addCallback(lambda _: handle())``).
"""

from __future__ import annotations


class Stats:
    def __init__(self) -> None:
        self.handled = 0


def main() -> None:
    from twisted.internet import reactor, threads

    stats = Stats()

    def handle() -> None:
        stats.handled += 1  # BUG: in a worker thread and in the reactor thread

    def serve() -> None:
        job = threads.deferToThread(handle)
        handle()
        job.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(serve)
    reactor.run()


if __name__ == "__main__":
    main()
