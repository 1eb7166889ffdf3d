"""What crosses the network from a node to the started process, and how it is held until it has.

A node's pipeline hands its results, notices and state changes to an
:class:`Outbox` (a sink of the node's dispatcher). The started process polls
each node (:meth:`Outbox.drain`), saying which items it has already taken;
those are forgotten, the rest come again. So a poll that is lost (a timeout, a
restarted head poller) loses nothing the outbox still holds, and results
leave a node as their JSON (about 0.5 KB a frame), never as frames.

The outbox is bounded: when the started process falls behind, a node's oldest
results go first (counted, as a slow sink's do); notices and state changes
are kept before results, up to a larger bound.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..sinks import FrameResult, Notice
from ..sources.capture import StateChange

RESULTS_HELD = 1024
NOTICES_HELD = 8192


@dataclass(frozen=True, slots=True)
class Relayed:
    """One item of a node's outbox: ``kind`` is ``result`` (``payload``: its JSON), ``notice``
    (a :class:`~stream_detect.sinks.Notice`) or ``status`` (a :class:`StateChange`)."""

    sequence: int
    kind: str
    stream_id: str
    payload: Any


@dataclass(frozen=True, slots=True)
class Drained:
    """One poll's answer: the items after the acknowledged one, and the outbox's counters."""

    items: tuple[Relayed, ...]
    dropped: int  # results lost to a full outbox since the node started


class Outbox:
    """The node side: a sink whose items wait for the started process to take them."""

    name = "relay"

    def __init__(self, results_held: int = RESULTS_HELD, notices_held: int = NOTICES_HELD) -> None:
        self._items: collections.deque[Relayed] = collections.deque()
        self._results = 0
        self._results_held = results_held
        self._notices_held = notices_held
        self._sequence = 0
        self._dropped = 0
        self._changed = threading.Condition()

    # The sink's side: the node dispatcher's runner thread.

    def on_result(self, result: FrameResult) -> None:
        self._add("result", result.stream_id, result.json())

    def on_status(self, change: StateChange) -> None:
        self._add("status", change.stream_id, change)

    def on_event(self, notice: Notice) -> None:
        self._add("notice", notice.stream_id, notice.message)

    def close(self) -> None:
        pass

    def _add(self, kind: str, stream_id: str, payload: Any) -> None:
        with self._changed:
            self._sequence += 1
            self._items.append(Relayed(self._sequence, kind, stream_id, payload))
            if kind == "result":
                self._results += 1
            if self._results > self._results_held:
                self._drop(lambda item: item.kind == "result")
            elif len(self._items) - self._results > self._notices_held:
                self._drop(lambda item: item.kind != "result")
            self._changed.notify_all()

    def _drop(self, which: Any) -> None:
        for index, item in enumerate(self._items):
            if which(item):
                del self._items[index]
                if item.kind == "result":
                    self._results -= 1
                    self._dropped += 1
                return

    # The started process's side.

    def drain(self, after: int, timeout_s: float, limit: int = 4096) -> Drained:
        """Forgets every item up to sequence ``after`` (taken), then returns the next ones, waiting up to
        ``timeout_s`` for one."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while self._items and self._items[0].sequence <= after:
                item = self._items.popleft()
                self._results -= item.kind == "result"
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return Drained(tuple(self._items)[:limit], self._dropped)


@dataclass(eq=False, slots=True)
class RelayedResult:
    """A node's result as the started process's sinks take it: its stream and its message's JSON.

    Only sinks that need no frame take these (the websocket hub, the event history, MQTT,
    webhooks): snapshots, clips and recordings are made on the camera's node.
    """

    stream_id: str
    data: bytes
    _message: dict[str, Any] | None = field(default=None, repr=False)

    def json(self) -> bytes:
        return self.data

    def message(self) -> dict[str, Any]:
        if self._message is None:
            self._message = orjson.loads(self.data)
        return self._message
