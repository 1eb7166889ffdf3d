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


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's commands keep their state (streams changed at run time, the event history) in a
    directory of their own, never in the user's: processes started by the test inherit it."""
    directory = tmp_path_factory.mktemp("data")
    monkeypatch.setenv("XDG_DATA_HOME", str(directory))
    return directory / "stream-detect"


@pytest.fixture(scope="session")
def _conversion_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("converted")


@pytest.fixture(autouse=True)
def own_conversion_cache(_conversion_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Models converted by the tests (OpenVINO, ONNX) are cached for the session, never in the user's
    cache: a checkpoint converted by one test is read back by the next, as on a user's second start."""
    monkeypatch.setenv("STREAM_DETECT_CACHE", str(_conversion_cache))
    return _conversion_cache
