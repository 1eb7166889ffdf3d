"""Running the real server in-process on 127.0.0.1:0, and a websocket reader."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from websockets.sync.client import ClientConnection, connect

from stream_detect.commands.run import bind_socket
from stream_detect.compose import EventOutputs, build_app
from stream_detect.config import ServerConfig, parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline
from stream_detect.server.runner import build_server


def one_camera_pipeline() -> Pipeline:
    """A slow synthetic camera ``entrance`` and the fake detector: for tests of pages, not of video."""
    config = parse_config({
        "model": {"id": "fake"},
        "sources": [{"kind": "synthetic", "id": "entrance", "fps": 5, "width": 320, "height": 240}],
    })
    return Pipeline(config, lambda model: FakeDetector(label="shape"))


@contextlib.contextmanager
def running(server: uvicorn.Server, name: str = "test-server") -> Iterator[str]:
    """Runs ``server`` on its own thread on 127.0.0.1 and a free port; yields ``http://127.0.0.1:PORT``
    once it has started, and stops it in ``finally``."""
    sock = bind_socket("127.0.0.1", 0)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.started, "server did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "server did not stop"


def serving_app(app: FastAPI, name: str = "test-app-server") -> contextlib.AbstractContextManager[str]:
    """A bare application (some routes installed on a FastAPI of the test's own) served by :func:`running`."""
    return running(uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", log_config=None)), name)


@contextlib.contextmanager
def serving(pipeline: Pipeline, config: ServerConfig | None = None,
            outputs: EventOutputs | None = None) -> Iterator[str]:
    """Serves ``pipeline`` (starting and stopping it; with ``outputs``' routes) and yields
    ``http://127.0.0.1:PORT``."""
    config = config or ServerConfig(port=0)
    with running(build_server(build_app(pipeline, config, None, outputs), config, graceful_shutdown_s=2)) as base:
        yield base


def ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + "/ws" + (f"?{query}" if query else "")


def read_messages(
    connection: ClientConnection, *, until: Any, timeout_s: float, max_messages: int = 100_000
) -> list[dict[str, Any]]:
    """Reads messages until ``until(messages)`` is true, bounded in time and count."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(messages) < max_messages and time.monotonic() < deadline:
        try:
            raw = connection.recv(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            break
        messages.append(json.loads(raw))
        if until(messages):
            break
    return messages


def open_ws(base: str, query: str = "", **kwargs: Any) -> ClientConnection:
    return connect(ws_url(base, query), open_timeout=10, max_size=2**22, **kwargs)
