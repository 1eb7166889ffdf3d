"""MJPEG preview and snapshots: shared encodes, nothing encoded without viewers."""

from __future__ import annotations

import io
import threading
import time

import httpx
import pytest
from PIL import Image

from stream_detect.config import parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline

from .serving import serving


def pipeline() -> Pipeline:
    config = parse_config({"model": {"id": "fake"},
                           "sources": [{"kind": "synthetic", "id": "cam", "fps": 20, "width": 320, "height": 180}]})
    return Pipeline(config, lambda model: FakeDetector())


def encodes(base: str) -> float:
    for line in httpx.get(f"{base}/metrics", timeout=5).text.splitlines():
        if line.startswith('stream_detect_preview_jpeg_encodes_total{stream="cam"}'):
            return float(line.split()[-1])
    return 0.0


def read_parts(base: str, seconds: float, out: list[bytes], stop: threading.Event) -> None:
    """Reads MJPEG parts for ``seconds`` (bounded) and keeps the JPEGs."""
    deadline = time.monotonic() + seconds
    with httpx.stream("GET", f"{base}/streams/cam/mjpeg", timeout=10) as response:
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
        buffer = b""
        for chunk in response.iter_bytes():
            buffer += chunk
            while b"\r\n\r\n" in buffer:
                head, rest = buffer.split(b"\r\n\r\n", 1)
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(rest) < length + 2:
                    break
                out.append(rest[:length])
                buffer = rest[length + 2 :]
            if time.monotonic() > deadline or stop.is_set():
                return


@pytest.mark.timeout(60)
def test_three_viewers_cost_the_encodes_of_one() -> None:
    with serving(pipeline()) as base:
        time.sleep(1.0)
        assert encodes(base) == 0, "nothing is encoded while nobody watches"
        single: list[bytes] = []
        start = encodes(base)
        read_parts(base, 3.0, single, threading.Event())
        one_viewer = encodes(base) - start
        streams: list[list[bytes]] = [[], [], []]
        stop = threading.Event()
        start = encodes(base)
        threads = [threading.Thread(target=read_parts, args=(base, 3.0, parts, stop)) for parts in streams]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        three_viewers = encodes(base) - start
        time.sleep(1.5)  # viewers gone: the encoder stops
        idle_start = encodes(base)
        time.sleep(1.5)
        idle = encodes(base) - idle_start
    assert len(single) >= 20
    image = Image.open(io.BytesIO(single[-1]))
    assert image.format == "JPEG" and image.size == (320, 180)
    assert all(len(parts) >= 20 for parts in streams), [len(p) for p in streams]
    assert three_viewers <= one_viewer * 1.25 + 3
    assert idle == 0


@pytest.mark.timeout(60)
def test_snapshots_and_unknown_streams() -> None:
    with serving(pipeline()) as base:
        deadline = time.monotonic() + 10
        response = httpx.get(f"{base}/streams/cam/snapshot.jpg", timeout=5)
        while response.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.1)
            response = httpx.get(f"{base}/streams/cam/snapshot.jpg", timeout=5)
        raw = httpx.get(f"{base}/streams/cam/snapshot.jpg?raw=1", timeout=5)
        unknown = httpx.get(f"{base}/streams/nope/snapshot.jpg", timeout=5)
        unknown_mjpeg = httpx.get(f"{base}/streams/nope/mjpeg", timeout=5)
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).size == (320, 180)
    assert raw.status_code == 200 and raw.content != response.content
    assert unknown.status_code == 404 and "error" in unknown.json()
    assert unknown_mjpeg.status_code == 404


def test_the_preview_draws_the_streams_zones_and_lines() -> None:
    import numpy as np

    from stream_detect.render import LINE_COLOUR, ZONE_COLOUR

    config = parse_config({"model": {"id": "fake"}, "sources": [{
        "kind": "synthetic", "id": "cam", "fps": 20, "width": 320, "height": 180,
        "zones": [{"name": "right", "polygon": [[0.7, 0.1], [0.95, 0.1], [0.95, 0.9], [0.7, 0.9]]}],
        "lines": [{"name": "middle", "points": [[0.5, 0], [0.5, 1]]}]}]})
    with serving(Pipeline(config, lambda model: FakeDetector())) as base:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until frames have been processed
            answer = httpx.get(f"{base}/streams/cam/snapshot.jpg", timeout=10)
            stream = httpx.get(f"{base}/streams", timeout=10).json()["streams"][0]
            if answer.status_code == 200 and stream["frames_processed"] > 10:
                break
            time.sleep(0.2)
        image = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB")).astype(int)
        raw = np.asarray(Image.open(io.BytesIO(
            httpx.get(f"{base}/streams/cam/snapshot.jpg?raw=1", timeout=10).content)).convert("RGB")).astype(int)

    def near(pixels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
        return np.abs(pixels - np.array(colour)).sum(axis=-1) < 110  # JPEG moves colours a little

    assert near(image[40:140, 160], LINE_COLOUR).mean() > 0.8  # the line, down the middle
    assert near(image[40:140, 303], ZONE_COLOUR).mean() > 0.8  # the zone's right edge
    assert near(raw[40:140, 160], LINE_COLOUR).mean() < 0.2  # ?raw=1: the frame as captured
