"""What the HTTP and websocket handlers share, built once per server (by :mod:`stream_detect.compose`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..config import ServerConfig
from ..metrics import Metrics
from ..ports import Models, StreamRegistry, StreamSnapshot
from ..serialize import status_message
from .auth import TokenCheck
from .hub import Hub


@dataclass(eq=False)
class ServerContext:
    """Objects every route needs: read-only ports of the pipeline and the network-side state."""

    config: ServerConfig
    hub: Hub
    metrics: Metrics
    auth: TokenCheck
    streams: StreamRegistry
    models: Models

    def stream_status(self, stream: StreamSnapshot) -> dict[str, Any]:
        """The status message announcing ``stream``'s state."""
        return status_message(stream.id, stream.state.value, time.time(), stream.detail)
