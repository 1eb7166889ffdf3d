"""Detectors: the real Hugging Face one, a fake for tests, and the batching worker."""

from __future__ import annotations

from ..config import ModelConfig
from .base import Detector


def load_detector(config: ModelConfig) -> Detector:
    """Loads the detector ``config`` names (hub id or local directory)."""
    from .hf import HFDetector  # torch and transformers load only when a model is needed

    return HFDetector.load(config)


__all__ = ["Detector", "load_detector"]
