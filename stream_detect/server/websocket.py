"""``/ws``: detections and status messages, one bounded queue per client.

Refusals happen before the handshake completes and are HTTP denial responses
with a JSON body, so clients (and browsers' developer tools) see why: 403 for
a browser page of a foreign origin (cross-site websocket hijacking: browsers
send cookies on cross-origin upgrades and CORS does not apply), 401 for a
missing or wrong token, 503 over the connection cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import orjson
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from .hub import MESSAGE_TYPES, Client

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger(__name__)

GOING_AWAY = 1001


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """A request without ``Origin`` is not from a browser page; a browser's must
    be the server's own origin (same host and port) or one of ``allowed``."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if origin in (a.strip().rstrip("/").lower() for a in allowed):
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc == (host or "").strip().lower()


async def _deny(websocket: WebSocket, status: int, message: str) -> None:
    await websocket.send_denial_response(JSONResponse({"error": message}, status_code=status))


async def websocket_endpoint(websocket: WebSocket) -> None:
    context: ServerContext = websocket.app.state.context
    if not origin_allowed(websocket.headers.get("origin"), websocket.headers.get("host"),
                          context.config.allowed_origins):
        await _deny(websocket, 403, "origin not allowed")
        return
    if not context.auth.allows(websocket.headers, websocket.query_params):
        await _deny(websocket, 401, "missing or wrong token")
        return
    if len(context.hub.clients) >= context.config.max_clients:
        await _deny(websocket, 503, f"too many clients (limit {context.config.max_clients})")
        return
    streams_param = websocket.query_params.get("streams")
    streams = frozenset(s for s in streams_param.split(",") if s) if streams_param else None
    types_param = websocket.query_params.get("types")
    types = frozenset(t for t in types_param.split(",") if t) if types_param else None
    unknown = sorted(types - set(MESSAGE_TYPES)) if types else []
    if unknown:
        await _deny(websocket, 400, f"types: unknown message type {unknown[0][:40]!r} "
                                    f"(known: {', '.join(MESSAGE_TYPES)})")
        return
    client = context.hub.subscribe(streams, types)  # before any await: the cap holds under concurrent handshakes
    try:
        await websocket.accept(subprotocol=_bearer_subprotocol(websocket))
    except Exception:
        context.hub.unsubscribe(client)
        raise
    context.metrics.ws_clients.inc()
    for stream in context.streams.all():  # what a new client must know: each stream's state and counts
        if client.wants(stream.id, "status"):
            client.offer(orjson.dumps(context.stream_status(stream)).decode(), keep=True)
        counts = context.stream_counts(stream)
        if counts is not None and client.wants(stream.id, "counts"):
            client.offer(orjson.dumps(counts).decode(), keep=True)
    sender = asyncio.create_task(_send_loop(websocket, client, context))
    receiver = asyncio.create_task(_receive_loop(websocket))
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        context.hub.unsubscribe(client)
        context.metrics.ws_clients.dec()
        for task in (sender, receiver):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _send_loop(websocket: WebSocket, client: Client, context: ServerContext) -> None:
    timeout = context.config.send_timeout_s
    while True:
        text = await client.next_message()
        if text is None:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError, asyncio.TimeoutError):
                await asyncio.wait_for(websocket.close(client.close_code or GOING_AWAY, "server shutting down"),
                                       timeout)
            return
        try:
            await asyncio.wait_for(websocket.send_text(text), timeout)
        except asyncio.TimeoutError:
            # The peer stopped reading: evict it so it cannot hold memory or
            # delay anyone. Returning ends the handler; the server then closes
            # the connection and aborts the transport after its close timeout.
            context.metrics.ws_evicted.inc()
            log.warning("websocket client evicted: not reading for %.1f s", timeout)
            return
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        client.sent += 1


async def _receive_loop(websocket: WebSocket) -> None:
    """Reads (and ignores) what the client sends, to notice it leaving."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
    except (WebSocketDisconnect, RuntimeError):
        return


SUBPROTOCOL = "stream-detect.v1"


def _bearer_subprotocol(websocket: WebSocket) -> str | None:
    """The subprotocol to answer with. Browsers pass a token as an offered
    ``bearer.<token>`` subprotocol next to ``stream-detect.v1``; we select the
    latter, and never a ``bearer.`` one: the token is not echoed back."""
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    return next((p for p in offered if not p.lower().startswith("bearer.")), None)
