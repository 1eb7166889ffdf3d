"""Detection quality against ground truth: precision, recall and mAP@IoU.

Average precision is the area under the interpolated precision-recall curve
(all points, as PASCAL VOC 2010+ and COCO's per-threshold AP compute it),
averaged over the classes that occur in the ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .records import Detections

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Truth:
    label: str
    box: Box


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(xmin, ymin, xmax, ymax)`` boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _match(
    detections: Sequence[Detections], truths: Sequence[Sequence[Truth]], label: str, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """Greedy matching by descending score: (scores, is_true_positive, number of truths)."""
    scored: list[tuple[float, int, Box]] = []
    for image_index, found in enumerate(detections):
        for box, score, name in zip(found.xyxy, found.confidence, found.labels, strict=True):
            if name == label:
                scored.append((float(score), image_index, (float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
    scored.sort(key=lambda item: -item[0])
    wanted = [[t.box for t in image if t.label == label] for image in truths]
    used = [[False] * len(boxes) for boxes in wanted]
    hits = np.zeros(len(scored), bool)
    for rank, (_, image_index, box) in enumerate(scored):
        overlaps = [iou(box, other) for other in wanted[image_index]]
        best = int(np.argmax(overlaps)) if overlaps else -1
        if best >= 0 and overlaps[best] >= iou_threshold and not used[image_index][best]:
            used[image_index][best] = True
            hits[rank] = True
    return np.array([s for s, _, _ in scored]), hits, sum(len(b) for b in wanted)


def average_precision(hits: np.ndarray, total: int) -> float:
    if total == 0:
        return 0.0
    if len(hits) == 0:
        return 0.0
    true_pos = np.cumsum(hits)
    recall = true_pos / total
    precision = true_pos / np.arange(1, len(hits) + 1)
    recall = np.concatenate([[0.0], recall, [recall[-1]]])
    precision = np.concatenate([[1.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.nonzero(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def mean_average_precision(
    detections: Sequence[Detections], truths: Sequence[Sequence[Truth]], iou_threshold: float = 0.5
) -> dict[str, float]:
    """Per-class AP and their mean (``"mAP"``) over the classes present in ``truths``."""
    labels = sorted({t.label for image in truths for t in image})
    result = {}
    for label in labels:
        _, hits, total = _match(detections, truths, label, iou_threshold)
        result[label] = average_precision(hits, total)
    result["mAP"] = float(np.mean([result[label] for label in labels])) if labels else 0.0
    return result


def precision_recall(
    detections: Sequence[Detections], truths: Sequence[Sequence[Truth]], iou_threshold: float = 0.5
) -> tuple[float, float]:
    """Precision and recall of the given detections (already thresholded), all classes together."""
    true_positives = found = expected = 0
    for label in sorted({t.label for image in truths for t in image} | {x for d in detections for x in d.labels}):
        _, hits, total = _match(detections, truths, label, iou_threshold)
        true_positives += int(hits.sum())
        found += len(hits)
        expected += total
    precision = true_positives / found if found else 1.0
    recall = true_positives / expected if expected else 1.0
    return precision, recall
