"""``stream-detect run``: the analyzer with its server."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

from ..compose import AnalyzerHost, EventOutputs, build_app, build_event_outputs, build_pipeline, connect_outputs
from ..config import Config, parse_config
from ..detect import load_detector
from ..server.runner import build_server
from ..source_store import ConfigFileStore, SourceStore, StateFileStore, entry_of

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN_S = 3


def bind_socket(host: str, port: int) -> socket.socket:
    """Binds the listening socket ourselves so port 0 yields a known port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, not 0: asyncio turns Nagle off (TCP_NODELAY) only on sockets that say they are
    # TCP, and with Nagle on every kept-alive response waited ~40 ms for the peer's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(pipeline: AnalyzerHost, config: Config, store: SourceStore | None = None,
          outputs: EventOutputs | None = None) -> int:
    """Serves ``pipeline`` until SIGINT or SIGTERM; the pipeline starts and stops with the server."""
    app = build_app(pipeline, config.server, store, outputs)
    sock = bind_socket(config.server.host, config.server.port)
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"stream-detect: serving on http://{shown_host}:{port}", flush=True)
    server = build_server(app, config.server, graceful_shutdown_s=GRACEFUL_SHUTDOWN_S)
    server.run(sockets=[sock])
    return 0


def run(config: Config, config_file: str | None = None) -> int:
    """Runs the analyzer and its server. Cameras changed through the API are kept in
    ``config_file`` when the sources came from it, else in the data directory."""
    config, store = with_source_store(config, config_file)
    if config.cluster is not None:
        from ..cluster.run import run_cluster

        return run_cluster(config, store)
    outputs = build_event_outputs(config)
    try:
        pipeline = build_pipeline(config, load_detector, outputs.sinks())
        connect_outputs(outputs, pipeline, config)
        return serve(pipeline, config, store, outputs)
    finally:
        outputs.close()  # closed already when the pipeline ran; not when the server could not start


def with_source_store(config: Config, config_file: str | None) -> tuple[Config, SourceStore]:
    """Where run-time camera changes are kept, and the configuration with the kept changes applied.

    Raises:
        ConfigError: the saved changes cannot be read or conflict.
    """
    if config_file is not None:
        return config, ConfigFileStore(Path(config_file))
    data_dir = Path(config.data_dir or ".").expanduser()
    store = StateFileStore(data_dir, config.sources)
    sources = store.apply()
    if sources == config.sources:
        return config, store
    data = config.model_dump(mode="python", exclude_unset=True)
    data["sources"] = [entry_of(source) for source in sources]
    return parse_config(data, origin=str(store.path)), store
