"""Whole processes, timed as a user times them: start-up, imports and model loading included.

- The naive loop a user writes by hand (:mod:`stream_detect.bench.naive_loop`), as its own process.
- ``stream-detect annotate`` with default options, on a cold conversion cache (an empty directory)
  and then on the warm one it left: the difference is what the first start pays.
- ``stream-detect run`` on a mostly still camera, with motion gating and without: how often the
  detector runs per captured frame, and the CPU time the process takes per minute of video.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .live_client import get_json, running_analyzer, stop

POLL_S = 0.02


@dataclass(frozen=True)
class ProcessRun:
    """One command from its start to its exit."""

    command: str
    seconds: float
    first_frame_s: float | None
    frames: int


def _model_args(model: dict[str, Any]) -> list[str]:
    args = ["--model", str(model["id"]), "--device", str(model.get("device", "auto"))]
    for key in ("threshold", "shortest_edge", "longest_edge", "backend", "precision"):
        if model.get(key) is not None:
            args += [f"--{key.replace('_', '-')}", str(model[key])]
    return args


def annotate_process(model: dict[str, Any], clip: Path, cache: Path, timeout_s: float = 1800.0) -> ProcessRun:
    """``stream-detect annotate CLIP`` as its own process with the conversion cache at ``cache``.

    ``first_frame_s`` is when the first frame's detections reached the JSON Lines file (written a
    line at a time), counted from the command's start.
    """
    with tempfile.TemporaryDirectory(prefix="stream-detect-bench-") as directory:
        jsonl = Path(directory) / "out.jsonl"
        command = [sys.executable, "-m", "stream_detect", "--log-level", "WARNING", "annotate", str(clip),
                   "--output", str(Path(directory) / "out.mp4"), "--jsonl", str(jsonl), *_model_args(model)]
        env = {**os.environ, "STREAM_DETECT_CACHE": str(cache)}
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
        first: float | None = None
        try:
            deadline = started + timeout_s
            while process.poll() is None and time.perf_counter() < deadline:
                if first is None and jsonl.exists() and jsonl.stat().st_size > 0:
                    first = time.perf_counter() - started
                time.sleep(POLL_S)
            if process.poll() is None:
                raise RuntimeError(f"annotate did not finish within {timeout_s:.0f} s")
            seconds = time.perf_counter() - started
            stderr = process.stderr.read() if process.stderr else ""
        finally:
            stop(process)
        if process.returncode != 0:
            raise RuntimeError(f"annotate failed: {stderr.strip()[-2000:]}")
        frames = sum(1 for _ in jsonl.open("rb"))
    return ProcessRun("annotate", seconds, first, frames)


def naive_process(model_dir: str, size: dict[str, int], device: str, clip: Path, frames: int,
                  threshold: float, timeout_s: float = 3600.0) -> ProcessRun:
    """The naive loop (:mod:`stream_detect.bench.naive_loop`) on ``frames`` frames, as its own process."""
    command = [sys.executable, "-m", "stream_detect.bench.naive_loop", model_dir, str(clip), json.dumps(size),
               device, str(frames), str(threshold)]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"the naive loop failed: {result.stderr.strip()[-2000:]}")
    return ProcessRun("naive", seconds, None, int(json.loads(result.stdout.strip().splitlines()[-1])["frames"]))


@dataclass(frozen=True)
class StillRun:
    """``run`` on a mostly still camera for a window of video."""

    motion: bool
    seconds: float
    frames_captured: int
    detector_calls: int
    cpu_s: float

    @property
    def calls_per_frame(self) -> float:
        return self.detector_calls / self.frames_captured if self.frames_captured else float("nan")

    @property
    def cpu_s_per_minute(self) -> float:
        return self.cpu_s * 60 / self.seconds if self.seconds else float("nan")


def still_camera(model: dict[str, Any], clip: Path, seconds: float, motion: bool,
                 warmup_s: float = 3.0, load_timeout_s: float = 900.0) -> StillRun:
    """``stream-detect run`` on ``clip`` looped at its frame rate, motion gating on or off.

    Counts come from ``/streams`` at the start and the end of the window
    (detector calls: frames processed that were not still; frames: those
    processed or dropped, so both counts cover the same frames); CPU time is the
    process's user + system time over the same window.
    """
    source = {"kind": "file", "id": "still", "path": str(clip), "realtime": True, "loop": True,
              "motion": {"enabled": motion}}
    config = {"model": model, "sources": [source], "server": {"port": 0}}
    with running_analyzer(config, load_timeout_s) as analyzer:
        time.sleep(warmup_s)
        before, cpu_before, started = _stream(analyzer.base), _cpu_s(analyzer.pid), time.monotonic()
        time.sleep(seconds)
        after, cpu_after, window = _stream(analyzer.base), _cpu_s(analyzer.pid), time.monotonic() - started

    def calls(stream: dict[str, Any]) -> int:
        return int(stream["frames_processed"]) - int(stream.get("frames_still") or 0)

    def seen(stream: dict[str, Any]) -> int:
        # Captured frames the pipeline is done with (processed or dropped): the frames still queued at
        # either end of the window are left out of both counts, so calls per frame cannot pass 1 by them.
        return int(stream["frames_processed"]) + int(stream.get("frames_dropped") or 0)

    return StillRun(motion, window, seen(after) - seen(before), calls(after) - calls(before),
                    cpu_after - cpu_before)


def _stream(base: str) -> dict[str, Any]:
    return dict(get_json(f"{base}/streams")["streams"][0])


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
