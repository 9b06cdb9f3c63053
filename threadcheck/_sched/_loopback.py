"""Whether real sockets only talk to each other, inside this process.

When no controlled thread can run and every socket waited on is a listening
one or an end whose other end is waited on too, no byte is in flight that a
short real wait could bring (loopback delivers at once): only time can wake
anyone, and virtual time may jump to the next deadline instead of passing in
real time (a listening server's 60 s shutdown timer took 60 s a schedule).
A socket to anything else (another process, the network), a pipe or a file is
not known to be quiet: it keeps being waited on in real time.

Thread safety: pure functions of the sockets given; call them while holding
the scheduler's turn.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def in_process(files: Iterable[Any]) -> bool:
    """Whether every one of ``files`` is a TCP socket that listens, or whose
    peer is the local end of another of them."""
    ends: set[tuple[Any, ...]] = set()
    peers: list[tuple[Any, ...]] = []
    for file in files:
        if not isinstance(file, socket.socket):
            return False
        try:
            if file.family not in _FAMILIES or file.type != socket.SOCK_STREAM:
                return False
            ends.add(_address(file.getsockname()))
            if not file.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                peers.append(_address(file.getpeername()))
        except OSError:  # closed, or still connecting: not known to be quiet
            return False
    return all(peer in ends for peer in peers)


def _address(address: Any) -> tuple[Any, ...]:
    """(host, port) of an IPv4 or IPv6 address (without flow and scope)."""
    return tuple(address[:2])
