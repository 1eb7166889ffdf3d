"""What the HTTP and websocket handlers share, built once per server."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..config import ServerConfig
from ..metrics import Metrics
from ..pipeline import Pipeline, StreamRuntime
from ..serialize import status_message
from .auth import TokenCheck
from .hub import Hub, HubSink


@dataclass(eq=False)
class ServerContext:
    """Objects every route needs: the pipeline and the network-side state."""

    pipeline: Pipeline
    config: ServerConfig
    hub: Hub
    metrics: Metrics
    auth: TokenCheck

    @classmethod
    def create(cls, pipeline: Pipeline, config: ServerConfig) -> ServerContext:
        metrics = Metrics(pipeline)
        hub = Hub(config.client_queue_size, on_drop=metrics.ws_dropped.inc)
        context = cls(pipeline=pipeline, config=config, hub=hub, metrics=metrics, auth=TokenCheck(config.tokens))
        pipeline.dispatcher.add(HubSink(hub), maxsize=64)
        return context

    def stream_status(self, stream: StreamRuntime) -> dict[str, Any]:
        """The status message announcing ``stream``'s current state."""
        return status_message(stream.id, stream.state.value, time.time(), stream.state_detail)
