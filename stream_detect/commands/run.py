"""``stream-detect run``: the analyzer with its server."""

from __future__ import annotations

import logging
import socket

from ..config import Config
from ..detect import load_detector
from ..pipeline import Pipeline
from ..server.app import create_app
from ..server.runner import build_server

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 3


def bind_socket(host: str, port: int) -> socket.socket:
    """Binds the listening socket ourselves so port 0 yields a known port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(pipeline: Pipeline, config: Config) -> int:
    """Serves ``pipeline`` until SIGINT or SIGTERM; the pipeline starts and stops with the server."""
    app = create_app(pipeline, config.server)
    sock = bind_socket(config.server.host, config.server.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"stream-detect: serving on http://{shown_host}:{port}", flush=True)
    server = build_server(app, config.server, graceful_shutdown_s=GRACEFUL_SHUTDOWN_S)
    server.run(sockets=[sock])
    return 0


def run(config: Config) -> int:
    pipeline = Pipeline(config, lambda: load_detector(config.model))
    return serve(pipeline, config)
