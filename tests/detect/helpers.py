"""Helpers the detector's tests share."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from stream_detect.records import Detections


def project_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The project's warning lines (transformers warns of its own about the tiny checkpoints' configs)."""
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("stream_detect")]


def detections(boxes: list[list[float]], scores: list[float], labels: list[str]) -> Detections:
    """Detections with these boxes, scores and labels (class ids left at 0)."""
    return Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), confidence=np.array(scores, np.float32),
                      class_id=np.zeros(len(labels), np.int64), labels=tuple(labels))
