"""One node's share of the cameras: an ordinary pipeline whose detectors are the models' Serve deployments.

A :class:`NodeAgent` runs inside one actor per node (:mod:`.ray_engine` makes
it). Its cameras' capture, motion gating, tracking, zones, lines and
recording run here, as in one process; frames go to a detector replica on
this node (Serve routes to the node's own replicas first), so raw frames
never cross the network. What leaves the node is its :class:`~.relay.Outbox`
(results as JSON, notices, state changes), polled by the started process,
its streams' snapshots, and a preview JPEG when someone watches.

Nothing here imports Ray: a deployment handle is anything with
``method.remote(...).result(timeout_s=...)``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import threading
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Config, ModelConfig, SourceConfig
from ..errors import ModelError
from ..pipeline import Pipeline
from ..records import Detections, Frame
from ..render import draw_detections
from ..server.preview import encode_jpeg
from .relay import Drained, Outbox

log = logging.getLogger(__name__)

# A replica's answer to one frame may wait for a whole batch and a restart of the replica.
DETECT_TIMEOUT_S = 60.0
DESCRIBE_TIMEOUT_S = 600.0
SIZES_KEPT = 256  # the first replica of a model loads (or downloads) its weights


@dataclasses.dataclass
class ReplicaCounters:
    """What one detector replica said of itself in its last answer."""

    node: str
    batches: int = 0
    frames: int = 0

    @property
    def mean_batch(self) -> float:
        return self.frames / self.batches if self.batches else 0.0


class ReplicaStats:
    """The replicas a node's frames went to, by replica id (their own counters, the newest seen)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replicas: dict[str, dict[str, Any]] = {}

    def observe(self, model: str, meta: Mapping[str, Any]) -> None:
        with self._lock:
            self._replicas[str(meta["replica"])] = {"model": model, **meta}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {replica: dict(meta) for replica, meta in self._replicas.items()}


class ServedDetector:
    """A model's Serve deployment as a :class:`~stream_detect.detect.base.Detector`.

    Each image is a request of its own, sent together: the replica's batch
    (``@serve.batch``) takes the frames of every camera, on every node, that
    reach it at once.
    """

    def __init__(self, name: str, handle: Any, stats: ReplicaStats | None = None) -> None:
        self.name = name
        self._handle = handle
        self._stats = stats
        info = handle.describe.remote().result(timeout_s=DESCRIBE_TIMEOUT_S)
        self.model_id: str = info["model_id"]
        self.labels: dict[int, str] = dict(info.get("labels") or {})
        self._sizes: dict[tuple[int, int], tuple[int, int]] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"sizes:{name}")

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        responses = [self._handle.detect.remote(np.ascontiguousarray(image), threshold) for image in images]
        found = []
        for response in responses:
            detections, meta = response.result(timeout_s=DETECT_TIMEOUT_S)
            if self._stats is not None:
                self._stats.observe(self.name, meta)
            found.append(detections)
        return found

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """Asked of a replica once per image size (the API asks it on its event loop, where a deployment's
        answer cannot be waited for: it is waited for on a thread of its own)."""
        key = (height, width)
        size = self._sizes.get(key)
        if size is None:
            answer = self._pool.submit(
                lambda: self._handle.input_size.remote(height, width).result(timeout_s=DETECT_TIMEOUT_S))
            found = answer.result()
            size = self._sizes[key] = (int(found[0]), int(found[1]))
            if len(self._sizes) > SIZES_KEPT:
                self._sizes.pop(next(iter(self._sizes)))
        return size

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def snapshot_fields(pipeline: Pipeline) -> list[dict[str, Any]]:
    """Every stream's snapshot as plain fields (what crosses the network; the started process rebuilds
    :class:`~stream_detect.ports.StreamSnapshot` from them)."""
    found = []
    for stream in pipeline.streams.values():
        snapshot = stream.snapshot()
        fields = {field.name: getattr(snapshot, field.name) for field in dataclasses.fields(snapshot)}
        for key in ("recording", "analytics", "encoder"):
            if fields[key] is not None:
                fields[key] = _plain(fields[key])
        found.append(fields)
    return found


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


class NodeAgent:
    """The cameras of one node.

    Args:
        node: The node's id.
        config: The whole configuration without its sources (models, recording, events, ...).
        handles: Each model's deployment handle by model name.
    """

    def __init__(self, node: str, config: Config, handles: Mapping[str, Any]) -> None:
        self.node = node
        self.replicas = ReplicaStats()
        self.outbox = Outbox()
        self._handles = dict(handles)
        self._names = {id(model): name for name, model in config.named_models().items()}
        self._latest: dict[str, Frame] = {}  # each stream's newest frame, for the preview
        self.pipeline = Pipeline(config.model_copy(update={"sources": []}), self._load)
        # Delivered in full: the outbox itself is bounded (and drops the oldest results when the started
        # process falls behind).
        self.pipeline.dispatcher.add(self.outbox, maxsize=1024)
        self.pipeline.add_frame_tap(self._remember)
        self.pipeline.add_removal_listener(self._forget)
        self._sweeper: Any = None
        self.media_dirs = self._make_media(config)
        self.pipeline.start()

    def _make_media(self, config: Config) -> tuple[Path, Path] | None:
        """The tracked objects' snapshots and clips, made here from the frames, in this node's own
        directories under the data directory (the started process fetches them when asked)."""
        if not config.events.enabled or config.data_dir is None:
            return None
        from ..compose import EventOutputs, connect_outputs
        from ..events.snapshots import SnapshotSink

        base = Path(config.data_dir).expanduser() / "nodes" / self.node
        snapshots, clips = base / "snapshots", base / "clips"
        outputs = EventOutputs(snapshots=SnapshotSink(snapshots), snapshots_dir=snapshots, clips_dir=clips)
        self.pipeline.dispatcher.add(outputs.snapshots)  # type: ignore[arg-type]
        connect_outputs(outputs, self.pipeline, config.model_copy(update={"mqtt": None}))
        from ..events.media import Sweeper

        # The history is the started process's: here media go by age alone (its copies go with the history).
        self._sweeper = Sweeper(_EveryObjectKept(), [snapshots, clips], config.events.max_age_days)
        self._sweeper.start()
        return snapshots, clips

    def _load(self, model: ModelConfig) -> ServedDetector:
        name = self._names.get(id(model))
        if name is None or name not in self._handles:
            raise ModelError(f"no deployment serves model {model.served_id()!r}")
        return ServedDetector(name, self._handles[name], self.replicas)

    def _forget(self, stream_id: str) -> None:
        self._latest.pop(stream_id, None)

    def _remember(self, frame: Frame) -> None:
        self._latest[frame.stream_id] = frame

    # -- what the started process calls ---------------------------------------

    def ping(self) -> str:
        return self.node

    def add(self, source: SourceConfig) -> None:
        """Starts a camera here (raises StreamExistsError, ConfigError)."""
        self.pipeline.add_stream(source)

    def remove(self, stream_id: str) -> None:
        """Stops a camera here; one not here is already gone."""
        if stream_id in self.pipeline.streams:
            self.pipeline.remove_stream(stream_id)

    def drain(self, after: int, timeout_s: float) -> tuple[Drained, list[dict[str, Any]], dict[str, Any]]:
        """What happened since item ``after``, every stream's snapshot, and the replicas' counters."""
        drained = self.outbox.drain(after, timeout_s)
        return drained, snapshot_fields(self.pipeline), self.replicas.snapshot()

    def preview(self, stream_id: str, quality: int, raw: bool = False) -> tuple[int, bytes] | None:
        """The stream's newest frame as JPEG (annotated as the preview draws it unless ``raw``):
        ``(frame index, JPEG)``, or None before its first frame."""
        frame = self._latest.get(stream_id)
        stream = self.pipeline.streams.get(stream_id)
        if frame is None or stream is None:
            return None
        if raw:
            image = frame.image
        elif stream.removed:
            image = draw_detections(frame.image, Detections.empty(), stream_name=stream_id, clock=frame.captured_at)
        else:
            image = stream.overlay.draw(frame, stream_name=stream_id, clock=frame.captured_at,
                                        fps=stream.processed_rate.rate())
        return frame.index, encode_jpeg(image, quality)

    def hls_playlist(self, stream_id: str, query: str = "") -> str | None:
        """The stream's HLS playlist as its segmenter here writes it; None before its first segment, or when
        it has no ``restream: {hls: true}`` (the started process tells these apart by its configuration)."""
        stream = self.pipeline.streams.get(stream_id)
        hls = None if stream is None else stream.hls()
        return None if hls is None else hls.playlist(query)

    def hls_segment(self, stream_id: str, sequence: int) -> bytes | None:
        """One segment its playlist lists; None once it has left the playlist's window."""
        stream = self.pipeline.streams.get(stream_id)
        hls = None if stream is None else stream.hls()
        return None if hls is None else hls.segment(sequence)

    def media(self, stream_id: str, start_id: str, suffix: str) -> bytes | None:
        """A tracked object's file made here: ``.jpg`` (its snapshot), ``.json`` (the snapshot's sidecar)
        or ``.mp4`` (its clip); None when this node has none."""
        if self.media_dirs is None or suffix not in (".jpg", ".json", ".mp4"):
            return None
        from ..events.media import media_path

        path = media_path(self.media_dirs[1 if suffix == ".mp4" else 0], stream_id, start_id, suffix)
        try:
            return None if path is None else path.read_bytes()
        except OSError:
            return None

    def stop(self) -> bool:
        if self._sweeper is not None:
            self._sweeper.stop()
        return self.pipeline.stop()


class _EveryObjectKept:
    """A node has no history: every object is kept until its media are too old."""

    def existing(self, event_ids: Collection[str]) -> set[str]:
        return set(event_ids)
