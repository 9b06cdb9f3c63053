"""Bug: a protocol hands data to a worker thread, which writes the reply itself.

``transport.write`` is not thread-safe: it touches the transport's buffers and
calls ``reactor.addWriter`` from the worker thread.
Fix: ``reactor.callFromThread(self.transport.write, reply)``.
"""

from __future__ import annotations

from threadcheck.examples._util import stop_if_running


def main() -> None:
    from twisted.internet import protocol, reactor

    class Shout(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            reactor.callInThread(self.answer, data)

        def answer(self, data: bytes) -> None:
            reply = data.upper()  # pretend this is slow
            self.transport.write(reply)  # BUG: called in a thread-pool thread

    class Ask(protocol.Protocol):
        def connectionMade(self) -> None:
            self.transport.write(b"hello")

        def dataReceived(self, data: bytes) -> None:
            print(f"reply: {data.decode()}")
            reactor.stop()

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Shout), interface="127.0.0.1")
    client = protocol.ClientFactory.forProtocol(Ask)
    reactor.connectTCP("127.0.0.1", port.getHost().port, client)
    # Safety net: in raise mode the reply is never sent.
    reactor.callLater(2, stop_if_running, reactor)
    reactor.run()


if __name__ == "__main__":
    main()
