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

    A detector may have a ``batch_limit`` (int): the largest batch worth
    collecting for one call. The worker collects no more, whatever
    ``max_batch_size`` says (see :class:`~stream_detect.detect.hf.HFDetector`).
    """

    model_id: str

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        """Args:
            images: ``(H, W, 3) uint8`` RGB arrays; sizes may differ.
            threshold: Minimum score (exclusive) of the returned detections.

        Raises:
            InputError: an image the model cannot take (see :meth:`input_size`).
        """
        ...

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(height, width)`` the model sees of an image this size, after its own resize.

        The API checks an image with it before decoding, and decodes large
        images reduced to no less than this.

        Raises:
            InputError: the model cannot take an image this size (its resize
                would round a side to 0).
        """
        ...

    def close(self) -> None: ...
