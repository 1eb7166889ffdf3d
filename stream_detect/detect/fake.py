"""A fake detector for fast tests and demos of the plumbing.

It finds the region of the image that differs most from the image's mean
colour and reports a box around it, so its answers follow what is in the
frame without any model. ``delay_s`` simulates a slow device.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from ..errors import InputError
from ..records import Detections


class FakeDetector:
    """Deterministic, image-dependent detections without a model.

    Args:
        delay_s: Sleep per batch, to simulate a slow detector.
        boxes: Detections per image (copies of the main box, shifted), for
            tests that need large messages.
        label: Label of every detection.
        model_id: Reported model id.
    """

    def __init__(self, delay_s: float = 0.0, boxes: int = 1, label: str = "object", model_id: str = "fake") -> None:
        self.delay_s = delay_s
        self.boxes = boxes
        self.label = label
        self.model_id = model_id
        self.batch_sizes: list[int] = []
        self._lock = threading.Lock()

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        with self._lock:
            self.batch_sizes.append(len(images))
        if self.delay_s:
            time.sleep(self.delay_s)
        return [self._detect_one(image).filter(threshold) for image in images]

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The fake looks at the image as it is: every size from 1x1 up."""
        if height < 1 or width < 1:
            raise InputError(f"a {width}x{height} image has no pixels")
        return height, width

    def _detect_one(self, image: np.ndarray) -> Detections:
        height, width = image.shape[:2]
        small = image[::4, ::4].astype(np.int16)
        distance = np.abs(small - small.reshape(-1, 3).mean(axis=0)).sum(axis=2)
        mask = distance > distance.mean() + distance.std()
        if not mask.any():
            return Detections.empty()
        ys, xs = np.nonzero(mask)
        box = [xs.min() * 4, ys.min() * 4, min(width, xs.max() * 4 + 4), min(height, ys.max() * 4 + 4)]
        score = float(min(0.99, 0.5 + mask.mean()))
        boxes = [[box[0], box[1] + i % 4, box[2], box[3]] for i in range(self.boxes)]
        return Detections.from_lists(boxes, [score] * self.boxes, [0] * self.boxes, [self.label] * self.boxes)

    def close(self) -> None:
        pass


def fixed_cost_detector(model: object, delay_s: float = 0.05, model_id: str = "fake") -> FakeDetector:
    """A loader (``functools.partial(fixed_cost_detector, delay_s=...)``) of a fake that costs ``delay_s`` a batch
    whatever its size and the machine: the cluster's tests and scaling benchmark measure the system with it,
    not this machine's cores. Importable by name, so a cluster's nodes can load it."""
    return FakeDetector(delay_s=delay_s, model_id=model_id)
