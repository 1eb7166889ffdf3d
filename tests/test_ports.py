"""The pipeline seen through its ports: frozen snapshots that a later call sees change."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
import pytest

from stream_detect.config import DEFAULT_MODEL_NAME, parse_config, parse_source
from stream_detect.detect.fake import FakeDetector
from stream_detect.errors import ModelError, ModelNotReadyError, StreamExistsError, UnknownStreamError
from stream_detect.inference import InferenceLane
from stream_detect.pipeline import Pipeline
from stream_detect.ports import Ports, StreamSnapshot, pipeline_ports
from stream_detect.sinks import FrameResult
from stream_detect.sources.base import SourceState
from stream_detect.sources.capture import StateChange


def camera(stream_id: str, **extra: object) -> dict[str, object]:
    return {"kind": "synthetic", "id": stream_id, "fps": 20, "width": 160, "height": 120, **extra}


def ported(pipeline: Pipeline) -> Ports:
    lanes = {name: InferenceLane(4, pipeline.wakeup) for name in pipeline.workers}
    for name, lane in lanes.items():
        pipeline.workers[name].add_lane(lane)
    return pipeline_ports(pipeline, lanes)


def wait_until(condition: Callable[[], object], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class CountingSink:
    name = "counting"

    def __init__(self) -> None:
        self.results = 0

    def on_result(self, result: FrameResult) -> None:
        self.results += 1

    def on_status(self, change: StateChange) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_snapshot_is_frozen_and_its_description_a_copy() -> None:
    snapshot = StreamSnapshot(
        id="cam", kind="synthetic", model="default", state=SourceState.RUNNING, detail=None, width=160, height=120,
        source_fps=19.987, processed_fps=10.004, frames_captured=40, frames_processed=20, frames_dropped=3,
        frames_corrupt=0, reconnects=1, latency_p50_s=0.01234, latency_p99_s=None,
        recording={"state": "recording", "frames_written": 5},
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.frames_processed = 21  # type: ignore[misc]
    assert snapshot.recording is not None
    with pytest.raises(TypeError):
        snapshot.recording["state"] = "stopped"  # type: ignore[index]
    described = snapshot.describe()
    assert described["source_fps"] == 19.99 and described["latency_ms"] == {"p50": 12.3, "p99": None}
    described["recording"]["state"] = "changed"
    described["latency_ms"]["p50"] = 0
    assert snapshot.describe()["recording"] == {"state": "recording", "frames_written": 5}
    assert snapshot.describe()["latency_ms"]["p50"] == 12.3


@pytest.mark.timeout(60)
def test_snapshots_stay_as_taken_and_later_ones_follow_the_streams() -> None:
    config = parse_config({"model": {"id": "fake", "max_batch_wait_ms": 1}, "sources": [camera("a")]})
    pipeline = Pipeline(config, lambda model: FakeDetector())
    ports = ported(pipeline)
    before = ports.streams.get("a")
    assert before is not None and before.state is SourceState.CONNECTING and before.frames_processed == 0
    assert ports.streams.ids() == ("a",) and ports.streams.get("nope") is None
    assert before.describe()["frames_processed"] == 0 and before.describe()["state"] == "connecting"
    with pipeline:
        wait_until(lambda: (ports.streams.get("a") or before).frames_processed >= 3)
        assert before.frames_processed == 0 and before.state is SourceState.CONNECTING  # taken before: as it was
        now = ports.streams.get("a")
        assert now is not None and now.state is SourceState.RUNNING and now.width == 160
        first = ports.preview.preview_state("a")
        assert first is not None and first.processed_fps > 0

        added = ports.changes.add(parse_source(camera("b"), origin="test"))
        assert added.id == "b" and ports.streams.ids() == ("a", "b")
        assert [source.id for source in ports.changes.sources()] == ["a", "b"]
        with pytest.raises(StreamExistsError):
            ports.changes.add(parse_source(camera("b"), origin="test"))
        wait_until(lambda: (ports.streams.get("b") or added).frames_processed >= 1)
        assert added.frames_processed == 0

        replaced = ports.changes.replace(parse_source(camera("a", threshold=0.9), origin="test"))
        assert replaced.frames_processed == 0  # a new run under the same id
        second = ports.preview.preview_state("a")
        assert second is not None and second.run != first.run

        ports.changes.remove("b")
        assert ports.streams.ids() == ("a",) and ports.streams.get("b") is None
        assert ports.preview.preview_state("b") is None
        assert [snapshot.id for snapshot in ports.streams.all()] == ["a"]
        with pytest.raises(UnknownStreamError):
            ports.changes.remove("b")


@pytest.mark.timeout(60)
def test_a_model_port_reports_its_load_and_answers_still_images() -> None:
    config = parse_config({"model": {"id": "fake", "max_batch_wait_ms": 1},
                           "models": {"other": {"id": "fake-other", "name": "second"}}, "sources": []})
    pipeline = Pipeline(config, lambda model: FakeDetector(model_id=model.id))
    ports = ported(pipeline)
    assert set(ports.models) == {DEFAULT_MODEL_NAME, "other"}
    with pytest.raises(TypeError):
        ports.models["more"] = ports.models["other"]  # type: ignore[index]
    other = ports.models["other"]
    loading = other.status()
    assert loading.state == "loading" and not loading.ready and loading.served_id == "second"
    with pytest.raises(ModelNotReadyError):
        other.check_ready()
    with pytest.raises(ModelError):
        other.input_size(100, 200)
    with pipeline:
        assert other.loaded.result(timeout=15) is None
        ready = other.status()
        assert ready.ready and ready.state == "ready" and ready.error is None
        assert loading.state == "loading"  # the earlier status, as it was
        assert set(ready.aliases) == {"fake-other", "second", "other"}
        assert other.config.id == "fake-other"
        assert other.input_size(100, 200) == (100, 200)
        image = np.zeros((64, 64, 3), np.uint8)
        image[16:48, 16:48] = 255
        detections = other.submit(image, 0.0).result(timeout=15)
        assert len(detections) >= 1


@pytest.mark.timeout(60)
def test_sink_statistics_follow_the_dispatcher() -> None:
    config = parse_config({"model": {"id": "fake", "max_batch_wait_ms": 1}, "sources": [camera("a")]})
    pipeline = Pipeline(config, lambda model: FakeDetector())
    sink = CountingSink()
    pipeline.dispatcher.add(sink, maxsize=4)
    ports = ported(pipeline)
    (first,) = ports.sinks.sink_stats()
    assert (first.name, first.delivered, first.dropped, first.failures, first.buffered) == ("counting", 0, 0, 0, 0)
    with pipeline:
        wait_until(lambda: ports.sinks.sink_stats()[0].delivered >= 3)
        (later,) = ports.sinks.sink_stats()
    assert first.delivered == 0  # taken before: as it was
    assert later.name == "counting" and later.dropped == 0 and later.failures == 0
    assert 3 <= later.delivered <= sink.results
