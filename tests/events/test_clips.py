"""Clips of tracked objects: what ffprobe, a decoder and Chromium say about the files.

Frames come from the synthetic camera with the frame's index drawn as a
barcode in a strip below the scene, so a decoded clip tells exactly which
captured frames it holds. The sink is driven as the pipeline drives it: the
frame tap for every captured frame, then per processed frame its result and
the notices of the events decided on it.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import re
import shutil
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from stream_detect.analytics import AnalyticsFields, StreamAnalytics
from stream_detect.events.clip_ring import PacketRing
from stream_detect.events.clips import ClipLimits, ClipSink
from stream_detect.events.clips import clip_path as optional_clip_path
from stream_detect.overlay import Overlay
from stream_detect.records import Detections, Frame
from stream_detect.restream.encoder import StreamEncoder
from stream_detect.restream.h264 import H264Encoder
from stream_detect.sinks import FrameResult, Notice
from stream_detect.sources.base import SourceState
from stream_detect.sources.capture import StateChange
from stream_detect.sources.synthetic import SyntheticScene

from ..ffprobe import FFPROBE, needs_ffprobe, probe, video_stream

FPS = 10
WIDTH, SCENE_HEIGHT, STRIP = 320, 180, 20
HEIGHT = SCENE_HEIGHT + STRIP
BITS, BIT_WIDTH = 12, 24
STREAM = "porch"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]
# Plenty of room: these tests check what is written, not what a slow machine drops (that test is below).
NO_DROPS = ClipLimits(queue_size=1000)

pytestmark = needs_ffprobe


# -- inputs ---------------------------------------------------------------------


class EncodedClips:
    """A :class:`ClipSink` fed as the pipeline feeds it: the stream's one encoder draws each frame with the
    latest result's overlay and hands its packets to the sink's output. A stream's end is told once the
    encoder has taken the frames before it (as the pipeline tells it after the stream's last result)."""

    def __init__(self, directory: Path, pre_s: float, post_s: float, *, limits: ClipLimits,
                 rate_of: Any = lambda stream_id: None) -> None:
        self.sink = ClipSink(directory, pre_s, post_s, limits=limits, rate_of=rate_of)
        self.overlay = Overlay.empty()
        self.encoder = StreamEncoder(STREAM, lambda: self.overlay, [self.sink.output(STREAM)], rate_of(STREAM),
                                     queue_size=limits.queue_size)
        self.encoder.start()
        self.offered = 0

    def on_frame(self, frame: Frame) -> None:
        self.offered += 1
        self.encoder.put(frame)

    def on_result(self, result: FrameResult) -> None:
        self.overlay = result.overlay if result.overlay is not None else Overlay(result.detections)
        self.sink.on_result(result)

    def on_event(self, notice: Notice) -> None:
        self.sink.on_event(notice)

    def on_status(self, change: StateChange) -> None:
        deadline = time.monotonic() + 30
        counters = self.encoder.counters
        while counters.frames_encoded + counters.frames_skipped + self.encoder.frames_dropped < self.offered:
            assert time.monotonic() < deadline, "the encoder did not take its frames within 30 s"
            time.sleep(0.01)
        self.sink.on_status(change)

    def close(self) -> None:
        self.encoder.stop()
        assert self.encoder.join(30)
        self.sink.close()

    def stats(self) -> dict[str, Any]:
        return {**self.sink.stats(), "frames_encoded": self.encoder.counters.frames_encoded,
                "encoder_frames_dropped": self.encoder.frames_dropped}


class Camera:
    """Synthetic frames with their index as a barcode under the scene; pts = index / FPS."""

    def __init__(self, seed: int = 3) -> None:
        self.scene = SyntheticScene(WIDTH, SCENE_HEIGHT, seed=seed, shapes=3)
        self.index = 0

    def next(self) -> tuple[Frame, list[Any]]:
        scene, truths = self.scene.next_frame()
        image = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        image[:SCENE_HEIGHT] = scene
        for bit in range(BITS):
            if self.index >> bit & 1:
                image[SCENE_HEIGHT:, bit * BIT_WIDTH:(bit + 1) * BIT_WIDTH] = 255
        frame = Frame(STREAM, self.index, image, self.index / FPS, 1_800_000_000.0 + self.index / FPS)
        self.index += 1
        return frame, truths


def read_index(image: np.ndarray) -> int:
    strip = image[SCENE_HEIGHT + 4:HEIGHT - 4]
    return sum(1 << bit for bit in range(BITS)
               if np.median(strip[:, bit * BIT_WIDTH + 4:(bit + 1) * BIT_WIDTH - 4]) > 128)


def notice(kind: str, event_id: str, track_id: int, frame: int, duration_s: float | None = None) -> Notice:
    return Notice(STREAM, {"type": "event", "version": 1, "id": event_id, "kind": kind, "stream": STREAM,
                           "at": 1_800_000_000.0 + frame / FPS, "frame": frame, "track_id": track_id,
                           "label": "circle", "score": 0.9, "box": {"xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1},
                           "zone": None, "line": None, "direction": None, "duration_s": duration_s})


@dataclass(frozen=True)
class Scripted:
    """An object seen on frames ``first`` to ``last``, confirmed one frame later, ended ``lost`` frames
    after its last (the tracker's default: confirmed on its second detection)."""

    event_id: str
    track_id: int
    first: int
    last: int
    lost: int = 20

    def track_on(self, index: int) -> bool:
        return self.first + 1 <= index <= self.last


def box_result(frame: Frame, track_ids: tuple[int | None, ...]) -> FrameResult:
    boxes = [[20.0 + 40 * n, 20.0, 60.0 + 40 * n, 60.0] for n in range(len(track_ids))]
    detections = Detections.from_lists(boxes, [0.9] * len(boxes), [0] * len(boxes), ["circle"] * len(boxes))
    overlay = Overlay(detections, track_ids, detected_t=frame.pts)
    return FrameResult(frame, detections, "test-model", time.time(), track_ids, overlay=overlay)


def run_scripted(sink: EncodedClips, frames: int, objects: list[Scripted], *, end: bool = True) -> None:
    """Every frame processed; notices at the frames the tracker would decide them on."""
    camera = Camera()
    for _ in range(frames):
        frame, _ = camera.next()
        sink.on_frame(frame)
        index = frame.index
        sink.on_result(box_result(frame, tuple(o.track_id for o in objects if o.track_on(index))))
        for o in objects:
            if index == o.first + 1:
                sink.on_event(notice("object.start", o.event_id, o.track_id, index))
            if index == o.last + o.lost:
                sink.on_event(notice("object.end", f"{o.event_id}-end", o.track_id, index,
                                     (o.last - o.first) / FPS))
    if end:
        sink.on_status(StateChange(STREAM, SourceState.ENDED, time.time()))


# -- reading clips --------------------------------------------------------------


@dataclass(frozen=True)
class Clip:
    indices: list[int]  # the captured frames it shows, in order
    packets: dict[int, bytes]  # each frame's packet, by captured index
    first_is_key: bool
    codec: str
    format_name: str
    duration_s: float
    top_level_boxes: list[bytes]


def read_clip(path: Path) -> Clip:
    info = probe(path)
    stream = video_stream(info)
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    with av.open(str(path)) as container:
        indices = [read_index(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
    assert FFPROBE is not None
    frames = subprocess.run([FFPROBE, "-v", "error", "-select_streams", "v", "-show_entries",
                             "frame=key_frame:format=format_name", "-of", "json", str(path)],
                            capture_output=True, text=True, timeout=60, check=True)
    shown = json.loads(frames.stdout)
    first_key = shown["frames"][0]["key_frame"] == 1
    return Clip(indices, {index: bytes(p) for index, p in zip(indices, packets, strict=True)}, first_key,
                stream["codec_name"], shown["format"]["format_name"],
                float(stream["duration"]), boxes(path))


def boxes(path: Path) -> list[bytes]:
    """The MP4's top-level box types, in file order."""
    found, data, offset = [], path.read_bytes(), 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if size == 1:
            size = struct.unpack(">Q", data[offset + 8:offset + 16])[0]
        found.append(kind)
        if size < 8:
            break
        offset += size
    return found


def assert_valid_clip(clip: Clip) -> None:
    assert clip.codec == "h264" and "mp4" in clip.format_name
    assert clip.first_is_key, "a clip starts with a keyframe"
    assert clip.top_level_boxes.index(b"moov") < clip.top_level_boxes.index(b"mdat"), "faststart"
    assert clip.indices == list(range(clip.indices[0], clip.indices[-1] + 1)), "no frame lost or repeated"


def clip_path(directory: Path, stream_id: str, start_id: str) -> Path:
    path = optional_clip_path(directory, stream_id, start_id)
    assert path is not None
    return path


def wait_for(path: Path, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} was not written within {timeout_s} s"
        time.sleep(0.05)


# -- tests ----------------------------------------------------------------------

PRE_S, POST_S = 1.5, 1.0


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Two overlapping objects on one stream of 120 frames (12 s)."""
    directory = tmp_path_factory.mktemp("clips")
    sink = EncodedClips(directory, PRE_S, POST_S, limits=NO_DROPS, rate_of=lambda stream_id: FPS)
    try:
        run_scripted(sink, 120, [Scripted("a-start", 1, first=34, last=55), Scripted("b-start", 2, 45, 70)])
    finally:
        sink.close()
    return directory, sink.stats()


@pytest.mark.timeout(60)
def test_a_clip_covers_pre_s_before_the_first_frame_to_post_s_after_the_last(
        two_clips: tuple[Path, dict[str, Any]]) -> None:
    directory, _ = two_clips
    clip = read_clip(clip_path(directory, STREAM, "a-start"))
    assert_valid_clip(clip)
    # Frames 34..55 at 10 fps: from 3.4 - 1.5 = 1.9 s (frame 19) or the keyframe before, to 5.5 + 1.0 s.
    assert clip.indices[0] <= 19, clip.indices[:3]
    assert clip.indices[0] >= 19 - FPS, "from the last keyframe before, not the whole ring"
    assert clip.indices[-1] >= 65, clip.indices[-3:]
    assert clip.duration_s >= (65 - 19 + 1) / FPS - 1e-6


@pytest.mark.timeout(60)
def test_two_overlapping_objects_give_two_clips_of_the_same_packets(two_clips: tuple[Path, dict[str, Any]]) -> None:
    directory, stats = two_clips
    first = read_clip(clip_path(directory, STREAM, "a-start"))
    second = read_clip(clip_path(directory, STREAM, "b-start"))
    assert_valid_clip(second)
    assert second.indices[0] <= 45 - PRE_S * FPS and second.indices[-1] >= 70 + POST_S * FPS
    shared = sorted(set(first.packets) & set(second.packets))
    assert len(shared) >= 20
    assert all(first.packets[i] == second.packets[i] for i in shared), "copied, not encoded again"
    assert stats["frames_encoded"] == 120, "one encode per captured frame, whatever the number of clips"
    assert stats["clips_written"] == 2 and stats["frames_dropped"] == 0
    assert sorted(p.name for p in (directory / STREAM).iterdir()) == ["a-start.mp4", "b-start.mp4"]


def serve(directory: Path) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="clip-http")
    thread.start()
    return server, thread


@pytest.mark.timeout(90)
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_a_clip_plays_in_headless_chromium(two_clips: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    directory, _ = two_clips
    shutil.copy(clip_path(directory, STREAM, "a-start"), tmp_path / "clip.mp4")
    (tmp_path / "index.html").write_text('<!doctype html><video id="clip" src="clip.mp4" muted preload="auto">'
                                         "</video>")
    server, thread = serve(tmp_path)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = browser.new_page()
                page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
                page.wait_for_function("document.getElementById('clip').readyState >= 2", timeout=20_000)
                played = page.evaluate("""async () => {
                    const video = document.getElementById('clip');
                    await video.play();
                    await new Promise(resolve => setTimeout(resolve, 500));
                    return {error: video.error && video.error.code, duration: video.duration,
                            time: video.currentTime, width: video.videoWidth};
                }""")
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert played["error"] is None and played["width"] == WIDTH
    assert played["duration"] > 4 and played["time"] > 0, played


@pytest.mark.timeout(60)
def test_a_stream_that_ends_closes_its_open_clips(tmp_path: Path) -> None:
    sink = EncodedClips(tmp_path, PRE_S, POST_S, limits=NO_DROPS, rate_of=lambda stream_id: FPS)
    try:
        # Seen from frame 40 to the stream's end (frame 59): no object.end before the end.
        run_scripted(sink, 60, [Scripted("open-start", 1, first=40, last=10_000)])
        path = clip_path(tmp_path, STREAM, "open-start")
        wait_for(path)  # the end closes it, before the sink itself closes
        clip = read_clip(path)
    finally:
        sink.close()
    assert_valid_clip(clip)
    assert clip.indices[0] <= 40 - PRE_S * FPS and clip.indices[-1] == 59
    assert not list((tmp_path / STREAM).glob("*.partial")), "no temporary file left"


def ground_truth_run(sink: EncodedClips, frames: int) -> dict[int, tuple[str, float, float]]:
    """Real events: the analytics tracking the synthetic camera's ground-truth boxes, in the pipeline's
    order (tap, result, notices), then the stream's end. Returns per track its start id and the
    first and last frame times the tracker saw."""
    analytics = StreamAnalytics(STREAM, AnalyticsFields.model_validate({"tracking": True}))
    camera = Camera(seed=5)
    starts: dict[int, str] = {}
    spans: dict[int, tuple[float, float]] = {}
    last_frame = None
    for _ in range(frames):
        frame, truths = camera.next()
        sink.on_frame(frame)
        detections = Detections.from_lists([list(t.box) for t in truths], [0.95] * len(truths),
                                           [0] * len(truths), [t.label for t in truths])
        analysed = analytics.process(frame.index, frame.pts, frame.captured_at, WIDTH, HEIGHT, detections)
        overlay = Overlay(analysed.detections, analysed.track_ids, analysed.velocities, frame.pts)
        sink.on_result(FrameResult(frame, analysed.detections, "ground-truth", time.time(), analysed.track_ids,
                                   overlay=overlay))
        events = list(analysed.events)
        for event in events:
            sink.on_event(Notice(STREAM, event.message()))
        last_frame = frame
        record(events, frame, starts, spans, analysed.track_ids)
    assert last_frame is not None
    end_events = analytics.finish(time.time())
    for event in end_events:
        sink.on_event(Notice(STREAM, event.message()))
    record(end_events, last_frame, starts, spans, ())
    sink.on_status(StateChange(STREAM, SourceState.ENDED, time.time()))
    return {track: (starts[track], *spans[track]) for track in starts}


def record(events: list[Any], frame: Frame, starts: dict[int, str], spans: dict[int, tuple[float, float]],
           track_ids: tuple[int | None, ...]) -> None:
    assert frame.pts is not None
    for track in track_ids:
        if track is not None and track in spans:
            spans[track] = (spans[track][0], frame.pts)
    for event in events:
        if event.kind == "object.start":
            starts[event.track_id] = event.id
            spans[event.track_id] = (frame.pts, frame.pts)
        elif event.kind == "object.end" and event.track_id in spans:
            last = spans[event.track_id][1]
            spans[event.track_id] = (last - event.duration_s, last)  # the tracker's own first detection


@pytest.mark.timeout(120)
def test_clips_of_real_tracks_cover_each_object_or_the_stream_s_ends(tmp_path: Path) -> None:
    frames = 150
    sink = EncodedClips(tmp_path, PRE_S, POST_S, limits=NO_DROPS, rate_of=lambda stream_id: FPS)
    try:
        tracks = ground_truth_run(sink, frames)
    finally:
        sink.close()
    assert len(tracks) >= 3, "the scene gives several objects"
    assert sink.stats()["clips_written"] == len(tracks)
    for start_id, first_t, last_t in tracks.values():
        clip = read_clip(clip_path(tmp_path, STREAM, start_id))
        assert_valid_clip(clip)
        wanted_first = max(0, round((first_t - PRE_S) * FPS))
        wanted_last = min(frames - 1, round((last_t + POST_S) * FPS))
        assert clip.indices[0] <= wanted_first, (start_id, first_t, clip.indices[0])
        assert clip.indices[-1] >= wanted_last, (start_id, last_t, clip.indices[-1])


@pytest.mark.timeout(60)
def test_limits_refuse_and_cut_clips_counted(tmp_path: Path) -> None:
    sink = EncodedClips(tmp_path, 0.5, 0.5, limits=ClipLimits(queue_size=1000, max_open=1, max_clip_s=4.0),
                    rate_of=lambda stream_id: FPS)
    try:
        # The second starts (frame 21) while the first's clip is open (cut once the encoder reaches 4 s).
        run_scripted(sink, 80, [Scripted("long-start", 1, first=10, last=60), Scripted("refused", 2, 20, 30)])
    finally:
        sink.close()
    stats = sink.stats()
    assert stats["clips_refused"] == 1 and stats["clips_cut"] == 1 and stats["clips_written"] == 1
    clip = read_clip(clip_path(tmp_path, STREAM, "long-start"))
    assert_valid_clip(clip)
    assert 4.0 <= clip.duration_s <= 4.0 + 2 / FPS
    assert not clip_path(tmp_path, STREAM, "refused").exists()


@pytest.mark.timeout(60)
def test_the_frame_tap_never_waits_for_a_slow_encoder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = H264Encoder.encode

    def slow(self: H264Encoder, image: np.ndarray, t: float) -> Any:
        time.sleep(0.05)
        return original(self, image, t)

    monkeypatch.setattr(H264Encoder, "encode", slow)
    sink = EncodedClips(tmp_path, 1.0, 1.0, limits=ClipLimits(queue_size=4), rate_of=lambda stream_id: FPS)
    camera = Camera()
    waits = []
    offered = 60
    try:
        for _ in range(offered):
            frame, _ = camera.next()
            started = time.perf_counter()
            sink.on_frame(frame)
            waits.append(time.perf_counter() - started)
            time.sleep(0.002)
    finally:
        sink.close()
    stats = sink.stats()
    # A tap that waited for the encoder would take its 50 ms (the first call also starts the thread).
    assert max(waits[1:]) < 0.04, f"a tap call waited {max(waits[1:]) * 1000:.1f} ms"
    assert stats["encoder_frames_dropped"] > 0
    assert stats["frames_encoded"] + stats["encoder_frames_dropped"] == offered, stats


def test_the_ring_keeps_a_keyframe_every_second_and_no_more_than_it_needs() -> None:
    # Nominal 25 fps, frames at 10 fps: the GOP alone would give a keyframe every 2.5 s.
    encoder = H264Encoder(WIDTH, HEIGHT, 25.0)
    ring = PacketRing(encoder.width, encoder.height, keep_s=3.0)
    camera = Camera()
    keyframes = []
    for _ in range(80):
        frame, _ = camera.next()
        assert frame.pts is not None
        packets = encoder.encode(frame.image, frame.pts)
        ring.add(packets)
        keyframes += [p.t for p in packets if p.keyframe]
        assert ring.span_s <= 3.0 + 1.0 + 1e-6, "keep_s and the GOP that reaches back past it"
    assert max(np.diff(keyframes)) <= 1.0 + 1e-6, keyframes
    packets = list(ring)
    assert packets[0].keyframe and packets[-1].t - packets[0].t >= 3.0
    assert ring.since(6.55)[0].t == max(t for t in keyframes if t <= 6.55)
    assert ring.bytes == sum(len(p.data) for p in packets)


@pytest.mark.timeout(60)
def test_wired_into_a_pipeline_a_tracked_object_gets_its_clip(tmp_path: Path) -> None:
    from stream_detect.config import parse_config
    from stream_detect.detect.fake import FakeDetector
    from stream_detect.pipeline import Pipeline

    config = parse_config({
        "model": {"id": "fake"},
        "sources": [{"kind": "synthetic", "id": STREAM, "fps": FPS, "width": WIDTH, "height": SCENE_HEIGHT,
                     "frames": 40, "tracking": True}],
    })
    pipeline = Pipeline(config, lambda model: FakeDetector(label="shape"))
    sink = ClipSink(tmp_path, 1.0, 1.0, limits=NO_DROPS, rate_of=lambda stream_id: FPS)
    pipeline.add_encoder_output(lambda stream: sink.output(stream.id))
    pipeline.dispatcher.add(sink, maxsize=64)
    pipeline.start()
    try:
        deadline = time.monotonic() + 30
        while not list((tmp_path / STREAM).glob("*.mp4")):
            assert time.monotonic() < deadline, "no clip within 30 s of a 4 s stream"
            time.sleep(0.1)
    finally:
        assert pipeline.stop(10)
    clips = sorted((tmp_path / STREAM).glob("*.mp4"))
    assert [re.fullmatch(rf"\d{{13}}-{STREAM}-\d{{10}}-\d{{4}}", p.stem) is not None for p in clips] == [True]
    info = video_stream(probe(clips[0]))
    assert info["codec_name"] == "h264"
    # The object is there from the first frame to the stream's end: the clip is the whole stream.
    assert int(info["nb_read_frames"]) == 40
    assert sink.stats()["frames_dropped"] == 0


@pytest.mark.timeout(60)
def test_a_clock_that_restarts_closes_the_open_clips_and_starts_a_new_ring(tmp_path: Path) -> None:
    sink = EncodedClips(tmp_path, PRE_S, POST_S, limits=NO_DROPS, rate_of=lambda stream_id: FPS)
    camera = Camera()
    try:
        for _ in range(80):
            frame, _ = camera.next()
            if frame.index >= 50:  # a looped file: pts back to 0 at frame 50
                frame = dataclasses.replace(frame, pts=(frame.index - 50) / FPS)
            sink.on_frame(frame)
            index = frame.index
            sink.on_result(box_result(frame, (1,) if 20 <= index < 50 else (2,) if 61 <= index <= 65 else ()))
            if index == 21:
                sink.on_event(notice("object.start", "before-start", 1, index))
            if index == 61:
                sink.on_event(notice("object.start", "after-start", 2, index))
            if index == 75:
                sink.on_event(notice("object.end", "after-end", 2, index, 0.5))
        sink.on_status(StateChange(STREAM, SourceState.ENDED, time.time()))
    finally:
        sink.close()
    before = read_clip(clip_path(tmp_path, STREAM, "before-start"))
    after = read_clip(clip_path(tmp_path, STREAM, "after-start"))
    assert_valid_clip(before)
    assert_valid_clip(after)
    assert before.indices[-1] == 49, "closed where its time line ended"
    # pts 1.0 - 1.5 s is before the new time line: from its first frame, nothing of the old one.
    assert after.indices[0] == 50 and after.indices[-1] >= 65 + POST_S * FPS


@pytest.mark.timeout(60)
def test_a_clip_that_cannot_be_written_is_counted_and_the_next_one_is_written(tmp_path: Path) -> None:
    (tmp_path / STREAM).write_bytes(b"")  # a file where the stream's directory should be
    sink = EncodedClips(tmp_path, 0.5, 0.5, limits=NO_DROPS, rate_of=lambda stream_id: FPS)
    camera = Camera()
    try:
        for _ in range(60):
            frame, _ = camera.next()
            sink.on_frame(frame)
            index = frame.index
            sink.on_result(box_result(frame, (1,) if 10 <= index <= 20 else (2,) if 40 <= index <= 45 else ()))
            if index == 11:
                sink.on_event(notice("object.start", "lost-start", 1, index))
            if index == 25:
                sink.on_event(notice("object.end", "lost-end", 1, index, 1.0))
            if index == 30:
                deadline = time.monotonic() + 15
                while sink.stats()["clips_failed"] < 1:
                    assert time.monotonic() < deadline, "the failed clip was not counted within 15 s"
                    time.sleep(0.05)
                (tmp_path / STREAM).unlink()  # the disk is fixed
            if index == 41:
                sink.on_event(notice("object.start", "kept-start", 2, index))
        sink.on_status(StateChange(STREAM, SourceState.ENDED, time.time()))
    finally:
        sink.close()
    stats = sink.stats()
    assert stats["clips_failed"] == 1 and stats["clips_written"] == 1 and stats["frames_encoded"] == 60
    assert_valid_clip(read_clip(clip_path(tmp_path, STREAM, "kept-start")))
    assert sorted(p.name for p in (tmp_path / STREAM).iterdir()) == ["kept-start.mp4"]


@pytest.mark.timeout(60)
def test_an_encoder_behind_the_events_still_starts_and_ends_each_clip_at_its_times(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    original = H264Encoder.encode

    def slow(self: H264Encoder, image: np.ndarray, t: float) -> Any:
        time.sleep(0.01)
        return original(self, image, t)

    monkeypatch.setattr(H264Encoder, "encode", slow)
    sink = EncodedClips(tmp_path, PRE_S, POST_S, limits=NO_DROPS, rate_of=lambda stream_id: FPS)
    try:
        # Every event is told long before the encoder reaches its frame; the stream ends meanwhile.
        run_scripted(sink, 90, [Scripted("late-start", 1, first=30, last=40, lost=5)])
    finally:
        sink.close()
    clip = read_clip(clip_path(tmp_path, STREAM, "late-start"))
    assert_valid_clip(clip)
    assert 30 - PRE_S * FPS - FPS <= clip.indices[0] <= 30 - PRE_S * FPS
    assert 40 + POST_S * FPS <= clip.indices[-1] <= 40 + POST_S * FPS + 1


def test_an_odd_frame_size_is_encoded_without_its_last_column_and_row() -> None:
    encoder = H264Encoder(321, 181, FPS)
    image = np.full((181, 321, 3), 90, np.uint8)
    packets = [p for index in range(3) for p in encoder.encode(image, index / FPS)] + encoder.flush()
    assert (encoder.width, encoder.height) == (320, 180) and packets[0].keyframe and len(packets) == 3
    assert not encoder.accepts(np.zeros((180, 320, 3), np.uint8), 1.0), "another size is another time line"
