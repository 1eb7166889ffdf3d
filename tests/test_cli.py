"""The command line as a user runs it: real processes, real model directory, real clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
from PIL import Image
from websockets.sync.client import connect

from .checkpoints import draw_scene
from .media import write_h264
from .processes import serving_command

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "stream_detect" / "schema" / "messages.schema.json").read_text())


def wait_ready(base: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the model did not load")


def collect(base: str, count: int, timeout_s: float, query: str = "") -> list[dict]:
    messages: list[dict] = []
    deadline = time.monotonic() + timeout_s
    url = base.replace("http://", "ws://") + "/ws" + (f"?{query}" if query else "")
    with connect(url, open_timeout=10) as ws:
        while len([m for m in messages if m["type"] == "detections"]) < count and time.monotonic() < deadline:
            try:
                messages.append(json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic()))))
            except TimeoutError:
                break
    return messages


@pytest.mark.timeout(180)
def test_run_on_a_file_and_a_lavfi_source(tmp_path: Path, tiny_detr_dir: Path) -> None:
    video = write_h264(tmp_path / "clip.mp4", frames=250, width=320, height=240)
    with serving_command(
        "run", "--port", "0", "--model", str(tiny_detr_dir), "--threshold", "0.01", "--device", "cpu",
        "--source", str(video), "--source", "lavfi:testsrc2=size=256x144:rate=10",
    ) as served:
        base = served.base
        wait_ready(base)
        file_messages = collect(base, 15, 60, "streams=cam1")
        lavfi_messages = collect(base, 5, 60, "streams=cam2")
        streams = {s["id"]: s for s in httpx.get(f"{base}/streams", timeout=5).json()["streams"]}
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
    for message in file_messages + lavfi_messages:
        jsonschema.validate(message, SCHEMA)
    for messages, size in ((file_messages, (320, 240)), (lavfi_messages, (256, 144))):
        detections = [m for m in messages if m["type"] == "detections"]
        assert len(detections) >= 5
        frames = [m["frame"] for m in detections]
        assert frames == sorted(set(frames))
        assert {(m["width"], m["height"]) for m in detections} == {size}
        assert {m["model"] for m in detections} == {"tiny-detr"}
        assert all(d["label"] in {"circle", "square", "triangle"} for m in detections for d in m["detections"])
    assert streams["cam1"]["kind"] == "file" and streams["cam2"]["kind"] == "lavfi"
    assert 'stream_detect_frames_processed_total{stream="cam1"}' in metrics


@pytest.mark.timeout(120)
def test_sigterm_stops_everything_within_5_seconds(tiny_detr_dir: Path) -> None:
    with serving_command("run", "--port", "0", "--model", str(tiny_detr_dir), "--source", "synthetic",
                         "--source", "rtsp://127.0.0.1:9/x") as served:
        wait_ready(served.base)
        collect(served.base, 3, 30)
        started = time.monotonic()
        served.process.send_signal(signal.SIGTERM)
        code = served.process.wait(10)
        elapsed = time.monotonic() - started
    assert elapsed < 5, f"took {elapsed:.1f} s to stop"
    # uvicorn re-raises the signal after its graceful shutdown, as a service manager expects.
    assert code in (0, -signal.SIGTERM)
    stderr = served.stderr
    assert "did not stop" not in stderr and "Traceback" not in stderr


@pytest.mark.timeout(180)
def test_detect_prints_the_pipeline_answer(tmp_path: Path, trained_detr_dir: Path) -> None:
    from transformers import pipeline

    from .detect.test_hf_detector import assert_same_detections

    rng = np.random.default_rng(11)
    paths = []
    for i in range(2):
        image, _ = draw_scene(rng)
        path = tmp_path / f"scene{i}.png"
        Image.fromarray(image).resize((320, 240)).save(path)
        paths.append(path)
    single = subprocess.run(
        [sys.executable, "-m", "stream_detect", "detect", str(paths[0]), "--model", str(trained_detr_dir),
         "--threshold", "0.05"], capture_output=True, text=True, timeout=120, check=True,
    )
    reference = pipeline("object-detection", model=str(trained_detr_dir), device="cpu")
    ours = json.loads(single.stdout)
    assert isinstance(ours, list) and ours
    assert_same_detections(ours, reference(str(paths[0]), threshold=0.05))
    several = subprocess.run(
        [sys.executable, "-m", "stream_detect", "detect", *map(str, paths), "--model", str(trained_detr_dir),
         "--threshold", "0.05"], capture_output=True, text=True, timeout=120, check=True,
    )
    mapping = json.loads(several.stdout)
    assert list(mapping) == [str(p) for p in paths]
    for path in paths:
        assert_same_detections(mapping[str(path)], reference(str(path), threshold=0.05))


def test_detect_errors_are_one_line(tmp_path: Path, tiny_detr_dir: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    result = subprocess.run(
        [sys.executable, "-m", "stream_detect", "detect", str(bad), "--model", str(tiny_detr_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "notes.txt" in result.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "stream_detect", "detect", str(bad), "--model", str(tmp_path / "no-model")],
        capture_output=True, text=True, timeout=120,
    )
    assert "notes.txt" in missing.stderr or "no-model" in missing.stderr


@pytest.mark.parametrize("value", ["", " , ", "tok-Alpha9,,tok-Bravo9", "tok-Alpha9,"],
                         ids=["empty", "only-commas", "empty-between", "trailing-comma"])
def test_tokens_variable_without_a_token_in_an_item_is_refused(value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "stream_detect", "run", "--port", "0", "--source", "synthetic"],
        capture_output=True, text=True, timeout=60, env={**os.environ, "STREAM_DETECT_TOKENS": value},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "STREAM_DETECT_TOKENS" in lines[0], result.stderr[-2000:]
    assert "tok-" not in result.stderr


@pytest.mark.timeout(60)
def test_tokens_variable_turns_authentication_on() -> None:
    with serving_command("run", "--port", "0", "--model", "fake", "--source", "synthetic",
                         env={"STREAM_DETECT_TOKENS": " tok-Alpha9 , tok-Bravo9 "},
                         module="tests.faults.fake_run") as served:
        anonymous = httpx.get(f"{served.base}/streams", timeout=5)
        second = httpx.get(f"{served.base}/streams", headers={"Authorization": "Bearer tok-Bravo9"}, timeout=5)
    assert anonymous.status_code == 401
    assert second.status_code == 200 and second.json()["streams"][0]["id"] == "cam1"
