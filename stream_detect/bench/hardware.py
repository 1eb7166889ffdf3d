"""How near the forward pass runs to this CPU's limit, and where its time goes.

``python -m stream_detect.bench.hardware [--runs N] [--size WxH] [--precision P]``
builds DETR-R50's architecture (random weights, nothing downloaded), counts
the floating-point operations of one full-size forward pass with torch's
flop counter (a multiply-add is two), times the default backend on it, and
prints the achieved GFLOP/s beside the CPU's peak in that precision (cores x
clock x FLOP per cycle of its FMA units, :func:`cpu_peak_gflops`), then
OpenVINO's own per-layer profile grouped by layer type.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..detect.backends import BackendOptions, build_backend
from ..detect.backends.cache import CacheKey, ConversionCache
from ..detect.device import cpu_has_native_bf16, cpuinfo_fields, resolve_device
from ..detect.preprocess import TorchPreprocessor
from .inputs import random_detr_r50
from .timing import median_ms


def forward_gflop(model: Any, pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> float:
    """Billions of floating-point operations of one forward pass (multiply-adds count two)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(pixel_values=pixel_values, pixel_mask=pixel_mask)
    return counter.get_total_flops() / 1e9


def cpu_peak_gflops(precision: str = "fp32", cpuinfo: str | None = None) -> tuple[float, str]:
    """This CPU's peak for ``precision`` (fp32, or bf16 on AVX512-BF16) and how it was reckoned, from
    Linux's ``/proc/cpuinfo`` or the ``cpuinfo`` text given (nan elsewhere, and for what is not reckoned
    here: AMX). Cores are the processors it lists.

    Two FMA units per core, each as wide as the widest vector the CPU
    executes at once: AVX-512 is split into two 256-bit halves on AMD's Zen 4
    (family 25), so it counts as AVX2's width there. VDPBF16PS does two
    multiply-adds per fp32 lane, so bf16 doubles the fp32 figure.
    """
    try:
        info = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        return float("nan"), "unknown CPU"
    fields = cpuinfo_fields(info)
    flags = set(fields.get("flags", "").split())
    clocks = [float(line.split(":", 1)[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    cores = sum(1 for line in info.splitlines() if line.startswith("processor")) or os.cpu_count() or 1
    zen4 = fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25"
    lanes = 16 if "avx512f" in flags and not zen4 else 8 if "avx2" in flags else 4
    per_cycle = lanes * 2 * 2 if "fma" in flags or "avx512f" in flags else lanes * 2  # 2 FMA units x (mul + add)
    isa = "AVX-512" if lanes == 16 else "Zen 4 AVX-512, 256-bit units" if zen4 and "avx512f" in flags \
        else "AVX2" if lanes == 8 else "SSE"
    what = "FMA"
    if precision == "bf16":
        if "amx_bf16" in flags:
            return float("nan"), "AMX: not reckoned here"
        if "avx512_bf16" not in flags:
            return float("nan"), "no native bf16"
        per_cycle, what = per_cycle * 2, "VDPBF16PS"
    mhz = max(clocks) if clocks else float("nan")
    reckoned = f"{cores} cores x {mhz / 1000:.2f} GHz x {per_cycle} FLOP/cycle ({isa} {what})"
    return cores * mhz / 1000 * per_cycle, reckoned


def openvino_profile(xml: Path, inputs: Any, precision: str) -> dict[str, float]:
    """Milliseconds per layer type of one inference of the converted model ``xml``, compiled as the
    backend compiles it plus OpenVINO's performance counters."""
    import openvino as ov

    hint = {"fp32": "f32", "bf16": "bf16"}.get(precision, "f32")
    compiled = ov.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": hint,
                                                        "PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": "YES"})
    request = compiled.create_infer_request()
    request.infer([inputs.pixel_values.numpy(), inputs.pixel_mask.numpy()])
    request.infer([inputs.pixel_values.numpy(), inputs.pixel_mask.numpy()])
    by_type: dict[str, float] = defaultdict(float)
    for info in request.profiling_info:
        if info.status == ov.ProfilingInfo.Status.EXECUTED:
            by_type[info.node_type] += info.real_time.total_seconds() * 1000
    return dict(sorted(by_type.items(), key=lambda item: -item[1]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stream_detect.bench.hardware", description=__doc__)
    parser.add_argument("--size", default="1280x720", help="input frame size WxH (default: 1280x720)")
    parser.add_argument("--runs", type=int, default=5, help="timed forward calls (default: 5)")
    parser.add_argument("--backend", default="auto", help="backend kind (default: auto)")
    parser.add_argument("--precision", default="auto", help="precision (default: auto)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="stream-detect-bench-") as directory:
        return _measure(Path(directory), width, height, args)


def _measure(directory: Path, width: int, height: int, args: argparse.Namespace) -> int:
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    device = resolve_device("cpu")
    source = random_detr_r50(directory / "detr")
    processor = AutoImageProcessor.from_pretrained(source)
    model = AutoModelForObjectDetection.from_pretrained(source).eval()
    preprocessor = TorchPreprocessor.from_processor(processor, device)
    assert preprocessor is not None
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    inputs = preprocessor([image])
    gflop = forward_gflop(model, inputs.pixel_values, inputs.pixel_mask)
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if cpu_has_native_bf16() else "fp32"
    cache, key = ConversionCache(directory / "converted"), "bench-hardware"
    backend = build_backend(model, device, BackendOptions(kind=args.backend, precision=precision,
                                                          model_key=key, cache=cache))
    preprocessor.channels_last = bool(getattr(backend, "channels_last", False))
    inputs = preprocessor([image])
    backend(inputs)  # warm-up
    times = []
    for _ in range(max(1, args.runs)):
        started = time.perf_counter()
        backend(inputs)
        times.append(time.perf_counter() - started)
    ms = median_ms(times)
    peak, reckoned = cpu_peak_gflops("bf16" if precision == "bf16" else "fp32")
    achieved = gflop / (ms / 1000)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"model input {'x'.join(str(v) for v in inputs.pixel_values.shape[-2:][::-1])}, {gflop:.1f} GFLOP per "
          f"forward pass; {backend.name}: median {ms:.0f} ms of {len(times)} -> {achieved:.0f} GFLOP/s")
    print(f"CPU {platform.processor() or platform.machine()}: {precision} peak {peak:.0f} GFLOP/s ({reckoned}); "
          f"achieved / peak {achieved / peak:.2f}; bf16 native: {cpu_has_native_bf16()}; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if backend.kind == "openvino":
        profile = openvino_profile(cache.entry(CacheKey(key, "openvino")) / "model.xml", inputs, precision)
        total = sum(profile.values()) or float("nan")
        print("OpenVINO per layer type (one inference):")
        for node_type, spent in list(profile.items())[:10]:
            print(f"  {node_type:<28} {spent:8.1f} ms  {spent / total:6.1%}")
    backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
