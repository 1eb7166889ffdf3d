"""Masks and per-label filters: the detections dropped before tracking, counted by reason."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..records import Detections
from .geometry import PixelGeometry, anchors, inside_any
from .settings import LabelFilter, MaskConfig, filter_for

REASONS = ("mask", "filter")


@dataclass(frozen=True, slots=True)
class Kept:
    """The detections kept, and how many were dropped per reason (``mask``, ``filter``)."""

    detections: Detections
    dropped: Mapping[str, int]


class DetectionFilter:
    """Drops detections whose anchor (box bottom centre) is in a mask, then those a label's limits refuse.

    Args:
        masks: Polygons where nothing counts.
        filters: Per label, ``'*'`` for every label (a label's own values
            win, field by field, over ``'*'``'s).
    """

    def __init__(self, masks: tuple[MaskConfig, ...], filters: Mapping[str, LabelFilter]) -> None:
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
        keep = ~(masked | refused)
        kept = detections if keep.all() else detections.select(keep)
        return Kept(kept, {"mask": int(masked.sum()), "filter": int(refused.sum())})
