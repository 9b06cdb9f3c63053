"""Whether real sockets only talk to each other, inside this process.

When no controlled thread can run and every socket waited on is a listening
one or an end whose other end is waited on too, only time can wake anyone
once what was in flight has landed: virtual time may jump to the next
deadline instead of passing in real time (a listening server's 60 s shutdown
timer took 60 s a schedule).
A socket to anything else (another process, the network), a pipe or a file is
not known to be quiet, nor is any socket while a child process lives: it keeps
being waited on in real time. And loopback is not instant (Nagle's algorithm
holds a second small write until a delayed ACK): the sockets must stay quiet
for a while (``QUIET_PERIOD``) first.

Thread safety: pure functions of the sockets given; call them while holding
the scheduler's turn.
"""

from __future__ import annotations

import os
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


def children_alive() -> bool:
    """Whether a child process of this one lives (or is not reaped yet): a
    ``subprocess`` sidecar may connect back, or hold an accepted socket, in
    its own time. Unknown (no ``/proc``): assumed so."""
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as children:
                if children.read().strip():
                    return True
    except OSError:
        return True
    return False
