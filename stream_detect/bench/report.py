"""The bench report: one dict (the JSON) and the table printed from it."""

from __future__ import annotations

import math
from typing import Any

from .end_to_end import LiveResult, Throughput
from .forward import ForwardResult
from .processes import ProcessRun, StillRun
from .stages import STAGES


def _round(value: float, digits: int = 2) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


def build_report(*, setup: dict[str, Any], forward: list[ForwardResult], used: ForwardResult,
                 stages: dict[str, float], detections_per_frame: float, file: Throughput | None,
                 live: LiveResult | None, naive: Throughput | None, processes: dict[str, ProcessRun] | None = None,
                 still: list[StillRun] | None = None) -> dict[str, Any]:
    """Everything measured, with the ratios and the issue's targets checked."""
    report: dict[str, Any] = {
        "setup": setup,
        "forward": [
            {"backend": r.backend, "kind": r.options.kind, "precision": r.options.precision,
             "channels_last": r.options.channels_last, "compiled": r.options.compile,
             "ms": _round(r.ms, 1), "fps": _round(r.fps, 3), "setup_s": _round(r.setup_s, 1),
             "first_call_s": _round(r.first_call_s, 2), "runs": r.runs}
            for r in forward
        ],
        "backend_used": {"backend": used.backend, "forward_ms": _round(used.ms, 1), "forward_fps": _round(used.fps, 3)},
        "stages_ms": {stage: _round(stages.get(stage, float("nan")), 2) for stage in STAGES},
        "detections_per_frame": _round(detections_per_frame, 1),
        "file_mode": None if file is None else {"fps": _round(file.fps, 3), "frames": file.frames,
                                                "seconds": _round(file.seconds, 2)},
        "naive": None if naive is None else {"fps": _round(naive.fps, 3), "frames": naive.frames,
                                             "seconds": _round(naive.seconds, 2)},
        "live_mode": None if live is None else {
            "fps": _round(live.fps, 3), "frames": live.frames, "seconds": _round(live.seconds, 1),
            "latency_ms": {k: _round(v, 1) for k, v in live.latency_ms.items()},
            "drift_ms": _round(live.drift_ms, 1), "source_fps": _round(live.source_fps, 1), "dropped": live.dropped,
        },
    }
    report["processes"] = None if processes is None else {
        name: {"seconds": _round(run.seconds, 1), "frames": run.frames,
               "first_frame_s": None if run.first_frame_s is None else _round(run.first_frame_s, 1)}
        for name, run in processes.items()
    }
    report["still_camera"] = None if still is None else [
        {"motion_gating": run.motion, "seconds": _round(run.seconds, 1), "frames_captured": run.frames_captured,
         "detector_calls": run.detector_calls, "calls_per_frame": _round(run.calls_per_frame, 3),
         "cpu_s_per_minute": _round(run.cpu_s_per_minute, 1)}
        for run in still
    ]
    report["ratios"] = _ratios(used, file, live, naive) | _process_ratios(processes)
    report["targets"] = _targets(used, report["ratios"], live) | _process_targets(processes, still)
    return report


def _process_ratios(processes: dict[str, ProcessRun] | None) -> dict[str, float | None]:
    if not processes:
        return {}
    naive = processes["naive"].seconds
    return {
        "naive_process_vs_annotate_warm": _ratio(naive, processes["annotate_warm"].seconds),
        "naive_process_vs_annotate_cold": _ratio(naive, processes["annotate_cold"].seconds),
        "cold_cache_extra_s": _round(processes["annotate_cold"].seconds - processes["annotate_warm"].seconds, 1),
    }


def _process_targets(processes: dict[str, ProcessRun] | None, still: list[StillRun] | None) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    if processes:
        naive, warm, cold = (processes[k].seconds for k in ("naive", "annotate_warm", "annotate_cold"))
        targets["annotate, warm cache, >= 6x the naive loop (whole processes)"] = _met(naive / warm, lambda v: v >= 6)
        targets["annotate, cold cache, >= 4x the naive loop (whole processes)"] = _met(naive / cold, lambda v: v >= 4)
        first = processes["annotate_warm"].first_frame_s
        targets["warm start: first frame detected <= 10 s after the command"] = _met(first, lambda v: v <= 10)
    gated = next((run for run in still or () if run.motion), None)
    if gated is not None:
        targets["mostly still camera: detector on <= 35 % of captured frames"] = _met(
            gated.calls_per_frame, lambda v: v <= 0.35)
    return targets


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or math.isnan(a) or math.isnan(b):
        return None
    return round(a / b, 3)


def _ratios(used: ForwardResult, file: Throughput | None, live: LiveResult | None,
            naive: Throughput | None) -> dict[str, float | None]:
    return {
        "file_vs_bare": _ratio(file.fps if file else None, used.fps),
        "live_vs_bare": _ratio(live.fps if live else None, used.fps),
        "file_vs_naive": _ratio(file.fps if file else None, naive.fps if naive else None),
        "live_vs_naive": _ratio(live.fps if live else None, naive.fps if naive else None),
    }


def _targets(used: ForwardResult, ratios: dict[str, float | None], live: LiveResult | None) -> dict[str, Any]:
    bound = 1.5 * used.ms + 50
    p99 = live.latency_ms.get("p99") if live else None
    drift = live.drift_ms if live else None
    # No drift: the last third's median latency at most 10 % (+20 ms) above the first third's
    # (drift is growth: latency that falls as the machine quietens is no drift).
    drift_bound = 0.1 * (live.latency_ms.get("p50") or 0) + 20 if live else None
    return {
        "file_vs_bare >= 0.9": _met(ratios["file_vs_bare"], lambda v: v >= 0.9),
        "file_vs_naive >= 4": _met(ratios["file_vs_naive"], lambda v: v >= 4),
        f"live p99 <= 1.5 x forward + 50 ms ({bound:.0f} ms)": _met(p99, lambda v: v <= bound),
        "live latency does not drift": _met(drift, lambda v: drift_bound is not None and v <= drift_bound),
    }


def _met(value: float | None, test: Any) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return bool(test(value))


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.2f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def format_table(report: dict[str, Any]) -> str:
    """The report as aligned text lines."""
    setup = report["setup"]
    lines = [
        f"stream-detect bench: {setup['model']} on {setup['device']}, "
        f"input {setup['input']} -> model input {setup['model_input']} "
        f"(shortest_edge {setup['shortest_edge']}, longest_edge {setup['longest_edge']})",
        "",
        "(a) bare model forward, batch 1            ms/frame    frames/s",
    ]
    for row in report["forward"]:
        lines.append(f"  forward {row['backend']:<32} {_fmt(row['ms']):>10}  {_fmt(row['fps']):>10}")
    used = report["backend_used"]
    lines += ["", f"(b, c) end to end (backend: {used['backend']}, forward {_fmt(used['forward_ms'])} ms)   frames/s"]
    for key, label in (("file_mode", "file mode (annotate)"), ("live_mode", "live mode (run + websocket client)"),
                       ("naive", "naive baseline (cv2 + pipeline)")):
        value = report[key]["fps"] if report[key] else None
        lines.append(f"  {label:<45} {_fmt(value):>10}")
    live = report["live_mode"]
    if live:
        latency = live["latency_ms"]
        lines += ["", "(d) live capture->emit latency                ms",
                  *(f"  latency {q:<37} {_fmt(latency[q]):>10}" for q in ("p50", "p90", "p99", "max")),
                  f"  latency drift (last third - first third)      {_fmt(live['drift_ms']):>10}",
                  f"  live frames dropped (freshest frame kept)     {_fmt(live['dropped']):>10}"]
    lines += ["", "(e) per-stage cost, median per frame (encode: mean)  ms"]
    lines += [f"  stage {stage:<39} {_fmt(ms):>10}" for stage, ms in report["stages_ms"].items()]
    processes = report.get("processes")
    if processes:
        lines += ["", "(f) whole processes, start-up included         seconds   frames   first frame s"]
        for name, label in (("naive", "naive loop (cv2 + pipeline)"), ("annotate_cold", "annotate, cold cache"),
                            ("annotate_warm", "annotate, warm cache")):
            run = processes[name]
            first = _fmt(run["first_frame_s"])
            lines.append(f"  {label:<44} {_fmt(run['seconds']):>8} {run['frames']:>8}   {first:>8}")
    still = report.get("still_camera")
    if still:
        lines += ["", "(g) mostly still camera (run)               detector calls/frame   CPU s per minute"]
        for run in still:
            label = "motion gating on" if run["motion_gating"] else "motion gating off"
            lines.append(f"  {label:<44} {_fmt(run['calls_per_frame']):>10}   {_fmt(run['cpu_s_per_minute']):>12}")
    lines += ["", "ratios"]
    lines += [f"  ratio {name:<39} {_fmt(value):>10}" for name, value in report["ratios"].items()]
    lines += ["", "targets"]
    lines += [f"  {'met   ' if met else 'MISSED' if met is False else 'n/a   '} {name}"
              for name, met in report["targets"].items()]
    return "\n".join(lines)
