"""Bug: code that runs in the reactor thread calls ``blockingCallFromThread``.

Here a helper meant for worker threads is reused from a reactor callback.
blockingCallFromThread waits for the reactor thread to run the function, but
it *is* the reactor thread, so under plain Twisted this program hangs forever.
threadcheck raises BlockingCallInReactorThreadError instead.
Fix: in the reactor thread, call the function and use its Deferred.
"""

from __future__ import annotations


def main() -> None:
    from twisted.internet import defer, reactor, threads

    def lookup(key: str) -> str:
        return key.upper()

    def lookup_blocking(key: str) -> str:
        # Written for worker threads...
        return threads.blockingCallFromThread(reactor, lookup, key)

    def on_request() -> None:
        # ...but called from a reactor callback: BUG.
        d = defer.maybeDeferred(lookup_blocking, "answer")
        d.addCallbacks(print, lambda f: print(f"lookup failed: {f.value}"))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(on_request)
    reactor.run()


if __name__ == "__main__":
    main()
