"""A correct program: worker threads talk to the reactor only in thread-safe ways.

* ``deferToThread`` runs blocking work and delivers its result as a Deferred;
* a worker reports progress with ``reactor.callFromThread``;
* a worker asks the reactor for a value with ``blockingCallFromThread``.
"""

from __future__ import annotations

import hashlib


def main() -> None:
    from twisted.internet import reactor, threads
    from twisted.internet.defer import gatherResults

    progress: list[int] = []

    def digest(chunk: int) -> str:
        data = str(chunk).encode() * 10_000
        # Thread-safe: queues the call for the reactor thread.
        reactor.callFromThread(progress.append, chunk)
        # Thread-safe from a worker: waits for the reactor to answer.
        salt = threads.blockingCallFromThread(reactor, lambda: b"salt")
        return hashlib.sha256(salt + data).hexdigest()[:12]

    def done(digests: list[str]) -> None:
        print(f"{len(digests)} digests, {len(progress)} progress reports")
        reactor.callLater(0, reactor.stop)

    def start() -> None:
        work = [threads.deferToThread(digest, n) for n in range(8)]
        gatherResults(work).addCallback(done)

    reactor.callWhenRunning(start)
    reactor.run()


if __name__ == "__main__":
    main()
