"""The encoder and its outputs never wait on each other: a dead RTSP server costs its own packets only."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from stream_detect.overlay import Overlay
from stream_detect.records import Frame
from stream_detect.restream.encoder import StreamEncoder
from stream_detect.restream.hls import HlsSegmenter
from stream_detect.restream.rtsp_push import Backoff, RtspPush

from .receiver import RtspReceiver, free_port, needs_ffmpeg

FPS = 15


def frame(index: int, t: float | None = None) -> Frame:
    image = np.zeros((120, 160, 3), np.uint8)
    image[:, (index * 4) % 150:(index * 4) % 150 + 10] = 200
    return Frame("cam", index, image, index / FPS if t is None else t, 1_800_000_000.0 + index / FPS)


@pytest.mark.timeout(60)
def test_a_dead_rtsp_server_never_slows_the_encoder_or_the_other_outputs() -> None:
    push = RtspPush("cam", f"rtsp://user:pw@127.0.0.1:{free_port()}/nobody", max_queue_s=1.0,
                    backoff=Backoff(initial_s=0.2, max_s=0.5))
    hls = HlsSegmenter("cam", segment_s=1.0, segments=4)
    encoder = StreamEncoder("cam", Overlay.empty, [push, hls], FPS, queue_size=4)
    encoder.start()
    waits = []
    try:
        for index in range(4 * FPS):
            started = time.perf_counter()
            encoder.put(frame(index))
            waits.append(time.perf_counter() - started)
            time.sleep(1 / FPS)
        time.sleep(0.5)
        described = encoder.describe()
    finally:
        encoder.stop()
        assert encoder.join(15)
    rtsp = described["outputs"]["rtsp"]
    assert max(waits) < 0.02
    assert described["frames_dropped"] == 0 and described["frames_encoded"] == 4 * FPS
    assert described["outputs"]["hls"]["segments"] >= 3, "HLS went on"
    assert rtsp["state"] in ("reconnecting", "connecting") and rtsp["failures"] >= 2, rtsp
    assert rtsp["packets_sent"] == 0 and rtsp["packets_dropped"] > 0
    assert rtsp["packets_queued"] <= 1.0 * FPS + FPS, "the queue holds about max_queue_s of video"
    assert "pw@" not in rtsp["url"] and "pw@" not in (rtsp["error"] or "")


def test_a_clock_that_restarts_starts_a_new_time_line_marked_in_the_playlist() -> None:
    hls = HlsSegmenter("cam", segment_s=1.0, segments=10)
    encoder = StreamEncoder("cam", Overlay.empty, [hls], FPS, queue_size=1000)
    encoder.start()
    try:
        for index in range(3 * FPS):
            encoder.put(frame(index))
        for index in range(3 * FPS, 6 * FPS):  # a looped file: its pts back to 0
            encoder.put(frame(index, t=(index - 3 * FPS) / FPS))
    finally:
        encoder.stop()
        assert encoder.join(15)
    playlist = hls.playlist()
    assert playlist is not None and playlist.count("#EXT-X-DISCONTINUITY") == 1, playlist
    assert encoder.describe()["time_lines"] == 2


@needs_ffmpeg
@pytest.mark.timeout(60)
def test_a_server_that_stops_reading_is_cut_off_and_the_push_goes_on_elsewhere(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 255, (360, 640, 3), dtype=np.uint8) for _ in range(4)]  # megabits a second
    with RtspReceiver(tmp_path) as frozen:
        frozen.start()
        push = RtspPush("cam", frozen.url, io_timeout_s=2.0, backoff=Backoff(initial_s=0.2, max_s=0.5))
        encoder = StreamEncoder("cam", Overlay.empty, [push], FPS, queue_size=4)
        encoder.start()
        try:
            deadline = time.monotonic() + 30
            index = 0
            while push.describe()["stalls"] == 0:
                assert time.monotonic() < deadline, f"the stalled push was not cut off: {push.describe()}"
                if index == FPS:
                    frozen.pause()  # connected, reading nothing: the socket buffers fill, the writes block
                encoder.put(Frame("cam", index, noise[index % 4], index / FPS, time.time()))
                index += 1
                time.sleep(1 / FPS)
            described = push.describe()
            started = time.monotonic()
        finally:
            encoder.stop()
            assert encoder.join(15)
        stopped_s = time.monotonic() - started
    assert described["state"] in ("reconnecting", "connecting"), described
    assert described["packets_sent"] >= FPS and described["packets_dropped"] > 0
    assert stopped_s < 5, "closing waits on no blocked write"
