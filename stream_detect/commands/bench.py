"""``stream-detect bench``: the performance report of one machine, one model, one input size.

Every line uses the same model and the same input size: (a) the bare model's
forward rate per backend, (b) end-to-end throughput of ``annotate`` and of
``run`` with a websocket client, (c) the naive hand-written loop, (d) live
capture->emit latency, (e) per-stage costs, (f) whole processes timed from
their start: the naive loop, ``annotate`` with defaults on a cold and a warm
conversion cache, (g) ``run`` on a mostly still camera with and without
motion gating; then the ratios and the targets.
Run lengths are bounded by options so a run fits in minutes.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import torch

from ..bench.end_to_end import file_mode, live_mode
from ..bench.forward import ForwardResult, measure_forward, time_backend, variants
from ..bench.inputs import decode_frames, random_detr_r50, write_clip, write_still_clip
from ..bench.naive_loop import naive
from ..bench.processes import ProcessRun, annotate_process, naive_process, still_camera
from ..bench.report import build_report, format_table
from ..bench.stages import measure_stages
from ..bench.timing import timed
from ..config import ModelConfig
from ..detect.backends import KINDS, BackendOptions
from ..detect.backends.cache import ConversionCache
from ..detect.device import resolve_device
from ..detect.hf import HFDetector, backend_options, resize_to
from ..detect.int8 import calibration as int8_calibration
from ..detect.precision import choose_backend
from ..detect.preprocess import TorchPreprocessor, processor_size
from ..errors import ConfigError, ModelError

log = logging.getLogger(__name__)

# The live camera is a clip looped at its frame rate: 5 s, so reopening it is rare.
LIVE_CLIP_FRAMES = 125
# The mostly still camera: a disc crosses the picture in the first 20 % of a 20 s clip, looped.
STILL_CLIP_S = 20.0


@dataclass(frozen=True)
class BenchOptions:
    """What one bench run measures and for how long."""

    model: ModelConfig
    random_weights: bool = False
    width: int = 1280
    height: int = 720
    runs: int = 5
    stage_frames: int = 5
    file_frames: int = 20
    naive_frames: int = 5
    live_seconds: float = 30.0
    live_warmup_s: float = 3.0
    kinds: tuple[str, ...] = ("torch", "onnx", "openvino")
    include_compile: bool = False
    process_frames: int = 48
    still_seconds: float = 30.0
    parts: tuple[str, ...] = ("forward", "stages", "file", "naive", "live", "processes", "still")
    json_path: str | None = None


def options_from_args(args: argparse.Namespace, model: ModelConfig) -> BenchOptions:
    """The bench options of the command line; ``--backend`` defaults to ``auto`` here."""
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--size {args.size!r} is not WIDTHxHEIGHT") from None
    if args.backend is None and "backend" not in model.model_fields_set:
        model = model.model_copy(update={"backend": "auto"})
    if not args.random_weights and "id" not in model.model_fields_set:
        raise ConfigError("bench needs --model ID|DIR, or --random-weights to build DETR-R50 locally")
    kinds = tuple(k.strip() for k in args.backends.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(KINDS) - {"auto"})
    if unknown:
        raise ConfigError(f"--backends: unknown {', '.join(unknown)}")
    skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    parts = tuple(p for p in BenchOptions.parts if p not in skip)
    return BenchOptions(
        model=model, random_weights=args.random_weights, width=width, height=height, runs=max(1, args.runs),
        stage_frames=max(2, args.stage_frames), file_frames=max(2, args.file_frames),
        naive_frames=max(1, args.naive_frames), live_seconds=max(1.0, args.live_seconds),
        live_warmup_s=max(0.0, args.live_warmup), kinds=kinds,
        include_compile=args.with_compile, process_frames=max(2, args.process_frames),
        still_seconds=max(2.0, args.still_seconds), parts=parts, json_path=args.json,
    )


def bench(options: BenchOptions) -> int:
    """Runs the bench, prints the table (and writes the JSON); returns the exit code."""
    with tempfile.TemporaryDirectory(prefix="stream-detect-bench-") as directory:
        report = _run(options, Path(directory))
    print(format_table(report), flush=True)
    if options.json_path:
        data = orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
        if options.json_path == "-":
            sys.stdout.write(data.decode() + "\n")
        else:
            Path(options.json_path).write_bytes(data + b"\n")
    return 0


def _load(options: BenchOptions, directory: Path) -> tuple[str, Any, Any]:
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    from ..detect.hf import model_source

    source = str(random_detr_r50(directory / "detr-resnet-50-random")) if options.random_weights \
        else model_source(options.model.id)
    try:
        processor = AutoImageProcessor.from_pretrained(source, revision=options.model.revision)
        model = AutoModelForObjectDetection.from_pretrained(source, revision=options.model.revision).eval()
    except (OSError, ValueError, KeyError, ImportError, RuntimeError) as error:
        raise ModelError(f"cannot load model {source!r}: {str(error).strip().splitlines()[0]}") from None
    resize_to(processor, options.model.shortest_edge, options.model.longest_edge)
    return source, model, processor


def _run(options: BenchOptions, directory: Path) -> dict[str, Any]:
    config = options.model
    device = resolve_device(config.device)
    source, model, processor = _load(options, directory)
    frames = max(options.file_frames, options.stage_frames + 2, options.naive_frames + 2)
    clip = write_clip(directory / "clip.mp4", options.width, options.height, frames)
    image = decode_frames(clip, 1)[0]
    preprocessor = TorchPreprocessor.from_processor(processor, device)
    if preprocessor is None:
        raise ModelError(f"bench needs a DETR-family processor, not {type(processor).__name__}")
    size = processor_size(processor)
    setup = {
        "model": "facebook/detr-resnet-50 architecture, random weights" if options.random_weights else config.id,
        "device": str(device.torch_device), "input": f"{options.width}x{options.height}",
        "model_input": "x".join(str(v) for v in preprocessor([image]).pixel_values.shape[-2:][::-1]),
        "shortest_edge": size.get("shortest_edge"), "longest_edge": size.get("longest_edge"),
        "threshold": config.threshold, "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "command": " ".join(sys.argv[1:]),
    }
    log.info("bench: %s", setup)
    forward: list[ForwardResult] = []
    if "forward" in options.parts:
        calibration = None
        if importlib.util.find_spec("nncf") is not None:  # int8, calibrated on the synthetic camera as by default
            nchw = TorchPreprocessor.from_processor(processor, device)  # what OpenVINO takes
            calibration = int8_calibration(None, nchw or preprocessor)
        for variant in variants(device, options.kinds, options.include_compile, calibration):
            result = measure_forward(model, preprocessor, device, variant, image, options.runs)
            if result is not None:
                log.info("bench: forward %s %.1f ms", result.backend, result.ms)
                forward.append(result)
    # As a model loads (HFDetector.load): precision auto takes bf16 where it is native and agrees, int8 is
    # calibrated and checked; conversions are cached in the bench's own directory.
    chosen = backend_options(config, processor, device, model, source, ConversionCache(directory / "converted"))
    backend, setup_s = timed(lambda: choose_backend(model, processor, device, chosen, config.threshold))
    detector = HFDetector(model, processor, device, config.served_id(), backend)
    try:
        used = next((r for r in forward if r.backend == backend.name), None)
        if used is None:
            used = time_backend(backend, _options_of(backend, chosen), setup_s, preprocessor, image, options.runs)
        stages, found = measure_stages(detector, clip, options.stage_frames, config.threshold) \
            if "stages" in options.parts else ({}, float("nan"))
        file = file_mode(detector, config, clip, frames) if "file" in options.parts else None
    finally:
        detector.close()
    naive_result = naive(source, size, str(device.torch_device), clip, options.naive_frames, config.threshold) \
        if "naive" in options.parts else None
    live_model = {**config.model_dump(exclude_none=True), "id": source, "backend": _kind_of(backend.name),
                  "precision": chosen.precision,
                  **{k: v for k, v in size.items() if k in ("shortest_edge", "longest_edge")}}
    live = None
    if "live" in options.parts:
        camera = write_clip(directory / "camera.mp4", options.width, options.height, LIVE_CLIP_FRAMES)
        live = live_mode(live_model, camera, options.live_seconds, options.live_warmup_s)
    runs = _processes(options, directory, source, size, str(device.torch_device)) \
        if "processes" in options.parts else None
    still = None
    if "still" in options.parts:
        camera = write_still_clip(directory / "still.mp4", options.width, options.height, STILL_CLIP_S)
        still = [still_camera(live_model, camera, options.still_seconds, motion) for motion in (True, False)]
    return build_report(setup=setup, forward=forward, used=used, stages=stages, detections_per_frame=found,
                        file=file, live=live, naive=naive_result, processes=runs, still=still)


def _processes(options: BenchOptions, directory: Path, source: str, size: dict[str, int],
               device: str) -> dict[str, ProcessRun]:
    """The naive loop and ``annotate`` with default options (cold, then warm cache) as whole processes."""
    clip = write_clip(directory / "process.mp4", options.width, options.height, options.process_frames)
    defaults = {"id": source, "device": options.model.device, "threshold": options.model.threshold,
                **{k: v for k, v in size.items() if k in ("shortest_edge", "longest_edge")}}
    cache = directory / "conversion-cache"
    runs = {"naive": naive_process(source, size, device, clip, options.process_frames, options.model.threshold)}
    runs["annotate_cold"] = annotate_process(defaults, clip, cache)
    runs["annotate_warm"] = annotate_process(defaults, clip, cache)
    for name, run in runs.items():
        log.info("bench: %s process %.1f s for %d frames", name, run.seconds, run.frames)
    return runs


def _kind_of(backend_name: str) -> str:
    return {"onnxruntime": "onnx"}.get(backend_name.split()[0], backend_name.split()[0])


def _options_of(backend: Any, chosen: BackendOptions) -> BackendOptions:
    kind = _kind_of(backend.name)
    precision = next((p for p in ("bf16", "fp16", "fp32", "int8") if p in backend.name.split()), chosen.precision)
    return BackendOptions(kind, precision, channels_last=bool(getattr(backend, "channels_last", True)),
                          compile=chosen.compile)


__all__ = ["KINDS", "BenchOptions", "bench"]
