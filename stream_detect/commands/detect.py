"""``stream-detect detect IMAGE...``: detections of still images as JSON."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import orjson

from ..config import ModelConfig
from ..detect import load_detector
from ..images import decode_image_file
from ..serialize import to_hf_elements


def detect(config: ModelConfig, paths: Sequence[str]) -> int:
    """Prints the HF detection list of one image, or a path -> list mapping for several."""
    images: list[np.ndarray] = [decode_image_file(path) for path in paths]
    detector = load_detector(config)
    allowed = frozenset(config.labels) if config.labels else None
    try:
        results = []
        for start in range(0, len(images), config.max_batch_size):
            chunk = images[start : start + config.max_batch_size]
            results.extend(detector.detect(chunk, config.threshold))
    finally:
        detector.close()
    elements = [to_hf_elements(r.filter(config.threshold, allowed)) for r in results]
    output: object = elements[0] if len(paths) == 1 else dict(zip(paths, elements, strict=True))
    sys.stdout.write(orjson.dumps(output, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
