"""The tracking benchmark runs and prints its figures against the goal."""

from __future__ import annotations

import numpy as np
import pytest

from stream_detect.bench.tracking import GOAL_MS, main, moving_objects


def test_the_moving_objects_stay_in_the_frame_with_some_missed() -> None:
    frames = moving_objects(50, 40)
    counts = [len(detections) for detections in frames]
    assert max(counts) <= 50 and min(counts) >= 35 and sum(counts) < 50 * 40
    boxes = np.concatenate([detections.xyxy for detections in frames])
    assert boxes[:, :2].min() > -10 and boxes[:, 2].max() < 1290 and boxes[:, 3].max() < 730


def test_the_bench_prints_median_and_p99_against_the_goal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--frames", "10", "--objects", "5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"goal: {GOAL_MS} ms per frame")
    assert [line.split()[0] for line in lines[1:]] == ["tracker", "stage"]
    assert all("median" in line and "p99" in line and "/goal" in line for line in lines[1:])
