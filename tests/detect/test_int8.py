"""Precision int8: OpenVINO quantized with NNCF, only when asked for, and only when it finds what fp32 finds."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream_detect.cli import build_parser, config_from_args
from stream_detect.config import ModelConfig
from stream_detect.detect import int8
from stream_detect.detect.backends import BackendOptions, build_backend, installed
from stream_detect.detect.device import resolve_device
from stream_detect.detect.hf import HFDetector
from stream_detect.errors import ConfigError, ModelError
from stream_detect.evaluation import Truth, precision_recall
from stream_detect.sources.synthetic import SyntheticScene

from .helpers import detections, project_warnings
from .test_hf_detector import scenes

needs_int8 = pytest.mark.skipif(not installed("openvino") or importlib.util.find_spec("nncf") is None,
                                reason="OpenVINO and NNCF are not installed here")
CPU = resolve_device("cpu")
# The trained test checkpoint scores its objects low (about 0.23): compared at a threshold below that.
TRAINED_THRESHOLD = 0.1


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Frames like the trained checkpoint's, as a user's directory of camera images (PNG)."""
    directory = tmp_path_factory.mktemp("calibration")
    for index, image in enumerate(scenes([(320, 240)] * 8, seed=9)):
        cv2.imwrite(str(directory / f"frame-{index:02d}.png"), image[:, :, ::-1])
    (directory / "notes.txt").write_text("not an image: left out")
    return directory


def test_the_comparison_pairs_objects_and_names_what_differs() -> None:
    reference = detections([[10, 10, 50, 50], [60, 60, 90, 90], [0, 0, 8, 8]], [0.9, 0.8, 0.52],
                           ["cat", "dog", "cat"])
    same = detections([[11, 10, 50, 50], [60, 60, 90, 91]], [0.88, 0.83], ["cat", "dog"])
    result = int8.compare(reference, same, threshold=0.5)
    assert result.agrees, result.describe()  # the borderline 0.52 cat may be missing
    assert result.matched == 2 and result.min_iou > 0.95

    lost = detections([[11, 10, 50, 50]], [0.88], ["cat"])
    result = int8.compare(reference, lost, threshold=0.5)
    assert not result.agrees and result.missing == 1 and "found by fp32 only" in result.describe()
    invented = detections([[11, 10, 50, 50], [60, 60, 90, 91], [100, 100, 140, 140]], [0.88, 0.83, 0.7],
                          ["cat", "dog", "dog"])
    result = int8.compare(reference, invented, threshold=0.5)
    assert not result.agrees and result.extra == 1 and "found by int8 only" in result.describe()
    moved = detections([[10, 10, 50, 50], [66, 60, 96, 90]], [0.9, 0.8], ["cat", "dog"])
    assert not int8.compare(reference, moved, threshold=0.5).agrees  # IoU 0.67
    unsure = detections([[10, 10, 50, 50], [60, 60, 90, 90]], [0.9, 0.62], ["cat", "dog"])
    assert not int8.compare(reference, unsure, threshold=0.5).agrees  # 0.18 apart


def test_calibration_images_come_from_a_directory_or_the_synthetic_camera(calibration_dir: Path,
                                                                          tmp_path: Path) -> None:
    images, digest = int8.calibration_images(calibration_dir, count=4)
    assert len(images) == 4 and images[0].shape == (240, 320, 3) and digest.startswith("sha256:")
    assert int8.calibration_images(calibration_dir, count=4)[1] == digest
    frames, synthetic = int8.calibration_images(None, count=3)
    assert len(frames) == 3 and frames[0].shape == (720, 1280, 3) and synthetic == "synthetic-3"
    assert not np.array_equal(frames[0], frames[1])

    with pytest.raises(ModelError, match="is not a directory"):
        int8.calibration_images(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="holds no image"):
        int8.calibration_images(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ModelError, match=r"cannot read broken\.jpg"):
        int8.calibration_images(tmp_path / "bad")


def test_int8_is_asked_for_and_set_up_with_clear_errors(calibration_dir: Path) -> None:
    args = build_parser().parse_args(["detect", "x.jpg", "--precision", "int8", "--calibration", str(calibration_dir)])
    model = config_from_args(args).model
    assert model.precision == "int8" and model.calibration == str(calibration_dir)
    with pytest.raises((ConfigError, ValueError), match="calibration applies to precision int8 only"):
        ModelConfig(calibration=str(calibration_dir))
    with pytest.raises(ModelError, match="int8 runs on the openvino backend only, not torch"):
        build_backend(object(), CPU, BackendOptions(kind="torch", precision="int8"))
    if installed("onnx"):
        with pytest.raises(ModelError, match="not onnx"):
            build_backend(object(), CPU, BackendOptions(kind="onnx", precision="int8"))


@pytest.mark.skipif(not installed("openvino"), reason="OpenVINO is not installed here")
def test_int8_without_nncf_is_one_line_saying_how_to_install_it(tiny_detr_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    with pytest.raises(ModelError) as raised:
        HFDetector.load(ModelConfig(id=str(tiny_detr_dir), device="cpu", precision="int8"))
    assert str(raised.value) == "precision int8 needs NNCF: pip install 'stream-detect[int8]'"


@needs_int8
@pytest.mark.timeout(300)
def test_int8_finds_what_fp32_finds_on_the_trained_checkpoint(
    trained_detr_dir: Path, calibration_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = ModelConfig(id=str(trained_detr_dir), device="cpu", precision="int8", threshold=TRAINED_THRESHOLD,
                         calibration=str(calibration_dir))
    with caplog.at_level(logging.INFO):
        detector = HFDetector.load(config)
    reference = HFDetector.load(ModelConfig(id=str(trained_detr_dir), device="cpu", backend="torch",
                                            precision="fp32"))
    try:
        assert detector.backend.name == "openvino int8"
        messages = [r.getMessage() for r in caplog.records]
        assert any("quantized the model to int8 on 8 frames" in m for m in messages)
        assert any("int8 finds what fp32 finds" in m and "running in int8" in m for m in messages)
        assert not project_warnings(caplog)
        low = TRAINED_THRESHOLD - int8.SCORE_BAND
        frames = scenes([(320, 240), (320, 240), (200, 300), (160, 160), (640, 360)] * 2, seed=5)
        total = int8.Agreement(0, 0, 0, 0, 1.0, 0.0)
        for frame in frames:
            total = total + int8.compare(reference.detect([frame], low)[0], detector.detect([frame], low)[0],
                                         TRAINED_THRESHOLD)
        assert total.matched >= 2 * len(frames), "the comparison must compare something"
        assert total.agrees, total.describe()
    finally:
        detector.close()
        reference.close()


@needs_int8
@pytest.mark.timeout(300)
def test_int8_of_the_demo_model_finds_the_synthetic_cameras_shapes_as_fp32_does() -> None:
    """The demo model detects like a real detector: int8's precision and recall against the synthetic
    camera's ground truth stay within 3 points of fp32's."""
    quantized = HFDetector.load(ModelConfig(id="demo", device="cpu", precision="int8"))
    reference = HFDetector.load(ModelConfig(id="demo", device="cpu", backend="openvino", precision="fp32"))
    try:
        assert quantized.backend.name == "openvino int8"
        scene = SyntheticScene(640, 360, seed=11)
        frames, truths = [], []
        for _ in range(40):
            image, truth = scene.next_frame()
            frames.append(image)
            truths.append([Truth(t.label, tuple(float(v) for v in t.box)) for t in truth])  # type: ignore[arg-type]
        fp32 = precision_recall([reference.detect([f], 0.5)[0] for f in frames], truths)
        ours = precision_recall([quantized.detect([f], 0.5)[0] for f in frames], truths)
        assert fp32[1] >= 0.8, f"the demo model should find the shapes in fp32: {fp32}"
        assert ours[0] >= fp32[0] - 0.03 and ours[1] >= fp32[1] - 0.03, f"int8 {ours} against fp32 {fp32}"
    finally:
        quantized.close()
        reference.close()


@needs_int8
@pytest.mark.timeout(300)
def test_int8_that_disagrees_with_fp32_runs_in_fp32_with_one_warning_line(
    trained_detr_dir: Path, calibration_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = ModelConfig(id=str(trained_detr_dir), device="cpu", precision="int8", threshold=TRAINED_THRESHOLD,
                         calibration=str(calibration_dir))
    HFDetector.load(config).close()  # quantized now, or read from the cache
    caplog.clear()
    monkeypatch.setattr(int8, "SCORE_TOLERANCE", -1.0)  # no answer can be that close
    with caplog.at_level(logging.INFO):
        detector = HFDetector.load(config)
    try:
        assert detector.backend.name == "openvino fp32"
        warnings = project_warnings(caplog)
        assert len(warnings) == 1 and "int8 detections differ from fp32's" in warnings[0]
        assert warnings[0].endswith("running in fp32") and "\n" not in warnings[0]
        # A second start reads the quantized model from the conversion cache.
        assert not any("quantized the model" in r.getMessage() for r in caplog.records)
    finally:
        detector.close()


@needs_int8
@pytest.mark.timeout(300)
def test_detect_in_int8_prints_only_its_answer_on_standard_output(tiny_detr_dir: Path, tmp_path: Path) -> None:
    """NNCF writes progress bars and log lines to standard output: none of it reaches detect's JSON."""
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), scenes([(320, 240)], seed=3)[0])
    done = subprocess.run(
        [sys.executable, "-m", "stream_detect", "detect", str(image), "--model", str(tiny_detr_dir),
         "--device", "cpu", "--precision", "int8"],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    assert isinstance(json.loads(done.stdout), list), done.stdout[:500]
    assert "int8" in done.stderr
