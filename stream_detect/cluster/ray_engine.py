"""The one module that imports Ray: detector deployments (Ray Serve) and one agent actor per node.

- Each model is a Serve application, ``stream-detect-<model name>``, of
  :class:`DetectorReplica`: by default one replica per GPU when replicas hold
  GPUs (``replica_gpus``), else one per node (``replica_cpus`` CPUs each),
  ``@serve.batch`` gathering the frames of every camera that reach it at once. The forward pass runs blocking inside the
  batch method (a non-blocking call there halved throughput: FIELD NOTES of
  the project), and ``max_ongoing_requests`` is twice the batch, since it
  caps what a batch can take.
- Each node's cameras run in one :class:`~.agent.NodeAgent` actor pinned to
  the node (no CPU reserved: capture and tracking are light beside the
  detector), with the deployments' handles set to prefer replicas on the
  same node.

:func:`detector_app` is also the import path of the KubeRay RayService in
``deploy/kubernetes``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import ray
from ray import serve
from ray.exceptions import GetTimeoutError, RayError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from ..config import Config, ModelConfig
from ..detect.base import Detector
from ..errors import ConfigError
from .settings import ClusterConfig

log = logging.getLogger(__name__)

APP_PREFIX = "stream-detect-"
AGENT_START_TIMEOUT_S = 120.0


def app_name(model: str) -> str:
    """The Serve application of model ``model`` (``default`` is the top-level model)."""
    return f"{APP_PREFIX}{model}"


class DetectorReplica:
    """One replica of a model: loads the detector once and answers batches of frames."""

    def __init__(self, model: dict[str, Any], max_batch_size: int, batch_wait_ms: float,
                 load: Callable[[ModelConfig], Detector] | None = None) -> None:
        from ..detect import load_detector

        self._config = ModelConfig(**model)
        self._detector = (load or load_detector)(self._config)
        self._node = ray.get_runtime_context().get_node_id()
        self._replica = serve.get_replica_context().replica_id.unique_id
        self._lock = threading.Lock()
        self.batches = 0
        self.frames = 0
        self._detect_batch.set_max_batch_size(max_batch_size)  # type: ignore[attr-defined]
        self._detect_batch.set_batch_wait_timeout_s(batch_wait_ms / 1000)  # type: ignore[attr-defined]

    def describe(self) -> dict[str, Any]:
        return {"model_id": self._detector.model_id, "labels": dict(getattr(self._detector, "labels", {}) or {}),
                "node": self._node, "replica": self._replica}

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        return self._detector.input_size(height, width)

    async def detect(self, image: Any, threshold: float) -> tuple[Any, dict[str, Any]]:
        """One frame's detections above ``threshold``, and the replica's counters; answered in a batch."""
        return await self._detect_batch((image, threshold))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def _detect_batch(self, requests: list[tuple[Any, float]]) -> list[tuple[Any, dict[str, Any]]]:
        images = [image for image, _ in requests]
        thresholds = [threshold for _, threshold in requests]
        results = self._detector.detect(images, min(thresholds))  # blocking: the next batch gathers meanwhile
        with self._lock:
            self.batches += 1
            self.frames += len(images)
            meta = {"replica": self._replica, "node": self._node, "batch": len(images),
                    "batches": self.batches, "frames": self.frames}
        return [(found.filter(threshold), meta) for found, threshold in zip(results, thresholds, strict=True)]


def replica_slots(nodes: list[NodeInfo], replica_gpus: float) -> int:
    """How many replicas the alive ``nodes`` hold when ``replicas`` is not set: one per GPU (``replica_gpus``
    of one) where replicas hold GPUs, else one per node (a CPU replica's forward pass uses all the node's
    cores: two on one node only share them)."""
    if replica_gpus > 0:
        return sum(int(node.resources.get("GPU", 0.0) // replica_gpus) for node in nodes)
    return len(nodes)


def detector_app(args: Mapping[str, Any], load: Callable[[ModelConfig], Detector] | None = None,
                 slots: int = 1) -> serve.Application:
    """The Serve application of one model (a Serve application builder: ``args`` as in a RayService's
    ``serveConfigV2``): ``model`` (its configuration), ``max_batch_size``, ``batch_wait_ms``,
    ``replicas`` (None: ``slots``, from :func:`replica_slots`), ``replica_cpus``, ``replica_gpus``."""
    max_batch = int(args.get("max_batch_size", 8))
    replicas = args.get("replicas")
    gpus = float(args.get("replica_gpus", 0.0))
    options: dict[str, Any] = {
        "name": "detector",
        "num_replicas": int(replicas) if replicas else max(1, slots),
        "max_ongoing_requests": 2 * max_batch,
        "ray_actor_options": {"num_cpus": float(args.get("replica_cpus", 1.0)),
                              "num_gpus": gpus},
    }
    if not replicas and gpus == 0:
        options["max_replicas_per_node"] = 1  # one per node; GPU replicas are placed by the GPUs they hold
    deployment = serve.deployment(**options)(DetectorReplica)
    return deployment.bind(dict(args["model"]), max_batch, float(args.get("batch_wait_ms", 10.0)), load)


@ray.remote(num_cpus=0, max_restarts=0, max_concurrency=16)  # type: ignore[call-overload]
class AgentActor:
    """A :class:`~.agent.NodeAgent` in an actor: the handles prefer the node's own replicas."""

    def __init__(self, node: str, config: Config, handles: dict[str, Any]) -> None:
        from .agent import NodeAgent

        for handle in handles.values():
            handle._init(_prefer_local_routing=True)
        self.agent = NodeAgent(node, config, handles)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.agent, method)(*args)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: str
    address: str
    alive: bool
    resources: Mapping[str, float]


class AgentLost(Exception):
    """A node's agent is gone (its node died, its actor was killed) or does not answer."""


class RayEngine:
    """The cluster as :class:`~.head.ClusterHead` uses it."""

    def __init__(self, settings: ClusterConfig, config: Config,
                 load: Callable[[ModelConfig], Detector] | None = None) -> None:
        self.settings = settings
        self._config = config
        self._load = load
        self._handles: dict[str, Any] = {}
        self._slots = 0

    def connect(self) -> None:
        try:
            ray.init(address=self.settings.address, namespace=self.settings.namespace, log_to_driver=False,
                     logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise ConfigError(f"cluster: cannot connect to Ray at {self.settings.address}: {error}") from None
        serve.start(proxy_location="Disabled")

    def deploy(self) -> None:
        """Every model's application (or, with ``deploy: false``, finds them), and their handles."""
        slots = replica_slots(self.alive_nodes(), self.settings.replica_gpus)
        for name, model in self._config.named_models().items():
            if self.settings.deploy:
                self._handles[name] = serve.run(self._app(model, slots), name=app_name(name), route_prefix=None)
            else:
                try:
                    self._handles[name] = serve.get_app_handle(app_name(name))
                except RayError as error:
                    raise ConfigError(f"cluster: no Serve application {app_name(name)!r} for model {name!r} "
                                      f"(deploy: false): {error}") from None
        self._slots = slots

    def _app(self, model: ModelConfig, slots: int) -> serve.Application:
        settings = self.settings
        args = {"model": model.model_dump(mode="json", exclude_unset=True), "max_batch_size": settings.max_batch_size,
                "batch_wait_ms": settings.batch_wait_ms, "replicas": settings.replicas,
                "replica_cpus": settings.replica_cpus, "replica_gpus": settings.replica_gpus}
        return detector_app(args, self._load, slots)

    def follow_nodes(self) -> None:
        """One replica per GPU, or per node (when ``replicas`` is not set): scaled as nodes join and leave."""
        if not self.settings.deploy or self.settings.replicas:
            return
        slots = replica_slots(self.alive_nodes(), self.settings.replica_gpus)
        if slots and slots != self._slots:
            for name, model in self._config.named_models().items():
                serve.run(self._app(model, slots), name=app_name(name), route_prefix=None, blocking=False)
            self._slots = slots

    def handle(self, model: str) -> Any:
        return self._handles[model]

    def alive_nodes(self) -> list[NodeInfo]:
        """The alive nodes that can hold a detector replica: cameras run only there, beside one (a head node
        started with no CPUs, as a KubeRay head is, runs none)."""
        settings = self.settings
        return [node for node in self.nodes() if node.alive
                and node.resources.get("CPU", 0.0) >= settings.replica_cpus
                and node.resources.get("GPU", 0.0) >= settings.replica_gpus]

    def nodes(self) -> list[NodeInfo]:
        return [NodeInfo(entry["NodeID"], entry.get("NodeManagerAddress", ""), bool(entry.get("Alive")),
                         dict(entry.get("Resources") or {})) for entry in ray.nodes()]

    def start_agent(self, node: str, config: Config) -> Any:
        actor = AgentActor.options(  # type: ignore[attr-defined]
            scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False),
        ).remote(node, config, dict(self._handles))
        self.call(actor, "ping", timeout_s=AGENT_START_TIMEOUT_S)
        return actor

    def call(self, actor: Any, method: str, *args: Any, timeout_s: float = 30.0) -> Any:
        """``method(*args)`` on a node's agent. Raises AgentLost when it is gone or does not answer in time;
        the agent's own errors (a refused source) as they are."""
        try:
            return ray.get(actor.call.remote(method, *args), timeout=timeout_s)
        except GetTimeoutError:
            raise AgentLost(f"no answer within {timeout_s:.0f} s") from None
        except ray.exceptions.RayTaskError as error:
            cause = error.as_instanceof_cause()
            if isinstance(cause, ray.exceptions.RayActorError):
                raise AgentLost(str(error).splitlines()[0]) from None
            raise cause from None
        except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError) as error:
            raise AgentLost(str(error).splitlines()[0][:300]) from None

    def kill(self, actor: Any) -> None:
        with contextlib.suppress(RayError, ValueError):
            ray.kill(actor, no_restart=True)

    def shutdown(self) -> None:
        if self.settings.deploy:
            for name in self._handles:
                try:
                    serve.delete(app_name(name))
                except RayError as error:
                    log.warning("cluster: deleting the Serve application of model %s failed: %s", name, error)
        ray.shutdown()
