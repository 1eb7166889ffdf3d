"""Recording, clips, the RTSP push and HLS of one stream all come from its one encoder."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from stream_detect.compose import build_event_outputs, build_pipeline, connect_outputs
from stream_detect.config import parse_config
from stream_detect.detect.fake import FakeDetector
from stream_detect.record.writer import VideoWriter
from stream_detect.restream.h264 import H264Encoder

from ..ffprobe import needs_ffprobe, probe, video_stream
from .receiver import RtspReceiver, needs_ffmpeg

WIDTH, HEIGHT, FPS = 320, 240, 15

pytestmark = [needs_ffmpeg, needs_ffprobe, pytest.mark.timeout(90)]


def counting(monkeypatch: pytest.MonkeyPatch, cls: type) -> list[object]:
    """Every instance of ``cls`` made from now on."""
    made: list[object] = []
    original = cls.__init__

    def init(self: object, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        original(self, *args, **kwargs)  # type: ignore[misc]

    monkeypatch.setattr(cls, "__init__", init)
    return made


def test_recording_clips_rtsp_and_hls_share_the_streams_one_encoder(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    encoders = counting(monkeypatch, H264Encoder)
    frame_writers = counting(monkeypatch, VideoWriter)
    with RtspReceiver(tmp_path) as receiver:
        received = receiver.start()
        config = parse_config({
            "model": {"id": "fake", "device": "cpu"},
            "data_dir": str(tmp_path / "data"),
            "record": {"dir": str(tmp_path / "rec"), "segment_seconds": 2},
            "sources": [{"kind": "synthetic", "id": "cam", "fps": FPS, "width": WIDTH, "height": HEIGHT,
                         "tracking": True, "restream": {"rtsp": receiver.url, "hls": True}}],
        })
        outputs = build_event_outputs(config)
        try:
            pipeline = build_pipeline(config, lambda model: FakeDetector(label="shape"), outputs.sinks())
            connect_outputs(outputs, pipeline, config)
            pipeline.start()
            try:
                deadline = time.monotonic() + 30
                while True:
                    described = pipeline.streams["cam"].snapshot().describe()["encoder"]
                    done = (described["outputs"]["hls"]["segments"] >= 3
                            and described["outputs"]["rtsp"]["packets_sent"] >= 3 * FPS
                            and len(list((tmp_path / "rec" / "cam").glob("*.mp4"))) >= 2)
                    if done:
                        break
                    assert time.monotonic() < deadline, f"not every output got video within 30 s: {described}"
                    time.sleep(0.2)
                threads = [thread.name for thread in threading.enumerate() if thread.name.startswith("encode:")]
            finally:
                assert pipeline.stop(15)
        finally:
            outputs.close()
    assert threads == ["encode:cam"]
    assert len(encoders) == 1, "one encoder for the stream's recording, clips, RTSP push and HLS"
    assert frame_writers == [], "nothing else encodes frames"
    assert sorted(described["outputs"]) == ["clips", "hls", "recording", "rtsp"]
    assert described["frames_encoded"] > 0 and described["time_lines"] == 1
    segments = sorted((tmp_path / "rec" / "cam").glob("*.mp4"))
    for path in (*segments, received):
        stream = video_stream(probe(path))
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", WIDTH, HEIGHT), path.name
        assert int(stream["nb_read_frames"]) >= FPS, path.name
