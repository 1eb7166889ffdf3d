"""``stream-detect detect IMAGE...``: detections of still images as JSON."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import orjson

from ..compose import build_still_images
from ..config import ModelConfig
from ..detect import load_detector
from ..images import decode_image_file
from ..serialize import to_hf_elements

ANSWER_TIMEOUT_S = 3600.0  # a hub download and a slow CPU: generous, only against a hang


def detect(config: ModelConfig, paths: Sequence[str]) -> int:
    """Prints the HF detection list of one image, or a path -> list mapping for several.

    Raises:
        ModelError: the model cannot be loaded or run (one line).
    """
    images = [decode_image_file(path) for path in paths]
    detector = load_detector(config)  # here, not on the worker: a model that cannot load is one line
    pipeline, lane = build_still_images(config, lambda model: detector, capacity=len(images))
    with pipeline:
        futures = [lane.submit(image, config.threshold) for image in images]
        results = [future.result(ANSWER_TIMEOUT_S) for future in futures]
    elements = [to_hf_elements(result) for result in results]
    output: object = elements[0] if len(paths) == 1 else dict(zip(paths, elements, strict=True))
    sys.stdout.write(orjson.dumps(output, option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0
