"""The engine: sources -> bounded queues -> detector workers -> per-stream analytics -> dispatcher -> sinks.

:class:`Pipeline` owns every thread of a running analyzer: one capture thread
per stream, one detector worker per model, the sinks' threads (:mod:`.sinks`)
and, where recording is on, one recorder per stream. Each stream's lane asks
its motion gate whether a frame needs the detector (a still frame carries the
last detections over); each result goes through the stream's analytics
stage (masks, filters, tracking, zones, lines: :mod:`.analytics`) on the
detector thread, under the stream's lock. What happens leaves in two ways:

- every processed frame's :class:`~.sinks.FrameResult`, every event and counts
  change (:class:`~.sinks.Notice`) and every state change go to the
  :class:`~.sinks.Dispatcher`, which hands them to each sink's own thread at
  once (the websocket hub, recordings, the event history, snapshots, clips,
  MQTT, webhooks); the worker never waits on a sink;
- every captured frame goes to the frame taps on the capture thread (the
  preview remembers it, a recorder queues it for its encoder): taps must
  return at once and never block; a re-streamed stream's frames also go to
  its one encoder (:mod:`.restream`: RTSP push, HLS), queued the same way.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .analytics.stage import StreamAnalytics
from .config import DEFAULT_MODEL_NAME, Config, ModelConfig, RecordConfig, SourceConfig, drop_policy, is_live
from .detect.base import Detector
from .detect.batching import Take
from .detect.worker import BatchStats, DetectorWorker
from .errors import ConfigError, ModelError, StreamExistsError, UnknownStreamError
from .frame_queue import DropPolicy, FrameQueue
from .motion import MotionGate, motion_enabled
from .overlay import Overlay, frame_time
from .ports import HlsPlaylist, Ports, StreamSnapshot
from .record.recorder import Recorder, RecorderSettings
from .record.segments import Retention
from .records import Detections, Frame
from .restream.build import codec_settings, restream_outputs
from .restream.encoder import StreamEncoder
from .restream.outputs import PacketOutput
from .sinks import Dispatcher, FrameResult, Notice
from .sources import build_source
from .sources.base import SourceState
from .sources.capture import Capture, StateChange
from .stats import LatencyWindow, RateMeter

log = logging.getLogger(__name__)

# A stream's own end (not a stop): announced once its queue's last frame is processed.
_ENDS = (SourceState.ENDED, SourceState.FAILED)

FrameTap = Callable[[Frame], None]
EncoderOutputFactory = Callable[["StreamRuntime"], PacketOutput | None]


@dataclass(eq=False)
class StreamRuntime:
    """What the process knows about one running stream."""

    config: SourceConfig
    queue: FrameQueue[Frame]
    capture: Capture
    state: SourceState = SourceState.CONNECTING
    state_detail: str | None = None
    processed: int = 0
    processed_rate: RateMeter = field(default_factory=RateMeter)
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    last_frame: Frame | None = None
    last_detections: Detections = field(default_factory=Detections.empty)
    last_raw: Detections = field(default_factory=Detections.empty)  # the detector's, before analytics
    frames_still: int = 0  # frames that skipped the detector: nothing moved
    recorder: Recorder | None = None
    # Its annotated frames encoded once, for its recording, clips, RTSP push and HLS alike.
    encoder: StreamEncoder | None = None
    removed: bool = False
    drained: bool = False  # the worker has delivered the last frame of its closed queue
    finished: bool = False  # its open tracks have ended (it ended, or was removed or stopped)
    pending_end: StateChange | None = None  # an end announced once the last result is out
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    lane: Any = field(default=None, repr=False)
    run: int = 0  # numbered by its pipeline: a stream replaced under the same id is a new run
    # Masks, filters, tracking, zones and lines: used on the detector thread, under ``lock``.
    analytics: StreamAnalytics | None = field(default=None, repr=False)
    overlay: Overlay = field(default_factory=Overlay.empty, repr=False)  # what is drawn on its frames
    counts: dict[str, Any] | None = None  # its latest counts message (tracked streams)
    detections_dropped: dict[str, int] = field(default_factory=lambda: {"mask": 0, "filter": 0})

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def model(self) -> str:
        """The name of the model that serves this stream."""
        return Config.model_of(self.config)

    def hls(self) -> HlsPlaylist | None:
        """Its HLS segmenter; None when it is removed or has no ``restream: {hls: true}``."""
        if self.removed or self.encoder is None:
            return None
        return next((output for output in self.encoder.outputs if output.name == "hls"), None)  # type: ignore[return-value]

    def snapshot(self) -> StreamSnapshot:
        """The stream as it is now, frozen (what the server sees of it)."""
        stats = self.capture.stats
        frame = self.last_frame
        return StreamSnapshot(
            id=self.id,
            kind=self.config.kind,
            model=self.model,
            state=self.state,
            detail=self.state_detail,
            width=frame.width if frame else stats.width,
            height=frame.height if frame else stats.height,
            source_fps=stats.fps,
            processed_fps=self.processed_rate.rate(),
            frames_captured=stats.frames,
            frames_processed=self.processed,
            frames_dropped=self.queue.dropped,
            frames_corrupt=stats.corrupt,
            reconnects=stats.reconnects,
            latency_p50_s=self.latency.percentile(50),
            latency_p99_s=self.latency.percentile(99),
            recording=self.recorder.describe() if self.recorder else None,
            analytics=self._analytics(),
            frames_still=self.frames_still,
            encoder=self.encoder.describe() if self.encoder else None,
        )

    def _analytics(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "tracking": bool(self.analytics is not None and self.analytics.tracking),
            "zones": [zone.model_dump(mode="json", exclude_none=True) for zone in self.config.zones],
            "lines": [line.model_dump(mode="json", exclude_none=True) for line in self.config.lines],
            "counts": None if counts is None else {"zones": counts["zones"], "lines": counts["lines"]},
            "detections_dropped": dict(self.detections_dropped),
        }


class _StreamLane:
    """Feeds a stream's frames to the worker and its results back to the pipeline."""

    def __init__(self, pipeline: Pipeline, stream: StreamRuntime) -> None:
        self.name = stream.id
        self.queue = stream.queue
        # A live source gives its freshest frame; a file every frame, in order.
        self.take = Take.FRESHEST if is_live(stream.config) else Take.IN_ORDER
        self._model_threshold = pipeline.config.named_models()[stream.model].threshold
        self._pipeline = pipeline
        self._stream = stream
        self._last_failure: str | None = None
        motion = stream.config.motion
        self._gate = MotionGate(motion) if motion_enabled(motion, is_live(stream.config)) else None

    def image(self, item: Frame) -> np.ndarray:
        return item.image

    def threshold(self, item: Frame) -> float:
        own = self._stream.config.threshold
        return self._model_threshold if own is None else own

    def deliver(self, item: Frame, detections: Detections) -> None:
        self._last_failure = None
        with self._stream.lock:  # a removed stream publishes nothing more
            if not self._stream.removed:
                self._stream.last_raw = detections
                self._pipeline._emit(self._stream, item, detections)

    def fail(self, item: Frame, error: BaseException) -> None:
        # Logged when the failure starts or changes, not per frame: a model that
        # cannot load fails every frame of every stream until it is fixed.
        message = str(error)
        if message != self._last_failure:
            self._last_failure = message
            log.warning("stream %s: frames not processed from frame %d on: %s", self.name, item.index, message)

    def drained(self) -> None:
        self._pipeline._on_drained(self._stream)

    def still(self, item: Frame) -> bool:
        """Whether ``item`` can skip the detector: nothing moved since the last frame it ran on
        (the stream's motion gate; at least every ``motion.max_idle_s`` it runs anyway)."""
        return self._gate is not None and not self._gate.observe(item.image, frame_time(item)).moved

    def carry(self, item: Frame) -> None:
        with self._stream.lock:
            if not self._stream.removed:
                self._pipeline._emit(self._stream, item, self._stream.last_raw, still=True)


class RecordingSink:
    """Feeds each recorded stream's recorder its detections (the JSON Lines sidecar); its video comes
    from the stream's encoder."""

    name = "recordings"

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def on_result(self, result: FrameResult) -> None:
        stream = self._pipeline.streams.get(result.stream_id)
        if stream is not None and stream.recorder is not None:
            stream.recorder.on_result(result)

    def on_status(self, change: StateChange) -> None:
        pass

    def close(self) -> None:
        pass


class Pipeline:
    """A running analyzer: every stream of ``config``, each through its model's detector.

    One detector worker per model (``default``, the top-level ``model``, and
    each of ``models``); the cameras of one model batch together.

    Args:
        config: The validated configuration.
        load_detector: Builds a model's detector (called on that model's worker thread).
    """

    def __init__(self, config: Config, load_detector: Callable[[ModelConfig], Detector]) -> None:
        self.config = config
        self.wakeup = threading.Condition()
        self.workers: dict[str, DetectorWorker] = {
            name: DetectorWorker(
                functools.partial(load_detector, model),
                max_batch_size=model.max_batch_size,
                max_batch_wait_ms=model.max_batch_wait_ms,
                labels=model.labels,
                on_batch=self._on_batch,
                wakeup=self.wakeup,
                name=name,
            )
            for name, model in config.named_models().items()
        }
        # Replaced, never mutated, on a change: readers on any thread iterate a snapshot.
        self.streams: dict[str, StreamRuntime] = {}
        self.dispatcher = Dispatcher()
        self._frame_taps: list[FrameTap] = []
        self._encoder_outputs: list[EncoderOutputFactory] = []
        self._batch_listeners: list[Callable[[BatchStats], None]] = []
        self._removal_listeners: list[Callable[[str], None]] = []
        self._changes = threading.Lock()  # one add, replace or remove at a time
        self._started = False
        self._stopping = threading.Event()
        self._recordings: RecordingSink | None = None
        self._runs = itertools.count(1)
        for source_config in config.sources:
            self._register(self._build_stream(source_config))

    def _build_stream(self, source_config: SourceConfig) -> StreamRuntime:
        policy = DropPolicy(drop_policy(source_config))
        queue: FrameQueue[Frame] = FrameQueue(source_config.queue_size, policy, self.wakeup)
        capture = Capture(build_source(source_config), source_config, queue, self._on_state, self._on_frame)
        stream = StreamRuntime(config=source_config, queue=queue, capture=capture, run=next(self._runs))
        stream.analytics = StreamAnalytics(source_config.id, source_config)
        stream.overlay = Overlay.empty(source_config.zones, source_config.lines)
        if stream.analytics.tracking:
            stream.counts = stream.analytics.counts_message(time.time())
        record = self.config.recording_of(source_config)
        outputs = restream_outputs(source_config)
        if record is not None:
            stream.recorder = Recorder(stream.id, recorder_settings(record))
            outputs.append(stream.recorder.output())
            if self._recordings is None:
                self._recordings = RecordingSink(self)
                self.dispatcher.add(self._recordings, maxsize=64)
        for factory in self._encoder_outputs:
            output = factory(stream)
            if output is not None:
                outputs.append(output)
        for output in outputs:
            self._attach(stream, output)
        return stream

    def _attach(self, stream: StreamRuntime, output: PacketOutput) -> None:
        """Adds ``output`` to the stream's one encoder, made with the first output."""
        if stream.encoder is None:
            source = stream.config
            device = self.config.named_models()[stream.model].device
            try:
                codec, queue_size = codec_settings(source, self.config.recording_of(source), device)
            except ModelError as error:
                raise ConfigError(f"sources[{source.id}].restream.encoder: {error}") from None
            stream.encoder = StreamEncoder(stream.id, lambda: stream.overlay, (), getattr(source, "fps", None),
                                           codec, queue_size)
        stream.encoder.add_output(output)

    def _register(self, stream: StreamRuntime) -> None:
        self.streams = {**self.streams, stream.id: stream}

    def _start_stream(self, stream: StreamRuntime) -> None:
        if stream.recorder is not None:
            stream.recorder.start()
        if stream.encoder is not None:
            stream.encoder.start()
        stream.lane = _StreamLane(self, stream)
        self.workers[stream.model].add_lane(stream.lane)
        stream.capture.start()

    def ports(self, api_lanes: Mapping[str, Any]) -> Ports:
        """The ports the server reads this pipeline through (:mod:`.ports`); ``api_lanes``: each model's
        lane for still images, added to its worker by the caller."""
        from .ports import pipeline_ports

        return pipeline_ports(self, api_lanes)

    @property
    def worker(self) -> DetectorWorker:
        """The default model's worker."""
        return self.workers[DEFAULT_MODEL_NAME]

    def model_id(self, name: str = DEFAULT_MODEL_NAME) -> str:
        """The id model ``name`` is served and named under: its detector's once loaded, else configured."""
        detector = self.workers[name].detector
        if detector is not None:
            return detector.model_id
        return self.config.named_models()[name].served_id()

    # -- streams at run time -------------------------------------------------

    @property
    def sources(self) -> list[SourceConfig]:
        """The configuration entries of the streams now running, in order."""
        return [stream.config for stream in self.streams.values()]

    def add_stream(self, source_config: SourceConfig) -> StreamRuntime:
        """Adds and starts a stream while the others run.

        Raises:
            StreamExistsError: a stream with this id exists.
            ConfigError: it names a model that is not configured.
        """
        with self._changes:
            if source_config.id in self.streams:
                raise StreamExistsError(f"stream {source_config.id!r} exists")
            self._check_model(source_config)
            stream = self._build_stream(source_config)
            self._register(stream)
            if self._started:
                self._start_stream(stream)
        return stream

    def _check_model(self, source_config: SourceConfig) -> None:
        if Config.model_of(source_config) not in self.workers:
            known = ", ".join(sorted(name for name in self.workers if name != DEFAULT_MODEL_NAME)) or "none"
            raise ConfigError(f"model {source_config.model!r} is not one of the configured models ({known})")

    def remove_stream(self, stream_id: str, timeout_s: float = 10.0) -> None:
        """Stops a stream (its capture, its recording, closed cleanly) and forgets it; the others run on.

        Its last message is its ``stopped`` status: nothing is published for it after.

        Raises:
            UnknownStreamError: no stream has this id.
        """
        with self._changes:
            stream = self.streams.get(stream_id)
            if stream is None:
                raise UnknownStreamError(f"no stream {stream_id!r}")
            self._stop_stream(stream, timeout_s)
            self.streams = {key: value for key, value in self.streams.items() if key != stream_id}
        for listener in self._removal_listeners:
            try:
                listener(stream_id)
            except Exception:
                log.exception("stream %s: a removal listener failed", stream_id)

    def replace_stream(self, source_config: SourceConfig, timeout_s: float = 10.0) -> StreamRuntime:
        """Restarts a stream under the same id with a new entry (a new URL, threshold, model, ...).

        Raises:
            UnknownStreamError: no stream has this id.
            ConfigError: the new entry names a model that is not configured (the stream runs on as it was).
        """
        if source_config.id not in self.streams:
            raise UnknownStreamError(f"no stream {source_config.id!r}")
        self._check_model(source_config)
        self.remove_stream(source_config.id, timeout_s)
        return self.add_stream(source_config)

    def _stop_stream(self, stream: StreamRuntime, timeout_s: float) -> None:
        self._finish(stream, remove=True)
        stream.capture.stop()
        if not stream.capture.join(timeout_s):
            log.error("stream %s: capture did not stop within %.0f s", stream.id, timeout_s)
        if stream.lane is not None:
            self.workers[stream.model].remove_lane(stream.lane)
        if stream.encoder is not None:  # flushed into the recorder before it stops
            stream.encoder.stop()
            if not stream.encoder.join(timeout_s):
                log.error("stream %s: the encoder did not stop within %.0f s", stream.id, timeout_s)
        if stream.recorder is not None:
            stream.recorder.stop()
            stream.recorder.join(timeout_s)

    # -- listeners -----------------------------------------------------------

    def add_frame_tap(self, tap: FrameTap) -> None:
        """``tap(frame)`` on the capture thread for every captured frame; must return at once."""
        self._frame_taps.append(tap)

    def add_encoder_output(self, factory: EncoderOutputFactory) -> None:
        """``factory(stream)`` for every stream, now and added later: an output of the stream's one encoder
        (clips), or None. Before :meth:`start` only (an encoder's outputs are fixed once it runs)."""
        if self._started:
            raise RuntimeError("encoder outputs are added before the pipeline starts")
        self._encoder_outputs.append(factory)
        for stream in self.streams.values():
            output = factory(stream)
            if output is not None:
                self._attach(stream, output)

    def add_batch_listener(self, listener: Callable[[BatchStats], None]) -> None:
        self._batch_listeners.append(listener)

    def add_removal_listener(self, listener: Callable[[str], None]) -> None:
        """``listener(stream_id)`` once a stream has been removed (not replaced: a replaced stream is
        removed and added again under its id, and is told too)."""
        self._removal_listeners.append(listener)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.dispatcher.start()
        for worker in self.workers.values():
            worker.start()
        for stream in self.streams.values():
            self._start_stream(stream)

    def stop(self, timeout: float = 5.0) -> bool:
        """Stops every thread; True if all joined within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        self._stopping.set()
        for stream in self.streams.values():
            stream.capture.stop()
        for worker in self.workers.values():
            worker.stop()
        joined = True
        for stream in self.streams.values():
            joined &= stream.capture.join(max(0.0, deadline - time.monotonic()))
        for worker in self.workers.values():
            joined &= worker.join(max(0.0, deadline - time.monotonic()))
        for stream in self.streams.values():  # stopped: their open tracks end, before the sinks close
            self._finish(stream, remove=True)
        for stream in self.streams.values():  # after capture: what is queued is encoded, the encoder flushed
            if stream.encoder is not None:
                stream.encoder.stop()
        for stream in self.streams.values():
            if stream.encoder is not None:
                joined &= stream.encoder.join(max(1.0, deadline - time.monotonic()))
        joined &= self.dispatcher.close(max(0.5, deadline - time.monotonic()))  # what is buffered is delivered
        for stream in self.streams.values():  # after the encoders and sinks: the last segment is complete
            if stream.recorder is not None:
                stream.recorder.stop()
        for stream in self.streams.values():
            if stream.recorder is not None:
                joined &= stream.recorder.join(max(1.0, deadline - time.monotonic()))
        if not joined:
            log.error("some threads did not stop within %.1f s", timeout)
        return joined

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- events --------------------------------------------------------------

    def _on_frame(self, frame: Frame) -> None:
        stream = self.streams.get(frame.stream_id)
        if stream is not None and stream.encoder is not None:
            stream.encoder.put(frame)
        for tap in self._frame_taps:
            try:
                tap(frame)
            except Exception:
                log.exception("frame tap failed")

    def _emit(self, stream: StreamRuntime, frame: Frame, detections: Detections, still: bool = False) -> None:
        """On the detector thread, under the stream's lock: analytics, then the result and its notices.

        ``still``: nothing moved, the detector rested; ``detections`` are its last ones, carried over
        (tracks stay where they are: nothing leaves a zone or ends because the detector rested)."""
        track_ids: tuple[int | None, ...] | None = None
        events: tuple[Any, ...] = ()
        counts_changed = False
        velocities = None
        analytics = stream.analytics
        if analytics is not None:
            analysed = analytics.process(frame.index, frame.pts, frame.captured_at, frame.width, frame.height,
                                         detections)
            detections = analysed.detections
            for reason, count in analysed.dropped.items():
                stream.detections_dropped[reason] = stream.detections_dropped.get(reason, 0) + count
            if analytics.tracking:
                track_ids, events, counts_changed = analysed.track_ids, analysed.events, analysed.counts_changed
                velocities = getattr(analysed, "velocities", None)
        emitted_at = time.time()
        stream.frames_still += still
        stream.processed += 1
        stream.processed_rate.tick()
        stream.latency.add(emitted_at - frame.captured_at)
        stream.last_frame = frame
        stream.last_detections = detections
        settings = stream.config
        stream.overlay = Overlay(detections, track_ids, velocities, frame_time(frame),
                                 settings.tracker.max_prediction_s, settings.zones, settings.lines)
        result = FrameResult(frame, detections, self.model_id(stream.model), emitted_at, track_ids,
                             overlay=stream.overlay, still=still)
        self.dispatcher.publish_result(result, should_stop=self._stopping.is_set)
        self._publish(stream, events, counts_changed, emitted_at)

    def _publish(self, stream: StreamRuntime, events: tuple[Any, ...], counts_changed: bool, at: float) -> None:
        for event in events:
            self.dispatcher.publish_notice(Notice(stream.id, event.message()))
        if counts_changed and stream.analytics is not None:
            stream.counts = stream.analytics.counts_message(at)
            self.dispatcher.publish_notice(Notice(stream.id, stream.counts))

    def _finish(self, stream: StreamRuntime, remove: bool = False) -> None:
        """The stream ends (``remove``: is removed or stopped, and publishes nothing more): its open
        tracks end (``zone.leave``, ``object.end``), once."""
        with stream.lock:
            stream.removed = stream.removed or remove
            if stream.finished:
                return
            stream.finished = True
            analytics = stream.analytics
            if analytics is None or not analytics.tracking:
                return
            at = time.time()
            events = tuple(analytics.finish(at))
            self._publish(stream, events, bool(events), at)

    def _on_state(self, change: StateChange) -> None:
        stream = self.streams.get(change.stream_id)
        log.info("stream %s: %s%s", change.stream_id, change.state.value,
                 f" ({change.detail})" if change.detail else "")
        if stream is not None:
            stream.state = change.state
            stream.state_detail = change.detail
            if change.state in _ENDS:
                with stream.lock:  # sinks hear of the end after the stream's last result
                    if not stream.drained:
                        stream.pending_end = change
                        return
        self.dispatcher.publish_status(change)

    def _on_drained(self, stream: StreamRuntime) -> None:
        with stream.lock:
            stream.drained = True
            change, stream.pending_end = stream.pending_end, None
        if change is not None:  # its own end, not a stop: its tracks end with it
            self._finish(stream)
            self.dispatcher.publish_status(change)

    def _on_batch(self, stats: BatchStats) -> None:
        for listener in self._batch_listeners:
            listener(stats)



def recorder_settings(record: RecordConfig) -> RecorderSettings:
    """Recorder settings of one stream (how it is encoded is its encoder's: :func:`.restream.build.codec_settings`)."""
    return RecorderSettings(
        directory=Path(record.dir),
        segment_seconds=record.segment_seconds,
        retention=Retention(
            max_bytes=record.max_bytes,
            max_age_s=None if record.max_age_hours is None else record.max_age_hours * 3600,
        ),
        queue_size=record.queue_size,
        retry_s=record.retry_s,
    )
