"""What the server sees of a running analyzer: small ports, and the pipeline behind them.

The server (:mod:`stream_detect.server`) and :mod:`stream_detect.metrics` depend
on the protocols and frozen records of this module, never on the pipeline's
streams, workers or dispatcher::

    StreamRegistry   GET /streams, the websocket's first statuses, metrics:
                     a frozen StreamSnapshot per stream, taken when asked for
    PreviewSource    the preview: a stream's last detections and rate, and which
                     run of the stream is the current one
    ModelPort        the inference API and /healthz, one per model: served id,
                     aliases, state, the load's Future, a lane for still images
    SinkStatistics   metrics: each sink's delivered, dropped, failed, buffered
    HlsPlaylists     /streams/{id}/hls/...: a stream's HLS playlist and segments
    RemoteJpegs      the preview of a cluster's streams, whose frames stay on their nodes
    ClusterView      /cluster: the nodes, their replicas and cameras; rebalancing
    StreamChanges    the one write port (POST, PUT and DELETE /streams) and the
                     sources a store keeps
    Lifecycle        the application's lifespan: start and stop

:func:`pipeline_ports` builds them over a :class:`~stream_detect.pipeline.Pipeline`
(:func:`stream_detect.compose.build_app` calls it). A snapshot never changes:
a later call sees the later state.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .config import ModelConfig, SourceConfig
from .detect.worker import WorkerState
from .errors import ModelError
from .overlay import Overlay
from .records import Detections
from .sources.base import SourceState

if TYPE_CHECKING:
    from .inference import InferenceLane
    from .pipeline import Pipeline
    from .sinks import Dispatcher


class HlsPlaylist(Protocol):
    """One stream's HLS, as :class:`~stream_detect.restream.hls.HlsSegmenter` serves it."""

    def playlist(self, query: str = "") -> str | None: ...

    def segment(self, sequence: int) -> bytes | None: ...


# -- records ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamSnapshot:
    """One stream as it was when the snapshot was taken.

    Attributes:
        width, height: Of its last processed frame, else of its last captured one; None before any.
        source_fps, processed_fps: Frames per second read from the source and run through the model.
        latency_p50_s, latency_p99_s: Capture to emit latency over recent frames; None before any.
        recording: Its recorder's description (state, error, counts, directory); None when not recorded.
        analytics: ``tracking`` (bool), its ``zones`` and ``lines`` as configured, ``counts`` (the latest
            counts message's ``zones`` and ``lines``; None when not tracked) and ``detections_dropped``
            by masks and filters.
    """

    id: str
    kind: str
    model: str
    state: SourceState
    detail: str | None
    width: int | None
    height: int | None
    source_fps: float
    processed_fps: float
    frames_captured: int
    frames_processed: int
    frames_dropped: int
    frames_corrupt: int
    reconnects: int
    latency_p50_s: float | None
    latency_p99_s: float | None
    recording: Mapping[str, object] | None = None
    analytics: Mapping[str, object] | None = None
    frames_still: int = 0  # processed frames that skipped the detector: nothing moved
    encoder: Mapping[str, object] | None = None  # its one H.264 encoder and that encoder's outputs
    node: str | None = None  # the cluster node that runs it (None: this process)

    def __post_init__(self) -> None:
        if self.recording is not None and not isinstance(self.recording, MappingProxyType):
            object.__setattr__(self, "recording", MappingProxyType(dict(self.recording)))
        if self.analytics is not None and not isinstance(self.analytics, MappingProxyType):
            object.__setattr__(self, "analytics", MappingProxyType(dict(self.analytics)))

    def describe(self) -> dict[str, Any]:
        """The stream's entry in ``GET /streams`` (a new dict at every call)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "model": self.model,
            "state": self.state.value,
            "detail": self.detail,
            "width": self.width,
            "height": self.height,
            "source_fps": round(self.source_fps, 2),
            "processed_fps": round(self.processed_fps, 2),
            "frames_captured": self.frames_captured,
            "frames_processed": self.frames_processed,
            "frames_dropped": self.frames_dropped,
            "frames_corrupt": self.frames_corrupt,
            "frames_still": self.frames_still,
            "reconnects": self.reconnects,
            "latency_ms": {"p50": _milliseconds(self.latency_p50_s), "p99": _milliseconds(self.latency_p99_s)},
            "recording": None if self.recording is None else dict(self.recording),
            "encoder": copy.deepcopy(dict(self.encoder)) if self.encoder is not None else None,
            **copy.deepcopy(dict(self.analytics or {})),
            **({"node": self.node} if self.node is not None else {}),
        }


def _milliseconds(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@dataclass(frozen=True, slots=True)
class PreviewState:
    """What the preview draws over a stream's newest frame.

    Attributes:
        run: Which run of the stream id this is: a stream replaced under the same id is a new run.
        overlay: What to draw over its frames: zones, lines, its last detections and their tracks.
        processed_fps: Frames per second run through its model.
    """

    run: int
    overlay: Overlay
    processed_fps: float

    @property
    def detections(self) -> Detections:
        """Its last detections."""
        return self.overlay.detections


@dataclass(frozen=True, slots=True)
class ModelStatus:
    """One model as it was when asked.

    Attributes:
        name: Its configured name (``default`` for the top-level ``model``).
        served_id: The id it is served and named under.
        aliases: Every name it answers to in ``POST /models/{name}``.
        state: ``loading``, ``ready``, ``failed`` or ``stopped``.
        error: Why it failed to load, or None.
        ready: Loaded and answering.
    """

    name: str
    served_id: str
    aliases: tuple[str, ...]
    state: str
    error: str | None
    ready: bool


@dataclass(frozen=True, slots=True)
class SinkStats:
    """One sink's counters: results taken, results lost to a full buffer, failures, what waits."""

    name: str
    delivered: int
    dropped: int
    failures: int
    buffered: int


# -- ports -----------------------------------------------------------------------


class StreamRegistry(Protocol):
    """The streams running now, as snapshots."""

    def ids(self) -> tuple[str, ...]:
        """Every stream's id, in order."""
        ...

    def get(self, stream_id: str) -> StreamSnapshot | None:
        """A snapshot of the stream ``stream_id``, or None when there is none."""
        ...

    def all(self) -> tuple[StreamSnapshot, ...]:
        """A snapshot of every stream, in order."""
        ...


class HlsPlaylists(Protocol):
    def hls(self, stream_id: str) -> HlsPlaylist | None:
        """The stream's HLS; None when there is no such stream or it has no ``restream: {hls: true}``."""
        ...


class PreviewSource(Protocol):
    def preview_state(self, stream_id: str) -> PreviewState | None:
        """What to draw over the stream's frames; None when there is no such stream (or it is being removed)."""
        ...


class ModelPort(Protocol):
    """One model: what it is served as, whether it is loaded, and the lane still images go on."""

    @property
    def name(self) -> str: ...

    @property
    def config(self) -> ModelConfig: ...

    @property
    def loaded(self) -> Future[None]:
        """Done once the model is loaded or has failed to (never cancelled: await it shielded)."""
        ...

    def status(self) -> ModelStatus: ...

    def check_ready(self) -> None:
        """Raises ModelNotReadyError while loading, ModelError if loading failed."""
        ...

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the loaded model's processor resizes an image of this size to.

        Raises:
            ModelError: the model is not loaded (ModelNotReadyError while it loads).
            InputError: no image of this size can be detected on.
        """
        ...

    def submit(self, image: np.ndarray, threshold: float) -> Future[Detections]:
        """Puts an ``(H, W, 3) uint8`` RGB image on the model's API lane.

        Raises:
            QueueFullError: too many requests are already waiting.
        """
        ...


Models = Mapping[str, ModelPort]
"""Every model by its configured name; ``default`` is the top-level ``model``."""


class SinkStatistics(Protocol):
    def sink_stats(self) -> tuple[SinkStats, ...]:
        """Every sink's counters, in the order the sinks were added."""
        ...


class StreamChanges(Protocol):
    """The one way to change the set of streams while the others run."""

    def add(self, source: SourceConfig) -> StreamSnapshot:
        """Adds and starts a stream. Raises StreamExistsError, or ConfigError for an unknown model."""
        ...

    def replace(self, source: SourceConfig) -> StreamSnapshot:
        """Restarts a stream under the same id. Raises UnknownStreamError, or ConfigError for an unknown model."""
        ...

    def remove(self, stream_id: str) -> None:
        """Stops and forgets a stream. Raises UnknownStreamError."""
        ...

    def sources(self) -> list[SourceConfig]:
        """The configuration entries of the streams running now, in order (what a store keeps)."""
        ...


class RemoteJpegs(Protocol):
    """The preview of streams whose frames are on other machines (a cluster's nodes)."""

    def preview_jpeg(self, stream_id: str, quality: int, raw: bool) -> tuple[int, bytes] | None:
        """The stream's newest frame as JPEG, annotated unless ``raw``: ``(frame index, JPEG)``; None before
        its first frame. Blocks (a call over the network): call it off the event loop."""
        ...


class ClusterView(Protocol):
    """``/cluster``: the nodes, their replicas and cameras; ``POST /cluster/rebalance``."""

    def describe(self) -> dict[str, Any]: ...

    def rebalance(self) -> list[dict[str, str]]:
        """Moves cameras so that no two nodes differ by more than one; what moved. Blocks."""
        ...

    def fetch_media(self, stream_id: str, start_id: str, suffix: str) -> bytes | None:
        """A tracked object's snapshot (``.jpg``, ``.json``) or clip (``.mp4``) from the node that made it;
        None when no node has it. Blocks."""
        ...


@dataclass(frozen=True, slots=True)
class Lifecycle:
    """Starts and stops what the server serves (``stop`` blocks until it has stopped)."""

    start: Callable[[], None]
    stop: Callable[[], object]


@dataclass(frozen=True, slots=True)
class Ports:
    """Every port of one pipeline, as :func:`stream_detect.compose.build_app` hands them out."""

    streams: StreamRegistry
    preview: PreviewSource
    models: Models
    sinks: SinkStatistics
    changes: StreamChanges
    lifecycle: Lifecycle
    hls: HlsPlaylists
    jpegs: RemoteJpegs | None = None  # frames on other machines: the preview asks for JPEGs
    cluster: ClusterView | None = None


# -- the pipeline behind them ----------------------------------------------------


class _PipelineStreams:
    """:class:`StreamRegistry`, :class:`PreviewSource` and :class:`HlsPlaylists` over a pipeline's streams."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def ids(self) -> tuple[str, ...]:
        return tuple(self._pipeline.streams)

    def get(self, stream_id: str) -> StreamSnapshot | None:
        stream = self._pipeline.streams.get(stream_id)
        return None if stream is None else stream.snapshot()

    def all(self) -> tuple[StreamSnapshot, ...]:
        # The pipeline replaces its dict of streams on a change, never mutates it.
        return tuple(stream.snapshot() for stream in self._pipeline.streams.values())

    def preview_state(self, stream_id: str) -> PreviewState | None:
        stream = self._pipeline.streams.get(stream_id)
        if stream is None or stream.removed:
            return None
        return PreviewState(stream.run, stream.overlay, stream.processed_rate.rate())

    def hls(self, stream_id: str) -> HlsPlaylist | None:
        stream = self._pipeline.streams.get(stream_id)
        return None if stream is None else stream.hls()


class _PipelineStreamChanges:
    """:class:`StreamChanges` over a pipeline."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def add(self, source: SourceConfig) -> StreamSnapshot:
        return self._pipeline.add_stream(source).snapshot()

    def replace(self, source: SourceConfig) -> StreamSnapshot:
        return self._pipeline.replace_stream(source).snapshot()

    def remove(self, stream_id: str) -> None:
        self._pipeline.remove_stream(stream_id)

    def sources(self) -> list[SourceConfig]:
        return self._pipeline.sources


class WorkerModel:
    """:class:`ModelPort` over one model's detector worker and its API lane."""

    def __init__(self, pipeline: Pipeline, name: str, lane: InferenceLane) -> None:
        self._pipeline = pipeline
        self._worker = pipeline.workers[name]
        self._lane = lane
        self._name = name
        self._config = pipeline.config.named_models()[name]

    @property
    def name(self) -> str:
        return self._name

    @property
    def config(self) -> ModelConfig:
        return self._config

    @property
    def loaded(self) -> Future[None]:
        return self._worker.loaded

    def status(self) -> ModelStatus:
        worker = self._worker
        served_id = self._pipeline.model_id(self._name)
        aliases = (self._config.id, self._config.name, served_id, self._name)
        return ModelStatus(
            name=self._name,
            served_id=served_id,
            aliases=tuple(dict.fromkeys(alias.strip("/") for alias in aliases if alias)),
            state=worker.state,
            error=worker.error,
            ready=worker.state == WorkerState.READY,
        )

    def check_ready(self) -> None:
        self._worker.check_ready()

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        detector = self._worker.detector
        if detector is None:
            self._worker.check_ready()  # loading or failed: it says which
            raise ModelError(f"model {self._name!r} is not loaded")
        return detector.input_size(height, width)

    def submit(self, image: np.ndarray, threshold: float) -> Future[Detections]:
        return self._lane.submit(image, threshold)


class DispatcherSinks:
    """:class:`SinkStatistics` over a dispatcher's sink runners."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    def sink_stats(self) -> tuple[SinkStats, ...]:
        described = [runner.describe() for runner in self._dispatcher.runners]
        return tuple(SinkStats(name=entry["name"], delivered=entry["delivered"], dropped=entry["dropped"],
                               failures=entry["failures"], buffered=entry["queued"]) for entry in described)


def pipeline_ports(pipeline: Pipeline, api_lanes: Mapping[str, InferenceLane]) -> Ports:
    """The ports of ``pipeline``; ``api_lanes`` are the lanes, one per model by name, that its
    workers take still images from (the caller adds them to the workers)."""
    streams = _PipelineStreams(pipeline)
    models = {name: WorkerModel(pipeline, name, api_lanes[name]) for name in pipeline.workers}
    return Ports(
        streams=streams,
        preview=streams,
        models=MappingProxyType(models),
        sinks=DispatcherSinks(pipeline.dispatcher),
        changes=_PipelineStreamChanges(pipeline),
        lifecycle=Lifecycle(start=pipeline.start, stop=pipeline.stop),
        hls=streams,
    )
