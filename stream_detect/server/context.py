"""What the HTTP and websocket handlers share, built once per server (by :mod:`stream_detect.compose`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..config import ServerConfig
from ..metrics import Metrics
from ..pipeline import Pipeline, StreamRuntime
from ..serialize import status_message
from .auth import TokenCheck
from .hub import Hub


@dataclass(eq=False)
class ServerContext:
    """Objects every route needs: the pipeline and the network-side state."""

    pipeline: Pipeline
    config: ServerConfig
    hub: Hub
    metrics: Metrics
    auth: TokenCheck

    def stream_status(self, stream: StreamRuntime) -> dict[str, Any]:
        """The status message announcing ``stream``'s current state."""
        return status_message(stream.id, stream.state.value, time.time(), stream.state_detail)
