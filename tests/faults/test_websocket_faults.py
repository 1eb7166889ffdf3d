"""Websocket clients that are foreign, unauthorised, too many, too big, silent or not reading."""

from __future__ import annotations

import json
import socket
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from stream_detect.config import ServerConfig

from ..server.serving import ws_url
from .helpers import (
    Listener,
    analyzer,
    fake_server,
    fd_count,
    rss_bytes,
    stalled_client,
    tcp_sockets,
    wait_until,
)

TOKEN = "ws-token-1234"


def synthetic(stream_id: str, fps: float = 15) -> dict:
    return {"kind": "synthetic", "id": stream_id, "fps": fps, "width": 320, "height": 240}


@dataclass
class Refusal:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def refused(base: str, query: str = "", **kwargs: Any) -> Refusal:
    """Opens /ws expecting an HTTP refusal; returns its status and body."""
    with pytest.raises(InvalidStatus) as caught:
        connect(ws_url(base, query), open_timeout=10, **kwargs).close()
    return Refusal(caught.value.response.status_code, caught.value.response.body or b"")


def receives(base: str, query: str = "", **kwargs: Any) -> bool:
    with connect(ws_url(base, query), open_timeout=10, **kwargs) as ws:
        return json.loads(ws.recv(timeout=10))["type"] in ("status", "detections")


@pytest.mark.timeout(60)
def test_origin_allow_list_and_tokens() -> None:
    config = ServerConfig(port=0, tokens=[TOKEN], allowed_origins=["https://dashboard.example"])
    with analyzer([synthetic("cam")], config) as base:
        own = base  # http://127.0.0.1:PORT
        auth = {"additional_headers": {"Authorization": f"Bearer {TOKEN}"}}
        # Cross-site websocket hijacking: a foreign page, even with a valid token, is refused.
        foreign = refused(base, f"token={TOKEN}", origin="https://evil.example")
        assert foreign.status_code == 403 and foreign.json() == {"error": "origin not allowed"}
        assert refused(base, **auth, origin="http://127.0.0.1.evil.example").status_code == 403
        # Non-browsers send no Origin: the header token.
        assert receives(base, **auth)
        # Browsers: their own origin or an allowed one, token in the query or the subprotocol.
        assert receives(base, f"token={TOKEN}", origin=own)
        assert receives(base, origin="https://dashboard.example",
                        subprotocols=["stream-detect.v1", f"bearer.{TOKEN}"])
        missing = refused(base, origin=own)
        assert missing.status_code == 401 and "error" in missing.json()
        assert refused(base, "token=wrong").status_code == 401
        assert refused(base, additional_headers={"Authorization": "Bearer wrong"}).status_code == 401


@pytest.mark.timeout(60)
def test_connection_cap_answers_503_and_frees_slots() -> None:
    with analyzer([synthetic("cam")], ServerConfig(port=0, max_clients=3)) as base:
        clients = [Listener(base) for _ in range(3)]
        try:
            over = refused(base)
            assert over.status_code == 503 and "too many clients" in over.json()["error"]
        finally:
            for client in clients:
                client.close()
        assert wait_until(lambda: receives(base), 10)  # slots come back when clients leave


@pytest.mark.timeout(60)
def test_message_over_the_size_limit_closes_1009() -> None:
    with analyzer([synthetic("cam")], ServerConfig(port=0, max_message_bytes=4096)) as base:
        with connect(ws_url(base), open_timeout=10) as ws:
            ws.send("x" * 1000)  # within the limit: ignored, the connection stays
            ws.recv(timeout=10)
            ws.send("x" * 100_000)
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(1000):
                    ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.timeout(60)
def test_silent_and_slowloris_connections_are_dropped_at_the_header_timeout() -> None:
    timeout_s = 2.0
    with analyzer([synthetic("cam")], ServerConfig(port=0, header_timeout_s=timeout_s)) as base:
        port = int(base.rsplit(":", 1)[1])
        silent = socket.create_connection(("127.0.0.1", port), timeout=15)
        slow = socket.create_connection(("127.0.0.1", port), timeout=15)
        opened = time.monotonic()
        request = b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        slow.setblocking(False)
        dribbled = 0
        while time.monotonic() - opened < timeout_s + 3 and dribbled < len(request):
            try:
                slow.send(request[dribbled:dribbled + 1])
            except OSError:
                break
            dribbled += 1
            time.sleep(0.25)
        silent.settimeout(15)
        assert silent.recv(1) == b""  # closed by the server
        dropped_after = time.monotonic() - opened
        slow.setblocking(True)
        slow.settimeout(5)
        with suppress(ConnectionResetError):
            assert slow.recv(1) == b""
        silent.close()
        slow.close()
        assert receives(base)  # the server still serves
    print(f"silent connection dropped after {dropped_after:.2f} s; slowloris after {dribbled} bytes")
    assert dropped_after <= timeout_s + 1.5
    assert dribbled < len(request), "the slowloris was never cut off"


# -- a real process ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_non_reading_peers_are_evicted_and_fast_clients_keep_up(tmp_path: Path) -> None:
    sources = [synthetic("a", 15), synthetic("b", 15)]
    with fake_server(tmp_path, sources, boxes=20) as served:
        pid, base = served.process.pid, served.base
        port = int(base.rsplit(":", 1)[1])
        with Listener(base) as fast:
            assert wait_until(lambda: len(fast.detections("a")) >= 20, 20)
            rss_before = rss_bytes(pid)
            started = time.monotonic()
            stalled = [stalled_client(port) for _ in range(5)]
            ports = {s.getsockname()[1] for s in stalled}
            evicted_at: dict[int, float] = {}

            def all_evicted() -> bool:
                held = {remote for local, remote, _ in tcp_sockets(pid) if local == port}
                for p in ports - held:
                    evicted_at.setdefault(p, time.monotonic() - started)
                return len(evicted_at) == len(ports)

            wait_until(all_evicted, 30, poll_s=0.2)
            time.sleep(max(0.0, 20 - (time.monotonic() - started)))
            rss_after = rss_bytes(pid)
            delays = sorted(arrived_wall - m["emitted_at"] for arrived_wall, m in _wall_times(fast, started))
            leftover = [s for s in tcp_sockets(pid) if s[0] == port and s[1] in ports]
        for sock in stalled:
            sock.close()
    p99 = delays[int(len(delays) * 0.99)]
    print(f"evicted after {sorted(round(t, 1) for t in evicted_at.values())} s; fast client p99 "
          f"{p99 * 1000:.1f} ms over {len(delays)} messages; RSS {(rss_after - rss_before) / 2**20:+.1f} MB")
    assert len(evicted_at) == 5 and max(evicted_at.values()) <= 15, evicted_at
    assert not leftover, f"connections left behind: {leftover}"
    assert len(delays) > 200 and p99 <= 0.050
    assert rss_after - rss_before <= 10 * 2**20


def _wall_times(listener: Listener, after: float) -> list[tuple[float, dict]]:
    """Detections messages with their arrival on the wall clock (the listener keeps monotonic times)."""
    offset = time.time() - time.monotonic()
    return [(t + offset, m) for t, m in listener.messages() if t >= after and m["type"] == "detections"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_1000_connect_disconnect_cycles_leave_rss_and_fds_flat(tmp_path: Path) -> None:
    with fake_server(tmp_path, [synthetic("cam", 15)]) as served:
        pid, url = served.process.pid, ws_url(served.base)
        for _ in range(50):  # warm up
            with connect(url, open_timeout=10) as ws:
                ws.recv(timeout=10)
        time.sleep(0.5)
        rss_before, fds_before = rss_bytes(pid), fd_count(pid)
        started = time.monotonic()
        for _ in range(1000):
            with connect(url, open_timeout=10) as ws:
                ws.recv(timeout=10)
        took = time.monotonic() - started
        assert wait_until(lambda: fd_count(pid) <= fds_before + 2, 10)
        rss_after, fds_after = rss_bytes(pid), fd_count(pid)
        clients = httpx.get(served.base + "/metrics", timeout=5).text
    print(f"1000 cycles in {took:.1f} s: RSS {(rss_after - rss_before) / 2**20:+.2f} MB, fds {fds_before} -> "
          f"{fds_after}")
    assert rss_after - rss_before <= 3 * 2**20
    assert fds_after <= fds_before + 2
    gauge = [line for line in clients.splitlines() if line.startswith("stream_detect_ws_clients ")]
    assert gauge and float(gauge[0].split()[-1]) == 0
