"""What every detector implements: a batch of images in, a batch of detections out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from ..records import Detections


class Detector(Protocol):
    """Turns a batch of images into one :class:`Detections` per image.

    ``detect`` is called from the detector worker thread only. It returns every
    detection scoring above ``threshold``; per-request thresholds and label
    allow-lists are applied by the worker on top.
    """

    model_id: str

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        """Args:
            images: ``(H, W, 3) uint8`` RGB arrays; sizes may differ.
            threshold: Minimum score (exclusive) of the returned detections.
        """
        ...

    def close(self) -> None: ...
