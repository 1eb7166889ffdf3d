"""The annotated stream pushed to a real RTSP server (FFmpeg's listen mode), which is killed and restarted."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest

from stream_detect.config import parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.pipeline import Pipeline
from stream_detect.records import Detections

from ..ffprobe import needs_ffprobe, probe, video_stream
from .receiver import RtspReceiver, needs_ffmpeg

GREY = 128
BOX = (64, 48, 256, 192)  # xmin, ymin, xmax, ymax in a 320x240 frame
WIDTH, HEIGHT, FPS = 320, 240, 15

pytestmark = [needs_ffmpeg, needs_ffprobe, pytest.mark.timeout(90)]


class FixedBox(FakeDetector):
    """One box at :data:`BOX` on every frame."""

    def detect(self, images: Sequence[np.ndarray], threshold: float) -> list[Detections]:
        return [Detections.from_lists([list(BOX)], [0.9], [0], ["box"]) for _ in images]


def grey_camera(url: str, **restream: object) -> Pipeline:
    config = parse_config({
        "model": {"id": "fake", "device": "cpu"},
        "sources": [{"id": "cam", "graph": f"color=c=0x808080:size={WIDTH}x{HEIGHT}:rate={FPS}",
                     "motion": {"enabled": False}, "restream": {"rtsp": url, **restream}}],
    })
    return Pipeline(config, lambda model: FixedBox())


def wait_for_bytes(path: Path, minimum: int, timeout_s: float) -> float:
    """Seconds until ``path`` holds ``minimum`` bytes (fails after ``timeout_s``)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if path.exists() and path.stat().st_size >= minimum:
            return time.monotonic() - started
        time.sleep(0.1)
    pytest.fail(f"{path.name} did not reach {minimum} bytes within {timeout_s} s")


def last_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        image = None
        for frame in container.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
    assert image is not None, f"no frame decoded from {path.name}"
    return image


def test_the_annotated_stream_reaches_the_server_and_resumes_after_it_restarts(tmp_path: Path) -> None:
    with RtspReceiver(tmp_path) as receiver:
        first = receiver.start()
        pipeline = grey_camera(receiver.url)
        pipeline.start()
        try:
            wait_for_bytes(first, 6_000, timeout_s=20)
            receiver.kill()  # the server crashes
            time.sleep(1.5)  # the push notices (a write fails) and waits to reconnect
            push = pipeline.streams["cam"].encoder.describe()["outputs"]["rtsp"]  # type: ignore[union-attr]
            assert push["state"] in ("reconnecting", "connecting"), push
            second = receiver.start()
            resumed_s = wait_for_bytes(second, 3_000, timeout_s=10)
            time.sleep(1.0)  # a second more for the file to hold whole GOPs
            described = pipeline.streams["cam"].snapshot().describe()
        finally:
            pipeline.stop()
    assert resumed_s < 10
    outputs = described["encoder"]["outputs"]
    assert outputs["rtsp"]["connects"] >= 2 and outputs["rtsp"]["state"] == "streaming", outputs
    assert described["encoder"]["codec"] == "libx264" and described["encoder"]["frames_encoded"] > 0

    for received in (first, second):
        stream = video_stream(probe(received))
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", WIDTH, HEIGHT)
        assert int(stream["nb_read_frames"]) >= FPS
        image = last_frame(received).astype(np.int16)
        xmin, ymin, _, ymax = BOX
        # The source is plain grey; the box's edge is drawn over it, the far corner is left as it was.
        edge = image[ymin + 1:ymax - 1, xmin:xmin + 2]
        assert np.abs(edge - GREY).max(axis=2).mean() > 40, "no box drawn on the pushed frames"
        corner = image[HEIGHT - 24:, WIDTH - 24:]
        assert np.abs(corner - GREY).max() < 12, "the frame differs from the source away from the box"
