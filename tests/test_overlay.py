"""Overlays follow moving objects: between two detections the preview and recordings draw each tracked box
where it is predicted on the frame shown (the rule: stream_detect/overlay.py)."""

from __future__ import annotations

import numpy as np

from stream_detect.analytics.settings import AnalyticsFields
from stream_detect.analytics.stage import StreamAnalytics
from stream_detect.overlay import Overlay
from stream_detect.records import Frame

from .analytics.scene import FPS, HEIGHT, WIDTH, noisy_detections, render_scene

DETECTIONS_PER_S = 2


def centre(box: np.ndarray | tuple[int, int, int, int]) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2], float)


def test_at_two_detections_a_second_predicted_boxes_stay_on_moving_objects() -> None:
    """The synthetic camera's scripted shapes move 50 px/s at 10 fps; the detector runs on every fifth frame.
    On the frames between, the distance from each drawn box to its object is measured both ways."""
    analytics = StreamAnalytics("cam", AnalyticsFields.model_validate({"tracking": True}))
    rng = np.random.default_rng(3)
    every = round(FPS / DETECTIONS_PER_S)
    overlay: Overlay | None = None
    owners: dict[int, str] = {}
    errors: dict[str, list[float]] = {"predicted": [], "as detected": []}
    for scene_frame in render_scene():
        pts = scene_frame.index / FPS
        frame = Frame("cam", scene_frame.index, np.zeros((HEIGHT, WIDTH, 3), np.uint8), pts, 1_800_000_000 + pts)
        if scene_frame.index % every == 0:  # a detection: what the pipeline makes of it
            detections, rows = noisy_detections(scene_frame, rng, jitter_px=1.0, miss_rate=0.0)
            analysed = analytics.process(frame.index, pts, frame.captured_at, WIDTH, HEIGHT, detections)
            assert analysed.velocities is not None
            overlay = Overlay(analysed.detections, analysed.track_ids, analysed.velocities, pts, 1.0)
            owners = {track_id: rows[row] for row, track_id in enumerate(analysed.track_ids) if track_id is not None}
            continue
        if overlay is None or overlay.track_ids is None:
            continue
        truth = {owner: centre(box.box) for owner, box in scene_frame.truths}
        drawn = overlay.boxes_at(pts)
        for row, track_id in enumerate(overlay.track_ids):
            owner = owners.get(track_id) if track_id is not None else None
            if owner is None or owner not in truth or overlay.velocities is None or not overlay.velocities[row].any():
                continue  # untracked, gone, or seen once: no motion known, drawn where it was
            errors["predicted"].append(float(np.linalg.norm(centre(drawn.xyxy[row]) - truth[owner])))
            errors["as detected"].append(float(np.linalg.norm(centre(overlay.detections.xyxy[row]) - truth[owner])))
    assert len(errors["predicted"]) > 100, "enough frames between detections were measured"
    predicted, detected = (float(np.mean(errors[key])) for key in ("predicted", "as detected"))
    print(f"mean distance box to object: predicted {predicted:.1f} px, as detected {detected:.1f} px")
    assert detected > 5.0, "the objects move enough between detections for the test to mean something"
    assert predicted < 0.4 * detected, (predicted, detected)
