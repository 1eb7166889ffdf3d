"""Motion gating in the pipeline: on a still scene the detector rests, and no event is lost for it.

A file of a still, noisy scene where a disc crosses a line and enters and leaves a zone, moving 12 s of 60
(20 % of the time; the rest of the time it stands still), read through the pipeline with motion gating on
and the fake detector (it boxes the region that stands out, here the disc).
"""

from __future__ import annotations

import threading
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_detect.config import parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline
from stream_detect.record.writer import VideoWriter
from stream_detect.sinks import FrameResult, Notice, Overflow
from stream_detect.sources.base import SourceState
from stream_detect.sources.capture import StateChange

WIDTH, HEIGHT, FPS, FRAMES = 320, 180, 10, 600
LINE_X, ZONE_X = 160, 224  # the line at half the width; the zone is the right 30 % of the picture
# The disc stands at x=60, runs to x=260 from frame 100 to 160 and back from 300 to 360: it moves on 120 of
# the 600 frames (20 % of the time) and stands still the rest.
MOVING = (range(100, 160), range(300, 360))


def disc_x(frame: int) -> float:
    out, back = MOVING
    if frame in out:
        return 60 + (frame - out.start) * 200 / len(out)
    if out.stop <= frame < back.start:
        return 260
    if frame in back:
        return 260 - (frame - back.start) * 200 / len(back)
    return 60


def first_frame(beyond: float, rightwards: bool, after: int = 0) -> int:
    """The ground truth: the first frame whose disc centre is past ``beyond`` going that way."""
    return next(f for f in range(after, FRAMES) if (disc_x(f) > beyond) == rightwards and
                (disc_x(f - 1) > beyond) != rightwards)


EXPECTED = {
    ("line.cross", "in"): first_frame(LINE_X, True),
    ("line.cross", "out"): first_frame(LINE_X, False, after=200),
    ("zone.enter", None): first_frame(ZONE_X, True),
    ("zone.leave", None): first_frame(ZONE_X, False, after=200),
}


def write_scene(path: Path) -> None:
    rng = np.random.default_rng(1)
    background = cv2.GaussianBlur(rng.integers(90, 130, (HEIGHT, WIDTH, 3)).astype(np.uint8), (9, 9), 0)
    with VideoWriter(path, WIDTH, HEIGHT, Fraction(FPS), fragmented=False) as writer:
        for frame in range(FRAMES):
            image = np.clip(background + rng.normal(0, 4, background.shape), 0, 255).astype(np.uint8)
            cv2.circle(image, (round(disc_x(frame)), 110), 15, (250, 250, 250), -1)  # bright in grey too
            writer.write(image, frame / FPS)


class Collector:
    name = "collector"

    def __init__(self) -> None:
        self.results: list[FrameResult] = []
        self.events: list[dict] = []
        self.ended = threading.Event()

    def on_result(self, result: FrameResult) -> None:
        self.results.append(result)

    def on_event(self, notice: Notice) -> None:
        if notice.type == "event":
            self.events.append(notice.message)

    def on_status(self, change: StateChange) -> None:
        if change.state in (SourceState.ENDED, SourceState.FAILED):
            self.ended.set()

    def close(self) -> None:
        pass


@pytest.mark.timeout(120)
def test_a_mostly_still_scene_rests_the_detector_and_keeps_every_crossing(tmp_path: Path) -> None:
    write_scene(tmp_path / "scene.mp4")
    config = parse_config({"model": {"id": "fake"}, "sources": [{
        "id": "yard", "path": str(tmp_path / "scene.mp4"), "motion": {"enabled": True},
        "tracker": {"activation_threshold": 0.5, "high_confidence_threshold": 0.5},
        "lines": [{"name": "middle", "points": [[LINE_X / WIDTH, 0], [LINE_X / WIDTH, 1]]}],
        "zones": [{"name": "right", "polygon": [[ZONE_X / WIDTH, 0], [1, 0], [1, 1], [ZONE_X / WIDTH, 1]]}]}]})
    detector = FakeDetector()
    pipeline = Pipeline(config, lambda model: detector)
    collector = Collector()
    pipeline.dispatcher.add(collector, maxsize=8, overflow=Overflow.BLOCK)
    with pipeline:
        assert collector.ended.wait(90), "the file was read to its end"
    assert len(collector.results) == FRAMES  # every frame has its message, still or not
    detected = sum(detector.batch_sizes)
    assert detected == sum(not r.still for r in collector.results)
    assert detected <= 0.35 * FRAMES, f"the detector ran on {detected} of {FRAMES} frames"
    assert pipeline.streams["yard"].snapshot().frames_still == FRAMES - detected
    crossings = [e for e in collector.events if e["kind"] == "line.cross"]
    fired = {(e["kind"], e.get("direction")): e for e in collector.events if e["kind"] != "object.start"}
    assert set(fired) >= set(EXPECTED), collector.events
    for what, frame in EXPECTED.items():  # every zone and line event of the ground truth, within 10 frames
        assert 0 <= fired[what]["frame"] - frame <= 10, (what, frame, fired[what])
    # Resting ends no track: the disc standing still between its runs is one object all along.
    assert len({e["track_id"] for e in crossings}) == 1
    assert [e["kind"] for e in collector.events].count("object.start") == 1
