"""Tracking cost per frame: ByteTrack alone, and the whole analytics stage with zones and lines.

``python -m stream_detect.bench.tracking`` prints, for 20 and 50 objects, the
median and 99th percentile milliseconds per frame and their ratio to the
2 ms goal. The objects move at constant velocities over a 1280x720 frame,
bouncing off its edges, with 2 px of jitter, score noise and 5% missed
detections, at 10 fps; the first frames are a warm-up and are not timed.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from ..analytics import AnalyticsFields, StreamAnalytics
from ..analytics.tracking import StreamTracker
from ..records import Detections

GOAL_MS = 2.0
WIDTH, HEIGHT, FPS = 1280, 720, 10.0
WARMUP_FRAMES = 20
SCENE = AnalyticsFields.model_validate({
    "zones": [{"name": "left", "polygon": [[0, 0.3], [0.4, 0.3], [0.4, 1], [0, 1]], "loiter_s": 5},
              {"name": "right", "polygon": [[0.6, 0], [1, 0], [1, 0.7], [0.7, 0.9]]}],
    "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]},
              {"name": "across", "points": [[0, 0.5], [1, 0.5]]}],
})


@dataclass(frozen=True)
class Figures:
    """Milliseconds per frame of one measured run."""

    what: str
    objects: int
    frames: int
    median_ms: float
    p99_ms: float

    def line(self) -> str:
        return (f"{self.what:<28} {self.objects:>3} objects  {self.frames:>5} frames  median {self.median_ms:6.3f} ms"
                f"  p99 {self.p99_ms:6.3f} ms  median/goal {self.median_ms / GOAL_MS:5.2f}"
                f"  p99/goal {self.p99_ms / GOAL_MS:5.2f}")


def moving_objects(objects: int, frames: int, seed: int = 0) -> list[Detections]:
    """``frames`` frames of detections of ``objects`` boxes moving and bouncing, with noise and misses."""
    rng = np.random.default_rng(seed)
    sizes = rng.uniform(30, 70, (objects, 2))
    positions = rng.uniform([0, 0], [WIDTH, HEIGHT], (objects, 2)) - sizes / 2
    velocities = rng.uniform(-12, 12, (objects, 2))  # px per frame
    classes = np.arange(objects) % 3
    labels = tuple(("person", "car", "dog")[c] for c in classes)
    result = []
    for _ in range(frames):
        positions += velocities
        low, high = positions < 0, positions + sizes > [WIDTH, HEIGHT]
        velocities[low | high] *= -1
        positions = np.clip(positions, 0, np.array([WIDTH, HEIGHT]) - sizes)
        boxes = np.concatenate([positions, positions + sizes], axis=1) + rng.normal(0, 2, (objects, 4))
        seen = rng.random(objects) >= 0.05
        scores = np.clip(rng.normal(0.85, 0.06, objects), 0.5, 1.0)
        result.append(Detections(boxes[seen].astype(np.float32), scores[seen].astype(np.float32),
                                 classes[seen].astype(np.int64),
                                 tuple(label for label, s in zip(labels, seen, strict=True) if s)))
    return result


def _figures(what: str, objects: int, timings: list[float]) -> Figures:
    ms = np.array(timings[WARMUP_FRAMES:]) * 1000
    return Figures(what, objects, len(ms), float(np.median(ms)), float(np.percentile(ms, 99)))


def time_tracker(objects: int, frames: int) -> Figures:
    """ByteTrack under public ids alone (:class:`~stream_detect.analytics.tracking.StreamTracker`)."""
    tracker = StreamTracker(SCENE.tracker)
    timings = []
    for index, detections in enumerate(moving_objects(objects, frames + WARMUP_FRAMES)):
        started = time.perf_counter()
        tracker.update(index / FPS, detections)
        timings.append(time.perf_counter() - started)
    return _figures("tracker", objects, timings)


def time_stage(objects: int, frames: int) -> Figures:
    """The whole stage: filters, tracker, two zones, two lines, events."""
    stage = StreamAnalytics("bench", SCENE)
    timings = []
    for index, detections in enumerate(moving_objects(objects, frames + WARMUP_FRAMES)):
        started = time.perf_counter()
        stage.process(index, index / FPS, 1_800_000_000 + index / FPS, WIDTH, HEIGHT, detections)
        timings.append(time.perf_counter() - started)
    return _figures("stage (2 zones, 2 lines)", objects, timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream_detect.bench.tracking", description=__doc__)
    parser.add_argument("--frames", type=int, default=1000, help="timed frames per run (default: 1000)")
    parser.add_argument("--objects", default="20,50", help="comma-separated object counts (default: 20,50)")
    args = parser.parse_args(argv)
    frames = max(10, args.frames)
    counts = [int(value) for value in args.objects.split(",") if value.strip()]
    print(f"goal: {GOAL_MS} ms per frame; {WIDTH}x{HEIGHT} at {FPS:g} fps, {WARMUP_FRAMES} warm-up frames")
    for objects in counts:
        print(time_tracker(objects, frames).line(), flush=True)
        print(time_stage(objects, frames).line(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
