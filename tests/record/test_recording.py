"""Recording live streams: segments, crash safety, burned-in overlays, retention."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import jsonschema
import numpy as np
import pytest
import yaml

from stream_detect.render import label_colour

from ..ffprobe import frame_count, needs_ffprobe

FPS = 15
SEGMENT_S = 5

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "stream_detect" / "schema" / "messages.schema.json").read_text())


def start_recording(tmp_path: Path, model: Path, extra: dict | None = None) -> subprocess.Popen[str]:
    config = {
        "model": {"id": str(model), "threshold": 0.0, "device": "cpu"},
        "server": {"port": 0},
        "sources": [{"kind": "synthetic", "id": "cam", "fps": FPS, "width": 640, "height": 360}],
        "record": {"dir": str(tmp_path / "rec"), "segment_seconds": SEGMENT_S, **(extra or {})},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    log = open(tmp_path / "stderr.log", "a")  # noqa: SIM115 - a pipe nobody reads would block the server
    process = subprocess.Popen([sys.executable, "-m", "stream_detect", "run", "--config", str(path)],
                               stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    assert process.stdout is not None and "serving on" in process.stdout.readline()
    return process


def segments(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "rec" / "cam").glob("*.mp4"))


def sidecars(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "rec" / "cam").glob("*.jsonl"))


def wait_for_segments(tmp_path: Path, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and len([p for p in segments(tmp_path) if ".partial" not in p.name]) < count:
        time.sleep(0.2)


@needs_ffprobe
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigkill_loses_at_most_the_open_fragment(tmp_path: Path, tiny_detr_dir: Path) -> None:
    process = start_recording(tmp_path, tiny_detr_dir)
    try:
        wait_for_segments(tmp_path, 5, 75)  # 25 s recorded
        time.sleep(2.5)  # into the sixth segment
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    files = segments(tmp_path)
    closed = [p for p in files if ".partial" not in p.name]
    partial = [p for p in files if ".partial" in p.name]
    assert len(closed) >= 5 and len(partial) == 1
    for path in closed:
        assert frame_count(path) >= 0.95 * FPS * SEGMENT_S, path.name
    assert frame_count(partial[0]) >= FPS  # readable up to its last fragment (one a second)
    # The next start recognises the partial file and renames it.
    restarted = start_recording(tmp_path, tiny_detr_dir)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and partial[0].exists():
            time.sleep(0.1)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(15)
    assert not partial[0].exists()


@needs_ffprobe
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_sigterm_completes_every_segment_with_overlays(tmp_path: Path, tiny_detr_dir: Path) -> None:
    process = start_recording(tmp_path, tiny_detr_dir)
    try:
        wait_for_segments(tmp_path, 2, 60)
        # Frames are recorded from the start; detections only once the model
        # has loaded, which on a busy machine can take longer than a segment.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(p.stat().st_size for p in sidecars(tmp_path)):
            time.sleep(0.2)
        time.sleep(2.0)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    files = segments(tmp_path)
    assert files and not any(".partial" in p.name for p in files)
    counts = [frame_count(p) for p in files]
    assert all(c >= 0.95 * FPS * SEGMENT_S for c in counts[:-1])
    assert counts[-1] >= FPS  # the last one is complete up to the stop
    records = {p: [json.loads(line) for line in p.with_suffix(".jsonl").read_text().splitlines()] for p in files}
    assert all("detections" in r and "pts" in r for rs in records.values() for r in rs)
    for line in (r for rs in records.values() for r in rs):  # each line is the websocket's detections message
        jsonschema.validate(line, SCHEMA)
    labelled = {p: [r for r in rs if r["detections"]] for p, rs in records.items()}
    videos = [p for p in files if labelled[p]]
    assert videos, "the tiny model reports detections at threshold 0"
    assert_overlay_burned_in(videos[0], labelled[videos[0]][-1]["detections"])


def assert_overlay_burned_in(video: Path, detections: list[dict]) -> None:
    """The left edge of a reported box is drawn in its label's colour in a late frame."""
    with av.open(str(video)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    image = frames[-1].astype(np.int32)
    best = None
    for detection in detections:
        box, colour = detection["box"], np.array(label_colour(detection["label"]))
        x = min(max(box["xmin"], 0), image.shape[1] - 1)
        y0, y1 = box["ymin"] + (box["ymax"] - box["ymin"]) // 3, box["ymax"] - (box["ymax"] - box["ymin"]) // 3
        column = image[y0:y1, max(0, x - 1) : x + 2].reshape(-1, 3)
        distance = np.abs(column - colour).sum(axis=1)
        best = min(best if best is not None else 10**9, int(np.median(np.sort(distance)[: max(1, len(distance) // 3)])))
    assert best is not None and best < 90, f"no box edge in its label's colour (closest L1 distance {best})"


@needs_ffprobe
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_retention_deletes_the_oldest_segments(tmp_path: Path, tiny_detr_dir: Path) -> None:
    process = start_recording(tmp_path, tiny_detr_dir, {"segment_seconds": 2, "max_bytes": 1_000_000})
    try:
        deadline = time.monotonic() + 40
        seen: set[str] = set()
        while time.monotonic() < deadline and len(seen) < 8:
            seen |= {p.name for p in segments(tmp_path) if ".partial" not in p.name}
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    left = [p.name for p in segments(tmp_path)]
    seen |= set(left)  # the segment closed by the stop
    assert len(seen) >= 8
    total = sum(p.stat().st_size + p.with_suffix(".jsonl").stat().st_size for p in segments(tmp_path))
    assert total <= 1_000_000 + 500_000  # the limit, plus at most the open segment
    assert sorted(seen)[0] not in left, "the oldest segment was deleted first"
    assert left == sorted(seen)[-len(left):], "what is left is the newest"
