"""Every available inference backend answers what torch fp32 answers, on the same frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from stream_detect.config import ModelConfig
from stream_detect.detect.backends import auto_kinds, available_kinds, build_backend, installed
from stream_detect.detect.device import resolve_device
from stream_detect.detect.hf import HFDetector
from stream_detect.errors import ModelError
from stream_detect.records import Detections

from .test_hf_detector import scenes

THRESHOLD = 0.05
CPU = resolve_device("cpu")

# (backend, precision, compile, box tolerance px, score tolerance). Measured worst
# differences: fp32 backends 6e-5 px and 1e-7; bf16 0.7 px and 0.003.
VARIANTS = [
    ("torch", "fp32", False, 0.5, 1e-3),
    ("torch", "bf16", False, 4.0, 0.03),
    ("onnx", "fp32", False, 0.5, 1e-3),
    ("openvino", "fp32", False, 0.5, 1e-3),
    ("openvino", "bf16", False, 4.0, 0.03),
    # torch.compile's cold compile takes minutes on a 2-core machine: run with STREAM_DETECT_TEST_COMPILE=1.
    pytest.param("torch", "fp32", True, 0.5, 1e-3, marks=pytest.mark.skipif(
        not os.environ.get("STREAM_DETECT_TEST_COMPILE"), reason="set STREAM_DETECT_TEST_COMPILE=1 (slow)")),
]


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return scenes([(320, 240), (320, 240), (200, 300), (160, 160), (640, 360)], seed=5)


@pytest.fixture(scope="module")
def reference(trained_detr_dir: Path, frames: list[np.ndarray]) -> list[Detections]:
    """Eager torch, fp32, contiguous: the answer every backend must give."""
    from stream_detect.detect.backends import BackendOptions

    detector = HFDetector.load(ModelConfig(id=str(trained_detr_dir), device="cpu", backend="torch", precision="fp32"))
    detector.backend.close()
    detector.backend = build_backend(detector.model, CPU, BackendOptions("torch", "fp32", channels_last=False))
    detector.preprocessor.channels_last = False  # type: ignore[union-attr]
    results = detector.detect(frames, THRESHOLD)
    assert sum(len(r) for r in results) >= len(frames), "the comparison must compare something"
    return results


def assert_close(ours: Detections, theirs: Detections, box_px: float, score_tol: float) -> None:
    """Every detection clear of the threshold has a partner of the same label within the tolerances."""
    for mine, other, check in ((ours, theirs, True), (theirs, ours, False)):
        for box, score, label in zip(mine.xyxy, mine.confidence, mine.labels, strict=True):
            if score <= THRESHOLD + score_tol:
                continue  # may fall on either side of the threshold
            candidates = [
                i for i, other_label in enumerate(other.labels)
                if other_label == label and np.abs(other.xyxy[i] - box).max() <= box_px
                and abs(float(other.confidence[i]) - float(score)) <= score_tol
            ]
            listed = list(zip(other.labels, other.confidence.round(3), other.xyxy.round(1), strict=True))
            side = "ours" if check else "the reference"
            assert candidates, f"{label} {score:.3f} {box.round(1)} of {side} has no partner in {listed}"


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("kind", "precision", "compiled", "box_px", "score_tol"), VARIANTS,
                         ids=["torch-fp32", "torch-bf16", "onnx-fp32", "openvino-fp32", "openvino-bf16",
                              "torch-compiled"])
def test_backend_matches_torch_fp32(trained_detr_dir: Path, frames: list[np.ndarray], reference: list[Detections],
                                    kind: str, precision: str, compiled: bool, box_px: float,
                                    score_tol: float) -> None:
    if not installed(kind):
        pytest.skip(f"{kind} is not installed")
    if not CPU.supports(precision):
        pytest.skip(f"this CPU does not compute in {precision}")
    config = ModelConfig(id=str(trained_detr_dir), device="cpu", backend=kind, precision=precision,  # type: ignore[arg-type]
                         compile=compiled)
    detector = HFDetector.load(config)
    try:
        results = detector.detect(frames, THRESHOLD)
    finally:
        detector.close()
    for ours, theirs in zip(results, reference, strict=True):
        assert_close(ours, theirs, box_px, score_tol)


def test_auto_picks_the_fastest_installed_backend() -> None:
    assert auto_kinds(CPU) == [k for k in ("openvino", "torch") if installed(k)]
    assert available_kinds(CPU) == [k for k in ("torch", "onnx", "openvino") if installed(k)]


def test_unknown_backends_and_precisions_are_clear_errors() -> None:
    from stream_detect.detect.backends import BackendOptions

    with pytest.raises(ModelError, match="'tensorrt'"):
        build_backend(object(), CPU, BackendOptions(kind="tensorrt"))
    with pytest.raises(ModelError, match="'fp8'"):
        CPU.compute_dtype("fp8")


@pytest.mark.skipif(not installed("onnx"), reason="onnxruntime is not installed")
def test_onnx_refuses_reduced_precision() -> None:
    from stream_detect.detect.backends import BackendOptions

    with pytest.raises(ModelError, match="fp32"):
        build_backend(object(), CPU, BackendOptions(kind="onnx", precision="bf16"))


@pytest.mark.timeout(300)
@pytest.mark.skipif(not installed("onnx"), reason="onnxruntime is not installed")
def test_backends_built_one_after_another_on_one_model(tiny_detr_dir: Path) -> None:
    """What bench does: channels_last weights left by the torch backend must not break the export."""
    import torch
    from transformers import AutoModelForObjectDetection

    from stream_detect.detect.backends import BackendOptions
    from stream_detect.detect.preprocess import ModelInputs

    model = AutoModelForObjectDetection.from_pretrained(tiny_detr_dir).eval()
    inputs = ModelInputs(torch.randn(1, 3, 96, 128), torch.ones(1, 96, 128, dtype=torch.int64))
    eager = build_backend(model, CPU, BackendOptions("torch", "fp32", channels_last=True))
    expected = eager(inputs)
    exported = build_backend(model, CPU, BackendOptions("onnx", "fp32"))
    try:
        got = exported(inputs)
    finally:
        exported.close()
    torch.testing.assert_close(got.logits, expected.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got.pred_boxes, expected.pred_boxes, atol=1e-4, rtol=1e-4)
