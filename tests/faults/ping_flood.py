"""A websocket client that floods PING frames and never reads, run as its own process so its
busy loop does not share the measuring test's interpreter.

    python -m tests.faults.ping_flood PORT --clients 5 --waves 10

Each wave opens ``--clients`` connections (``/ws?streams=nosuch``, 4 KiB
receive buffer), floods 125-byte pings on each until the server drops it or
``--limit`` seconds pass, then prints one JSON line: the seconds until each
connection was dropped (null: still open at the limit) and the local ports.
A first line ``{"ready": true}`` says the attack begins.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked websocket frame from a client (payload under 126 bytes)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def open_flooder(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET /ws?streams=nosuch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 8192:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    if b" 101 " not in head:
        raise SystemExit(f"handshake refused: {head[:100]!r}")
    return sock


def flood(sockets: list[socket.socket], limit_s: float) -> list[float | None]:
    """Floods every socket in turn until each is reset or ``limit_s`` passes."""
    burst = client_frame(0x9, b"p" * 125) * 64
    dropped: list[float | None] = [None] * len(sockets)
    for sock in sockets:
        sock.setblocking(False)
    started = time.monotonic()
    while time.monotonic() - started < limit_s and any(d is None for d in dropped):
        progressed = False
        for index, sock in enumerate(sockets):
            if dropped[index] is not None:
                continue
            try:
                sock.send(burst)
                progressed = True
            except BlockingIOError:
                pass
            except OSError:  # reset by the server
                dropped[index] = time.monotonic() - started
        if not progressed:
            time.sleep(0.002)
    return dropped


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("--clients", type=int, default=5)
    parser.add_argument("--waves", type=int, default=1)
    parser.add_argument("--limit", type=float, default=20.0)
    args = parser.parse_args()
    print(json.dumps({"ready": True}), flush=True)  # the attack starts now, not at interpreter start
    for _ in range(args.waves):
        sockets = [open_flooder(args.port) for _ in range(args.clients)]
        ports = [sock.getsockname()[1] for sock in sockets]
        dropped = flood(sockets, args.limit)
        for sock in sockets:
            sock.close()
        print(json.dumps({"dropped_after_s": dropped, "ports": ports}), flush=True)
        time.sleep(0.2)  # the server frees the slots as it drops the connections; give it a moment
    return 0


if __name__ == "__main__":
    sys.exit(main())
