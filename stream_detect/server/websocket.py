"""``/ws``: detections and status messages, one bounded queue per client."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from .hub import Client

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


async def websocket_endpoint(websocket: WebSocket) -> None:
    context: ServerContext = websocket.app.state.context
    if not context.auth.allows(websocket.headers, websocket.query_params):
        await websocket.close(code=POLICY_VIOLATION, reason="missing or wrong token")
        return
    if len(context.hub.clients) >= context.config.max_clients:
        await websocket.close(code=TRY_AGAIN_LATER, reason="too many clients")
        return
    streams_param = websocket.query_params.get("streams")
    streams = frozenset(s for s in streams_param.split(",") if s) if streams_param else None
    subprotocol = _bearer_subprotocol(websocket)
    await websocket.accept(subprotocol=subprotocol)
    client = context.hub.subscribe(streams)
    context.metrics.ws_clients.inc()
    for stream in context.pipeline.streams.values():
        if client.wants(stream.id):
            client.offer(orjson.dumps(context.stream_status(stream)).decode())
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
    latter so the token is not echoed back."""
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if SUBPROTOCOL in offered:
        return SUBPROTOCOL
    return offered[0] if offered else None
