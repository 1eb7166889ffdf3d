"""Precision auto: bf16 on CPUs that compute it natively, once its detections agree with fp32's."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from stream_detect.config import ModelConfig
from stream_detect.detect import bf16_probe
from stream_detect.detect.backends import installed
from stream_detect.detect.device import Device
from stream_detect.detect.hf import HFDetector

from .helpers import detections, project_warnings

needs_openvino = pytest.mark.skipif(not installed("openvino"), reason="OpenVINO is not installed here")


def pretend_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """This CPU as one with AMX: OpenVINO's plugin takes the bf16 hint and, lacking the instructions,
    computes in fp32, so the probe compares real runs of both compiled models."""
    monkeypatch.setattr(Device, "computes_bf16_natively", lambda self: True)
    monkeypatch.setattr(Device, "supports", lambda self, precision: True)


def test_the_comparison_takes_the_strongest_detections_and_names_how_far_they_are() -> None:
    reference = detections([[10, 10, 50, 50], [60, 60, 90, 90], [0, 0, 5, 5]], [0.9, 0.8, 0.01],
                           ["cat", "dog", "cat"])
    close = detections([[60.5, 60, 90, 90], [10, 10.3, 50, 50]], [0.801, 0.9015], ["dog", "cat"])
    result = bf16_probe.compare(reference, close, compared=2)
    assert result.agrees and result.compared == 2
    assert result.box_px == pytest.approx(0.5) and result.score == pytest.approx(0.0015, abs=1e-6)

    far = detections([[60, 60, 90, 92], [10, 10, 50, 50]], [0.8, 0.9], ["dog", "cat"])
    assert not bf16_probe.compare(reference, far, compared=2).agrees
    unsure = detections([[60, 60, 90, 90], [10, 10, 50, 50]], [0.79, 0.9], ["dog", "cat"])
    assert not bf16_probe.compare(reference, unsure, compared=2).agrees
    relabelled = detections([[60, 60, 90, 90], [10, 10, 50, 50]], [0.8, 0.9], ["dog", "dog"])
    result = bf16_probe.compare(reference, relabelled, compared=2)
    assert not result.agrees and result.unmatched == 1 and "without a counterpart" in result.describe()


@needs_openvino
@pytest.mark.timeout(300)
def test_bf16_is_taken_where_the_cpu_computes_it_and_it_agrees(
    trained_detr_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pretend_native_bf16(monkeypatch)
    with caplog.at_level(logging.INFO):
        detector = HFDetector.load(ModelConfig(id=str(trained_detr_dir), device="cpu"))
    try:
        assert detector.backend.name == "openvino bf16"
        assert any("agrees with fp32" in r.getMessage() for r in caplog.records)
        assert not project_warnings(caplog)
    finally:
        detector.close()


@needs_openvino
@pytest.mark.timeout(300)
def test_a_probe_that_disagrees_keeps_fp32_with_one_warning_line(
    trained_detr_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pretend_native_bf16(monkeypatch)
    monkeypatch.setattr(bf16_probe, "SCORE_TOLERANCE", -1.0)  # no answer can be that close
    with caplog.at_level(logging.INFO):
        detector = HFDetector.load(ModelConfig(id=str(trained_detr_dir), device="cpu"))
    try:
        assert detector.backend.name == "openvino fp32"
        warnings = project_warnings(caplog)
        assert len(warnings) == 1 and "differ from fp32" in warnings[0] and "running in fp32" in warnings[0]
        assert "\n" not in warnings[0]
        assert detector.detect([bf16_probe.probe_image()], 0.0)[0].confidence.size > 0
    finally:
        detector.close()


@needs_openvino
@pytest.mark.timeout(300)
def test_a_cpu_without_native_bf16_runs_fp32_without_a_probe(
    trained_detr_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(Device, "computes_bf16_natively", lambda self: False)
    with caplog.at_level(logging.INFO):
        detector = HFDetector.load(ModelConfig(id=str(trained_detr_dir), device="cpu"))
    try:
        assert detector.backend.name == "openvino fp32"
        assert not any("probe" in r.getMessage() for r in caplog.records)
    finally:
        detector.close()
