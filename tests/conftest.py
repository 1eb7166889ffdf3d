"""Session-wide fixtures: tiny DETR checkpoints built once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from .checkpoints import build_tiny_detr

TRAIN_STEPS = 400


@pytest.fixture(scope="session")
def tiny_detr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DETR with random weights and real label names."""
    return build_tiny_detr(tmp_path_factory.mktemp("models") / "tiny-detr")


@pytest.fixture(scope="session")
def trained_detr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DETR trained briefly on generated shapes: its outputs depend on the image."""
    return build_tiny_detr(tmp_path_factory.mktemp("models") / "trained-detr", train_steps=TRAIN_STEPS)


@pytest.fixture(scope="session")
def timm_detr_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DETR whose config has the shape of facebook/detr-resnet-50's: a timm backbone."""
    return build_tiny_detr(tmp_path_factory.mktemp("models") / "timm-detr", use_timm_backbone=True)
