"""HLS served by the server: the playlist ffprobe reads, contiguous segments, the token carried to them."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from stream_detect.config import ServerConfig, parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline

from ..ffprobe import FFPROBE, needs_ffprobe
from ..server.serving import serving

TOKEN = "hls-test-token-1234"
WIDTH, HEIGHT, FPS = 320, 240, 15

pytestmark = [needs_ffprobe, pytest.mark.timeout(90)]


def camera(**restream: object) -> Pipeline:
    config = parse_config({
        "model": {"id": "fake", "device": "cpu"},
        "sources": [{"id": "cam", "graph": f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}",
                     "restream": {"hls": True, **restream}}],
    })
    return Pipeline(config, lambda model: FakeDetector(label="pattern"))


def ffprobe_json(target: str, *entries: str) -> dict:
    assert FFPROBE is not None
    result = subprocess.run([FFPROBE, "-v", "error", "-show_entries", ",".join(entries), "-of", "json", target],
                            capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def playlist_with(client: httpx.Client, url: str, segments: int, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        response = client.get(url)
        if response.status_code == 200 and response.text.count("#EXTINF") >= segments:
            return response.text
        assert response.status_code in (200, 503), response.text
        time.sleep(0.25)
    pytest.fail(f"the playlist did not list {segments} segments within {timeout_s} s")


def test_the_playlist_plays_in_ffprobe_and_its_segments_are_contiguous(tmp_path: Path) -> None:
    config = ServerConfig(port=0, tokens=[TOKEN])
    with serving(camera(hls_segments=4), config) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/streams/cam/hls/index.m3u8").status_code == 401
        url = f"/streams/cam/hls/index.m3u8?token={TOKEN}"
        text = playlist_with(client, url, 4, timeout_s=20)
        assert client.get("/streams/nope/hls/index.m3u8", params={"token": TOKEN}).status_code == 404
        names = [line for line in text.splitlines() if line and not line.startswith("#")]
        assert all(name.endswith(f"?token={TOKEN}") for name in names), text
        assert client.get(f"/streams/cam/hls/{names[0].split('?')[0]}").status_code == 401
        durations = [float(value) for value in re.findall(r"#EXTINF:([0-9.]+),", text)]
        assert all(0.9 <= duration <= 2.1 for duration in durations), durations
        for index, name in enumerate(names):
            response = client.get(f"/streams/cam/hls/{name}")
            assert response.status_code == 200 and response.headers["content-type"] == "video/mp2t"
            (tmp_path / f"{index}.ts").write_bytes(response.content)
        probed = ffprobe_json(f"{base}{url}", "stream=codec_name,width,height")
        described = client.get("/streams", params={"token": TOKEN}).json()["streams"][0]
        metrics = client.get("/metrics", params={"token": TOKEN}).text
    assert re.search(r'^stream_detect_encoder_frames_total\{stream="cam"\} [1-9]', metrics, re.M), metrics[-2000:]
    assert 'stream_detect_encoder_output_dropped_total{output="hls",stream="cam"}' in metrics
    stream = probed["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", WIDTH, HEIGHT)
    starts = []
    for index in range(len(names)):
        packets = ffprobe_json(str(tmp_path / f"{index}.ts"), "packet=pts_time")["packets"]
        starts.append((float(packets[0]["pts_time"]), float(packets[-1]["pts_time"])))
    for (_, last), (next_first, _) in itertools.pairwise(starts):
        assert abs(next_first - last - 1 / FPS) < 0.01, starts  # the next segment starts a frame later
    for (first, _), (next_first, _), duration in zip(starts, starts[1:], durations, strict=False):
        assert abs(next_first - first - duration) < 0.01, (starts, durations)
    hls = described["encoder"]["outputs"]["hls"]
    assert hls["segments"] == 4 and hls["segments_written"] >= 4, hls


def test_a_stream_without_hls_has_no_playlist() -> None:
    config = parse_config({"model": {"id": "fake"},
                           "sources": [{"id": "cam", "graph": f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}"}]})
    pipeline = Pipeline(config, lambda model: FakeDetector())
    with serving(pipeline) as base:
        response = httpx.get(f"{base}/streams/cam/hls/index.m3u8", timeout=10)
        described = httpx.get(f"{base}/streams", timeout=10).json()["streams"][0]
    assert response.status_code == 404 and "restream" in response.json()["error"]
    assert described["encoder"] is None


def test_a_camera_added_at_run_time_with_hls_serves_it_until_removed() -> None:
    config = parse_config({"model": {"id": "fake"}, "sources": []})
    pipeline = Pipeline(config, lambda model: FakeDetector())
    entry = {"id": "added", "graph": f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", "restream": {"hls": True}}
    with serving(pipeline) as base, httpx.Client(base_url=base, timeout=10) as client:
        assert client.post("/streams", json=entry).status_code == 201
        text = playlist_with(client, "/streams/added/hls/index.m3u8", 2, timeout_s=20)
        assert client.delete("/streams/added").status_code == 204
        gone = client.get("/streams/added/hls/index.m3u8")
        threads = [thread.name for thread in threading.enumerate() if thread.name == "encode:added"]
    assert text.startswith("#EXTM3U") and gone.status_code == 404
    assert threads == [], "removing the stream stops its encoder"
