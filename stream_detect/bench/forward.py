"""(a) The bare model: forward calls per second for each backend, batch of one frame."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..detect.backends import Backend, BackendOptions, available_kinds, build_backend
from ..detect.backends.quantize import Calibration
from ..detect.device import Device
from ..detect.preprocess import TorchPreprocessor
from ..errors import ModelError
from .timing import median_ms, timed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForwardResult:
    """One backend's bare forward time (median of ``runs`` calls after one warm-up call)."""

    backend: str
    options: BackendOptions
    ms: float
    setup_s: float
    first_call_s: float
    runs: int

    @property
    def fps(self) -> float:
        return 1000 / self.ms


def variants(device: Device, kinds: Sequence[str], include_compile: bool,
             calibration: Calibration | None = None) -> list[BackendOptions]:
    """The backend configurations worth a line on ``device``, among ``kinds`` (int8 with ``calibration``)."""
    found = available_kinds(device)
    chosen: list[BackendOptions] = []
    if "torch" in kinds:
        chosen.append(BackendOptions("torch", "fp32", channels_last=False))
        chosen.append(BackendOptions("torch", "fp32", channels_last=True))
        for precision in ("bf16", "fp16"):
            if device.supports(precision) and (device.is_cuda or precision == "bf16"):
                chosen.append(BackendOptions("torch", precision, channels_last=True))
        if include_compile:
            chosen.append(BackendOptions("torch", "fp32", channels_last=True, compile=True))
    if "onnx" in kinds and "onnx" in found:
        chosen.append(BackendOptions("onnx", "fp32"))
    if "openvino" in kinds and "openvino" in found:
        chosen.append(BackendOptions("openvino", "fp32"))
        if device.supports("bf16"):
            chosen.append(BackendOptions("openvino", "bf16"))
        if calibration is not None and device.type == "cpu":
            chosen.append(BackendOptions("openvino", "int8", calibration=calibration))
    return chosen


def measure_forward(model: Any, preprocessor: TorchPreprocessor, device: Device, options: BackendOptions,
                    image: np.ndarray, runs: int) -> ForwardResult | None:
    """Builds one backend and times it (:func:`time_backend`); None if it cannot run here."""
    try:
        backend, setup_s = timed(lambda: build_backend(model, device, options))
    except ModelError as error:
        log.warning("bench: skipping %s/%s: %s", options.kind, options.precision, error)
        return None
    try:
        return time_backend(backend, options, setup_s, preprocessor, image, runs)
    finally:
        backend.close()


def time_backend(backend: Backend, options: BackendOptions, setup_s: float, preprocessor: TorchPreprocessor,
                 image: np.ndarray, runs: int) -> ForwardResult:
    """Times ``runs`` forward calls of ``backend`` on one preprocessed frame, after one warm-up call."""
    preprocessor.channels_last = bool(getattr(backend, "channels_last", False))
    inputs = preprocessor([image])
    _, first_call_s = timed(lambda: backend(inputs))
    times = [timed(lambda: backend(inputs))[1] for _ in range(runs)]
    return ForwardResult(backend.name, options, median_ms(times), setup_s, first_call_s, runs)
