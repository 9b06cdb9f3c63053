"""Transports, ports, connectors and process transports, checked under their own names.

A transport belongs to the reactor thread: ``transport.write`` from a worker
may only append to a buffer (no reactor call happens, so the reactor's own
checks see nothing), and the reactor thread reads that buffer concurrently.
Each public method is reported as ``transport.write``, ``port.stopListening``,
``connector.disconnect``..., with the user's call first.

``startReading``/``stopWriting`` and their like are left to the reactor's
``addReader``/``removeWriter`` checks: Twisted calls them on every write and
read, and a check there would be paid by every byte the reactor moves.

TLS (``twisted.internet._newtls``, ``twisted.protocols.tls``), UNIX, stdio and
process transports are checked once their modules are imported (never imported
here: TLS needs pyOpenSSL, an optional Twisted extra, and a plain install must
work without it).

Thread safety: Twisted's transports have none; the checks run in any thread.
"""

from __future__ import annotations

import sys

from twisted.internet import abstract, base, protocol, tcp, udp

from threadcheck_reactor._running import Patch, checked_methods

_PRODUCING = ("pauseProducing", "resumeProducing", "stopProducing")
_CONSUMING = ("registerProducer", "unregisterProducer")
_CLOSING = ("loseConnection", "loseWriteConnection", "abortConnection")

_TRANSPORT_APIS = ("writeSequence", *_CLOSING, *_PRODUCING, *_CONSUMING)
_PORT_APIS = ("stopListening", "loseConnection", "write", "writeSequence", "connect")
_PROCESS_APIS = (
    "writeToChild",
    "closeChildFD",
    "closeStdin",
    "closeStdout",
    "closeStderr",
    "signalProcess",
    "loseConnection",
    "write",
    "writeSequence",
    *_PRODUCING,
    *_CONSUMING,
)


APIS = (
    *(f"transport.{name}" for name in ("write", "startTLS", *_TRANSPORT_APIS)),
    *(f"port.{name}" for name in _PORT_APIS),
    "connector.disconnect",
    "connector.stopConnecting",
    "ReconnectingClientFactory.stopTrying",
    *(f"process.{name}" for name in _PROCESS_APIS),
)
"""Every name a transport violation can carry."""


def patches() -> list[Patch]:
    """The transport checks, for :func:`threadcheck_reactor._running.register`."""
    fd = abstract.FileDescriptor
    found = checked_methods(fd, "transport", ("write", *_TRANSPORT_APIS))
    found += checked_methods(abstract._ConsumerMixin, "transport", _CONSUMING)
    # TCP connections write through here (TLS-capable) into FileDescriptor's
    # write, checked there: a second check on every write would cost 1% of a
    # web request for a report line ("through twisted: _newtls.py") less.
    found += _imported("twisted.internet._newtls", "ConnectionMixin", "transport", _NEWTLS_APIS)
    found += checked_methods(tcp._AbortingMixin, "transport", ("abortConnection",))
    found += checked_methods(tcp.Port, "port", _PORT_APIS)
    found += checked_methods(udp.Port, "port", _PORT_APIS)
    found += checked_methods(base.BaseConnector, "connector", ("disconnect", "stopConnecting"))
    # It cancels the retry and stops the connector: one call, one violation.
    factory = protocol.ReconnectingClientFactory
    found += checked_methods(factory, "ReconnectingClientFactory", ("stopTrying",), _own_clock)
    found += _imported("twisted.internet.unix", "DatagramPort", "port", ("write",))
    found += _imported("twisted.internet.unix", "ConnectedDatagramPort", "port", ("write",))
    found += _imported("twisted.internet._posixstdio", "StandardIO", "transport", _STDIO_APIS)
    found += _imported("twisted.internet.process", "_BaseProcess", "process", _PROCESS_APIS)
    found += _imported("twisted.internet.process", "Process", "process", _PROCESS_APIS)
    found += _imported("twisted.internet.process", "PTYProcess", "process", _PROCESS_APIS)
    found += _imported("twisted.protocols.tls", "TLSMemoryBIOProtocol", "transport", _TLS_APIS)
    found += _imported("twisted.protocols.tls", "BufferingTLSTransport", "transport", _TLS_APIS)
    return found


_STDIO_APIS = ("write", *_TRANSPORT_APIS)
_NEWTLS_APIS = ("startTLS", "loseConnection", "registerProducer", "unregisterProducer")
_TLS_APIS = ("write", "writeSequence", "loseConnection", "abortConnection", *_CONSUMING)


def _own_clock(factory: protocol.ReconnectingClientFactory) -> bool:
    """A factory retrying on a clock of its own (a worker's ``task.Clock``), not a reactor."""
    clock = factory.clock
    return clock is not None and not hasattr(clock, "_threadcheck")


def _imported(module: str, name: str, prefix: str, apis: tuple[str, ...]) -> list[Patch]:
    cls = getattr(sys.modules.get(module), name, None)
    return checked_methods(cls, prefix, apis) if isinstance(cls, type) else []
