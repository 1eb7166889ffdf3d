"""Detections to the public JSON shapes (pure functions, no I/O).

The detection element is exactly the Hugging Face Inference API's
object-detection element::

    {"label": "cat", "score": 0.9987, "box": {"xmin": 12, "ymin": 50, "xmax": 310, "ymax": 470}}

Boxes are truncated to integers the way ``transformers.pipeline`` does
(``tensor.int()``), so answers equal the pipeline's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .records import Detections, Frame

SCHEMA_VERSION = 1

HFElement = dict[str, Any]


def to_hf_elements(detections: Detections) -> list[HFElement]:
    """Returns the Hugging Face object-detection list for ``detections``."""
    boxes = np.trunc(detections.xyxy).astype(np.int64).tolist()
    scores = detections.confidence.tolist()
    return [
        {
            "label": label,
            "score": round(score, 5),
            "box": {"xmin": box[0], "ymin": box[1], "xmax": box[2], "ymax": box[3]},
        }
        for label, score, box in zip(detections.labels, scores, boxes, strict=True)
    ]


def detections_message(
    frame: Frame, detections: Detections, model_id: str, emitted_at: float
) -> dict[str, Any]:
    """The websocket message for one processed frame (see ``schema/messages.schema.json``)."""
    return {
        "type": "detections",
        "version": SCHEMA_VERSION,
        "stream": frame.stream_id,
        "frame": frame.index,
        "pts": None if frame.pts is None else round(frame.pts, 6),
        "captured_at": round(frame.captured_at, 6),
        "emitted_at": round(emitted_at, 6),
        "width": frame.width,
        "height": frame.height,
        "model": model_id,
        "detections": to_hf_elements(detections),
    }


def status_message(stream_id: str, state: str, at: float, detail: str | None = None) -> dict[str, Any]:
    """The websocket message announcing a stream's new state."""
    message: dict[str, Any] = {
        "type": "status",
        "version": SCHEMA_VERSION,
        "stream": stream_id,
        "state": state,
        "at": round(at, 6),
    }
    if detail:
        message["detail"] = detail
    return message
