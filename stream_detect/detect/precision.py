"""Which backend and precision a model runs in, chosen as it loads.

Precision ``auto`` takes bf16 on CPUs that compute it natively once its
detections agree with fp32's on the probe image
(:mod:`~stream_detect.detect.bf16_probe`); precision ``int8`` is kept only
when it finds what fp32 finds (:mod:`~stream_detect.detect.int8`). Either
check's verdict is kept in the conversion cache, per model, CPU, runtime
versions and tolerances: the same model on the same CPU and runtime answers
the same, so only the first start runs the check's forward passes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import ModelError
from ..records import Detections
from . import bf16_probe, int8
from .backends import Backend, BackendOptions, auto_kinds, build_backend
from .backends.cache import VERSIONED, CacheKey, library_versions
from .device import Device, cpu_signature

log = logging.getLogger(__name__)


def choose_backend(model: Any, processor: Any, device: Device, options: BackendOptions,
                   threshold: float = 0.5) -> Backend:
    """The backend ``options`` asks for, as a model loads: precision ``auto`` is bf16 where the CPU
    computes it natively and its detections agree with fp32's (:func:`_prefer_bf16`), else fp32; precision
    ``int8`` is kept only when it finds what fp32 finds at ``threshold`` (:func:`_checked_int8`)."""
    if options.precision == "auto":
        return _prefer_bf16(model, processor, device, options)
    backend = build_backend(model, device, options)
    if options.precision == "int8":
        backend = _checked_int8(model, processor, device, options, backend, threshold)
    return backend


def _detect_with(model: Any, processor: Any, device: Device, backend: Backend,
                 threshold: float) -> Callable[[np.ndarray], Detections]:
    """Detection with ``backend`` through the detector's own pre- and post-processing."""
    from .hf import HFDetector  # hf imports this module: it chooses the backend as a model loads

    detector = HFDetector(model, processor, device, "probe", backend)
    return lambda image: detector.detect([image], threshold)[0]


# The kinds whose bf16 twin the probe checks.
_BF16_KINDS = ("torch", "openvino")


def _bf16_check() -> str:
    """What the bf16 probe checks, with its tolerances (part of its verdict's key)."""
    return f"bf16 probe ({bf16_probe.BOX_TOLERANCE_PX} px, {bf16_probe.SCORE_TOLERANCE})"


def _prefer_bf16(model: Any, processor: Any, device: Device, options: BackendOptions) -> Backend:
    """Precision ``auto``: on a CPU that computes bf16 natively, the bf16 twin of the fp32 backend when its
    detections agree with fp32's on the probe image (:mod:`~stream_detect.detect.bf16_probe`), else fp32.

    When an earlier start kept the probe's verdict, only the backend it chose is built: a warm start
    neither compiles nor holds a twin it would close at once."""
    if device.type != "cpu" or not device.computes_bf16_natively():
        return build_backend(model, device, options)
    remembered = _as_remembered(model, device, options)
    if remembered is not None:
        return remembered
    backend = build_backend(model, device, options)
    if backend.kind not in _BF16_KINDS:
        return backend
    try:
        candidate = build_backend(model, device, replace(options, kind=backend.kind, precision="bf16"))
    except ModelError as error:
        log.warning("bf16 could not be set up (%s): running in fp32", error)
        return backend

    def check() -> tuple[bool, str]:
        result = bf16_probe.bf16_agrees(_detect_with(model, processor, device, backend, 0.0),
                                        _detect_with(model, processor, device, candidate, 0.0))
        return result.agrees, result.describe()

    agrees, described = _verdict(options, backend.kind, _bf16_check(), check)
    _say_bf16_choice(agrees, described)
    (backend if agrees else candidate).close()
    return candidate if agrees else backend


def _as_remembered(model: Any, device: Device, options: BackendOptions) -> Backend | None:
    """The backend an earlier start's probe chose for the kind ``options`` builds first (bf16 when it agreed,
    else fp32); None when no verdict is kept or that backend cannot be built (the full choice then runs, and
    says why)."""
    kind = options.kind if options.kind != "auto" else next(iter(auto_kinds(device)), "torch")
    key = _verdict_key(options, kind, _bf16_check())
    if kind not in _BF16_KINDS or key is None or options.cache is None:
        return None
    verdict = options.cache.recall(key, "the verdict of the bf16 probe")
    if verdict is None:
        return None
    agrees = bool(verdict.get("agrees"))
    try:
        backend = build_backend(model, device, replace(options, kind=kind, precision="bf16" if agrees else "fp32"))
    except ModelError:
        return None
    _say_bf16_choice(agrees, f"{verdict.get('described', '')}; as checked at an earlier start")
    return backend


def _say_bf16_choice(agrees: bool, described: str) -> None:
    """The one line saying what the probe chose: information when bf16 agrees, else a warning."""
    if agrees:
        log.info("bf16 agrees with fp32 on the probe image (%s): running in bf16", described)
    else:
        log.warning("bf16 detections differ from fp32's on the probe image (%s): running in fp32", described)


def _checked_int8(model: Any, processor: Any, device: Device, options: BackendOptions, backend: Backend,
                  threshold: float) -> Backend:
    """``backend`` (int8) when it finds the objects fp32 finds on the probe image and a few calibration
    frames (:func:`~stream_detect.detect.int8.int8_agrees`), else its fp32 twin, with one warning line."""
    built: list[Backend] = []

    def reference() -> Backend:
        if not built:
            built.append(build_backend(model, device, replace(options, kind=backend.kind, precision="fp32")))
        return built[0]

    def check() -> tuple[bool, str]:
        low = max(0.0, threshold - int8.SCORE_BAND)
        frames = options.calibration.images if options.calibration is not None else ()
        result = int8.int8_agrees(_detect_with(model, processor, device, reference(), low),
                                  _detect_with(model, processor, device, backend, low), threshold, frames)
        return result.agrees, result.describe()

    calibrated = options.calibration.digest if options.calibration is not None else "nothing"
    agrees, described = _verdict(options, backend.kind, f"int8 check at threshold {threshold} calibrated on "
                                 f"{calibrated} (IoU {int8.MIN_IOU}, scores {int8.SCORE_TOLERANCE}, "
                                 f"band {int8.SCORE_BAND})", check)
    if agrees:
        log.info("int8 finds what fp32 finds (%s): running in int8", described)
        for twin in built:
            twin.close()
        return backend
    log.warning("int8 detections differ from fp32's (%s): running in fp32", described)
    backend.close()
    return reference()


def _verdict(options: BackendOptions, kind: str, check: str, run: Callable[[], tuple[bool, str]]) -> tuple[bool, str]:
    """A precision check's verdict and what it found: ``run()`` once per model, CPU, runtime versions and
    ``check`` (what is checked, with its tolerances), then kept in the conversion cache beside the converted
    models (the same model on the same CPU and runtime answers the same; a warm start skips the check's
    forward passes); run every time without a cache."""
    key = _verdict_key(options, kind, check)
    if options.cache is None or key is None:
        return run()

    def compute() -> dict[str, Any]:
        agrees, described = run()
        return {"agrees": agrees, "described": described}

    result, remembered = options.cache.remember(key, compute, f"the verdict of the {check.split(' (')[0]}")
    described = str(result.get("described", ""))
    return bool(result.get("agrees")), described + ("; as checked at an earlier start" if remembered else "")


def _verdict_key(options: BackendOptions, kind: str, check: str) -> CacheKey | None:
    """Where a precision check's verdict is kept: per model, CPU, runtime versions and ``check`` (what is
    checked, with its tolerances); None without a model key (nothing is cached)."""
    if options.model_key is None:
        return None
    return CacheKey(f"{options.model_key} on CPU {cpu_signature()}", f"{kind} {check}", options.input_size,
                    versions=library_versions((*VERSIONED, "nncf")))


__all__ = ["choose_backend"]
