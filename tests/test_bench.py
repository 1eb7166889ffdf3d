"""``stream-detect bench`` as a user runs it, on a tiny checkpoint with short bounds."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

STAGES = {"decode", "preprocess", "forward", "postprocess", "draw", "encode", "serialise"}


def _positive(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# What a plain `pip install stream-detect` lacks: the test extra's packages, and NNCF (the [int8] extra).
# The bench and every process it starts run with these imports refused, as on a user's machine.
TEST_ONLY = ("httpx", "pytest", "jsonschema", "playwright", "hypothesis", "standardwebhooks", "nncf")
# A None in sys.modules makes `import NAME` fail with ModuleNotFoundError and find_spec(NAME) say "absent".
REFUSE_TEST_ONLY = f"import sys\nsys.modules.update(dict.fromkeys({TEST_ONLY!r}))\n"


@pytest.mark.timeout(400)
def test_bench_prints_the_table_and_writes_the_json(tmp_path: Path, tiny_detr_dir: Path) -> None:
    output = tmp_path / "bench.json"
    site = tmp_path / "plain-install"
    site.mkdir()
    (site / "sitecustomize.py").write_text(REFUSE_TEST_ONLY)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)}
    result = subprocess.run(
        [sys.executable, "-m", "stream_detect", "bench", "--model", str(tiny_detr_dir), "--device", "cpu",
         "--backend", "torch", "--backends", "torch", "--size", "320x240", "--runs", "2", "--stage-frames", "2",
         "--file-frames", "6", "--naive-frames", "2", "--live-seconds", "2", "--live-warmup", "0.5",
         "--process-frames", "3", "--still-seconds", "2", "--threshold", "0.01",
         "--json", str(output)],
        capture_output=True, text=True, timeout=380, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout
    for line in ("forward torch fp32 ", "forward torch fp32 channels_last", "file mode (annotate)",
                 "live mode (run + websocket client)", "naive baseline (cv2 + pipeline)", "latency p99",
                 "stage decode", "stage serialise", "ratio file_vs_bare", "ratio file_vs_naive", "targets",
                 "annotate, cold cache", "annotate, warm cache", "naive loop (cv2 + pipeline)",
                 "motion gating on", "motion gating off", "ratio cold_cache_extra_s"):
        assert line in table, f"{line!r} missing from:\n{table}"
    assert "input 320x240 -> model input 213x160" in table

    report = json.loads(output.read_text())
    assert set(report) >= {"setup", "forward", "backend_used", "stages_ms", "file_mode", "live_mode", "naive",
                           "ratios", "targets"}
    assert report["setup"]["shortest_edge"] == 160 and report["setup"]["longest_edge"] == 256
    assert {row["backend"] for row in report["forward"]} >= {"torch fp32", "torch fp32 channels_last"}
    assert all(_positive(row["ms"]) and _positive(row["fps"]) for row in report["forward"])
    assert report["backend_used"]["backend"].startswith("torch")
    assert set(report["stages_ms"]) == STAGES and all(_positive(v) for v in report["stages_ms"].values())
    for part in ("file_mode", "live_mode", "naive"):
        assert _positive(report[part]["fps"]), part
    assert report["file_mode"]["frames"] >= 6
    latency = report["live_mode"]["latency_ms"]
    assert all(_positive(latency[q]) for q in ("p50", "p90", "p99", "max"))
    assert latency["p50"] <= latency["p99"] <= latency["max"]
    processes = report["processes"]
    assert {run["frames"] for run in processes.values()} == {3}, processes
    assert all(_positive(run["seconds"]) for run in processes.values())
    assert _positive(processes["annotate_warm"]["first_frame_s"])
    assert processes["annotate_warm"]["first_frame_s"] < processes["annotate_warm"]["seconds"]
    gated, ungated = report["still_camera"]
    assert gated["motion_gating"] and not ungated["motion_gating"]
    assert all(_positive(run["frames_captured"]) and _positive(run["cpu_s_per_minute"]) for run in (gated, ungated))
    assert 0 <= gated["calls_per_frame"] <= 1 and 0 < ungated["calls_per_frame"] <= 1
    assert all(_positive(v) for k, v in report["ratios"].items() if k != "cold_cache_extra_s")
    assert len(report["targets"]) == 8


def test_bench_without_a_model_is_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "stream_detect", "bench"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--random-weights" in result.stderr
