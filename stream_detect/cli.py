"""The ``stream-detect`` command line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import Config, ConfigError, load_config, parse_config, source_from_url
from .errors import StreamDetectError
from .logs import setup_logging
from .redact import redact, register_secret

log = logging.getLogger("stream_detect")

EXIT_USAGE = 2
EXIT_FAILURE = 1
TOKENS_VARIABLE = "STREAM_DETECT_TOKENS"


def _model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="hub id, local directory, or 'demo' (default: facebook/detr-resnet-50)")
    group.add_argument("--revision", help="hub revision: branch, tag or commit")
    group.add_argument("--device", help="auto, cpu, mps, cuda or cuda:N (default: auto)")
    group.add_argument("--threshold", type=float, help="minimum score, 0-1 (default: 0.5)")
    group.add_argument("--labels", help="comma-separated labels to report (default: all)")
    group.add_argument("--max-batch-size", type=int, help="frames per detector batch (default: 4)")
    group.add_argument("--backend", choices=["auto", "torch", "onnx", "openvino"],
                       help="inference backend (default: auto: the fastest installed for the device, "
                            "OpenVINO on x86-64 CPUs)")
    group.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16", "int8"],
                       help="compute precision (default: auto: fp16 on CUDA; bf16 on CPUs with AMX or "
                            "AVX512-BF16 when it agrees with fp32 on a probe image; else fp32). int8: OpenVINO "
                            "quantized with NNCF (pip install 'stream-detect[int8]'), kept when it finds what "
                            "fp32 finds")
    group.add_argument("--calibration", metavar="DIR",
                       help="precision int8: images from your cameras to calibrate on "
                            "(default: frames of the synthetic camera)")
    group.add_argument("--compile", action="store_const", const=True, help="torch backend: torch.compile the model")
    group.add_argument("--shortest-edge", type=int, help="resize frames' shorter side to this (default: the model's)")
    group.add_argument("--longest-edge", type=int, help="... and their longer side to at most this")


def _serve_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("server")
    group.add_argument("--host", help="address to bind (default: 127.0.0.1)")
    group.add_argument("--port", type=int, help="port to bind; 0 picks a free one (default: 8000)")
    group.add_argument("--data-dir", metavar="DIR",
                       help="where state is kept, e.g. cameras changed at run time without --config "
                            "(default: $XDG_DATA_HOME/stream-detect or ~/.local/share/stream-detect)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stream-detect", description="Real-time object detection on video streams."
    )
    parser.add_argument("--version", action="version", version=f"stream-detect {__version__}")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="analyze streams and serve detections, preview and API")
    run.add_argument("--config", help="YAML configuration file")
    run.add_argument(
        "--source", action="append", default=[], metavar="URL",
        help="a source (repeatable): rtsp://..., a file, lavfi:GRAPH, /dev/videoN, synthetic",
    )
    run.add_argument("--record", metavar="DIR", help="record every stream's annotated video into DIR")
    run.add_argument("--cluster", metavar="ADDRESS",
                     help="run cameras and detectors on a Ray cluster: HOST:PORT, ray://HOST:PORT or auto "
                          "(pip install 'stream-detect[ray]')")
    _model_options(run)
    _serve_options(run)

    annotate = commands.add_parser("annotate", help="annotate every frame of a video file")
    annotate.add_argument("input", metavar="INPUT")
    annotate.add_argument("--output", "-o", required=True, metavar="OUT.mp4")
    annotate.add_argument("--jsonl", metavar="OUT.jsonl", help="also write each frame's detections as JSON Lines")
    annotate.add_argument("--config", help="YAML configuration file (its model section is used)")
    annotate.add_argument("--decoder", choices=["auto", "software", "nvidia"], default="auto",
                          help="video decoder: auto takes NVDEC on CUDA devices when present (default: auto)")
    annotate.add_argument("--encoder", choices=["auto", "software", "nvidia"], default="auto",
                          help="video encoder: auto takes NVENC on CUDA devices when present (default: auto)")
    _model_options(annotate)

    demo = commands.add_parser("demo", help="offline demo: synthetic camera, bundled model, dashboard")
    _model_options(demo)
    _serve_options(demo)

    detect = commands.add_parser("detect", help="print the detections of images as JSON")
    detect.add_argument("images", nargs="+", metavar="IMAGE")
    detect.add_argument("--config", help="YAML configuration file (its model section is used)")
    _model_options(detect)

    bench = commands.add_parser("bench", help="measure throughput, latency and per-stage costs on this machine")
    bench.add_argument("--random-weights", action="store_true",
                       help="a local DETR-R50 (facebook/detr-resnet-50's architecture, random weights): offline")
    bench.add_argument("--size", default="1280x720", metavar="WxH", help="input frame size (default: 1280x720)")
    bench.add_argument("--runs", type=int, default=5, help="timed forward calls per backend (default: 5)")
    bench.add_argument("--stage-frames", type=int, default=5, help="frames for per-stage costs (default: 5)")
    bench.add_argument("--file-frames", type=int, default=20, help="frames annotated in file mode (default: 20)")
    bench.add_argument("--naive-frames", type=int, default=5, help="frames of the naive baseline (default: 5)")
    bench.add_argument("--live-seconds", type=float, default=30, help="live mode measuring window (default: 30)")
    bench.add_argument("--live-warmup", type=float, default=3, help="live mode: seconds ignored first (default: 3)")
    bench.add_argument("--backends", default="torch,onnx,openvino", help="backend kinds to time (default: all)")
    bench.add_argument("--with-compile", action="store_true", help="also time torch.compile (slow cold compile)")
    bench.add_argument("--process-frames", type=int, default=48,
                       help="frames of the whole-process runs: naive loop, annotate cold and warm (default: 48)")
    bench.add_argument("--still-seconds", type=float, default=30,
                       help="window of each mostly-still-camera run, motion gating on and off (default: 30)")
    bench.add_argument("--skip", default="",
                       help="comma-separated parts to skip: forward,stages,file,naive,live,processes,still")
    bench.add_argument("--json", metavar="FILE", help="also write the report as JSON ('-': stdout)")
    bench.add_argument("--config", help="YAML configuration file (its model section is used)")
    _model_options(bench)
    return parser


def tokens_from_environment(environ: Mapping[str, str]) -> list[str]:
    """The tokens of ``STREAM_DETECT_TOKENS`` (comma-separated); none when it is not set.

    Set but empty, or with an empty item (``a,,b``), it is an error rather
    than fewer tokens: no token at all would turn authentication off. The
    message never shows the value.
    """
    value = environ.get(TOKENS_VARIABLE)
    if value is None:
        return []
    tokens = [token.strip() for token in value.split(",")]
    if not any(tokens):
        raise ConfigError(f"{TOKENS_VARIABLE} is set but holds no token; unset it for no authentication")
    if not all(tokens):
        raise ConfigError(f"{TOKENS_VARIABLE} has an empty item (two commas in a row, or one at an end); "
                          "expected TOKEN[,TOKEN...]")
    return tokens


def default_data_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/stream-detect``, or ``~/.local/share/stream-detect``."""
    base = environ.get("XDG_DATA_HOME") or str(Path("~/.local/share").expanduser())
    return Path(base) / "stream-detect"


def config_from_args(args: argparse.Namespace) -> Config:
    """The configuration file (or defaults) with command-line overrides applied."""
    base = load_config(args.config) if getattr(args, "config", None) else Config()
    data: dict[str, Any] = base.model_dump(mode="python", exclude_unset=True)
    model = data.setdefault("model", {})
    for option, key in (
        ("model", "id"), ("revision", "revision"), ("device", "device"),
        ("threshold", "threshold"), ("max_batch_size", "max_batch_size"), ("backend", "backend"),
        ("precision", "precision"), ("compile", "compile"), ("shortest_edge", "shortest_edge"),
        ("longest_edge", "longest_edge"), ("calibration", "calibration"),
    ):
        value = getattr(args, option, None)
        if value is not None:
            model[key] = value
    if getattr(args, "labels", None):
        model["labels"] = [label.strip() for label in args.labels.split(",") if label.strip()]
    server = data.setdefault("server", {})
    env_tokens = tokens_from_environment(os.environ)
    if env_tokens:
        server["tokens"] = [*server.get("tokens", []), *env_tokens]
    for option in ("host", "port"):
        value = getattr(args, option, None)
        if value is not None:
            server[option] = value
    if getattr(args, "record", None):
        data["record"] = {**data.get("record", {}), "dir": args.record}
    if getattr(args, "cluster", None):
        data["cluster"] = {**data.get("cluster", {}), "address": args.cluster}
    if getattr(args, "data_dir", None):
        data["data_dir"] = args.data_dir
    elif not data.get("data_dir"):
        data["data_dir"] = str(default_data_dir(os.environ))
    sources = getattr(args, "source", None)
    if sources:
        data["sources"] = [source_from_url(url, f"cam{i + 1}") for i, url in enumerate(sources)]
    return parse_config(data, origin="command line" if not getattr(args, "config", None) else args.config)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    try:
        config = config_from_args(args)
        for token in config.server.tokens:
            register_secret(token)
        if args.command == "run":
            from .commands.run import run

            return run(config, config_file=None if args.source else args.config)
        if args.command == "demo":
            from .commands.demo import demo_config
            from .commands.run import run

            return run(demo_config(config, config.model.model_dump(exclude_unset=True)))
        if args.command == "detect":
            from .commands.detect import detect

            return detect(config.model, args.images)
        if args.command == "bench":
            from .commands.bench import bench, options_from_args

            return bench(options_from_args(args, config.model))
        if args.command == "annotate":
            from .commands.annotate import VideoCodecs, annotate

            codecs = VideoCodecs(decoder=args.decoder, encoder=args.encoder)
            return annotate(config.model, args.input, args.output, args.jsonl, codecs=codecs)
    except ConfigError as error:
        print(f"stream-detect: error: {redact(str(error))}", file=sys.stderr)
        return EXIT_USAGE
    except StreamDetectError as error:
        print(f"stream-detect: error: {redact(str(error))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE
