"""Snapshots: each tracked object's best frame, written when it ends, from the synthetic camera's frames."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import orjson
import pytest

from stream_detect.analytics import StreamAnalytics
from stream_detect.events.snapshots import SnapshotSink, frame_quality, touches_edge
from stream_detect.records import Detections, Frame
from stream_detect.sinks import Dispatcher, FrameResult, Notice, Overflow
from stream_detect.sources.base import SourceState
from stream_detect.sources.capture import StateChange
from stream_detect.sources.synthetic import LABELS, SyntheticScene, _Shape

from ..analytics.helpers import settings

pytestmark = pytest.mark.timeout(60)

WIDTH, HEIGHT, FPS, FRAMES = 640, 360, 10.0, 90
STREAM = "porch-cam"
BASE_AT = 1_800_000_000.0
PORCH = {"name": "porch", "polygon": [[0.6, 0.4], [1, 0.4], [1, 1], [0.6, 1]]}


@dataclass(frozen=True)
class Scripted:
    """One shape of the scene: label (one per shape), colour, size, the frames it is in, where it is."""

    kind: int  # index into LABELS
    colour: tuple[int, int, int]
    radius: float
    frames: range
    path: Callable[[int], tuple[float, float]]

    @property
    def label(self) -> str:
        return LABELS[self.kind]


SHAPES = (
    # Enters from the left edge (its first boxes touch it), runs right, stops, then is gone.
    Scripted(1, (230, 60, 60), 40, range(0, 60), lambda f: (min(-10 + 8 * f, 250), 120)),
    # Waits right of the middle, drifts down into the porch.
    Scripted(0, (60, 200, 80), 32, range(5, 70), lambda f: (480, 120 + 2 * f)),
    # Comes in later, low on the left, and stays to the end of the stream.
    Scripted(2, (70, 90, 240), 38, range(20, FRAMES), lambda f: (120 + 2 * f, 270)),
)


@dataclass(frozen=True)
class SceneFrame:
    index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: dict[str, tuple[int, int, int, int]]  # label -> the shape's visible box (exclusive max)


def render_frames() -> list[SceneFrame]:
    """The scripted scene through the synthetic camera's renderer: images and ground-truth boxes."""
    scene = SyntheticScene(WIDTH, HEIGHT, seed=3, shapes=len(SHAPES))
    shapes = [_Shape(s.kind, *s.path(0), s.radius, 0.0, 0, 0, 0, s.colour, -1) for s in SHAPES]
    frames = []
    for index in range(FRAMES):
        present = []
        for scripted, shape in zip(SHAPES, shapes, strict=True):
            if index in scripted.frames:
                shape.x, shape.y = scripted.path(index)
                present.append(shape)
        scene._shapes = present
        image, truths = scene.render()
        frames.append(SceneFrame(index, image, {truth.label: truth.box for truth in truths}))
        scene._t += 1  # the background drifts as in the camera
    return frames


def ground_truth_detections(frame: SceneFrame) -> Detections:
    """The detector's view: the true boxes, a score that wavers a little from frame to frame."""
    labels = sorted(frame.boxes)
    scores = [0.8 + 0.1 * math.sin(frame.index * 0.7 + LABELS.index(label)) for label in labels]
    return Detections.from_lists([frame.boxes[label] for label in labels], scores,
                                 [LABELS.index(label) for label in labels], labels)


def analysed(frames: list[SceneFrame]) -> Iterator[FrameResult | Notice]:
    """The scene through :class:`StreamAnalytics`, as ``Pipeline._emit`` publishes it: each frame's result,
    then the notices of the events decided on it (and counts when they changed); the stream's end last."""
    analytics = StreamAnalytics(STREAM, settings(zones=[PORCH], tracker={"lost_s": 0.5}))
    for scene_frame in frames:
        pts = scene_frame.index / FPS
        frame = Frame(STREAM, scene_frame.index, scene_frame.image, pts, BASE_AT + pts)
        result = analytics.process(frame.index, frame.pts, frame.captured_at, frame.width, frame.height,
                                   ground_truth_detections(scene_frame))
        yield FrameResult(frame, result.detections, "fake", frame.captured_at + 0.01, result.track_ids)
        for event in result.events:
            yield Notice(STREAM, event.message())
        if result.counts_changed:
            yield Notice(STREAM, analytics.counts_message(frame.captured_at))
    for event in analytics.finish(BASE_AT + FRAMES / FPS):
        yield Notice(STREAM, event.message())


def feed(sink: SnapshotSink, items: Iterator[FrameResult | Notice]) -> list[dict[str, object]]:
    """Hands every item to ``sink`` as its runner would; returns the events."""
    events = []
    for item in items:
        if isinstance(item, FrameResult):
            sink.on_result(item)
        else:
            sink.on_event(item)
            if item.type == "event":
                events.append(item.message)
    return events


def decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def inner_mean(image: np.ndarray, box: dict[str, float]) -> np.ndarray:
    """The mean RGB of the middle half of ``box`` (inside any of the shapes, away from their outline)."""
    xmin, ymin, xmax, ymax = box["xmin"], box["ymin"], box["xmax"], box["ymax"]
    cx, cy, w, h = (xmin + xmax) / 2, (ymin + ymax) / 2, xmax - xmin, ymax - ymin
    region = image[round(cy - h / 4):round(cy + h / 4), round(cx - w / 4):round(cx + w / 4)]
    assert region.size > 0
    return region.reshape(-1, 3).mean(axis=0)


SCENE = render_frames()


def test_each_object_is_written_at_its_end_and_its_snapshot_shows_it(tmp_path: Path) -> None:
    sink = SnapshotSink(tmp_path)
    events = feed(sink, analysed(SCENE))
    sink.close()
    starts = [event for event in events if event["kind"] == "object.start"]
    assert sorted(str(event["label"]) for event in starts) == sorted(s.label for s in SHAPES)
    colours = {s.label: np.array(s.colour, float) for s in SHAPES}
    for start in starts:
        label = str(start["label"])
        jpeg_path = tmp_path / STREAM / f"{start['id']}.jpg"
        sidecar = orjson.loads((tmp_path / STREAM / f"{start['id']}.json").read_bytes())
        image = decode(jpeg_path.read_bytes())
        assert image.shape == (HEIGHT, WIDTH, 3)
        assert sidecar["event"] == start["id"] and sidecar["stream"] == STREAM and sidecar["label"] == label
        assert sidecar["track_id"] == start["track_id"]
        assert sidecar["frame"]["width"] == WIDTH and sidecar["frame"]["height"] == HEIGHT
        # The object's colour fills its box, and no other shape's colour does.
        mean = inner_mean(image, sidecar["box"])
        assert np.abs(mean - colours[label]).max() < 25, (label, mean)
        for other, colour in colours.items():
            if other != label:
                assert np.abs(mean - colour).max() > 60, (label, other, mean)
        # The clean frame it was seen on (nothing drawn), with the box of that frame.
        index = sidecar["frame"]["index"]
        differences = {near: np.abs(image.astype(int) - SCENE[near].image.astype(int)).mean()
                       for near in range(max(0, index - 3), min(FRAMES, index + 4))}
        assert min(differences, key=differences.__getitem__) == index and differences[index] < 8, differences
        truth = SCENE[index].boxes[label]
        box = sidecar["box"]
        assert (box["xmin"], box["ymin"], box["xmax"], box["ymax"]) == pytest.approx(truth)
        assert not touches_edge(truth, WIDTH, HEIGHT)
    square = next(event for event in starts if event["label"] == "square")
    assert touches_edge(SCENE[square["frame"]].boxes["square"], WIDTH, HEIGHT)  # it was first seen at the edge
    assert sink.stats.written == 3 and sink.stats.open == 0 and sink.stats.dropped == 0
    assert sink.stats.encodes < FRAMES  # a new best is encoded, not every frame


def test_the_best_frame_rule_prefers_a_higher_score_a_larger_box_and_a_box_clear_of_the_edge() -> None:
    assert frame_quality((100, 100, 190, 190), 0.8, 640, 360) == pytest.approx(0.7 * 0.8 + 0.3 * math.sqrt(
        90 * 90 / (640 * 360)))
    inside, at_edge = (100, 100, 190, 190), (0, 100, 90, 190)
    assert frame_quality(at_edge, 0.8, 640, 360) == pytest.approx(frame_quality(inside, 0.8, 640, 360) / 2)
    assert frame_quality((100, 100, 200, 200), 0.8, 640, 360) > frame_quality(inside, 0.8, 640, 360)
    assert frame_quality(inside, 0.9, 640, 360) > frame_quality(inside, 0.8, 640, 360)
    assert frame_quality((600, 300, 639, 359), 0.99, 640, 360) < frame_quality(inside, 0.6, 640, 360)
    assert frame_quality((-50, -50, 700, 400), 1.0, 640, 360) == pytest.approx(0.5)  # clamped to the frame


def one_box_frame(index: int, box: tuple[float, float, float, float], score: float, colour: tuple[int, int, int],
                  track_id: int | None = 1, stream: str = STREAM) -> FrameResult:
    """A grey frame with one ``colour`` rectangle at ``box``, detected with ``score`` as ``track_id``."""
    image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    x0, y0, x1, y1 = (round(v) for v in box)
    image[y0:y1, x0:x1] = colour
    frame = Frame(stream, index, image, index / FPS, BASE_AT + index / FPS)
    detections = Detections.from_lists([box], [score], [0], ["person"])
    return FrameResult(frame, detections, "fake", frame.captured_at, None if track_id is None else (track_id,))


def event(kind: str, event_id: str, track_id: int = 1, stream: str = STREAM) -> Notice:
    return Notice(stream, {"type": "event", "kind": kind, "id": event_id, "stream": stream, "track_id": track_id,
                           "label": "person"})


def start_id(n: int) -> str:
    return f"{1_800_000_000_000 + n:013d}-{STREAM}-{n:010d}-0000"


def test_frames_before_the_start_notice_count_and_the_best_of_all_is_kept(tmp_path: Path) -> None:
    sink = SnapshotSink(tmp_path)
    sink.on_result(one_box_frame(0, (200, 100, 300, 200), 0.95, (250, 0, 0)))  # the best, before the notice
    sink.on_event(event("object.start", start_id(0)))
    sink.on_result(one_box_frame(1, (200, 100, 260, 160), 0.6, (0, 250, 0)))
    sink.on_result(one_box_frame(2, (0, 100, 100, 200), 0.97, (0, 0, 250)))  # at the edge
    open_jpeg = sink.snapshot_of(event("zone.enter", "z", 1).message)
    assert open_jpeg is not None and decode(open_jpeg)[150, 250].tolist() == pytest.approx([250, 0, 0], abs=12)
    sink.on_event(event("object.end", start_id(2)))
    written = (tmp_path / STREAM / f"{start_id(0)}.jpg").read_bytes()
    assert decode(written)[150, 250].tolist() == pytest.approx([250, 0, 0], abs=12)
    assert sink.latest_jpeg(STREAM) == written and sink.latest_jpeg("other") is None
    for kind, event_id in (("object.start", start_id(0)), ("zone.leave", "y"), ("object.end", start_id(2))):
        assert sink.snapshot_of(event(kind, event_id).message) == written
    assert sink.snapshot_of(event("object.start", start_id(9), track_id=5).message) is None
    assert sink.snapshot_of({"kind": "zone.enter"}) is None
    assert not list((tmp_path / STREAM).glob(".*"))  # no temporary file left


def test_open_objects_are_bounded_per_stream_and_the_oldest_is_dropped(tmp_path: Path) -> None:
    sink = SnapshotSink(tmp_path, max_open=2)
    for track_id in (1, 2, 3):
        sink.on_result(one_box_frame(track_id, (100, 100, 200, 200), 0.9, (200, 200, 0), track_id))
        sink.on_event(event("object.start", start_id(track_id), track_id))
    assert sink.stats.open == 2 and sink.stats.dropped == 1
    sink.on_result(one_box_frame(9, (100, 100, 200, 200), 0.9, (200, 200, 0), 1, stream="other"))
    assert sink.stats.open == 3  # the bound is per stream
    for track_id in (1, 2, 3):
        sink.on_event(event("object.end", start_id(10 + track_id), track_id))
    assert sorted(path.name for path in (tmp_path / STREAM).glob("*.jpg")) == [
        f"{start_id(2)}.jpg", f"{start_id(3)}.jpg"]


def test_a_stream_that_stops_writes_its_named_objects_and_forgets_the_unnamed(tmp_path: Path) -> None:
    sink = SnapshotSink(tmp_path)
    sink.on_result(one_box_frame(0, (100, 100, 200, 200), 0.9, (0, 200, 200), 1))
    sink.on_event(event("object.start", start_id(0), 1))
    sink.on_result(one_box_frame(1, (300, 100, 400, 200), 0.9, (0, 200, 200), 2))  # its start notice was lost
    sink.on_result(one_box_frame(2, (300, 100, 400, 200), 0.9, (0, 200, 200), None))  # not a track
    sink.on_status(StateChange(STREAM, SourceState.STOPPED, BASE_AT + 1))
    assert [path.name for path in (tmp_path / STREAM).glob("*.jpg")] == [f"{start_id(0)}.jpg"]
    assert sink.stats.unnamed == 1 and sink.stats.open == 0 and sink.stats.written == 1


def test_a_snapshot_that_cannot_be_written_is_counted_and_the_sink_goes_on(tmp_path: Path) -> None:
    (tmp_path / STREAM).write_text("a file where the stream's directory would be")
    sink = SnapshotSink(tmp_path)
    sink.on_result(one_box_frame(0, (100, 100, 200, 200), 0.9, (0, 200, 200), 1))
    sink.on_event(event("object.start", start_id(0), 1))
    sink.on_event(event("object.end", start_id(1), 1))
    assert sink.stats.failed == 1 and sink.stats.written == 0 and sink.latest_jpeg(STREAM) is None
    unsafe = SnapshotSink(tmp_path / "elsewhere")
    unsafe.on_result(one_box_frame(0, (100, 100, 200, 200), 0.9, (0, 200, 200), 1, stream="../up"))
    unsafe.on_event(event("object.start", "../../escape", 1, stream="../up"))
    unsafe.on_event(event("object.end", "x", 1, stream="../up"))
    assert unsafe.stats.failed == 1 and not list(tmp_path.rglob("*.jpg"))


def test_through_the_dispatcher_with_the_mqtt_style_reader_on_another_thread(tmp_path: Path) -> None:
    sink = SnapshotSink(tmp_path)
    dispatcher = Dispatcher()
    dispatcher.add(sink, maxsize=4, overflow=Overflow.BLOCK)
    seen: list[bytes | None] = []
    events: list[dict[str, object]] = []
    dispatcher.start()
    try:
        for item in analysed(SCENE):
            if isinstance(item, FrameResult):
                dispatcher.publish_result(item)
            else:
                dispatcher.publish_notice(item)
                if item.type == "event":
                    events.append(item.message)
                    reader = threading.Thread(target=lambda m=item.message: seen.append(sink.snapshot_of(m)))
                    reader.start()
                    reader.join(5)
        dispatcher.publish_status(StateChange(STREAM, SourceState.ENDED, time.time()))
    finally:
        assert dispatcher.close(10)
    starts = {str(e["id"]) for e in events if e["kind"] == "object.start"}
    assert {path.stem for path in (tmp_path / STREAM).glob("*.jpg")} == starts
    ends = [e for e in events if e["kind"] == "object.end"]
    assert len(ends) == 3
    for end in ends:  # after the sink is done, every event of an object gives its written snapshot
        jpeg = sink.snapshot_of(end)
        assert jpeg is not None and decode(jpeg).shape == (HEIGHT, WIDTH, 3)
    assert any(jpeg is not None for jpeg in seen)
    last = max(ends, key=lambda e: (float(e["at"]), str(e["id"])))  # type: ignore[arg-type]
    assert sink.latest_jpeg(STREAM) == sink.snapshot_of(last)
