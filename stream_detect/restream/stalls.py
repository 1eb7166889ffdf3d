"""Unblocking a push whose server stopped reading: its TCP connection shut down from another thread.

FFmpeg's RTSP muxer writes its interleaved packets with blocking sends and
applies no time limit to them (its ``timeout`` option covers connecting and
reading, and PyAV's ``timeout=`` only opening and reading): against a server
that is still connected but reads nothing (frozen, SIGSTOPped, its host gone
without a reset) a ``mux()`` call blocks for as long as TCP keeps the
connection, minutes or more. Shutting the socket down makes the blocked
send fail at once, the muxer raises, and the push reconnects as after any
other failure.

The connection is found as this process's sockets (``/proc/self/fd``) whose
peer is the server's address (``/proc/self/net/tcp*``) and that were opened
by the session: those present before it connected are left alone (a camera
read from the same server keeps its connection). Linux only; elsewhere
:func:`own_sockets` finds nothing and a stalled push waits for TCP to give up.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from pathlib import Path

TABLES = ("/proc/self/net/tcp", "/proc/self/net/tcp6")


def server_addresses(host: str, port: int) -> set[tuple[str, int]]:
    """The addresses ``host:port`` resolves to (empty when it does not)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return set()
    return {(_normal(str(info[4][0])), port) for info in found}


def _normal(address: str) -> str:
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def _decode(hex_address: str) -> tuple[str, int]:
    """A ``/proc/net/tcp`` address: host bytes in the kernel's (little-endian) 32-bit words, then the port."""
    host_hex, port_hex = hex_address.split(":")
    raw = bytes.fromhex(host_hex)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    return _normal(str(address)), int(port_hex, 16)


def _inodes_to(addresses: set[tuple[str, int]]) -> set[str]:
    inodes = set()
    for table in TABLES:
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and _decode(fields[2]) in addresses:
                inodes.add(fields[9])
    return inodes


def own_sockets(addresses: set[tuple[str, int]]) -> dict[int, str]:
    """This process's sockets connected to ``addresses``: file descriptor -> socket inode."""
    if not addresses:
        return {}
    inodes = _inodes_to(addresses)
    found = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{name}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in inodes:
                found[int(name)] = link[8:-1]
    return found


def shut_down(sockets: dict[int, str]) -> int:
    """Shuts down each socket (fd -> inode) that is still that socket; returns how many."""
    done = 0
    for fd, inode in sockets.items():
        try:
            if os.readlink(f"/proc/self/fd/{fd}") != f"socket:[{inode}]":
                continue  # closed, and the number reused meanwhile
            with socket.socket(fileno=os.dup(fd)) as duplicate:
                duplicate.shutdown(socket.SHUT_RDWR)
            done += 1
        except OSError:
            continue
    return done
