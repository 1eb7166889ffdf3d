"""Broken and unusual files: each ends in a clear state, quickly, and nothing else suffers."""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from ..ffprobe import needs_ffprobe, probe, video_stream
from .bad_media import BadMedia, make_bad_media, needs_ffmpeg
from .helpers import Listener, analyzer, streams, wait_until

pytestmark = needs_ffmpeg

SETTLED = ("ended", "failed")


@pytest.fixture(scope="module")
def bad_media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BadMedia]:
    return make_bad_media(tmp_path_factory.mktemp("bad-media"))


@pytest.mark.timeout(90)
def test_every_bad_file_ends_in_a_clear_state_within_5_s(bad_media: dict[str, BadMedia]) -> None:
    assert len(bad_media) >= 12
    sources = [{"kind": "file", "id": name, "path": str(m.path)} for name, m in bad_media.items()]
    sources.append({"kind": "synthetic", "id": "healthy", "fps": 15, "width": 320, "height": 240})
    with analyzer(sources) as base, Listener(base) as ws:
        started = time.monotonic()
        settled_at: dict[str, float] = {}

        def all_settled() -> bool:
            for name, stream in streams(base).items():
                if name in bad_media and stream["state"] in SETTLED and name not in settled_at:
                    settled_at[name] = time.monotonic() - started
            return len(settled_at) == len(bad_media)

        wait_until(all_settled, 20, poll_s=0.1)
        assert wait_until(lambda: all(s["frames_processed"] == s["frames_captured"]
                                      for n, s in streams(base).items() if n in bad_media), 10)
        described = streams(base)
        healthy_before = described["healthy"]["frames_processed"]
        time.sleep(1.0)
        healthy_after = streams(base)["healthy"]["frames_processed"]
        assert httpx.get(base + "/healthz", timeout=5).status_code == 200
        messages = ws.messages()
    report = {name: (described[name]["state"], described[name]["frames_captured"], described[name]["frames_corrupt"],
                     round(settled_at.get(name, -1), 2), described[name]["detail"]) for name in bad_media}
    print("\n".join(f"{name}: {value}" for name, value in report.items()))
    for name, expected in bad_media.items():
        stream = described[name]
        assert name in settled_at, f"{name} never settled: {stream}"
        assert settled_at[name] <= 5.0, f"{name} took {settled_at[name]:.1f} s"
        assert stream["state"] == expected.state, (name, stream)
        if expected.frames is not None:
            assert stream["frames_captured"] == expected.frames, (name, stream)
        assert stream["frames_captured"] >= expected.min_frames, (name, stream)
        if expected.corrupt:
            assert stream["frames_corrupt"] > 0, (name, stream)
        else:
            assert stream["frames_corrupt"] == 0, (name, stream)
        if expected.detail is not None:
            assert expected.detail in (stream["detail"] or "").lower(), (name, stream)
        if expected.state == "failed":
            assert stream["detail"], f"{name} failed without saying why"
        if expected.size is not None:
            assert (stream["width"], stream["height"]) == expected.size, (name, stream)
        states = [m["state"] for _, m in messages if m["type"] == "status" and m["stream"] == name]
        assert states and states[-1] == expected.state, (name, states)
    assert healthy_after - healthy_before >= 8, "the healthy source slowed down"


@needs_ffprobe
@pytest.mark.timeout(90)
def test_resolution_change_keeps_detections_preview_and_recording(bad_media: dict[str, BadMedia],
                                                                    tmp_path: Path) -> None:
    path = bad_media["resolution_change"].path  # 1 s of 320x240, then 1 s of 640x360
    source = {"kind": "file", "id": "cam", "path": str(path), "realtime": True}
    snapshot_sizes: set[tuple[int, int]] = set()
    with analyzer([source], record={"dir": str(tmp_path / "rec"), "segment_seconds": 60}) as base, \
            Listener(base) as ws:

        def ended() -> bool:
            response = httpx.get(base + "/streams/cam/snapshot.jpg", timeout=5)
            if response.status_code == 200:
                snapshot_sizes.add(Image.open(io.BytesIO(response.content)).size)
            return streams(base)["cam"]["state"] == "ended"

        # A realtime file is paced like a camera, and still ends at its end.
        assert wait_until(ended, 15, poll_s=0.1), streams(base)["cam"]
        sizes = {(m["width"], m["height"]) for _, m in ws.detections("cam")}
        boxes = [m["detections"][0]["box"] for _, m in ws.detections("cam") if m["width"] == 640 and m["detections"]]
    assert sizes == {(320, 240), (640, 360)}
    # The box drawn at a quarter of the frame, found in the new frame's own pixels.
    assert len(boxes) >= 10, "detections stopped after the change"
    assert abs(boxes[-1]["xmin"] - 160) <= 8 and abs(boxes[-1]["xmax"] - 320) <= 8, boxes[-1]
    assert snapshot_sizes == {(320, 240), (640, 360)}
    segments = sorted((tmp_path / "rec" / "cam").glob("*.mp4"))
    recorded = [(video_stream(probe(p))["width"], video_stream(probe(p))["height"]) for p in segments]
    print(f"recorded segments: {recorded}; snapshots {snapshot_sizes}")
    assert recorded == [(320, 240), (640, 360)], recorded
