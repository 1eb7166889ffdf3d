"""A model that cannot load: said once per stream, the server and capture keep running."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from stream_detect.config import ModelConfig, parse_config
from stream_detect.detect.base import Detector
from stream_detect.errors import ModelError
from stream_detect.pipeline import Pipeline

from ..server.serving import serving
from .helpers import Listener, streams, wait_until


def broken_model(model: ModelConfig) -> Detector:
    raise ModelError("cannot load model 'missing/model': not found")


@pytest.mark.timeout(60)
def test_a_model_that_cannot_load_is_reported_once_per_stream(caplog: pytest.LogCaptureFixture) -> None:
    sources = [{"kind": "synthetic", "id": name, "fps": 15, "width": 160, "height": 120} for name in ("a", "b")]
    pipeline = Pipeline(parse_config({"sources": sources, "model": {"id": "missing/model"}}), broken_model)
    with serving(pipeline) as base, Listener(base) as ws:
        assert wait_until(lambda: httpx.get(base + "/healthz", timeout=5).status_code == 503, 10)
        captured = streams(base)["a"]["frames_captured"]
        time.sleep(3)
        described = streams(base)
        health = httpx.get(base + "/healthz", timeout=5).json()
        states = {m["stream"]: m["state"] for _, m in ws.messages() if m["type"] == "status"}
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    per_stream = {name: sum(1 for line in lines if line.startswith(f"stream {name}:")) for name in ("a", "b")}
    print(f"{len(lines)} warning lines in 3 s: {lines}")
    assert per_stream == {"a": 1, "b": 1}, lines
    assert sum(1 for line in lines if "cannot load model" in line) <= 3  # the worker once, each stream once
    assert "not found" in health["error"]
    assert described["a"]["frames_captured"] > captured + 20, "capture stopped"
    assert described["a"]["frames_processed"] == 0
    assert states == {"a": "running", "b": "running"}
