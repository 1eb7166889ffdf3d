"""The Hugging Face detector against transformers' own pipeline."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stream_detect.config import ModelConfig
from stream_detect.detect.hf import HFDetector
from stream_detect.errors import ModelError
from stream_detect.serialize import to_hf_elements

from ..checkpoints import draw_scene


def scenes(sizes: list[tuple[int, int]], seed: int = 7) -> list[np.ndarray]:
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for width, height in sizes:
        image, _ = draw_scene(rng)
        images.append(np.ascontiguousarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)))
    return images


def _distance(mine: dict, other: dict) -> float:
    if other["label"] != mine["label"]:
        return float("inf")
    return max(abs(mine["box"][k] - other["box"][k]) for k in mine["box"]) + abs(mine["score"] - other["score"]) * 100


def assert_same_detections(ours: list[dict], theirs: list[dict]) -> None:
    """Labels equal, boxes within 2 px, scores within 0.01, order aside (greedy matching)."""
    assert len(ours) == len(theirs)
    remaining = list(theirs)
    for element in ours:
        best = min(remaining, key=lambda other, mine=element: _distance(mine, other))
        assert best["label"] == element["label"]
        assert all(abs(element["box"][k] - best["box"][k]) <= 2 for k in element["box"]), (element, best)
        assert abs(element["score"] - best["score"]) <= 0.01
        remaining.remove(best)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("backend", "precision"), [("auto", "auto"), ("torch", "fp32")],
                         ids=["defaults", "torch-fp32"])
def test_detections_equal_the_transformers_pipeline(trained_detr_dir: Path, backend: str, precision: str) -> None:
    from transformers import pipeline

    detector = HFDetector.load(ModelConfig(id=str(trained_detr_dir), device="cpu", backend=backend,  # type: ignore[arg-type]
                                           precision=precision))  # type: ignore[arg-type]
    reference = pipeline("object-detection", model=str(trained_detr_dir), device="cpu")
    images = scenes([(320, 240), (200, 300), (160, 160)])
    for threshold in (0.05, 0.2):
        ours = detector.detect(images, threshold)
        for image, detections in zip(images, ours, strict=True):
            theirs = reference(Image.fromarray(image), threshold=threshold)
            assert_same_detections(to_hf_elements(detections), theirs)
    assert sum(len(d) for d in detector.detect(images, 0.05)) > 0, "the comparison must compare something"


@pytest.mark.timeout(300)
def test_a_batch_equals_single_frames(trained_detr_dir: Path) -> None:
    detector = HFDetector.load(ModelConfig(id=str(trained_detr_dir), device="cpu"))
    images = scenes([(320, 240), (320, 240), (200, 300), (320, 240), (200, 300)], seed=3)
    batched = detector.detect(images, 0.05)
    for image, together in zip(images, batched, strict=True):
        alone = detector.detect([image], 0.05)[0]
        assert alone.labels == together.labels
        np.testing.assert_allclose(alone.xyxy, together.xyxy, atol=1e-3)
        np.testing.assert_allclose(alone.confidence, together.confidence, atol=1e-5)


@pytest.mark.timeout(120)
def test_timm_backbone_config_loads_as_published(timm_detr_dir: Path) -> None:
    config = json.loads((timm_detr_dir / "config.json").read_text())
    assert config["backbone_config"]["model_type"] == "timm_backbone" or config.get("use_timm_backbone")
    detector = HFDetector.load(ModelConfig(id=str(timm_detr_dir)))
    result = detector.detect(scenes([(320, 240)]), 0.0)
    assert len(result) == 1 and len(result[0]) > 0
    assert set(result[0].labels) <= {"circle", "square", "triangle"}


def test_model_ids(tiny_detr_dir: Path) -> None:
    assert ModelConfig(id=str(tiny_detr_dir)).served_id() == "tiny-detr"
    assert ModelConfig(id="facebook/detr-resnet-50").served_id() == "facebook/detr-resnet-50"
    assert ModelConfig(id=str(tiny_detr_dir), name="cams").served_id() == "cams"


def test_missing_model_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no such directory"):
        HFDetector.load(ModelConfig(id=str(tmp_path / "nope")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="empty"):
        HFDetector.load(ModelConfig(id=str(tmp_path / "empty")))


@pytest.mark.timeout(120)
def test_damaged_weights_are_one_clear_error(tiny_detr_dir: Path, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(tiny_detr_dir, damaged)
    weights = damaged / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # a download cut short
    with caplog.at_level(logging.WARNING), pytest.raises(ModelError, match="cannot load model") as raised:
        HFDetector.load(ModelConfig(id=str(damaged), device="cpu"))
    assert "\n" not in str(raised.value) and str(damaged) in str(raised.value)
    # Every backend would fail alike: no "trying the next backend" line before the error.
    assert not [r for r in caplog.records if r.name.startswith("stream_detect")], caplog.records
