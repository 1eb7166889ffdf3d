"""The two records passed between stages: :class:`Frame` and :class:`Detections`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded video frame.

    Attributes:
        stream_id: Id of the stream the frame came from.
        index: Frame number within the stream, counted from 0 and increasing
            across reconnects (never reset while the process runs).
        image: ``(H, W, 3) uint8`` array in RGB order, C-contiguous.
        pts: Presentation time in seconds on the source's own timeline, or
            ``None`` when the source has no timestamps.
        captured_at: Wall-clock time (``time.time()``) when the frame was read.
        corrupt: The decoder flagged the frame as damaged.
    """

    stream_id: str
    index: int
    image: np.ndarray
    pts: float | None
    captured_at: float
    corrupt: bool = False

    def __post_init__(self) -> None:
        image = self.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"Frame.image must be (H, W, 3) uint8, got {image.shape} {image.dtype}"
            )

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True, slots=True)
class Detections:
    """Detections of one image, as columns.

    Attributes:
        xyxy: ``(N, 4) float32`` boxes ``(xmin, ymin, xmax, ymax)`` in pixels of
            the original image.
        confidence: ``(N,) float32`` scores in ``[0, 1]``.
        class_id: ``(N,) int64`` class ids of the model.
        labels: ``N`` label names, aligned with the rows.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    labels: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        n = len(self.confidence)
        if self.xyxy.shape != (n, 4) or self.xyxy.dtype != np.float32:
            raise ValueError(f"xyxy must be ({n}, 4) float32, got {self.xyxy.shape} {self.xyxy.dtype}")
        if self.confidence.shape != (n,) or self.confidence.dtype != np.float32:
            raise ValueError(f"confidence must be ({n},) float32, got {self.confidence.dtype}")
        if self.class_id.shape != (n,) or self.class_id.dtype != np.int64:
            raise ValueError(f"class_id must be ({n},) int64, got {self.class_id.dtype}")
        if len(self.labels) != n:
            raise ValueError(f"labels must have {n} entries, got {len(self.labels)}")

    @classmethod
    def empty(cls) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros((0,), np.float32),
            class_id=np.zeros((0,), np.int64),
            labels=(),
        )

    @classmethod
    def from_lists(
        cls,
        boxes: Sequence[Sequence[float]],
        scores: Sequence[float],
        class_ids: Sequence[int],
        labels: Sequence[str],
    ) -> Detections:
        """Builds detections from plain Python sequences."""
        if len(scores) == 0:
            return cls.empty()
        return cls(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
            confidence=np.asarray(scores, np.float32),
            class_id=np.asarray(class_ids, np.int64),
            labels=tuple(labels),
        )

    def __len__(self) -> int:
        return len(self.confidence)

    def select(self, keep: np.ndarray) -> Detections:
        """Returns the rows where the boolean mask ``keep`` is true."""
        return Detections(
            xyxy=self.xyxy[keep],
            confidence=self.confidence[keep],
            class_id=self.class_id[keep],
            labels=tuple(label for label, k in zip(self.labels, keep, strict=True) if k),
        )

    def scaled(self, x: float, y: float) -> Detections:
        """The boxes in the pixels of an image ``x`` times wider and ``y`` times taller
        (detections of a reduced decode, back in the original image's pixels)."""
        if x == 1 and y == 1:
            return self
        factors = np.array([x, y, x, y], np.float32)
        return Detections(self.xyxy * factors, self.confidence, self.class_id, self.labels)

    def filter(self, threshold: float, allowed_labels: frozenset[str] | None = None) -> Detections:
        """Keeps detections scoring above ``threshold`` (strictly, as transformers
        does) whose label is in ``allowed_labels`` when one is given."""
        keep = self.confidence > threshold
        if allowed_labels is not None:
            keep &= np.fromiter((label in allowed_labels for label in self.labels), bool, len(self))
        if keep.all():
            return self
        return self.select(keep)
