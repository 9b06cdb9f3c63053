"""Bug: a watchdog thread calls ``reactor.stop()`` directly.

stop() is not thread-safe, and it does not wake the reactor up: the reactor
may sleep until its next timer or I/O event before it notices.
Fix: ``reactor.callFromThread(reactor.stop)``.
"""

from __future__ import annotations

import threading

from threadcheck.examples._util import stop_if_running


def main() -> None:
    from twisted.internet import reactor

    ready = threading.Event()

    def watchdog() -> None:
        ready.wait()
        print("watchdog: stopping the reactor")
        reactor.stop()  # BUG: called in the watchdog thread

    reactor.callWhenRunning(ready.set)
    threading.Thread(target=watchdog, name="watchdog").start()
    # Without this timer the reactor could sleep forever after the watchdog's
    # stop(); it is also the way out in raise mode.
    reactor.callLater(0.5, stop_if_running, reactor)
    reactor.run()


if __name__ == "__main__":
    main()
