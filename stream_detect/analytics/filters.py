"""Masks, per-label filters and duplicates: the detections dropped before tracking, counted by reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..records import Detections
from .geometry import PixelGeometry, anchors, inside_any
from .settings import LabelFilter, MaskConfig, filter_for

REASONS = ("mask", "filter", "duplicate")


@dataclass(frozen=True, slots=True)
class Kept:
    """The detections kept, and how many were dropped per reason (``mask``, ``filter``, ``duplicate``)."""

    detections: Detections
    dropped: Mapping[str, int]


def duplicates(detections: Detections, iou: float) -> np.ndarray:
    """``(N,) bool``: detections overlapping a higher-scoring one of the same label by at least ``iou``.

    DETR-family models need no NMS in principle, but small ones (the demo
    model) do return a second, weaker box on the same object; a tracker
    would make a second track of it, with its own crossings.
    """
    n = len(detections)
    duplicate = np.zeros(n, bool)
    if n < 2:
        return duplicate
    boxes = detections.xyxy.astype(np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    low = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    overlap = (high - low).clip(0).prod(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        close = overlap / (areas[:, None] + areas[None, :] - overlap) >= iou
    np.fill_diagonal(close, False)
    if not close.any():  # the common frame: nothing to compare further
        return duplicate
    classes = detections.class_id  # one class id per label of the model
    same = close & (classes[:, None] == classes[None, :])
    order = np.argsort(-detections.confidence, kind="stable")  # strongest first, ties in row order
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    for row in order:  # N rows at most
        if not duplicate[row]:
            duplicate |= same[row] & (rank > rank[row])
    return duplicate


class DetectionFilter:
    """Drops detections whose anchor (box bottom centre) is in a mask, those a label's limits refuse,
    and duplicates.

    Args:
        masks: Polygons where nothing counts.
        filters: Per label, ``'*'`` for every label (a label's own values
            win, field by field, over ``'*'``'s).
        duplicate_iou: A detection overlapping a stronger one of its label by
            this IoU is a duplicate; None keeps them.
    """

    def __init__(self, masks: tuple[MaskConfig, ...], filters: Mapping[str, LabelFilter],
                 duplicate_iou: float | None = None) -> None:
        self._duplicate_iou = duplicate_iou
        self._masks = PixelGeometry([(mask.polygon, mask.units) for mask in masks])
        self._has_masks = bool(masks)
        self._filters = dict(filters)
        self._limits: dict[str, LabelFilter | None] = {}

    def _limits_of(self, label: str) -> LabelFilter | None:
        if label not in self._limits:
            self._limits[label] = filter_for(self._filters, label)
        return self._limits[label]

    def apply(self, detections: Detections, width: int, height: int) -> Kept:
        """The detections of a ``width x height`` frame that pass."""
        n = len(detections)
        masked = inside_any(anchors(detections.xyxy), self._masks.for_size(width, height)) \
            if self._has_masks and n else np.zeros(n, bool)
        refused = np.zeros(n, bool)
        if self._filters and n:
            boxes = detections.xyxy.astype(np.float64)
            areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0) / (width * height)
            for row, label in enumerate(detections.labels):
                limits = self._limits_of(label)
                if limits is None or masked[row]:
                    continue
                score = float(detections.confidence[row])
                refused[row] = (
                    (limits.min_score is not None and score < limits.min_score)
                    or (limits.min_area is not None and areas[row] < limits.min_area)
                    or (limits.max_area is not None and areas[row] > limits.max_area)
                )
        dropped = masked | refused
        duplicate = np.zeros(n, bool)
        if self._duplicate_iou is not None and n > 1:
            remaining = np.flatnonzero(~dropped)
            duplicate[remaining] = duplicates(detections.select(~dropped), self._duplicate_iou)
        keep = ~(dropped | duplicate)
        kept = detections if keep.all() else detections.select(keep)
        return Kept(kept, {"mask": int(masked.sum()), "filter": int(refused.sum()),
                           "duplicate": int(duplicate.sum())})
