"""(b, d) End to end: ``annotate`` on a file, ``run`` with a websocket client."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ModelConfig
from ..detect.hf import HFDetector
from ..stats import percentile
from .live_client import get_json, running_analyzer


@dataclass(frozen=True)
class Throughput:
    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def file_mode(detector: HFDetector, config: ModelConfig, clip: Path, frames: int) -> Throughput:
    """(b) ``stream-detect annotate`` on ``clip`` (``frames`` frames) with the already loaded ``detector``."""
    from ..commands.annotate import annotate

    with tempfile.TemporaryDirectory(prefix="stream-detect-bench-") as directory:
        started = time.perf_counter()
        annotate(config, str(clip), str(Path(directory) / "annotated.mp4"), None, detector=detector)
        return Throughput(frames, time.perf_counter() - started)


@dataclass
class LiveResult:
    """(b, d) ``run`` on a realtime source with a websocket client attached."""

    frames: int
    seconds: float
    latency_ms: dict[str, float]
    drift_ms: float
    source_fps: float
    dropped: int
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")


def live_mode(model: dict[str, Any], clip: Path, seconds: float, warmup_s: float = 3.0,
              load_timeout_s: float = 900.0) -> LiveResult:
    """Runs ``stream-detect run`` on ``clip`` paced like a camera (looped) and listens on ``/ws``.

    Latency is the message's ``emitted_at - captured_at``; drift is the median
    latency of the last third of the window minus that of the first third.
    """
    from websockets.sync.client import connect

    source = {"kind": "file", "id": "cam1", "path": str(clip), "realtime": True, "loop": True}
    config = {"model": model, "sources": [source], "server": {"port": 0, "client_queue_size": 64}}
    with running_analyzer(config, load_timeout_s) as analyzer:
        messages = _listen(connect, analyzer.base.replace("http://", "ws://") + "/ws", warmup_s, seconds)
        stream = get_json(f"{analyzer.base}/streams")["streams"][0]
    return _summarise(messages, seconds, stream)


def _listen(connect: Any, url: str, warmup_s: float, seconds: float) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    with connect(url, open_timeout=10, max_size=None) as ws:
        started = time.monotonic()
        counting_from = started + warmup_s
        while (now := time.monotonic()) < counting_from + seconds:
            try:
                message = json.loads(ws.recv(timeout=max(0.01, counting_from + seconds - now)))
            except TimeoutError:
                break
            if message.get("type") == "detections" and time.monotonic() >= counting_from:
                messages.append(message)
    return messages


def _summarise(messages: list[dict[str, Any]], seconds: float, stream: dict[str, Any]) -> LiveResult:
    latencies = [(m["emitted_at"] - m["captured_at"]) * 1000 for m in messages]
    third = max(1, len(latencies) // 3)
    drift = percentile(latencies[-third:], 50) - percentile(latencies[:third], 50) if latencies else float("nan")
    span = messages[-1]["emitted_at"] - messages[0]["emitted_at"] if len(messages) > 1 else seconds
    return LiveResult(
        frames=max(0, len(messages) - 1) if len(messages) > 1 else len(messages),
        seconds=span,
        latency_ms={q: percentile(latencies, float(q[1:])) for q in ("p50", "p90", "p99")}
        | {"max": max(latencies, default=float("nan"))},
        drift_ms=drift,
        source_fps=float(stream.get("source_fps") or 0.0),
        dropped=int(stream.get("frames_dropped") or 0),
        latencies_ms=latencies,
    )
