"""Every public JSON shape, in one place (pure functions, no I/O): the websocket's messages (detections,
status, event, counts), which are also the lines of the recordings' and ``annotate``'s JSON Lines and
the events of ``GET /events``, webhooks and MQTT. The published schema is ``schema/messages.schema.json``.

The detection element is exactly the Hugging Face Inference API's
object-detection element::

    {"label": "cat", "score": 0.9987, "box": {"xmin": 12, "ymin": 50, "xmax": 310, "ymax": 470}}

Boxes are truncated to integers the way ``transformers.pipeline`` does
(``tensor.int()``), so answers equal the pipeline's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .records import Detections, Frame

SCHEMA_VERSION = 1

HFElement = dict[str, Any]


def to_hf_elements(detections: Detections,
                   track_ids: Sequence[int | None] | None = None) -> list[HFElement]:
    """Returns the Hugging Face object-detection list for ``detections``.

    ``track_ids`` (a tracked stream's websocket messages only): each element
    with an id also carries ``"track_id"``; elements without one are left as
    they are. The HTTP inference API never passes them: its answers stay
    exactly the Hugging Face shape.
    """
    boxes = np.trunc(detections.xyxy).astype(np.int64).tolist()
    scores = detections.confidence.tolist()
    elements: list[HFElement] = [
        {
            "label": label,
            "score": round(score, 5),
            "box": {"xmin": box[0], "ymin": box[1], "xmax": box[2], "ymax": box[3]},
        }
        for label, score, box in zip(detections.labels, scores, boxes, strict=True)
    ]
    if track_ids is not None:
        for element, track_id in zip(elements, track_ids, strict=True):
            if track_id is not None:
                element["track_id"] = track_id
    return elements


def detections_message(
    frame: Frame, detections: Detections, model_id: str, emitted_at: float,
    track_ids: Sequence[int | None] | None = None, still: bool = False,
) -> dict[str, Any]:
    """The websocket message for one processed frame (see ``schema/messages.schema.json``).

    ``still``: the frame skipped the detector (nothing moved); its detections are the last ones, carried
    over, and the message says so with ``"still": true`` (absent otherwise)."""
    message = {
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
        "detections": to_hf_elements(detections, track_ids),
    }
    if still:
        message["still"] = True
    return message


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


def counts_message(stream_id: str, at: float, zones: Any, lines: Any) -> dict[str, Any]:
    """The websocket message of a stream's counts: ``zones`` (zone -> label -> objects inside now) and
    ``lines`` (line -> ``in``, ``out`` and the same per label, since the stream started)."""
    return {"type": "counts", "version": SCHEMA_VERSION, "stream": stream_id, "at": round(at, 6),
            "zones": zones, "lines": lines}


def event_message(*, event_id: str, kind: str, stream_id: str, at: float, frame: int, track_id: int, label: str,
                  score: float, box: tuple[int, int, int, int], zone: str | None, line: str | None,
                  direction: str | None, duration_s: float | None) -> dict[str, Any]:
    """The event envelope: one shape for every kind (``box`` in integer pixels)."""
    xmin, ymin, xmax, ymax = box
    return {
        "type": "event",
        "version": SCHEMA_VERSION,
        "id": event_id,
        "kind": kind,
        "stream": stream_id,
        "at": round(at, 6),
        "frame": frame,
        "track_id": track_id,
        "label": label,
        "score": round(score, 5),
        "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
        "zone": zone,
        "line": line,
        "direction": direction,
        "duration_s": None if duration_s is None else round(duration_s, 6),
    }
