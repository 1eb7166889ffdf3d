"""Acceptance with a real detector: the bundled demo model on the synthetic camera's rendered frames.

The same scripted scene as :mod:`.test_acceptance`, but the boxes come from
``stream_detect/models/demo`` (loaded the way users load it, on CPU) instead
of the noisy ground truth, from frame 30 on. 20-60 s on 2 shared cores (the
default backend, as users get it), depending on their load.
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from stream_detect.analytics import AnalyticsFields, Event, StreamAnalytics
from stream_detect.config import ModelConfig
from stream_detect.detect import load_detector

from .scene import FPS, GATE, HEIGHT, PORCH, WIDTH, render_scene
from .test_acceptance import MAX_LATE_FRAMES, truth_frames

MAX_ID_SWITCHES = 2  # a real detector: occasional misses and duplicates on four shapes over 11 s
FIRST_FRAME = 30  # frames detected from here on (the detector's time is most of the test's)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_demo_model_on_rendered_frames_gives_every_event_once_in_time() -> None:
    detector = load_detector(ModelConfig(id="demo", device="cpu"))
    stage = StreamAnalytics("synthetic", AnalyticsFields.model_validate({"zones": [PORCH], "lines": [GATE]}))
    frames = render_scene(images=True)[FIRST_FRAME:]  # the first event is at frame 52
    owner_of_track: dict[int, Counter[str]] = {}
    ids_of_shape: dict[str, list[int]] = {}
    events: list[Event] = []
    try:
        for frame in frames:
            assert frame.image is not None
            (detections,) = detector.detect([frame.image], 0.5)
            result = stage.process(frame.index, frame.index / FPS, 1_800_000_000 + frame.index / FPS,
                                   WIDTH, HEIGHT, detections)
            events.extend(result.events)
            for box, track_id in zip(result.detections.xyxy.tolist(), result.track_ids, strict=True):
                if track_id is None:
                    continue
                # The shape a box belongs to: the ground-truth box it overlaps most.
                owner = max(frame.truths, key=lambda truth: _overlap(box, truth[1].box))[0]
                owner_of_track.setdefault(track_id, Counter())[owner] += 1
                ids_of_shape.setdefault(owner, []).append(track_id)
    finally:
        close = getattr(detector, "close", None)
        if close is not None:
            close()
    events.extend(stage.finish(1_900_000_000.0))

    def shape(event: Event) -> str:
        return owner_of_track[event.track_id].most_common(1)[0][0]

    reported = Counter((shape(e), e.direction if e.kind == "line.cross" else e.kind) for e in events
                       if e.kind in ("line.cross", "zone.enter", "zone.leave", "zone.loiter"))
    assert reported == Counter({("A", "in"): 1, ("B", "out"): 1, ("C", "zone.enter"): 1, ("C", "zone.loiter"): 1,
                                ("C", "zone.leave"): 1}), [(e.frame, e.kind, e.track_id) for e in events]
    for (owner, what), truth in truth_frames().items():
        (event,) = [e for e in events if shape(e) == owner and what in (e.kind, e.direction)]
        assert 0 <= event.frame - truth <= MAX_LATE_FRAMES, (owner, what, event.frame, truth)
    switches = sum(sum(1 for a, b in pairwise(ids) if a != b) for ids in ids_of_shape.values())
    assert switches <= MAX_ID_SWITCHES, ids_of_shape


def _overlap(box: list[float], truth: tuple[int, int, int, int]) -> float:
    width = min(box[2], truth[2]) - max(box[0], truth[0])
    height = min(box[3], truth[3]) - max(box[1], truth[1])
    return max(0.0, width) * max(0.0, height)
