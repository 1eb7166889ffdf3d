"""Serving the application with uvicorn, hardened against peers that misbehave.

uvicorn leaves a few doors open that a long-running analyzer must close:

- It waits for ever for the headers of a connection's first request: a silent
  TCP client or a slowloris holds a socket and a file descriptor until it
  leaves. Every connection here gets ``header_timeout_s`` to finish its
  request headers (again after each response on a kept-alive connection).
- On loopback, TCP autotuning let a peer that does not read absorb megabytes
  before a send blocked, so the websocket send timeout never fired. Each
  connection's kernel send buffer is bounded (``SEND_BUFFER_BYTES``).
- ``transport.close()`` waits to flush what is buffered; to a peer that does
  not read, that is for ever (connections were seen stuck in ESTABLISHED long
  after the app had evicted them). A websocket connection still open
  ``WS_RESET_AFTER_S`` after the app is done with it is reset.
- On shutdown uvicorn closes websockets with 1012 (service restart); clients
  here are told 1001 (going away) first, by the app, then uvicorn shuts down.
- Incoming websocket messages are capped (``max_message_bytes``, close 1009)
  and pinged, so a peer that stopped reading altogether is noticed even when
  nothing is being sent to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from ..config import ServerConfig
from .websocket import GOING_AWAY

log = logging.getLogger(__name__)

SEND_BUFFER_BYTES = 128 * 1024
WS_RESET_AFTER_S = 2.0
WS_PING_INTERVAL_S = 5.0
WS_PING_TIMEOUT_S = 5.0
GOING_AWAY_WAIT_S = 1.0


def _bound_send_buffer(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # a socket already closing
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


class _HeaderDeadlineProtocol(AutoHTTPProtocol):  # type: ignore[valid-type,misc]
    """uvicorn's HTTP protocol with a deadline on request headers and a bounded send buffer."""

    header_timeout_s = 10.0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        _bound_send_buffer(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_deadline()

    def handle_websocket_upgrade(self, *args: Any) -> None:
        self._cancel_header_deadline()  # the timer would keep this protocol alive for its whole wait
        super().handle_websocket_upgrade(*args)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._cancel_header_deadline()
        waiting_on = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_overdue, waiting_on)

    def _cancel_header_deadline(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_overdue(self, waiting_on: object) -> None:
        self._header_timer = None
        if self.cycle is not waiting_on:  # a request's headers arrived meanwhile
            return
        if self.transport.get_protocol() is not self or self.transport.is_closing():  # upgraded or closing
            return
        log.info("closing a connection that sent no complete request headers within %.0f s",
                 self.header_timeout_s)
        self.transport.abort()


class _ResettingWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol that resets connections left open after the app is done."""

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            # A denial response ends the handshake; uvicorn would otherwise log
            # "returned without completing handshake" at ERROR for every refusal.
            self.handshake_complete = True

    _reset_timer: asyncio.TimerHandle | None = None

    async def run_asgi(self) -> None:
        try:
            await super().run_asgi()
        finally:
            if not self.disconnected:
                self._reset_timer = self.loop.call_later(WS_RESET_AFTER_S, self._reset_if_open)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._reset_timer is not None:  # release the connection (and its compressor) at once
            self._reset_timer.cancel()
            self._reset_timer = None
        super().connection_lost(exc)

    def _reset_if_open(self) -> None:
        self._reset_timer = None
        if not self.disconnected:
            self.transport.abort()


class Server(uvicorn.Server):
    """uvicorn's server that tells websocket clients 1001 before its own shutdown."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        hub = self._app.state.context.hub
        try:
            await hub.close_all(GOING_AWAY, GOING_AWAY_WAIT_S)
        except Exception:  # shutting down must go on
            log.exception("closing websocket clients failed")
        await super().shutdown(sockets)


def build_server(app: FastAPI, config: ServerConfig, *, graceful_shutdown_s: int = 3,
                 access_log: bool = False) -> Server:
    """A uvicorn server for ``app`` with the hardening above; run it with ``run(sockets=[sock])``."""
    http_protocol = type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,),
                         {"header_timeout_s": config.header_timeout_s})
    return Server(
        uvicorn.Config(
            app,
            http=http_protocol,
            ws=_ResettingWebSocketProtocol,
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
