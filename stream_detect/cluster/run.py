"""``stream-detect run --cluster ADDRESS``: the started process of a cluster run, serving its API."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..compose import build_event_outputs, connect_outputs
from ..config import Config, ModelConfig
from ..detect.base import Detector
from ..errors import ConfigError
from ..source_store import SourceStore

log = logging.getLogger(__name__)


def run_cluster(config: Config, store: SourceStore | None = None,
                load: Callable[[ModelConfig], Detector] | None = None) -> int:
    """Connects to the cluster, deploys the models, places the cameras and serves the API until SIGINT or
    SIGTERM. ``load``: how replicas build a model's detector (default: the real one; tests and the
    scaling benchmark give a fake of a fixed cost).

    Raises:
        ConfigError: Ray is not installed, or the cluster cannot be reached.
    """
    if config.cluster is None:
        raise ConfigError("run_cluster needs a 'cluster' section")
    try:
        from .ray_engine import AgentLost, RayEngine
    except ImportError as error:
        raise ConfigError(f"--cluster needs Ray: pip install 'stream-detect[ray]' ({error})") from None
    from ..commands.run import serve
    from .head import ClusterHead

    engine = RayEngine(config.cluster, config, load)
    engine.connect()
    try:
        log.info("connected to the Ray cluster at %s; deploying the models", config.cluster.address)
        engine.deploy()
        outputs = build_event_outputs(config, media=False)
        try:
            head = ClusterHead(config, engine, AgentLost)
            for sink in outputs.sinks():
                head.dispatcher.add(sink)
            connect_outputs(outputs, head, config)
            return serve(head, config, store, outputs)
        finally:
            outputs.close()
    finally:
        engine.shutdown()
