"""mAP and precision/recall on hand-checked cases."""

from __future__ import annotations

import numpy as np
import pytest

from stream_detect.evaluation import Truth, average_precision, iou, mean_average_precision, precision_recall
from stream_detect.records import Detections


def dets(*rows: tuple[str, float, tuple[float, float, float, float]]) -> Detections:
    if not rows:
        return Detections.empty()
    return Detections.from_lists([r[2] for r in rows], [r[1] for r in rows], [0] * len(rows), [r[0] for r in rows])


def test_iou() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_perfect_detections_score_one() -> None:
    truths = [[Truth("circle", (0, 0, 10, 10)), Truth("square", (20, 20, 40, 40))]]
    found = [dets(("circle", 0.9, (0, 0, 10, 10)), ("square", 0.8, (21, 20, 40, 41)))]
    assert mean_average_precision(found, truths)["mAP"] == pytest.approx(1.0)
    assert precision_recall(found, truths) == (1.0, 1.0)


def test_duplicates_wrong_labels_and_misses_cost() -> None:
    truths = [[Truth("circle", (0, 0, 10, 10))], [Truth("circle", (0, 0, 10, 10))]]
    found = [dets(("circle", 0.9, (0, 0, 10, 10)), ("circle", 0.8, (0, 0, 10, 10))),  # duplicate
             dets(("square", 0.9, (0, 0, 10, 10)))]  # wrong label, so the second circle is missed
    scores = mean_average_precision(found, truths)
    assert scores["circle"] == pytest.approx(0.5)
    precision, recall = precision_recall(found, truths)
    assert precision == pytest.approx(1 / 3) and recall == pytest.approx(0.5)


def test_average_precision_interpolates() -> None:
    # hits at ranks 1 and 3 of 2 truths: precision 1 at recall .5, 2/3 at recall 1
    assert average_precision(np.array([True, False, True]), 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision(np.array([], bool), 3) == 0.0
