"""Fan-out of websocket messages to clients, each with its own bounded queue.

The hand-off from the pipeline's threads to asyncio happens in exactly one
place: :meth:`Hub.publish_text`, which schedules the fan-out of a message,
serialised once, on the event loop with ``loop.call_soon_threadsafe``. The
hub is fed by :class:`HubSink`, on the sink's own thread.

Every client has a small queue; when it is full the oldest detections message
is dropped (and counted), so a slow client only loses its own messages.
Status, event and counts messages are kept before detections: they are rare,
and a client that missed one would show a stream's state or counts wrongly
until the next change, or never hear of an event. A client may ask for some
message types only (``/ws?types=event,counts``). A send that does
not complete within ``send_timeout_s`` marks the client stuck and its
connection is closed, so a peer that never reads cannot hold memory.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..serialize import status_message
from ..sinks import FrameResult, Notice
from ..sources.capture import StateChange

log = logging.getLogger(__name__)


KEPT_EXTRA = 256
MESSAGE_TYPES = ("detections", "status", "event", "counts")
# Rare and stateful: a client that missed one would be wrong until the next (a status, a count) or
# never learn of it (an event); detections are dropped first.
KEPT_TYPES = frozenset({"status", "event", "counts"})


@dataclass(eq=False)
class Client:
    """One websocket subscriber."""

    streams: frozenset[str] | None
    maxsize: int
    types: frozenset[str] | None = None  # message types it asked for (None: every type)
    messages: collections.deque[tuple[str, bool]] = field(default_factory=collections.deque)  # (text, keep)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: int = 0
    sent: int = 0
    close_code: int | None = None

    def wants(self, stream: str, kind: str = "detections") -> bool:
        return (self.streams is None or stream in self.streams) and (self.types is None or kind in self.types)

    def close(self, code: int) -> None:
        """Asks the client's sender to close the connection with ``code`` (on the loop)."""
        self.close_code = code
        self.ready.set()

    def offer(self, text: str, keep: bool = False) -> bool:
        """Queues ``text``; when full, drops the oldest message not marked ``keep``.
        Kept messages may exceed ``maxsize`` by ``KEPT_EXTRA`` (one status per
        stream must fit); past that the oldest goes. True if one was dropped."""
        dropped = False
        if len(self.messages) >= self.maxsize:
            victim = next((i for i, (_, kept) in enumerate(self.messages) if not kept), None)
            if victim is None and len(self.messages) >= self.maxsize + KEPT_EXTRA:
                victim = 0
            if victim is not None:
                del self.messages[victim]
                self.dropped += 1
                dropped = True
        self.messages.append((text, keep))
        self.ready.set()
        return dropped

    async def next_message(self) -> str | None:
        """The next message to send, or None once the client is to be closed."""
        while not self.messages and self.close_code is None:
            self.ready.clear()
            await self.ready.wait()
        if self.close_code is not None:
            return None
        return self.messages.popleft()[0]


class Hub:
    """Publishes messages from any thread to every subscribed client.

    Args:
        client_queue_size: Messages buffered per client.
        on_drop: Called on the event loop with the number of dropped messages.
    """

    def __init__(self, client_queue_size: int, on_drop: Callable[[int], None] | None = None) -> None:
        self.client_queue_size = client_queue_size
        self._on_drop = on_drop
        self._loop: asyncio.AbstractEventLoop | None = None
        self.clients: set[Client] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attaches the hub to the server's event loop (at server start)."""
        self._loop = loop

    def unbind(self) -> None:
        self._loop = None

    def subscribe(self, streams: frozenset[str] | None, types: frozenset[str] | None = None) -> Client:
        client = Client(streams=streams, maxsize=self.client_queue_size, types=types)
        self.clients.add(client)
        return client

    def unsubscribe(self, client: Client) -> None:
        self.clients.discard(client)

    async def close_all(self, code: int, timeout_s: float) -> None:
        """Closes every client with ``code`` and waits (at most ``timeout_s``) until they are gone."""
        for client in self.clients:
            client.close(code)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.clients and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)

    def publish(self, message: dict[str, Any]) -> None:
        """Thread-safe: serialises ``message`` once and fans it out on the loop."""
        if self._loop is None or not self.clients:
            return
        kind = str(message.get("type", ""))
        self.publish_text(str(message.get("stream", "")), orjson.dumps(message).decode(), keep=kind in KEPT_TYPES,
                          kind=kind)

    def publish_text(self, stream: str, text: str, keep: bool = False, kind: str = "detections") -> None:
        """Thread-safe: fans an already serialised message (of type ``kind``) of ``stream`` out on the loop.

        This is the one hand-off from threads to asyncio."""
        loop = self._loop
        if loop is None or not self.clients:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while shutting down
            loop.call_soon_threadsafe(self._fan_out, stream, text, keep, kind)

    def _fan_out(self, stream: str, text: str, keep: bool, kind: str) -> None:
        dropped = 0
        for client in self.clients:
            if client.wants(stream, kind) and client.offer(text, keep):
                dropped += 1
        if dropped and self._on_drop is not None:
            self._on_drop(dropped)


class HubSink:
    """The websocket hub as a sink: each result's message (serialised once) and every state change."""

    name = "websocket"

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def on_result(self, result: FrameResult) -> None:
        if self.hub.clients:
            self.hub.publish_text(result.stream_id, result.json().decode())

    def on_status(self, change: StateChange) -> None:
        self.hub.publish(status_message(change.stream_id, change.state.value, change.at, change.detail))

    def on_event(self, notice: Notice) -> None:
        if self.hub.clients:
            self.hub.publish_text(notice.stream_id, notice.json().decode(), keep=True, kind=notice.type)

    def close(self) -> None:
        pass
