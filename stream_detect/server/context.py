"""What the HTTP and websocket handlers share, built once per server (by :mod:`stream_detect.compose`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..config import ServerConfig
from ..metrics import Metrics
from ..ports import Models, StreamRegistry, StreamSnapshot
from ..serialize import counts_message, status_message
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

    def stream_counts(self, stream: StreamSnapshot) -> dict[str, Any] | None:
        """The counts message of a tracked ``stream`` as it is now (None: not tracked)."""
        counts = (stream.analytics or {}).get("counts")
        if not isinstance(counts, dict):
            return None
        return counts_message(stream.id, time.time(), counts["zones"], counts["lines"])
