"""The bench report's arithmetic: ratios, targets, percentiles."""

from __future__ import annotations

from stream_detect.bench.end_to_end import LiveResult, Throughput
from stream_detect.bench.forward import ForwardResult
from stream_detect.bench.report import build_report, format_table
from stream_detect.detect.backends import BackendOptions
from stream_detect.stats import percentile


def _report(file_fps: float, naive_fps: float, p99_ms: float, drift_ms: float) -> dict:
    used = ForwardResult("openvino bf16", BackendOptions("openvino", "bf16"), ms=200.0, setup_s=1, first_call_s=1,
                         runs=3)
    live = LiveResult(frames=40, seconds=10.0, latency_ms={"p50": 250.0, "p90": 280.0, "p99": p99_ms, "max": 400.0},
                      drift_ms=drift_ms, source_fps=25.0, dropped=200)
    setup = {"model": "m", "device": "cpu", "input": "1280x720", "model_input": "1333x750", "shortest_edge": 800,
             "longest_edge": 1333}
    return build_report(setup=setup, forward=[used], used=used, stages={"forward": 200.0}, detections_per_frame=3,
                        file=Throughput(int(file_fps * 10), 10.0), live=live, naive=Throughput(1, 1 / naive_fps))


def test_ratios_and_targets() -> None:
    report = _report(file_fps=4.6, naive_fps=0.5, p99_ms=340, drift_ms=5)
    assert report["ratios"]["file_vs_bare"] == 0.92  # 4.6 / 5.0
    assert report["ratios"]["file_vs_naive"] == 9.2
    assert report["ratios"]["live_vs_bare"] == 0.8
    assert all(report["targets"].values())
    missed = _report(file_fps=4.0, naive_fps=1.2, p99_ms=351, drift_ms=80)["targets"]
    assert not any(missed.values())  # 0.8 < 0.9, 3.3 < 4, 351 > 1.5 * 200 + 50, drift 80 > 0.1 * 250 + 20
    falling = _report(file_fps=4.6, naive_fps=0.5, p99_ms=340, drift_ms=-200)["targets"]
    assert falling["live latency does not drift"], "latency that falls is no drift"
    table = format_table(report)
    assert "met    file_vs_bare >= 0.9" in table and "(350 ms)" in table


def test_percentiles_interpolate() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.5
    assert percentile(values, 99) == 99.01
    assert percentile([7.0], 99) == 7.0
