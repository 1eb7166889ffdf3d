"""Converted models are cached on disk: the first start converts, later ones read, a damaged entry is rebuilt."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream_detect.config import ModelConfig
from stream_detect.detect.backends import installed
from stream_detect.detect.backends.cache import CacheKey, ConversionCache, CorruptEntry
from stream_detect.detect.device import resolve_device
from stream_detect.detect.hf import HFDetector

from .test_hf_detector import scenes

pytestmark = pytest.mark.skipif(not installed("openvino"), reason="OpenVINO is not installed here")

CONVERTED = "converted the model to OpenVINO"
READ = "read the converted model from the cache"
# The default backend without asking: bf16 where the CPU computes it natively (the probe agrees on
# the trained checkpoint: 0.1 px, 0.0002), fp32 elsewhere. A cold bf16 load reads the entry a second
# time for its bf16 twin; a warm one, which finds the probe's verdict, builds the bf16 backend alone.
DEFAULT = f"openvino {'bf16' if resolve_device('cpu').computes_bf16_natively() else 'fp32'}"


def _load(model_dir: Path, caplog: pytest.LogCaptureFixture) -> tuple[HFDetector, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.INFO):
        detector = HFDetector.load(ModelConfig(id=str(model_dir), device="cpu"))
    return detector, [record.getMessage() for record in caplog.records]


def _entry(cache: Path) -> Path:
    """The converted model's entry (a precision check's verdict has one of its own)."""
    entries = [path for path in cache.iterdir() if path.is_dir() and (path / "model.xml").exists()]
    assert len(entries) == 1, entries
    return entries[0]


@pytest.mark.timeout(300)
def test_the_second_start_reads_the_conversion_and_a_damaged_entry_is_rebuilt(
    trained_detr_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("STREAM_DETECT_CACHE", str(tmp_path / "cache"))
    images = scenes([(320, 240), (200, 300)], seed=9)

    first, messages = _load(trained_detr_dir, caplog)
    assert first.backend.name == DEFAULT
    assert sum(CONVERTED in m for m in messages) == 1, messages
    expected = first.detect(images, 0.05)
    assert sum(len(d) for d in expected) > 0, "the comparison must compare something"
    first.close()
    entry = _entry(tmp_path / "cache")
    assert {"model.xml", "model.bin", "manifest.json"} <= {p.name for p in entry.iterdir()}

    second, messages = _load(trained_detr_dir, caplog)
    assert any(READ in m for m in messages) and not any(CONVERTED in m for m in messages), messages
    assert not second.model.is_loaded, "a cached conversion needs no torch weights"
    if DEFAULT == "openvino bf16":  # the probe's verdict is remembered too: no probe, no fp32 twin
        assert any("agrees with fp32" in m and "as checked at an earlier start" in m for m in messages), messages
        assert sum(READ in m for m in messages) == 1, messages
    for ours, theirs in zip(second.detect(images, 0.05), expected, strict=True):
        assert ours.labels == theirs.labels
        np.testing.assert_allclose(ours.xyxy, theirs.xyxy, atol=1e-3)
    second.close()

    weights = entry / "model.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a disk that filled up mid-write
    third, messages = _load(trained_detr_dir, caplog)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("stream_detect")]
    assert len(warnings) == 1 and "damaged" in warnings[0].getMessage(), [r.getMessage() for r in warnings]
    assert "model.bin" in warnings[0].getMessage()
    assert any(CONVERTED in m for m in messages), messages
    for ours, theirs in zip(third.detect(images, 0.05), expected, strict=True):
        assert ours.labels == theirs.labels
    third.close()
    assert _entry(tmp_path / "cache") == entry


def test_another_model_or_library_version_is_another_entry() -> None:
    key = CacheKey("sha256:abc", "openvino", None, {"openvino": "2026.4.1"})
    assert key.digest() == CacheKey("sha256:abc", "openvino", None, {"openvino": "2026.4.1"}).digest()
    assert key.digest() != CacheKey("sha256:abd", "openvino", None, {"openvino": "2026.4.1"}).digest()
    assert key.digest() != CacheKey("sha256:abc", "onnx", None, {"openvino": "2026.4.1"}).digest()
    assert key.digest() != CacheKey("sha256:abc", "openvino", (640, 640), {"openvino": "2026.4.1"}).digest()
    assert key.digest() != CacheKey("sha256:abc", "openvino", None, {"openvino": "2026.5.0"}).digest()


def test_a_conversion_that_fails_leaves_nothing_behind(tmp_path: Path) -> None:
    cache = ConversionCache(tmp_path)
    key = CacheKey("sha256:abc", "openvino")

    def crash(directory: Path) -> None:
        (directory / "model.xml").write_text("<half")
        raise RuntimeError("the converter died")

    with pytest.raises(RuntimeError, match="converter died"):
        cache.load_or_build(key, crash, lambda directory: directory)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []

    built = cache.load_or_build(key, lambda d: (d / "model.xml").write_text("<whole/>"), lambda d: d)
    assert (built / "model.xml").read_text() == "<whole/>"
    calls: list[Path] = []
    again = cache.load_or_build(key, lambda d: calls.append(d), lambda d: d)
    assert again == built and calls == []


def test_an_entry_its_backend_cannot_read_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = ConversionCache(tmp_path)
    key = CacheKey("sha256:abc", "openvino")
    cache.load_or_build(key, lambda d: (d / "model.xml").write_text("old"), lambda d: d)
    builds: list[str] = []

    def read(directory: Path) -> str:
        text = (directory / "model.xml").read_text()
        if text == "old":
            raise CorruptEntry("written by a runtime that reads it no more")
        return text

    def build(directory: Path) -> None:
        builds.append("new")
        (directory / "model.xml").write_text("new")

    with caplog.at_level(logging.WARNING):
        assert cache.load_or_build(key, build, read) == "new"
    assert builds == ["new"] and len(caplog.records) == 1 and "reads it no more" in caplog.records[0].getMessage()


# As on a CPU with AMX: each process compiles an fp32 and a bf16 model into the entry's blob cache.
PRETEND_BF16 = (
    "from stream_detect.detect.device import Device\n"
    "Device.computes_bf16_natively = lambda self: True\n"
    "Device.supports = lambda self, precision: True\n"
)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("native_bf16", [False, True], ids=["this-cpu", "bf16-cpu"])
def test_two_processes_starting_at_once_convert_once(trained_detr_dir: Path, tmp_path: Path,
                                                     native_bf16: bool) -> None:
    script = (
        "import logging, sys\n"
        + (PRETEND_BF16 if native_bf16 else "")
        + "from stream_detect.config import ModelConfig\n"
        "from stream_detect.detect.hf import HFDetector\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout, format='%(message)s')\n"
        "detector = HFDetector.load(ModelConfig(id=sys.argv[1], device='cpu'))\n"
        "print('backend:', detector.backend.name)\n"
    )
    env = {**os.environ, "STREAM_DETECT_CACHE": str(tmp_path / "cache")}
    processes = [subprocess.Popen([sys.executable, "-c", script, str(trained_detr_dir)], env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    try:
        outputs = [process.communicate(timeout=240)[0] for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait(10)
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            pytest.fail(f"a process exited with {process.returncode}:\n{output}", pytrace=False)
    expected = "openvino bf16" if native_bf16 else DEFAULT
    assert all(f"backend: {expected}" in output for output in outputs), outputs
    assert sum(output.count(CONVERTED) for output in outputs) == 1, outputs
    assert all(CONVERTED in output or READ in output for output in outputs), outputs  # the other one read
    _entry(tmp_path / "cache")


def test_a_checks_verdict_is_computed_once_and_a_damaged_one_again(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    cache = ConversionCache(tmp_path)
    key = CacheKey("sha256:abc on CPU 0123", "openvino bf16 probe (0.7 px, 0.003)")
    calls: list[int] = []

    def check() -> dict[str, object]:
        calls.append(1)
        return {"agrees": True, "described": "5 strongest detections"}

    assert cache.recall(key, "the verdict") is None
    assert cache.remember(key, check, "the verdict") == ({"agrees": True, "described": "5 strongest detections"},
                                                         False)
    assert cache.recall(key, "the verdict") == {"agrees": True, "described": "5 strongest detections"}
    assert cache.remember(key, check, "the verdict") == ({"agrees": True, "described": "5 strongest detections"},
                                                         True)
    assert calls == [1]
    (cache.entry(key) / "result.json").write_text("[1, 2")
    assert cache.recall(key, "the verdict") is None  # not trusted; remember() warns as it checks again
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        result, remembered = cache.remember(key, check, "the verdict")
    assert result["agrees"] is True and not remembered and calls == [1, 1]
    assert sum("damaged" in r.getMessage() and "the verdict" in r.getMessage() for r in caplog.records) == 1
