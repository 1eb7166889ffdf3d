"""The composition root: the one place where a running analyzer is wired.

The graph, as :func:`build_pipeline` and :func:`build_app` put it together::

    source --capture thread--> bounded queue --lane--> detector worker (one per model)
                  |                                           |
                  +--> frame taps: preview                    +--> dispatcher --> sinks, each on its
                  +--> the stream's one encoder (restream/):       own thread: websocket hub,
                       recording, clips, RTSP push, HLS            recordings' detections, the
                                                                   event history, ...
    server routes --> read-only ports (ports.py): stream snapshots, the preview's detections,
                      the models (state, served id, their API lanes), sink statistics, the hub;
                      and the one write port: streams added, changed and removed (kept by a store)

Stages never subscribe themselves: whatever listens, taps or feeds a lane
is connected here. ``stream-detect run`` and ``demo`` are :func:`build_pipeline`
(with :func:`build_event_outputs`' sinks) plus :func:`build_app`; ``annotate`` is
:func:`build_pipeline` with a file source and blocking file sinks; ``detect`` is
:func:`build_still_images`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from fastapi import FastAPI

from .config import Config, ModelConfig, ServerConfig
from .detect.base import Detector
from .detect.worker import BatchStats, DetectorWorker
from .errors import ConfigError
from .events import EventStore, events_path
from .inference import InferenceLane
from .metrics import Metrics
from .pipeline import Pipeline, StreamRuntime
from .ports import Ports
from .records import Frame
from .sinks import Dispatcher, Overflow, Sink
from .source_store import SourceStore

if TYPE_CHECKING:
    from .cluster.head import ClusterHead
    from .events.clips import ClipSink
    from .events.media import Sweeper
    from .events.snapshots import SnapshotSink
    from .notify.mqtt import MqttSink
    from .notify.mqtt_topics import StreamTopology
    from .notify.webhooks import WebhookSink
    from .restream.outputs import PacketOutput

# Models with more labels than this (COCO's 91) announce to Home Assistant only the labels their
# zones name, or that their 'labels' setting keeps: a sensor per label and zone would swamp it.
MAX_ANNOUNCED_LABELS = 20

WEBSOCKET_SINK_BUFFER = 64


def build_pipeline(config: Config, load_detector: Callable[[ModelConfig], Detector],
                   sinks: Sequence[Sink] = (), overflow: Overflow = Overflow.DROP_OLDEST,
                   buffer: int = 16) -> Pipeline:
    """Sources, queues, one detector worker per model and the dispatcher, with ``sinks`` on it
    (each buffering ``buffer`` results; ``Overflow.BLOCK`` for files that must get every frame:
    ``stream-detect annotate``)."""
    pipeline = Pipeline(config, load_detector)
    for sink in sinks:
        pipeline.dispatcher.add(sink, maxsize=buffer, overflow=overflow)
    return pipeline


@dataclass
class EventOutputs:
    """Where a running analyzer's events go besides the websocket: the history, webhooks, MQTT.

    Each is a sink of the dispatcher (:meth:`sinks`); the server reads the
    history (``/events``) and the webhooks' deliveries (``/webhooks/deliveries``).
    """

    history: EventStore | None = None
    webhooks: WebhookSink | None = None
    mqtt: MqttSink | None = None
    clips: ClipSink | None = None  # each tracked object's clip, from its stream's encoded ring
    snapshots: SnapshotSink | None = None  # each tracked object's best frame, beside the history
    snapshots_dir: Path | None = None
    clips_dir: Path | None = None
    sweeper: Sweeper | None = None  # the media's share of the history's retention

    def sinks(self) -> list[Sink]:
        from .events.sink import EventStoreSink

        found: list[Sink] = []
        if self.history is not None:
            found.append(EventStoreSink(self.history))
        if self.snapshots is not None:
            found.append(self.snapshots)
        if self.webhooks is not None:
            found.append(self.webhooks)
        if self.mqtt is not None:
            found.append(self.mqtt)
        return found

    def close(self) -> None:
        """Closes what is open (the sinks close them when the pipeline stops; this is for a start that
        failed before; closing twice is harmless)."""
        if self.sweeper is not None:
            self.sweeper.stop()
        if self.mqtt is not None:
            self.mqtt.close()
        if self.clips is not None:
            self.clips.close()
        if self.webhooks is not None:
            self.webhooks.close()
        if self.history is not None:
            self.history.close()


def build_event_outputs(config: Config, media: bool = True) -> EventOutputs:
    """The event history in ``DATA_DIR/events.db`` (off with ``events.enabled: false`` or without a data
    directory: a library user's in-memory analyzer) and the webhooks with their outbox in ``DATA_DIR``.
    ``media``: the objects' snapshots and clips are made here, from the frames (false on a cluster's
    head, whose frames stay on their nodes: they make them, and the head keeps what it fetched of them
    in the same directories, under the same retention).

    Raises:
        EventStoreError: the history's database cannot be used (corrupt, newer, held by another process).
        ConfigError: webhooks without a data directory for their outbox.
    """
    data_dir = Path(config.data_dir).expanduser() if config.data_dir is not None else None
    outputs = EventOutputs()
    try:
        if config.events.enabled and data_dir is not None:
            path = events_path(data_dir)
            path.parent.mkdir(parents=True, exist_ok=True)
            outputs.history = EventStore(path, max_age_days=config.events.max_age_days,
                                         max_events=config.events.max_events)
        if outputs.history is not None and data_dir is not None:
            from .events.media import Sweeper
            from .events.snapshots import SnapshotSink

            outputs.snapshots_dir, outputs.clips_dir = data_dir / "snapshots", data_dir / "clips"
            if media:
                outputs.snapshots = SnapshotSink(outputs.snapshots_dir)
            outputs.sweeper = Sweeper(outputs.history.reader, [outputs.snapshots_dir, outputs.clips_dir],
                                      config.events.max_age_days)
            outputs.sweeper.start()
        if config.webhooks:
            if data_dir is None:
                raise ConfigError("webhooks need a data directory (data_dir) for their outbox")
            from .notify.webhooks import WebhookSink

            outputs.webhooks = WebhookSink(config.webhooks, data_dir)
    except BaseException:
        outputs.close()
        raise
    return outputs


def connect_outputs(outputs: EventOutputs, pipeline: Pipeline | ClusterHead, config: Config) -> None:
    """The outputs that need the pipeline itself (before it starts): the clips (an output of each tracked
    stream's one encoder, which also feeds its recording, RTSP push and HLS) and MQTT (Home Assistant is
    told each stream's zones, lines and labels, and forgets a stream removed at run time)."""
    if outputs.clips_dir is not None and config.events.clips and isinstance(pipeline, Pipeline):
        from .events.clips import ClipSink

        def rate_of(stream_id: str) -> float | None:
            stream = pipeline.streams.get(stream_id)
            return getattr(stream.config, "fps", None) if stream is not None else None

        def lead_frames(stream_id: str) -> int:
            stream = pipeline.streams.get(stream_id)
            return stream.config.tracker.minimum_consecutive_frames if stream is not None else 2

        clips = outputs.clips = ClipSink(outputs.clips_dir, pre_s=config.events.clip_pre_s,
                                         post_s=config.events.clip_post_s, rate_of=rate_of, lead_frames=lead_frames)

        def tracked_stream(stream: StreamRuntime) -> PacketOutput | None:
            tracked = stream.analytics is not None and stream.analytics.tracking
            return clips.output(stream.id) if tracked else None

        pipeline.add_encoder_output(tracked_stream)
        pipeline.dispatcher.add(clips, maxsize=64)
    if config.mqtt is not None:
        from .notify.mqtt import MqttSink

        outputs.mqtt = MqttSink(config.mqtt, topology=lambda: stream_topology(pipeline),
                                public_url=config.server.public_url,
                                snapshot_of=outputs.snapshots.snapshot_of if outputs.snapshots is not None else None)
        pipeline.dispatcher.add(outputs.mqtt)
        pipeline.add_removal_listener(outputs.mqtt.forget)


def stream_topology(pipeline: Pipeline | ClusterHead) -> list[StreamTopology]:
    """What each stream counts, for Home Assistant: its zones with their labels, its lines, and the
    labels counted over the whole frame: the model's ``labels`` setting, else its own labels when it has
    at most :data:`MAX_ANNOUNCED_LABELS`, else the labels the stream's zones and lines name."""
    from .notify.mqtt_topics import StreamTopology

    found = []
    for source in pipeline.sources:
        named = sorted({label for zone in source.zones for label in zone.labels or ()}
                       | {label for line in source.lines for label in line.labels or ()})
        labels = tuple(_model_labels(pipeline, Config.model_of(source)) or named)
        zones = {zone.name: tuple(zone.labels or labels) for zone in source.zones}
        found.append(StreamTopology(source.id, zones, tuple(line.name for line in source.lines), labels))
    return found


def _model_labels(pipeline: Pipeline | ClusterHead, model: str) -> list[str]:
    configured = pipeline.config.named_models()[model].labels
    if configured:
        return list(configured)
    detector = pipeline.workers[model].detector
    own = sorted(set(getattr(detector, "labels", {}).values())) if detector is not None else []
    return own if len(own) <= MAX_ANNOUNCED_LABELS else []


def build_still_images(model: ModelConfig, load_detector: Callable[[ModelConfig], Detector],
                       capacity: int) -> tuple[Pipeline, InferenceLane]:
    """A pipeline without sources whose default model answers still images put on the returned lane
    (``stream-detect detect``): the same batching, thresholds and label filter as the server's API."""
    pipeline = Pipeline(Config(model=model), load_detector)
    lane = InferenceLane(max(1, capacity), pipeline.wakeup)
    pipeline.worker.add_lane(lane)
    return pipeline, lane


class AnalyzerHost(Protocol):
    """What the server is built over: a :class:`~.pipeline.Pipeline`, or a cluster's started process
    (:class:`~.cluster.head.ClusterHead`, whose cameras run on other nodes)."""

    @property
    def workers(self) -> Mapping[str, DetectorWorker]: ...

    @property
    def wakeup(self) -> threading.Condition: ...

    @property
    def dispatcher(self) -> Dispatcher: ...

    def ports(self, api_lanes: Mapping[str, InferenceLane]) -> Ports: ...

    def add_batch_listener(self, listener: Callable[[BatchStats], None]) -> None: ...

    def add_frame_tap(self, tap: Callable[[Frame], None]) -> None: ...


def build_app(pipeline: AnalyzerHost, config: ServerConfig, store: SourceStore | None = None,
              outputs: EventOutputs | None = None) -> FastAPI:
    """The server of ``pipeline``: its parts made and connected to the pipeline's ports, then the routes
    over them. The server sees the ports (:mod:`.ports`) only, never the pipeline.

    ``store`` keeps the streams changed through the API (none: the changes last as long as the process).
    ``outputs``: where events go (:func:`build_event_outputs`; their sinks are on the pipeline already),
    read by ``/events``, ``/counts`` and ``/webhooks/deliveries``.
    """
    outputs = outputs or EventOutputs()
    history, webhooks = outputs.history, outputs.webhooks
    from .server.app import create_app
    from .server.auth import TokenCheck
    from .server.context import ServerContext
    from .server.hub import Hub, HubSink
    from .server.inference_api import InferenceApi
    from .server.preview import Previews
    from .server.streams_api import StreamsApi

    api_lanes = {name: InferenceLane(config.api_queue_size, pipeline.wakeup) for name in pipeline.workers}
    for name, lane in api_lanes.items():
        pipeline.workers[name].add_lane(lane)
    ports = pipeline.ports(api_lanes)
    mqtt = outputs.mqtt
    metrics = Metrics(ports.streams, ports.sinks, (lambda: history.stats) if history is not None else None,
                      webhooks.stats if webhooks is not None else None,
                      (lambda: mqtt.stats) if mqtt is not None else None)
    pipeline.add_batch_listener(metrics.observe_batch)
    hub = Hub(config.client_queue_size, on_drop=metrics.ws_dropped.inc)
    pipeline.dispatcher.add(HubSink(hub), maxsize=WEBSOCKET_SINK_BUFFER)
    context = ServerContext(config=config, hub=hub, metrics=metrics, auth=TokenCheck(config.tokens),
                            streams=ports.streams, models=ports.models)
    previews = Previews(context, ports.preview, ports.jpegs)
    pipeline.add_frame_tap(previews.on_frame)
    return create_app(context, ports.lifecycle, previews, InferenceApi(context),
                      StreamsApi(ports.streams, ports.changes, store), history.reader if history else None,
                      webhooks, outputs.snapshots_dir, outputs.clips_dir, ports.hls, ports.cluster)
