"""Prometheus metrics of one pipeline, in a registry of its own.

Per-stream and per-sink counters are read from the pipeline's ports
(:mod:`stream_detect.ports`) at scrape time (one source of truth, nothing to
keep in step); events that happen on the worker or the server (batches,
websocket drops, encodes) are recorded as they occur.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .ports import SinkStatistics, StreamRegistry
from .sources.base import SourceState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Batch(Protocol):
    """What the metrics read of one detector batch (the worker's batch statistics)."""

    @property
    def model(self) -> str: ...

    @property
    def size(self) -> int: ...

    @property
    def forward_s(self) -> float: ...


class HistoryStats(Protocol):
    """What the metrics read of the event history's writer."""

    @property
    def written(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def lost(self) -> int: ...

    @property
    def deleted(self) -> int: ...

    @property
    def queued(self) -> int: ...


class _HistoryCollector(Collector):
    def __init__(self, stats: Callable[[], HistoryStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name, value, help_text in (
            ("written", stats.written, "Events committed to the event history."),
            ("dropped", stats.dropped, "Events the history's writer had no room for (counted, logged)."),
            ("lost", stats.lost, "Events of transactions that failed twice (a full disk)."),
            ("deleted", stats.deleted, "Events deleted by retention."),
        ):
            counter = CounterMetricFamily(f"stream_detect_events_{name}", help_text)
            counter.add_metric([], value)
            yield counter
        queued = GaugeMetricFamily("stream_detect_events_queued", "Events waiting for the history's writer.")
        queued.add_metric([], stats.queued)
        yield queued


class WebhookStats(Protocol):
    """What the metrics read of the webhooks' deliveries."""

    @property
    def delivered(self) -> int: ...

    @property
    def failed(self) -> int: ...

    @property
    def attempts(self) -> int: ...

    @property
    def pending(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def lost(self) -> int: ...


class _WebhookCollector(Collector):
    def __init__(self, stats: Callable[[], WebhookStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        deliveries = CounterMetricFamily("stream_detect_webhook_deliveries",
                                         "Webhook deliveries finished since start, by outcome.", labels=["outcome"])
        for outcome in ("delivered", "failed", "dropped", "lost"):
            deliveries.add_metric([outcome], getattr(stats, outcome))
        yield deliveries
        attempts = CounterMetricFamily("stream_detect_webhook_attempts", "Webhook POSTs made, whatever came back.")
        attempts.add_metric([], stats.attempts)
        yield attempts
        pending = GaugeMetricFamily("stream_detect_webhook_pending", "Webhook deliveries waiting in the outbox.")
        pending.add_metric([], stats.pending)
        yield pending


class MqttStats(Protocol):
    """What the metrics read of the MQTT sink."""

    @property
    def published(self) -> int: ...

    @property
    def pending(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    @property
    def connected(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...


class _MqttCollector(Collector):
    def __init__(self, stats: Callable[[], MqttStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        for name, value, help_text in (
            ("published", stats.published, "Events handed to the MQTT broker."),
            ("dropped", stats.dropped, "Events dropped while the broker was away and the queue was full."),
            ("reconnects", stats.reconnects, "Reconnections to the MQTT broker."),
        ):
            counter = CounterMetricFamily(f"stream_detect_mqtt_events_{name}" if name != "reconnects"
                                          else "stream_detect_mqtt_reconnects", help_text)
            counter.add_metric([], value)
            yield counter
        pending = GaugeMetricFamily("stream_detect_mqtt_pending", "Events waiting for the MQTT broker.")
        pending.add_metric([], stats.pending)
        connected = GaugeMetricFamily("stream_detect_mqtt_connected", "1 while connected to the broker.")
        connected.add_metric([], 1.0 if stats.connected else 0.0)
        yield from (pending, connected)


class _StreamCollector(Collector):
    def __init__(self, streams: StreamRegistry) -> None:
        self._streams = streams

    def collect(self) -> Iterator[Metric]:
        labels = ["stream"]
        captured = CounterMetricFamily(
            "stream_detect_frames_captured", "Frames read from the source.", labels=labels
        )
        processed = CounterMetricFamily(
            "stream_detect_frames_processed", "Frames run through the detector.", labels=labels
        )
        dropped = CounterMetricFamily(
            "stream_detect_frames_dropped", "Frames dropped because the detector lagged.", labels=labels
        )
        still = CounterMetricFamily(
            "stream_detect_frames_still", "Frames that skipped the detector because nothing moved.", labels=labels
        )
        corrupt = CounterMetricFamily(
            "stream_detect_frames_corrupt", "Frames the decoder flagged as damaged.", labels=labels
        )
        reconnects = CounterMetricFamily("stream_detect_reconnects", "Reconnections of live sources.", labels=labels)
        fps = GaugeMetricFamily("stream_detect_source_fps", "Frames per second read from the source.", labels=labels)
        state = GaugeMetricFamily(
            "stream_detect_stream_state", "1 for the stream's current state.", labels=["stream", "state"]
        )
        latency = GaugeMetricFamily(
            "stream_detect_latency_seconds",
            "Capture to emit latency over recent frames.",
            labels=["stream", "quantile"],
        )
        filtered = CounterMetricFamily(
            "stream_detect_detections_dropped", "Detections dropped before tracking: masks, filters, duplicates.",
            labels=["stream", "reason"])
        occupancy = GaugeMetricFamily(
            "stream_detect_zone_objects", "Tracked objects in a zone now, per label.",
            labels=["stream", "zone", "label"])
        crossings = CounterMetricFamily(
            "stream_detect_line_crossings", "Line crossings since the stream started, per direction and label.",
            labels=["stream", "line", "direction", "label"])
        encoded = CounterMetricFamily("stream_detect_encoder_frames", "Frames the stream's one H.264 encoder encoded.",
                                      labels=labels)
        encoder_dropped = CounterMetricFamily(
            "stream_detect_encoder_frames_dropped", "Frames dropped because the stream's encoder lagged.",
            labels=labels)
        output_dropped = CounterMetricFamily(
            "stream_detect_encoder_output_dropped",
            "Packets (or frames' packets) an encoder output dropped: a slow RTSP server or disk, a gap.",
            labels=["stream", "output"])
        pushing = GaugeMetricFamily("stream_detect_rtsp_push_streaming", "1 while the RTSP push is streaming.",
                                    labels=labels)
        for stream in self._streams.all():
            _add_analytics(stream.id, stream.analytics or {}, filtered, occupancy, crossings)
            _add_encoder(stream.id, stream.encoder, encoded, encoder_dropped, output_dropped, pushing)
            captured.add_metric([stream.id], stream.frames_captured)
            processed.add_metric([stream.id], stream.frames_processed)
            dropped.add_metric([stream.id], stream.frames_dropped)
            corrupt.add_metric([stream.id], stream.frames_corrupt)
            still.add_metric([stream.id], stream.frames_still)
            reconnects.add_metric([stream.id], stream.reconnects)
            fps.add_metric([stream.id], stream.source_fps)
            for candidate in SourceState:
                state.add_metric([stream.id, candidate.value], 1.0 if stream.state is candidate else 0.0)
            for quantile, value in ((50, stream.latency_p50_s), (99, stream.latency_p99_s)):
                if value is not None:
                    latency.add_metric([stream.id, str(quantile / 100)], value)
        yield from (captured, processed, dropped, still, corrupt, reconnects, fps, state, latency, filtered, occupancy,
                    crossings, encoded, encoder_dropped, output_dropped, pushing)


def _add_encoder(stream: str, encoder: Mapping[str, Any] | None, encoded: CounterMetricFamily,
                 dropped: CounterMetricFamily, output_dropped: CounterMetricFamily, pushing: GaugeMetricFamily) -> None:
    if encoder is None:
        return
    encoded.add_metric([stream], encoder["frames_encoded"])
    dropped.add_metric([stream], encoder["frames_dropped"])
    for name, output in dict(encoder.get("outputs") or {}).items():
        lost = sum(output.get(key, 0) for key in ("packets_dropped", "packets_skipped", "frames_dropped"))
        output_dropped.add_metric([stream, name], lost)
        if name == "rtsp":
            pushing.add_metric([stream], 1.0 if output.get("state") == "streaming" else 0.0)


def _add_analytics(stream: str, analytics: Mapping[str, Any], filtered: CounterMetricFamily,
                   occupancy: GaugeMetricFamily, crossings: CounterMetricFamily) -> None:
    for reason, count in dict(analytics.get("detections_dropped") or {}).items():
        filtered.add_metric([stream, reason], count)
    counts = analytics.get("counts")
    if not isinstance(counts, Mapping):
        return
    for zone, labels in counts["zones"].items():
        for label, objects in labels.items():
            occupancy.add_metric([stream, zone, label], objects)
    for line, count in counts["lines"].items():
        for direction in ("in", "out"):
            crossings.add_metric([stream, line, direction, "*"], count[direction])
            for label, by_label in count.get("labels", {}).items():
                crossings.add_metric([stream, line, direction, label], by_label[direction])


class _SinkCollector(Collector):
    def __init__(self, sinks: SinkStatistics) -> None:
        self._sinks = sinks

    def collect(self) -> Iterator[Metric]:
        delivered = CounterMetricFamily("stream_detect_sink_results_delivered", "Results a sink has taken.",
                                        labels=["sink"])
        dropped = CounterMetricFamily("stream_detect_sink_results_dropped",
                                      "Results a sink lost because it fell behind (its buffer was full).",
                                      labels=["sink"])
        failures = CounterMetricFamily("stream_detect_sink_failures", "Results or changes a sink failed on.",
                                       labels=["sink"])
        queued = GaugeMetricFamily("stream_detect_sink_queued", "Results and changes waiting for a sink.",
                                   labels=["sink"])
        for sink in self._sinks.sink_stats():
            delivered.add_metric([sink.name], sink.delivered)
            dropped.add_metric([sink.name], sink.dropped)
            failures.add_metric([sink.name], sink.failures)
            queued.add_metric([sink.name], sink.buffered)
        yield from (delivered, dropped, failures, queued)


class Metrics:
    """Every metric the process exports.

    Args:
        streams: The streams, read at every scrape.
        sinks: The sinks' counters, read at every scrape.
        history: The event history writer's counters (None: the history is off).
        webhooks: The webhooks' delivery counters (None: no webhooks).
        mqtt: The MQTT sink's counters (None: no broker).
    """

    def __init__(self, streams: StreamRegistry, sinks: SinkStatistics,
                 history: Callable[[], HistoryStats] | None = None,
                 webhooks: Callable[[], WebhookStats] | None = None,
                 mqtt: Callable[[], MqttStats] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_StreamCollector(streams))
        self.registry.register(_SinkCollector(sinks))
        if history is not None:
            self.registry.register(_HistoryCollector(history))
        if webhooks is not None:
            self.registry.register(_WebhookCollector(webhooks))
        if mqtt is not None:
            self.registry.register(_MqttCollector(mqtt))
        self.batch_size = Histogram(
            "stream_detect_batch_size",
            "Items per detector batch, per model.",
            ["model"],
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64),
            registry=self.registry,
        )
        self.forward_seconds = Histogram(
            "stream_detect_batch_seconds",
            "Time the detector took per batch (preprocess, forward, postprocess), per model.",
            ["model"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.ws_clients = Gauge("stream_detect_ws_clients", "Connected websocket clients.", registry=self.registry)
        self.ws_dropped = Counter(
            "stream_detect_ws_messages_dropped",
            "Messages dropped for slow websocket clients.",
            registry=self.registry,
        )
        self.ws_evicted = Counter(
            "stream_detect_ws_clients_evicted",
            "Websocket clients disconnected for not reading.",
            registry=self.registry,
        )
        self.mjpeg_evicted = Counter(
            "stream_detect_mjpeg_viewers_evicted",
            "MJPEG preview viewers disconnected for not reading (server.send_timeout_s).",
            registry=self.registry,
        )
        self.mjpeg_refused = Counter(
            "stream_detect_mjpeg_viewers_refused",
            "MJPEG preview viewers refused over server.max_mjpeg_clients.",
            registry=self.registry,
        )
        self.http_aborted = Counter(
            "stream_detect_http_responses_aborted",
            "Other HTTP responses aborted because the client stopped reading.",
            registry=self.registry,
        )
        self.hosts_refused = Counter(
            "stream_detect_hosts_refused",
            "Requests refused for a Host header outside server.allowed_hosts (DNS rebinding).",
            registry=self.registry,
        )

    def observe_batch(self, stats: Batch) -> None:
        self.batch_size.labels(model=stats.model).observe(stats.size)
        self.forward_seconds.labels(model=stats.model).observe(stats.forward_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
