"""One worker, two sources: a camera that dies mid-run never stalls the other."""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import time

import httpx
import pytest

from stream_detect.config import parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline

from .serving import open_ws, read_messages, serving

FFMPEG = shutil.which("ffmpeg")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_camera(port: int) -> subprocess.Popen[bytes]:
    """FFmpeg serving a live MPEG-TS test pattern over HTTP to one client."""
    assert FFMPEG is not None
    return subprocess.Popen(
        [FFMPEG, "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=15",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "15", "-f", "mpegts",
         "-listen", "1", f"http://127.0.0.1:{port}/cam.ts"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


@pytest.mark.skipif(FFMPEG is None, reason="Debian's ffmpeg is not installed")
@pytest.mark.timeout(90)
def test_a_camera_killed_mid_run_does_not_stall_the_other() -> None:
    port = free_port()
    camera = http_camera(port)
    try:
        config = parse_config({
            "model": {"id": "fake", "max_batch_size": 4},
            "sources": [
                {"kind": "url", "id": "net", "url": f"http://127.0.0.1:{port}/cam.ts", "open_timeout_s": 3,
                 "read_timeout_s": 3, "reconnect": {"initial_s": 0.5, "max_s": 2}},
                {"kind": "synthetic", "id": "local", "fps": 15, "width": 320, "height": 240},
            ],
        })
        with serving(Pipeline(config, lambda model: FakeDetector())) as base, open_ws(base) as ws:
            before = read_messages(ws, timeout_s=30, until=lambda m: sum(
                1 for x in m if x["type"] == "detections" and x["stream"] == "net") >= 10)
            assert sum(1 for x in before if x["type"] == "detections" and x["stream"] == "net") >= 10
            camera.kill()
            camera.wait(5)
            killed_at = time.time()
            after = read_messages(ws, timeout_s=10, until=lambda m: sum(
                1 for x in m if x["type"] == "detections" and x["stream"] == "local"
                and x["captured_at"] > killed_at + 5) >= 10)
            streams = {s["id"]: s for s in httpx.get(f"{base}/streams", timeout=5).json()["streams"]}
    finally:
        if camera.poll() is None:
            camera.kill()
            camera.wait(5)
    states = [x["state"] for x in after if x["type"] == "status" and x["stream"] == "net"]
    assert "reconnecting" in states
    local_after = [x for x in after if x["type"] == "detections" and x["stream"] == "local"]
    gaps = [b["captured_at"] - a["captured_at"] for a, b in itertools.pairwise(local_after)]
    assert len(local_after) >= 50 and max(gaps) < 0.5, "the live source kept flowing"
    assert streams["net"]["state"] == "reconnecting" and streams["local"]["state"] == "running"
