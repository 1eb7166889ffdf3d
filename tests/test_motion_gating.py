"""Motion gating in the pipeline: on a still scene the detector rests, and no event is lost for it.

A file of a still, noisy scene where a disc crosses a line twice, moving 4 s of 60 (the rest of the time
it stands still), read through the pipeline with motion gating on and the fake detector (it boxes the
region that stands out, here the disc).
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
# The disc stands at x=60, runs to x=260 from frame 100 to 120, back from 300 to 320: it crosses the line
# (x=160) left to right ("in") at frame 110 and back ("out") at frame 310.
CROSSINGS = {"in": 110, "out": 310}


def disc_x(frame: int) -> float:
    if 100 <= frame < 120:
        return 60 + 10 * (frame - 100)
    if 120 <= frame < 300:
        return 260
    if 300 <= frame < 320:
        return 260 - 10 * (frame - 300)
    return 60


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
        "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]}]}]})
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
    assert sorted(e["direction"] for e in crossings) == ["in", "out"], crossings
    for event in crossings:
        assert 0 <= event["frame"] - CROSSINGS[event["direction"]] <= 10, event
    # Resting ends no track: the disc standing still between its runs is one object all along.
    assert len({e["track_id"] for e in crossings}) == 1
    assert [e["kind"] for e in collector.events].count("object.start") == 1
