"""The started process of ``stream-detect run --cluster``: where each camera runs, and what comes back.

:class:`ClusterHead` places each camera on a node (the node with the fewest
cameras), in that node's agent (:mod:`.agent`), and polls every agent on a
thread of its own. What the agents send (:mod:`.relay`) goes into the head's
own dispatcher, so the websocket hub, the event history, MQTT and webhooks
are fed as in one process. The server reads the head through the same ports
(:mod:`stream_detect.ports`) it reads a pipeline through; still images for
the inference API go to the models' deployments through a detector worker
of the head's own, with the same lanes, thresholds and label filters.

When an agent is lost (its node died, its actor was killed, or it did not
answer a poll within ``poll_s`` + :data:`POLL_GRACE_S`), its cameras are
told ``reconnecting`` and placed again on the nodes that are left; their
messages resume from the new node. A camera placed again is a new run of
the stream: its frame numbers start again from 0 and its tracks get new ids.
A node that joins takes the next cameras; :meth:`ClusterHead.rebalance`
spreads the existing ones.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from ..config import Config, ModelConfig, SourceConfig
from ..detect.base import Detector
from ..detect.worker import BatchStats
from ..errors import ConfigError, StreamExistsError, UnknownStreamError
from ..inference import InferenceLane
from ..overlay import Overlay
from ..pipeline import FrameTap, Pipeline
from ..ports import DispatcherSinks, HlsPlaylist, Lifecycle, Ports, PreviewState, StreamSnapshot, WorkerModel
from ..sources.base import SourceState
from ..sources.capture import StateChange
from .agent import ReplicaCounters, ServedDetector
from .relay import Drained, RelayedResult

log = logging.getLogger(__name__)

POLL_GRACE_S = 5.0  # a poll unanswered this long past its own wait: the agent is lost
LOST_NODE_QUIET_S = 60.0  # a node whose agent was lost gets no new one this long (it may be dying still)
WATCH_S = 2.0  # how often nodes joining and leaving, and cameras waiting for a node, are looked at
STOP_TIMEOUT_S = 15.0


class Engine(Protocol):
    """What the head needs of the distributed engine (:class:`~.ray_engine.RayEngine`)."""

    def alive_nodes(self) -> list[Any]: ...

    def nodes(self) -> list[Any]: ...

    def follow_nodes(self) -> None: ...

    def handle(self, model: str) -> Any: ...

    def start_agent(self, node: str, config: Config) -> Any: ...

    def call(self, actor: Any, method: str, *args: Any, timeout_s: float = 30.0) -> Any: ...

    def kill(self, actor: Any) -> None: ...


@dataclass(eq=False)
class _Agent:
    """One node's agent as the head holds it."""

    node: str
    actor: Any
    cursor: int = 0
    lost: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    dropped: int = 0  # results its outbox lost to the head falling behind


class ClusterHead:
    """The cameras of ``config`` over the nodes of ``engine``; the server's ports over them.

    Args:
        config: The validated configuration (its ``cluster`` section is the engine's).
        engine: The connected engine, with the models deployed.
        lost_error: The engine's exception for an agent that is gone.
    """

    def __init__(self, config: Config, engine: Engine, lost_error: type[Exception]) -> None:
        self.config = config
        self.engine = engine
        self._lost_error = lost_error
        self._poll_s = config.cluster.poll_s if config.cluster is not None else 0.5
        self._names = {id(model): name for name, model in config.named_models().items()}
        # The API's still images: a worker per model, the same lanes and filters as in one process.
        self.local = Pipeline(config.model_copy(update={"sources": []}), self._api_detector)
        self.dispatcher = self.local.dispatcher
        self.workers = self.local.workers
        self.wakeup = self.local.wakeup
        self._agent_config = config.model_copy(update={"sources": []})
        self._sources: dict[str, SourceConfig] = {}  # in order
        self._where: dict[str, str] = {}  # stream -> node whose agent runs it
        self._leaving: dict[str, str] = {}  # stream -> node it left: that node's last events still count
        self._snapshots: dict[str, StreamSnapshot] = {}
        self._runs: dict[str, int] = {}
        self._run_numbers = itertools.count(1)
        self._agents: dict[str, _Agent] = {}
        self._replicas: dict[str, dict[str, Any]] = {}
        self._waiting: list[str] = []  # cameras with no node to run on yet
        self._lost_at: dict[str, float] = {}  # node -> when its agent was lost
        self._lock = threading.RLock()  # placements: one change at a time
        self._stopping = threading.Event()
        self._started = False
        self._removal_listeners: list[Callable[[str], None]] = []
        self._watcher = threading.Thread(target=self._watch, name="cluster-watch", daemon=True)
        for source in config.sources:
            self._sources[source.id] = source
            self._new_run(source, SourceState.CONNECTING, "waiting for a node")

    def _api_detector(self, model: ModelConfig) -> Detector:
        name = self._names[id(model)]
        return ServedDetector(name, self.engine.handle(name))

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.local.start()
        with self._lock:
            self._start_agents([node.id for node in self.engine.alive_nodes()])
            for stream_id in list(self._sources):
                self._place(stream_id)
        self._watcher.start()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stops every agent (their cameras' last events come back first), then the head's own threads."""
        self._stopping.set()
        with self._lock:
            agents = list(self._agents.values())
        for agent in agents:
            agent.lost.set()  # its poller ends after its current poll; the last one is taken here
        for agent in agents:
            if agent.thread is not None:
                agent.thread.join(self._poll_s + POLL_GRACE_S)
        for agent in agents:
            try:
                self.engine.call(agent.actor, "stop", timeout_s=timeout)
                self._publish(agent, self.engine.call(agent.actor, "drain", agent.cursor, 0.0, timeout_s=timeout))
            except self._lost_error as error:
                log.warning("cluster: node %s did not stop cleanly: %s", _short(agent.node), error)
            self.engine.kill(agent.actor)
        return self.local.stop(timeout)

    # -- placement -----------------------------------------------------------

    def _new_run(self, source: SourceConfig, state: SourceState, detail: str | None, node: str | None = None) -> None:
        self._runs[source.id] = next(self._run_numbers)
        self._snapshots[source.id] = _placeholder(source, state, detail, node)

    def _start_agents(self, nodes: list[str]) -> None:
        """Starts an agent on each of ``nodes`` that has none, at once (each takes seconds)."""
        now = time.monotonic()
        missing = [node for node in nodes if node not in self._agents
                   and now - self._lost_at.get(node, -LOST_NODE_QUIET_S) >= LOST_NODE_QUIET_S]
        if not missing:
            return
        with concurrent.futures.ThreadPoolExecutor(len(missing)) as pool:
            futures = {node: pool.submit(self.engine.start_agent, node, self._agent_config) for node in missing}
        for node, future in futures.items():
            try:
                actor = future.result()
            except Exception as error:
                log.error("cluster: no agent could start on node %s: %s", _short(node), error)
                continue
            agent = _Agent(node, actor)
            agent.thread = threading.Thread(target=self._poll, args=(agent,), name=f"cluster-poll:{_short(node)}",
                                            daemon=True)
            self._agents[node] = agent
            agent.thread.start()
            log.info("cluster: node %s runs cameras", _short(node))

    def _load(self) -> dict[str, int]:
        counts = dict.fromkeys(self._agents, 0)
        for node in self._where.values():
            if node in counts:
                counts[node] += 1
        return counts

    def _place(self, stream_id: str, avoid: str | None = None) -> None:
        """Starts the camera on the node with the fewest; it waits for a node when there is none (under the lock)."""
        source = self._sources[stream_id]
        while True:
            counts = {node: count for node, count in self._load().items() if node != avoid}
            if not counts:
                if stream_id not in self._waiting:
                    self._waiting.append(stream_id)
                log.warning("cluster: camera %s waits for a node to run on", stream_id)
                return
            node = min(counts, key=lambda key: (counts[key], key))
            agent = self._agents[node]
            self._where[stream_id] = node
            self._leaving.pop(stream_id, None)
            self._snapshots[stream_id] = _placeholder(source, SourceState.CONNECTING, None, node)
            try:
                self.engine.call(agent.actor, "add", source, timeout_s=60.0)
            except self._lost_error as error:
                self._where.pop(stream_id, None)
                self._forget_agent(agent, str(error))
                continue
            except BaseException:
                self._where.pop(stream_id, None)
                raise
            if stream_id in self._waiting:
                self._waiting.remove(stream_id)
            return

    def _forget_agent(self, agent: _Agent, reason: str) -> list[str]:
        """Drops a lost agent; returns the cameras it ran (under the lock)."""
        if self._agents.get(agent.node) is not agent:
            return []
        del self._agents[agent.node]
        self._lost_at[agent.node] = time.monotonic()
        agent.lost.set()
        self.engine.kill(agent.actor)
        moved = [stream_id for stream_id, node in self._where.items() if node == agent.node]
        log.error("cluster: node %s lost (%s); placing its %d cameras again", _short(agent.node), reason, len(moved))
        for stream_id in moved:
            del self._where[stream_id]
            source = self._sources[stream_id]
            detail = f"node {_short(agent.node)} lost; placing again"
            self._new_run(source, SourceState.RECONNECTING, detail)
            self.dispatcher.publish_status(StateChange(stream_id, SourceState.RECONNECTING, time.time(), detail))
        return moved

    def _agent_lost(self, agent: _Agent, reason: str) -> None:
        if self._stopping.is_set():
            return
        with self._lock:
            moved = self._forget_agent(agent, reason)
            alive = {node.id for node in self.engine.alive_nodes()}
            self._start_agents(sorted(alive - set(self._agents)))
            if not self._agents and agent.node in alive:  # the only node: its agent died, not the node
                self._lost_at.pop(agent.node, None)
                self._start_agents([agent.node])
            for stream_id in moved:
                if stream_id in self._sources and stream_id not in self._where:
                    self._place(stream_id)

    def _watch(self) -> None:
        """Nodes that join get an agent (and the next cameras); cameras waiting for a node are placed."""
        while not self._stopping.wait(WATCH_S):
            try:
                self.engine.follow_nodes()
                alive = {node.id for node in self.engine.alive_nodes()}
                with self._lock:
                    for node, agent in list(self._agents.items()):
                        if node not in alive:
                            self._agent_lost(agent, "the node is no longer alive")
                    self._start_agents(sorted(alive - set(self._agents)))
                    for stream_id in list(self._waiting):
                        if stream_id in self._sources and stream_id not in self._where:
                            self._place(stream_id)
            except Exception:
                log.exception("cluster: watching the nodes failed")

    # -- the agents' results --------------------------------------------------

    def _poll(self, agent: _Agent) -> None:
        while not agent.lost.is_set():
            try:
                answer = self.engine.call(agent.actor, "drain", agent.cursor, self._poll_s,
                                          timeout_s=self._poll_s + POLL_GRACE_S)
            except self._lost_error as error:
                if not agent.lost.is_set():
                    self._agent_lost(agent, str(error))
                return
            except Exception:
                log.exception("cluster: polling node %s failed", _short(agent.node))
                time.sleep(self._poll_s)
                continue
            try:
                self._publish(agent, answer)
            except Exception:  # one bad answer loses that answer, not the node
                log.exception("cluster: the results of node %s could not be taken", _short(agent.node))
                agent.cursor = answer[0].items[-1].sequence if answer[0].items else agent.cursor

    def _publish(self, agent: _Agent, answer: tuple[Drained, list[dict[str, Any]], dict[str, Any]]) -> None:
        drained, snapshots, replicas = answer
        node = agent.node
        for item in drained.items:
            placed = self._where.get(item.stream_id) == node
            if not placed and self._leaving.get(item.stream_id) != node:
                continue  # moved away: the new node speaks for it
            if item.kind == "result" and placed:
                self.dispatcher.publish_result(RelayedResult(item.stream_id, item.payload))  # type: ignore[arg-type]
            elif item.kind == "notice":
                from ..sinks import Notice

                self.dispatcher.publish_notice(Notice(item.stream_id, item.payload))
            elif item.kind == "status" and placed:
                self.dispatcher.publish_status(item.payload)
        if drained.items:
            agent.cursor = drained.items[-1].sequence
        agent.dropped = drained.dropped
        for fields in snapshots:
            stream_id = fields["id"]
            if self._where.get(stream_id) == node:
                self._snapshots[stream_id] = StreamSnapshot(**{**fields, "node": node})
        for replica, meta in replicas.items():
            known = self._replicas.get(replica)
            if known is None or meta.get("batches", 0) >= known.get("batches", 0):
                self._replicas[replica] = meta

    # -- what the server reads -------------------------------------------------

    def ids(self) -> tuple[str, ...]:
        return tuple(self._sources)

    def get(self, stream_id: str) -> StreamSnapshot | None:
        return self._snapshots.get(stream_id) if stream_id in self._sources else None

    def all(self) -> tuple[StreamSnapshot, ...]:
        return tuple(self._snapshots[stream_id] for stream_id in list(self._sources) if stream_id in self._snapshots)

    def preview_state(self, stream_id: str) -> PreviewState | None:
        source = self._sources.get(stream_id)
        if source is None:
            return None
        return PreviewState(self._runs[stream_id], Overlay.empty(source.zones, source.lines),
                            self._snapshots[stream_id].processed_fps)

    def preview_jpeg(self, stream_id: str, quality: int, raw: bool) -> tuple[int, bytes] | None:
        """The stream's newest frame as JPEG, from the node that holds it (only while someone watches)."""
        found: tuple[int, bytes] | None = self._ask_node(stream_id, "preview", quality, raw)
        return found

    def fetch_media(self, stream_id: str, start_id: str, suffix: str) -> bytes | None:
        """A tracked object's snapshot (``.jpg``, its ``.json`` sidecar) or clip (``.mp4``), from the node that
        made it: the camera's node now first, then the others. None when no node alive has it."""
        with self._lock:
            first = self._agents.get(self._where.get(stream_id, ""))
            agents = [first] if first is not None else []
            agents += [agent for agent in self._agents.values() if agent is not first]
        for agent in agents:
            try:
                found: bytes | None = self.engine.call(agent.actor, "media", stream_id, start_id, suffix,
                                                       timeout_s=30.0)
            except self._lost_error:
                continue
            if found is not None:
                return found
        return None

    def hls(self, stream_id: str) -> HlsPlaylist | None:
        """The stream's HLS, segmented on its node and fetched from there (segments are small: 1-2 s of
        H.264); None when it has no ``restream: {hls: true}``."""
        source = self._sources.get(stream_id)
        if source is None or source.restream is None or not source.restream.hls:
            return None
        return _NodeHls(self, stream_id)

    def _ask_node(self, stream_id: str, method: str, *args: Any, timeout_s: float = 5.0) -> Any:
        """``method(*args)`` on the agent of the node that holds the stream; None when none holds it now
        or it does not answer."""
        agent = self._agents.get(self._where.get(stream_id, ""))
        if agent is None:
            return None
        try:
            return self.engine.call(agent.actor, method, stream_id, *args, timeout_s=timeout_s)
        except self._lost_error:
            return None

    def add_frame_tap(self, tap: FrameTap) -> None:
        """Frames stay on their nodes: the preview asks for JPEGs instead (:meth:`preview_jpeg`)."""

    def add_batch_listener(self, listener: Callable[[BatchStats], None]) -> None:
        self.local.add_batch_listener(listener)

    def ports(self, api_lanes: Mapping[str, InferenceLane]) -> Ports:
        models = {name: WorkerModel(self.local, name, api_lanes[name]) for name in self.workers}
        return Ports(streams=self, preview=self, models=MappingProxyType(models),
                     sinks=DispatcherSinks(self.dispatcher), changes=_HeadChanges(self),
                     lifecycle=Lifecycle(start=self.start, stop=self.stop), hls=self, jpegs=self, cluster=self)

    # -- changes ------------------------------------------------------------------

    def add_stream(self, source: SourceConfig) -> StreamSnapshot:
        with self._lock:
            if source.id in self._sources:
                raise StreamExistsError(f"stream {source.id!r} exists")
            self._check_model(source)
            self._sources[source.id] = source
            self._new_run(source, SourceState.CONNECTING, None)
            if self._started:
                try:
                    self._place(source.id)
                except BaseException:
                    del self._sources[source.id]
                    raise
            return self._snapshots[source.id]

    def remove_stream(self, stream_id: str) -> None:
        with self._lock:
            if stream_id not in self._sources:
                raise UnknownStreamError(f"no stream {stream_id!r}")
            node = self._where.pop(stream_id, None)
            del self._sources[stream_id]
            if stream_id in self._waiting:
                self._waiting.remove(stream_id)
            agent = self._agents.get(node or "")
            if agent is not None:
                self._leaving[stream_id] = agent.node
                try:
                    self.engine.call(agent.actor, "remove", stream_id, timeout_s=30.0)
                except self._lost_error as error:
                    log.warning("cluster: camera %s: its node did not stop it: %s", stream_id, error)
        self.dispatcher.publish_status(StateChange(stream_id, SourceState.STOPPED, time.time()))
        for listener in self._removal_listeners:
            try:
                listener(stream_id)
            except Exception:
                log.exception("stream %s: a removal listener failed", stream_id)

    def add_removal_listener(self, listener: Callable[[str], None]) -> None:
        """``listener(stream_id)`` once a stream has been removed (as :meth:`Pipeline.add_removal_listener`)."""
        self._removal_listeners.append(listener)

    def replace_stream(self, source: SourceConfig) -> StreamSnapshot:
        with self._lock:
            if source.id not in self._sources:
                raise UnknownStreamError(f"no stream {source.id!r}")
            self._check_model(source)
            self.remove_stream(source.id)
            return self.add_stream(source)

    @property
    def sources(self) -> list[SourceConfig]:
        return list(self._sources.values())

    def _check_model(self, source: SourceConfig) -> None:
        if Config.model_of(source) not in self.workers:
            known = ", ".join(sorted(name for name in self.workers if name != "default")) or "none"
            raise ConfigError(f"model {source.model!r} is not one of the configured models ({known})")

    def rebalance(self) -> list[dict[str, str]]:
        """Moves cameras from the busiest nodes to the idlest until no two differ by more than one."""
        moved = []
        with self._lock:
            while True:
                counts = self._load()
                if len(counts) < 2:
                    break
                busiest = max(counts, key=lambda key: (counts[key], key))
                idlest = min(counts, key=lambda key: (counts[key], key))
                if counts[busiest] - counts[idlest] <= 1:
                    break
                stream_id = next(s for s in reversed(self._sources) if self._where.get(s) == busiest)
                self._move(stream_id, busiest, idlest)
                moved.append({"stream": stream_id, "from": busiest, "to": self._where.get(stream_id, "")})
        return moved

    def _move(self, stream_id: str, source_node: str, target: str) -> None:
        agent = self._agents[source_node]
        del self._where[stream_id]
        self._leaving[stream_id] = source_node  # its tracks' last events (zone.leave, object.end) still count
        detail = f"moving to node {_short(target)}"
        self.dispatcher.publish_status(StateChange(stream_id, SourceState.RECONNECTING, time.time(), detail))
        try:
            self.engine.call(agent.actor, "remove", stream_id, timeout_s=30.0)
        except self._lost_error as error:
            self._forget_agent(agent, str(error))
        self._runs[stream_id] = next(self._run_numbers)
        self._place(stream_id, avoid=source_node)

    # -- /cluster ------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """``GET /cluster``: the nodes, each with its cameras and the detector replicas seen on it."""
        replicas: dict[str, list[dict[str, Any]]] = {}
        for replica, meta in self._replicas.items():
            counters = ReplicaCounters(str(meta.get("node", "")), int(meta.get("batches", 0)),
                                       int(meta.get("frames", 0)))
            replicas.setdefault(counters.node, []).append(
                {"id": replica, "model": meta.get("model"), "batches": counters.batches, "frames": counters.frames,
                 "mean_batch": round(counters.mean_batch, 2)})
        nodes = []
        for node in self.engine.nodes():
            agent = self._agents.get(node.id)
            nodes.append({
                "id": node.id, "address": node.address, "alive": node.alive,
                "cpus": node.resources.get("CPU", 0.0), "gpus": node.resources.get("GPU", 0.0),
                "agent": agent is not None, "results_dropped": agent.dropped if agent is not None else 0,
                "cameras": [stream_id for stream_id in self._sources if self._where.get(stream_id) == node.id],
                "replicas": sorted(replicas.get(node.id, []), key=lambda entry: str(entry["id"])),
            })
        settings = self.config.cluster
        return {"engine": "ray", "address": settings.address if settings else None, "nodes": nodes,
                "waiting": [stream_id for stream_id in self._waiting if stream_id in self._sources]}


class _HeadChanges:
    """:class:`~stream_detect.ports.StreamChanges` over a head."""

    def __init__(self, head: ClusterHead) -> None:
        self._head = head

    def add(self, source: SourceConfig) -> StreamSnapshot:
        return self._head.add_stream(source)

    def replace(self, source: SourceConfig) -> StreamSnapshot:
        return self._head.replace_stream(source)

    def remove(self, stream_id: str) -> None:
        self._head.remove_stream(stream_id)

    def sources(self) -> list[SourceConfig]:
        return self._head.sources


def _placeholder(source: SourceConfig, state: SourceState, detail: str | None, node: str | None) -> StreamSnapshot:
    """A camera's snapshot before its node has said anything of it."""
    return StreamSnapshot(id=source.id, kind=source.kind, model=Config.model_of(source), state=state, detail=detail,
                          width=None, height=None, source_fps=0.0, processed_fps=0.0, frames_captured=0,
                          frames_processed=0, frames_dropped=0, frames_corrupt=0, reconnects=0, latency_p50_s=None,
                          latency_p99_s=None, node=node)


def _short(node: str) -> str:
    return node[:8]




class _NodeHls:
    """One stream's HLS as the node that holds it serves it: each request asks that node, so a camera that
    moved is served by its new node (its playlist starts again, as after a reconnect)."""

    def __init__(self, head: ClusterHead, stream_id: str) -> None:
        self._head = head
        self._stream_id = stream_id

    def playlist(self, query: str = "") -> str | None:
        text: str | None = self._head._ask_node(self._stream_id, "hls_playlist", query)
        return text

    def segment(self, sequence: int) -> bytes | None:
        data: bytes | None = self._head._ask_node(self._stream_id, "hls_segment", sequence)
        return data
