"""Whether real sockets only talk to each other, inside this process.

When no controlled thread can run and every socket waited on is a listening
one or an end whose other end is waited on too, only time can wake anyone
once what was in flight has landed: virtual time may jump to the next
deadline instead of passing in real time (a listening server's 60 s shutdown
timer took 60 s a schedule).
A socket to anything else (another process, the network), a pipe or a file is
not known to be quiet, nor is any socket while a child process lives: it keeps
being waited on in real time. And loopback is not instant (Nagle's algorithm
holds a second small write until a delayed ACK): nothing the program's sockets
sent may be unacknowledged (:func:`settled`, asked of the kernel), or where that is
not known, the sockets must stay quiet for a while (``QUIET_PERIOD``) first.

Thread safety: pure functions of the sockets given; call them while holding
the scheduler's turn.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import weakref
from collections.abc import Iterable
from typing import Any, NamedTuple

if sys.platform != "win32":
    import fcntl

_FAMILIES = (socket.AF_INET, socket.AF_INET6)

paired: weakref.WeakSet[socket.socket] = weakref.WeakSet()
"""The ends of the socket pairs made during schedules (``socket.socketpair()``):
each talks only to the other, in this process (a selector loop's wake-up pair)."""
_paired_descriptors: dict[int, tuple[int, bool]] = {}
"""Their descriptors: each end's inode, and whether it is a Unix socket. An end
detached from its socket is known by its number alone (``multiprocessing.Pipe()``'s
connections), while that number is still the same socket."""


def record_pair(pair: tuple[socket.socket, socket.socket]) -> None:
    paired.update(pair)
    for end in pair:
        unix = end.family == getattr(socket, "AF_UNIX", None)
        _paired_descriptors[end.fileno()] = (os.fstat(end.fileno()).st_ino, unix)


def _paired_descriptor(file: Any) -> tuple[int, bool] | None:
    """The record of the pair end ``file`` is the descriptor of (a number, or what
    has a ``fileno()``), if it still is one."""
    descriptor = _descriptor(file)
    recorded = None if descriptor is None else _paired_descriptors.get(descriptor)
    if recorded is None or descriptor is None:
        return None
    try:
        same = os.fstat(descriptor).st_ino == recorded[0]
    except OSError:  # closed since
        return None
    return recorded if same else None


def known(file: Any) -> Any:
    """``file``, or the end of a pair of ours that it is the descriptor of (a
    selector's registered ``fileno()``: asyncio's wake-up pair, whose quiet
    lets time jump, was a number to us)."""
    if isinstance(file, socket.socket):
        return file
    descriptor = _descriptor(file)
    if descriptor is None:
        return file
    return next((end for end in list(paired) if end.fileno() == descriptor), file)


def _descriptor(file: Any) -> int | None:
    """``file``'s descriptor: itself when a number, else its ``fileno()`` (None
    when it has none, or is closed)."""
    try:
        return file if isinstance(file, int) else int(file.fileno())
    except (AttributeError, OSError, TypeError, ValueError):
        return None


def in_process(files: Iterable[Any]) -> bool:
    """Whether every one of ``files`` is a TCP socket that listens, or whose
    peer is the local end of another of them, or a socket of this process
    that listens there (a connection it never accepts: an upstream that
    never answers, a test's black hole), or an end of a pair made during a
    schedule."""
    ends: set[tuple[Any, ...]] = set()
    peers: list[tuple[Any, ...]] = []
    for file in files:
        if not isinstance(file, socket.socket):
            if _paired_descriptor(file) is not None:
                continue
            return False
        if file in paired:  # its other end is ours (not a child's: no child lives)
            continue
        try:
            if file.family not in _FAMILIES or file.type != socket.SOCK_STREAM:
                return False
            ends.add(_address(file.getsockname()))
            if not file.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                peers.append(_address(file.getpeername()))
        except OSError:  # closed, or still connecting: not known to be quiet
            return False
    strangers = [peer for peer in peers if peer not in ends]
    if not strangers:
        return True
    own = own_tcp_sockets() or []  # asked once for them all
    return all(_listening_here(peer, own) for peer in strangers)


def from_another_process(
    files: Iterable[Any], peers: dict[tuple[Any, ...], bool] | None = None
) -> bool:
    """Whether one of ``files`` is a connected TCP socket whose peer is no socket
    of this process (another process's, another machine's): what comes on it
    comes in real time, whatever this process's threads do meanwhile. Not
    known (not Linux): a peer at a local address is taken for ours.
    ``peers``: the answers for peer addresses so far (a job's hundred reads
    from one upstream look at this process's sockets once)."""
    known = {} if peers is None else peers
    for file in files:
        if not isinstance(file, socket.socket) or file in paired:
            continue
        try:
            if file.family not in _FAMILIES or file.type != socket.SOCK_STREAM:
                continue
            if file.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                continue
            peer = _address(file.getpeername())
        except OSError:  # closed, or still connecting
            continue
        outside = known.get(peer)
        if outside is None:
            outside = known[peer] = _outside(peer)
        if outside:
            return True
    return False


def _outside(peer: tuple[Any, ...]) -> bool:
    own = own_tcp_sockets()
    if own is None:  # not known: a local address is taken for ours
        return not _loopback(str(peer[0]))
    return not any(_takes(end, str(peer[0]), int(peer[1])) for end in own)


def _loopback(host: str) -> bool:
    return host == "::1" or host.startswith(("127.", "::ffff:127."))


def lands_at_once(files: Iterable[Any]) -> bool:
    """Whether every one of ``files`` is an end of a Unix socket pair of ours: a
    write lands in the other end at once, so nothing can be in flight."""
    unix = getattr(socket, "AF_UNIX", None)
    return all(file.family == unix if file in paired else _unix_descriptor(file) for file in files)


def _unix_descriptor(file: Any) -> bool:
    recorded = _paired_descriptor(file)
    return recorded is not None and recorded[1]


def _listening_here(address: tuple[Any, ...], own: list[OwnSocket]) -> bool:
    """Whether a listening TCP socket of this process (of ``own``) takes
    connections to ``address``."""
    host, port = str(address[0]), int(address[1])
    return any(end.state == _TCP_LISTEN and _takes(end, host, port) for end in own)


class OwnSocket(NamedTuple):
    """One TCP socket of this process, as the kernel has it."""

    family: int
    address: tuple[Any, ...]
    """Where it is bound: (host, port)."""
    state: int
    """Its TCP state (``TCP_ESTABLISHED`` 1 ... ``TCP_LISTEN`` 10)."""
    unacknowledged: int
    """The bytes it sent that its peer has not acknowledged yet (or not sent yet)."""


_TCP_LISTEN = 10
_SETTLED = frozenset({1, 5, 7, 8})
"""TCP states with nothing in flight but data: established, FIN_WAIT2 (our end
closed and acknowledged), closed, CLOSE_WAIT (the peer's end closed, its EOF
landed)."""
_ANY: dict[int, str] = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}
_SIOCOUTQ = 0x5411
"""Linux's ioctl for a socket's unacknowledged bytes (``TIOCOUTQ``)."""


def _takes(end: OwnSocket, host: str, port: int) -> bool:
    """Whether ``end`` is the socket at ``host`` and ``port``: bound there, or
    listening there on every address ("::" takes IPv4 too)."""
    bound, bound_port = end.address[0], end.address[1]
    if bound_port != port:
        return False
    return bound == host or (end.state == _TCP_LISTEN and bound == _ANY[end.family])


def settled() -> bool:
    """Whether nothing any TCP socket of this process sent is still in flight:
    every byte acknowledged (so landed in its peer, on loopback), no handshake
    or close under way (Linux; elsewhere not known, so not). A listening
    socket's pending connections are its readiness."""
    own = own_tcp_sockets()
    if own is None:
        return False
    return all(
        end.state == _TCP_LISTEN or (end.state in _SETTLED and not end.unacknowledged)
        for end in own
    )


def own_tcp_sockets() -> list[OwnSocket] | None:
    """This process's TCP sockets, read from its descriptors (each asked the
    kernel through a duplicate: microseconds, where ``/proc/net/tcp`` lists
    the whole network namespace's, 7 ms on a VM); None where not known (no
    ``/proc/self/fd``, or not Linux's socket options)."""
    tcp_info = getattr(socket, "TCP_INFO", None)
    if tcp_info is None:
        return None
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return None
    found = []
    for name in descriptors:
        try:
            if not stat.S_ISSOCK(os.fstat(int(name)).st_mode):
                continue
            end = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # closed meanwhile (listdir's own, say)
        with end:
            try:
                described = _described(end, tcp_info)
            except OSError:
                continue
        if described is not None:
            found.append(described)
    return found


def _described(end: socket.socket, tcp_info: int) -> OwnSocket | None:
    if end.family not in _FAMILIES or end.type != socket.SOCK_STREAM:
        return None
    state = end.getsockopt(socket.IPPROTO_TCP, tcp_info, 1)[0]
    unacknowledged = 0
    if state != _TCP_LISTEN:  # a listening socket has no send queue (EINVAL)
        raw = fcntl.ioctl(end.fileno(), _SIOCOUTQ, b"\0\0\0\0")
        unacknowledged = int.from_bytes(raw, sys.byteorder, signed=True)
    return OwnSocket(end.family, _address(end.getsockname()), state, unacknowledged)


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
