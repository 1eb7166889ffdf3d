"""The server's sockets: Nagle off on every connection, whoever made the listening socket."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from stream_detect.commands.run import bind_socket
from stream_detect.compose import build_app
from stream_detect.config import ServerConfig
from stream_detect.server.runner import build_server

from .serving import one_camera_pipeline


def test_the_listening_socket_says_it_is_tcp() -> None:
    # asyncio turns Nagle off only on sockets whose protocol is IPPROTO_TCP (0 does not count).
    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


@pytest.mark.timeout(60)
def test_every_connection_has_nagle_off() -> None:
    # With Nagle on, a kept-alive response's second write waited ~40 ms for the peer's delayed ACK.
    config = ServerConfig(port=0)
    app = build_app(one_camera_pipeline(), config)
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, as many callers make them
    listening.bind(("127.0.0.1", 0))
    listening.listen(8)
    port = listening.getsockname()[1]
    server = build_server(app, config, graceful_shutdown_s=2)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, name="test-server")
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            assert client.get("/healthz").status_code in (200, 503)
            connections = list(server.server_state.connections)
            assert connections
            for connection in connections:
                sock = connection.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        server.should_exit = True
        thread.join(15)
        listening.close()
    assert not thread.is_alive()
