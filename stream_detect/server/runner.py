"""Serving the application with uvicorn: hardened protocols and a prompt shutdown.

The connection-level guards (header deadline, bounded send buffers, write
stalls, ping floods, keepalive) live in :mod:`.protocols`. This module adds
what a shutdown needs: uvicorn waits for every open response to finish, and
an MJPEG stream never does, so SIGTERM with a viewer connected waited the
whole graceful period and then cancelled the response with a traceback.
Here, before uvicorn's own shutdown:

- websocket clients are told 1001 (going away; uvicorn would send 1012);
- MJPEG streams end their response cleanly;
- a connection that still holds unsent bytes (its peer is not reading) is
  aborted, since closing it would wait for a flush that never comes.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import uvicorn
from fastapi import FastAPI

from ..config import ServerConfig
from .protocols import ConnectionEvents, GuardedHTTPProtocol, GuardedWebSocketProtocol
from .websocket import GOING_AWAY

log = logging.getLogger(__name__)

WS_PING_INTERVAL_S = 5.0
WS_PING_TIMEOUT_S = 5.0
CLIENTS_CLOSE_WAIT_S = 0.5


class Server(uvicorn.Server):
    """uvicorn's server that ends websockets and MJPEG streams before its own shutdown."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        context = self._app.state.context
        try:
            await asyncio.gather(context.hub.close_all(GOING_AWAY, CLIENTS_CLOSE_WAIT_S),
                                 self._app.state.previews.close_all(CLIENTS_CLOSE_WAIT_S))
        except Exception:  # shutting down must go on
            log.exception("closing clients failed")
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and transport.get_write_buffer_size() > 0:
                transport.abort()
        await super().shutdown(sockets)


def connection_events(app: FastAPI) -> ConnectionEvents:
    """Counts the connections the protocols abort, in the app's metrics."""
    metrics = app.state.context.metrics

    def on_abort(kind: str, path: str) -> None:
        if kind == "websocket":
            metrics.ws_evicted.inc()
        elif path.endswith("/mjpeg"):
            metrics.mjpeg_evicted.inc()
        else:
            metrics.http_aborted.inc()

    return ConnectionEvents(on_abort=on_abort)


def build_server(app: FastAPI, config: ServerConfig, *, graceful_shutdown_s: int = 3,
                 access_log: bool = False) -> Server:
    """A uvicorn server for ``app`` with the hardening above; run it with ``run(sockets=[sock])``."""
    events = connection_events(app)
    http_protocol = type("HTTPProtocol", (GuardedHTTPProtocol,), {
        "header_timeout_s": config.header_timeout_s, "send_timeout_s": config.send_timeout_s, "events": events})
    ws_protocol = type("WebSocketProtocol", (GuardedWebSocketProtocol,), {
        "send_timeout_s": config.send_timeout_s, "events": events})
    return Server(
        uvicorn.Config(
            app,
            http=http_protocol,
            ws=ws_protocol,
            ws_max_size=config.max_message_bytes,
            ws_ping_interval=WS_PING_INTERVAL_S,
            ws_ping_timeout=WS_PING_TIMEOUT_S,
            log_config=None,
            access_log=access_log,
            lifespan="on",
            timeout_graceful_shutdown=graceful_shutdown_s,
        ),
        app,
    )
